package api

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const cnpYAML = `apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata:
  name: guard
  namespace: ignored
spec:
  tier: Admin
  priority: 10
  subject:
    namespaces: {matchLabels: {ns: x}}
  ingress:
  - name: from-y
    action: Accept
    from:
    - pods:
        namespaceSelector: {matchLabels: {ns: y}}
        podSelector: {matchLabels: {pod: a}}
    protocols:
    - tcp: {destinationPort: {number: 80}}
    - udp: {destinationPort: {range: {start: 53, end: 54}}}
    - destinationNamedPort: web
  egress:
  - action: Pass
    to:
    - nodes: {matchLabels: {zone: a}}
    - networks: [10.0.0.0/8]
  - action: Deny
    to: [{namespaces: {}}]
status:
  conditions: []
`

func TestDecodeClusterNetworkPolicy(t *testing.T) {
	t.Parallel()
	for _, version := range []string{PolicyV1Beta1, PolicyV1Alpha2} {
		t.Run(version, func(t *testing.T) {
			in := strings.Replace(cnpYAML, PolicyV1Beta1, version, 1)
			objs, err := DecodeDocuments("cnp.yaml", []byte(in))
			if err != nil {
				t.Fatalf("DecodeDocuments: %v", err)
			}
			if len(objs) != 1 {
				t.Fatalf("got %d objects, want 1", len(objs))
			}
			cnp, ok := objs[0].(*ClusterNetworkPolicy)
			if !ok {
				t.Fatalf("object is %T, want *ClusterNetworkPolicy", objs[0])
			}
			want := ClusterNetworkPolicySpec{
				Tier:     TierAdmin,
				Priority: 10,
				Subject:  ClusterNetworkPolicySubject{Namespaces: &LabelSelector{MatchLabels: map[string]string{"ns": "x"}}},
				Ingress: []ClusterNetworkPolicyIngressRule{{
					Name: "from-y", Action: CNPActionAccept,
					From: []ClusterNetworkPolicyIngressPeer{{Pods: &NamespacedPod{
						NamespaceSelector: LabelSelector{MatchLabels: map[string]string{"ns": "y"}},
						PodSelector:       LabelSelector{MatchLabels: map[string]string{"pod": "a"}},
					}}},
					Protocols: []ClusterNetworkPolicyProtocol{
						{TCP: &ClusterNetworkPolicyProtocolPort{DestinationPort: &ClusterNetworkPolicyPort{Number: 80}}},
						{UDP: &ClusterNetworkPolicyProtocolPort{DestinationPort: &ClusterNetworkPolicyPort{Range: &ClusterNetworkPolicyPortRange{Start: 53, End: 54}}}},
						{DestinationNamedPort: "web"},
					},
				}},
				Egress: []ClusterNetworkPolicyEgressRule{
					{Action: CNPActionPass, To: []ClusterNetworkPolicyEgressPeer{
						{Nodes: &LabelSelector{MatchLabels: map[string]string{"zone": "a"}}},
						{Networks: []CIDR{"10.0.0.0/8"}},
					}},
					{Action: CNPActionDeny, To: []ClusterNetworkPolicyEgressPeer{{Namespaces: &LabelSelector{}}}},
				},
			}
			if d := cmp.Diff(want, cnp.Spec); d != "" {
				t.Errorf("spec mismatch (-want +got):\n%s", d)
			}
			if cnp.Namespace != "" || cnp.Name != "guard" || cnp.APIVersion != version {
				t.Errorf("meta = %q %q %q, want cluster-scoped guard of %s", cnp.APIVersion, cnp.Namespace, cnp.Name, version)
			}
		})
	}
}

