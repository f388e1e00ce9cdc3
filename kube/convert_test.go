package kube

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	npv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/skeinnet/skein/api"
)

func TestNewPolicyDocNetworkPolicy(t *testing.T) {
	t.Parallel()
	port := intstr.FromString("serve-80-tcp")
	spec := networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "a"}},
		Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}},
			Ports: []networkingv1.NetworkPolicyPort{{Port: &port}},
		}},
	}
	d := newPolicyDoc(api.NetworkingV1, api.KindNetworkPolicy, "x", "p", map[string]string{"team": "a"}, spec)
	if d.Err != nil {
		t.Fatalf("newPolicyDoc: %v", d.Err)
	}
	if !api.OwnedByKubernetes(d.Raw) {
		t.Errorf("stored value %s lacks the owner annotation", d.Raw)
	}
	o, err := api.DecodePolicy(api.KindNetworkPolicy, d.Raw)
	if err != nil {
		t.Fatalf("agents cannot decode the stored value: %v\n%s", err, d.Raw)
	}
	np := o.(*api.NetworkPolicy)
	if np.Namespace != "x" || np.Name != "p" || np.Labels["team"] != "a" || len(np.Spec.Ingress) != 1 {
		t.Errorf("decoded %+v", np)
	}
	if got := np.Spec.Ingress[0].Ports[0].Port.String(); got != "serve-80-tcp" {
		t.Errorf("named port decoded as %q", got)
	}
}

// A ClusterNetworkPolicy with a domainNames peer is valid in Kubernetes;
// Skein cannot enforce it. The stored value must make agents isolate what
// it selects: it does not decode, and its subject is still readable.
func TestNewPolicyDocUnenforceableFailsClosed(t *testing.T) {
	t.Parallel()
	spec := npv1beta1.ClusterNetworkPolicySpec{
		Tier:     npv1beta1.AdminTier,
		Priority: 10,
		Subject:  npv1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"ns": "x"}}},
		Egress: []npv1beta1.ClusterNetworkPolicyEgressRule{{
			Action: npv1beta1.ClusterNetworkPolicyRuleActionAccept,
			To:     []npv1beta1.ClusterNetworkPolicyEgressPeer{{DomainNames: []npv1beta1.DomainName{"example.com"}}},
		}},
	}
	d := newPolicyDoc(api.PolicyV1Beta1, api.KindClusterNetworkPolicy, "", "to-domain", nil, spec)
	if d.Err == nil || !strings.Contains(d.Err.Error(), "domainNames") {
		t.Fatalf("err = %v, want one naming domainNames", d.Err)
	}
	if _, err := api.DecodePolicy(api.KindClusterNetworkPolicy, d.Raw); err == nil {
		t.Fatalf("agents decode the stored value of an unenforceable policy:\n%s", d.Raw)
	}
	if !api.OwnedByKubernetes(d.Raw) {
		t.Errorf("poisoned value lost the owner annotation: %s", d.Raw)
	}
	tgt := api.ReadPolicyTarget(api.KindClusterNetworkPolicy, "", "to-domain", d.Raw)
	if tgt.Subject == nil || tgt.Subject.Namespaces == nil || tgt.Subject.Namespaces.MatchLabels["ns"] != "x" {
		t.Errorf("quarantine target %+v: want the subject ns=x (not every pod)", tgt)
	}
}

func TestNewPolicyDocUnknownField(t *testing.T) {
	t.Parallel()
	spec := json.RawMessage(`{"podSelector":{},"futureField":true}`)
	d := newPolicyDoc(api.NetworkingV1, api.KindNetworkPolicy, "x", "future", nil, spec)
	if d.Err == nil || !strings.Contains(d.Err.Error(), "futureField") {
		t.Fatalf("err = %v, want one naming futureField", d.Err)
	}
	if _, err := api.DecodePolicy(api.KindNetworkPolicy, d.Raw); err == nil {
		t.Errorf("agents would enforce the policy without its unknown field:\n%s", d.Raw)
	}
	if tgt := api.ReadPolicyTarget(api.KindNetworkPolicy, "x", "future", d.Raw); tgt.PodSelector == nil {
		t.Errorf("quarantine target %+v: want the podSelector read", tgt)
	}
}

func TestPodPorts(t *testing.T) {
	t.Parallel()
	spec := corev1.PodSpec{
		InitContainers: []corev1.Container{{Ports: []corev1.ContainerPort{{Name: "sidecar", ContainerPort: 9000}}}},
		Containers: []corev1.Container{
			{Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 80}, {ContainerPort: 8080}, {Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}}},
			{Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 80}}},
		},
	}
	want := []api.NamedPort{{Name: "dns", Port: 53, Protocol: "UDP"}, {Name: "sidecar", Port: 9000, Protocol: "TCP"}, {Name: "web", Port: 80, Protocol: "TCP"}}
	if d := cmp.Diff(want, podPorts(&spec)); d != "" {
		t.Errorf("podPorts mismatch (-want +got):\n%s", d)
	}
	if got := podPorts(&corev1.PodSpec{}); got != nil {
		t.Errorf("podPorts of a pod without ports = %v, want nil", got)
	}
}

func TestNamespaceRecord(t *testing.T) {
	t.Parallel()
	got := namespaceRecord(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: map[string]string{api.NamespaceNameLabel: "x", "ns": "x"}}})
	want := api.Namespace{Name: "x", Labels: map[string]string{"ns": "x"}, Owner: api.OwnerKubernetes}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("namespaceRecord mismatch (-want +got):\n%s", d)
	}
	if got := namespaceRecord(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "y", Labels: map[string]string{api.NamespaceNameLabel: "y"}}}); got.Labels != nil {
		t.Errorf("labels of a namespace with only the implied label = %v, want nil", got.Labels)
	}
}