// TestDecodeClusterNetworkPolicyErrors: bad input names the document, the
// field and its line in the file.
func TestDecodeClusterNetworkPolicyErrors(t *testing.T) {
	t.Parallel()
	head := "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\n"
	tests := []struct {
		name, old, new, want string
	}{
		{"bad apiVersion", "policy.networking.k8s.io/v1beta1", "policy.networking.k8s.io/v1alpha1",
			`document 2 (line 5): line 5: apiVersion: unknown apiVersion "policy.networking.k8s.io/v1alpha1" for kind ClusterNetworkPolicy (want policy.networking.k8s.io/v1beta1 or policy.networking.k8s.io/v1alpha2)`},
		{"bad tier", "tier: Admin", "tier: Developer", `line 11: spec.tier: unsupported value "Developer": supported values: "Admin", "Baseline"`},
		{"missing tier", "  tier: Admin\n", "", "line 10: spec.tier: required value"},
		{"priority", "priority: 10", "priority: 1001", "line 12: spec.priority: invalid value 1001: must be between 0 and 1000"},
		{"ANP action", "action: Accept", "action: Allow", `line 17: spec.ingress[0].action: unsupported value "Allow": supported values: "Accept", "Deny", "Pass"`},
		{"ANP ports field", "    protocols:\n", "    ports:\n", "line 22: spec.ingress[0].ports: unknown field"},
		{"empty tcp", "tcp: {destinationPort: {number: 80}}", "tcp: {}", "line 23: spec.ingress[0].protocols[0].tcp.destinationPort: required value"},
		{"two protocols in one", "- destinationNamedPort: web", "- {destinationNamedPort: web, sctp: {destinationPort: {number: 1}}}",
			"line 25: spec.ingress[0].protocols[2]: must specify exactly one of tcp, udp, sctp or destinationNamedPort"},
		{"port range reversed", "range: {start: 53, end: 54}", "range: {start: 54, end: 53}", "line 24: spec.ingress[0].protocols[1].udp.destinationPort.range: start (54) must be less than end (53)"},
		{"number and range", "{number: 80}", "{number: 80, range: {start: 1, end: 2}}", "line 23: spec.ingress[0].protocols[0].tcp.destinationPort: may specify only one of number or range"},
		{"port number", "{number: 80}", "{number: 70000}", "line 23: spec.ingress[0].protocols[0].tcp.destinationPort.number: invalid value 70000"},
		{"bad named port", "destinationNamedPort: web", "destinationNamedPort: Web", `line 25: spec.ingress[0].protocols[2].destinationNamedPort: invalid port name "Web"`},
		{"peer with two fields", "    - networks: [10.0.0.0/8]\n", "    - networks: [10.0.0.0/8]\n      namespaces: {}\n",
			"line 30: spec.egress[0].to[1]: must specify exactly one of namespaces, pods, nodes or networks"},
		{"domain names", "    - networks: [10.0.0.0/8]\n", "    - domainNames: [example.com]\n", "line 30: spec.egress[0].to[1].domainNames: domain name peers are not supported by skein"},
		{"bad node selector", "nodes: {matchLabels: {zone: a}}", "nodes: {matchLabels: {zone: -a}}", `line 29: spec.egress[0].to[0].nodes.matchLabels[zone]: invalid label value "-a"`},
		{"named port to nodes", "  - action: Pass\n", "  - action: Pass\n    protocols: [{destinationNamedPort: web}]\n",
			"line 28: spec.egress[0].protocols[0].destinationNamedPort: may not be set when a peer is networks, nodes or domainNames"},
		{"no peers", "    to: [{namespaces: {}}]\n", "    to: []\n", "line 32: spec.egress[1].to: required value: must have at least one peer"},
		{"no subject", "    namespaces: {matchLabels: {ns: x}}\n", "    {}\n", "line 13: spec.subject: must specify exactly one of namespaces or pods"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(cnpYAML, tc.old) {
				t.Fatalf("test input has no %q", tc.old)
			}
			in := head + strings.Replace(cnpYAML, tc.old, tc.new, 1)
			objs, err := DecodeDocuments("cnp.yaml", []byte(in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DecodeDocuments = %d objects, %v; want error containing %q", len(objs), err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "cnp.yaml: document 2 (line 5): ") {
				t.Errorf("error %q does not name the file and document", err)
			}
		})
	}
}

func TestClusterNetworkPolicyKind(t *testing.T) {
	t.Parallel()
	if !IsPolicyKind(KindClusterNetworkPolicy) || !ClusterScoped(KindClusterNetworkPolicy) {
		t.Fatal("ClusterNetworkPolicy is not a cluster-scoped policy kind")
	}
	key := PolicyKey(KindClusterNetworkPolicy, "", "guard")
	if key != "policies/ClusterNetworkPolicy/_/guard" {
		t.Fatalf("PolicyKey = %q", key)
	}
	if k, ns, n, ok := ParsePolicyKey(key); !ok || k != KindClusterNetworkPolicy || ns != "" || n != "guard" {
		t.Fatalf("ParsePolicyKey(%q) = %q %q %q %v", key, k, ns, n, ok)
	}
	// A stored CNP decodes like the other kinds, and one that fails
	// validation still shows the pods it was meant to govern.
	objs, err := DecodeDocuments("cnp.yaml", []byte(cnpYAML))
	if err != nil {
		t.Fatal(err)
	}
	raw := mustJSON(t, objs[0])
	if _, err := DecodePolicy(KindClusterNetworkPolicy, raw); err != nil {
		t.Fatalf("DecodePolicy: %v", err)
	}
	bad := []byte(strings.Replace(string(raw), `"tier":"Admin"`, `"tier":"Nope"`, 1))
	if _, err := DecodePolicy(KindClusterNetworkPolicy, bad); err == nil || !strings.Contains(err.Error(), "spec.tier") {
		t.Fatalf("DecodePolicy(bad tier) = %v, want a spec.tier error", err)
	}
	tgt := ReadPolicyTarget(KindClusterNetworkPolicy, "", "guard", bad)
	if tgt.Subject == nil || tgt.Subject.Namespaces == nil || tgt.Subject.Namespaces.MatchLabels["ns"] != "x" {
		t.Fatalf("ReadPolicyTarget = %+v, want the subject ns=x", tgt)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDecodeNodeDoc: offline files may hold nodes (for nodes peers); bad
// ones name the field and line.
func TestDecodeNodeDoc(t *testing.T) {
	t.Parallel()
	doc := "apiVersion: skein.dev/v1\nkind: Node\nmetadata: {name: n1, labels: {zone: a}}\nunderlayIP: 192.168.0.1\n"
	objs, err := DecodeDocuments("nodes.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	n, ok := objs[0].(*NodeDoc)
	if !ok {
		t.Fatalf("object is %T, want *NodeDoc", objs[0])
	}
	if got := n.ToNode(); got.Name != "n1" || got.UnderlayIP.String() != "192.168.0.1" || got.Labels["zone"] != "a" {
		t.Errorf("ToNode = %+v", got)
	}
	for _, tc := range []struct{ in, want string }{
		{strings.Replace(doc, "underlayIP: 192.168.0.1\n", "", 1), "document 1 (line 1): underlayIP: required value"},
		{strings.Replace(doc, "zone: a", "zone: -a", 1), `line 3: metadata.labels[zone]: invalid label value "-a"`},
		{strings.Replace(doc, "skein.dev/v1", "v1", 1), `line 1: apiVersion: unknown apiVersion "v1" for kind Node (want skein.dev/v1)`},
	} {
		if _, err := DecodeDocuments("nodes.yaml", []byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DecodeDocuments = %v, want an error containing %q", err, tc.want)
		}
	}
}
