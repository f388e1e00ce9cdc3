package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
	npv1alpha1 "sigs.k8s.io/network-policy-api/apis/v1alpha1"
	npv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	npfake "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned/fake"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// syncEnv is an embedded etcd, fake API clients and the replicas' contexts.
type syncEnv struct {
	t    *testing.T
	st   *store.Client
	kube *kubefake.Clientset
	np   *npfake.Clientset
}

func newSyncEnv(t *testing.T, ctx context.Context) *syncEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("starts an embedded etcd; skipped with -short")
	}
	e, err := store.StartEmbedded(ctx, store.EmbeddedConfig{Dir: filepath.Join(t.TempDir(), "etcd"), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	st, err := store.New(ctx, store.Config{Endpoints: e.Endpoints(), DialTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() }) // closing a test client
	kc := kubefake.NewClientset()
	kc.Resources = []*metav1.APIResourceList{
		{GroupVersion: api.PolicyV1Alpha1, APIResources: []metav1.APIResource{{Name: "adminnetworkpolicies"}, {Name: "baselineadminnetworkpolicies"}}},
		{GroupVersion: api.PolicyV1Beta1, APIResources: []metav1.APIResource{{Name: "clusternetworkpolicies"}}},
	}
	return &syncEnv{t: t, st: st, kube: kc, np: npfake.NewSimpleClientset()}
}

// start runs one replica until the returned cancel; its result goes to done.
func (e *syncEnv) start(ctx context.Context, id string) (cancel func(), done <-chan error) {
	ctx, cancel = context.WithCancel(ctx)
	ch := make(chan error, 1)
	go func() {
		ch <- Run(ctx, Config{
			Kube: e.kube, Policy: e.np, Store: e.st, Identity: id,
			LeaseTTL: time.Second, StatusInterval: 100 * time.Millisecond,
			Log: slog.New(slog.NewTextHandler(e.t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})).With("replica", id),
		})
	}()
	return cancel, ch
}

func (e *syncEnv) waitFor(ctx context.Context, what string, cond func() error) {
	e.t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if !pause(wctx, 20*time.Millisecond) {
			e.t.Fatalf("%s: %v", what, err)
		}
	}
}

func (e *syncEnv) putEndpoint(ctx context.Context, ns, name, container string) {
	e.t.Helper()
	if err := e.st.PutEndpoint(ctx, api.Endpoint{Namespace: ns, Name: name, Node: "n1", ContainerID: container, IfName: "eth0", HostIface: "sk0", Labels: map[string]string{"from": "cni"}}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *syncEnv) endpointLabels(ctx context.Context, ns, name string) (map[string]string, []api.NamedPort, error) {
	eps, err := e.st.ListEndpoints(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, ep := range eps {
		if ep.Namespace == ns && ep.Name == name {
			return ep.Labels, ep.Ports, nil
		}
	}
	return nil, nil, fmt.Errorf("no endpoint of %s/%s", ns, name)
}

func (e *syncEnv) status(ctx context.Context) (api.KubeStatus, error) {
	var st api.KubeStatus
	resp, err := e.st.Etcd().Get(ctx, e.st.Prefix()+api.KubeStatusKey)
	if err != nil || len(resp.Kvs) == 0 {
		return st, fmt.Errorf("no status record (%v)", err)
	}
	return st, json.Unmarshal(resp.Kvs[0].Value, &st)
}

func pod(ns, name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 80}}}}},
	}
}

// TestMirror drives one replica through the API side (fake clients) and
// checks Skein's records in a real etcd: pods before and after their CNI
// ADD, namespaces, policies (create, unenforceable, delete), a CLI-owned
// record left alone, and the status record.
func TestMirror(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e := newSyncEnv(t, ctx)
	// Before the replica starts: a pod whose endpoint exists (resync), an
	// endpoint whose pod comes later, and a CLI-owned policy.
	if _, err := e.kube.CoreV1().Pods("x").Create(ctx, pod("x", "early", map[string]string{"app": "early"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.putEndpoint(ctx, "x", "early", "c-early")
	e.putEndpoint(ctx, "x", "late-pod", "c-late-pod")
	cliNP := &api.NetworkPolicy{TypeMeta: api.TypeMeta{APIVersion: api.NetworkingV1, Kind: api.KindNetworkPolicy}, ObjectMeta: api.ObjectMeta{Namespace: "x", Name: "mine"}}
	if _, err := e.st.PutPolicy(ctx, cliNP); err != nil {
		t.Fatal(err)
	}
	stop, done := e.start(ctx, "r1")
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("replica stopped with %v", err)
		}
	}()

	e.waitFor(ctx, "labels of a pod known before its endpoint", func() error {
		l, p, err := e.endpointLabels(ctx, "x", "early")
		if err != nil || !maps.Equal(l, map[string]string{"app": "early"}) || len(p) != 1 || p[0].Name != "web" {
			return fmt.Errorf("labels %v ports %v err %v", l, p, err)
		}
		return nil
	})
	if _, err := e.kube.CoreV1().Pods("x").Create(ctx, pod("x", "late-pod", map[string]string{"app": "late"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor(ctx, "labels of a pod created after its endpoint", func() error {
		l, _, err := e.endpointLabels(ctx, "x", "late-pod")
		if err != nil || l["app"] != "late" {
			return fmt.Errorf("labels %v err %v", l, err)
		}
		return nil
	})
	if _, err := e.kube.CoreV1().Pods("x").Create(ctx, pod("x", "late-cni", map[string]string{"app": "late-cni"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.putEndpoint(ctx, "x", "late-cni", "c-late-cni")
	e.waitFor(ctx, "labels of an endpoint added after its pod", func() error {
		l, _, err := e.endpointLabels(ctx, "x", "late-cni")
		if err != nil || !maps.Equal(l, map[string]string{"app": "late-cni"}) {
			return fmt.Errorf("labels %v err %v", l, err)
		}
		return nil
	})

	if _, err := e.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: map[string]string{"team": "a"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor(ctx, "namespace x", func() error {
		ns, err := e.st.GetNamespace(ctx, "x")
		if err != nil || ns.Owner != api.OwnerKubernetes || ns.Labels["team"] != "a" {
			return fmt.Errorf("%+v %v", ns, err)
		}
		return nil
	})

	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "deny"}, Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{}}}
	if _, err := e.kube.NetworkingV1().NetworkPolicies("x").Create(ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	same := np.DeepCopy()
	same.Name = "mine" // the CLI owns x/mine: never overwritten
	if _, err := e.kube.NetworkingV1().NetworkPolicies("x").Create(ctx, same, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	anp := &npv1alpha1.AdminNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "deny-x"}, Spec: npv1alpha1.AdminNetworkPolicySpec{
		Priority: 5, Subject: npv1alpha1.AdminNetworkPolicySubject{Namespaces: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}},
		Ingress: []npv1alpha1.AdminNetworkPolicyIngressRule{{Action: npv1alpha1.AdminNetworkPolicyRuleActionDeny, From: []npv1alpha1.AdminNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}}}},
	}}
	if _, err := e.np.PolicyV1alpha1().AdminNetworkPolicies().Create(ctx, anp, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Valid in Kubernetes, not enforceable by Skein (domain name peers).
	cnp := &npv1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "to-domain"}, Spec: npv1beta1.ClusterNetworkPolicySpec{
		Tier: npv1beta1.AdminTier, Priority: 5, Subject: npv1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}},
		Egress: []npv1beta1.ClusterNetworkPolicyEgressRule{{Action: npv1beta1.ClusterNetworkPolicyRuleActionAccept, To: []npv1beta1.ClusterNetworkPolicyEgressPeer{{DomainNames: []npv1beta1.DomainName{"example.com"}}}}},
	}}
	if _, err := e.np.PolicyV1beta1().ClusterNetworkPolicies().Create(ctx, cnp, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor(ctx, "policies mirrored", func() error {
		raw, err := e.st.RawPolicies(ctx)
		if err != nil {
			return err
		}
		deny, mine := raw["policies/NetworkPolicy/x/deny"], raw["policies/NetworkPolicy/x/mine"]
		anp, toDomain := raw["policies/AdminNetworkPolicy/_/deny-x"], raw["policies/ClusterNetworkPolicy/_/to-domain"]
		switch {
		case !api.OwnedByKubernetes(deny):
			return fmt.Errorf("x/deny: %s", deny)
		case mine == nil || api.OwnedByKubernetes(mine):
			return fmt.Errorf("the CLI's x/mine was overwritten: %s", mine)
		case !api.OwnedByKubernetes(toDomain):
			return fmt.Errorf("to-domain: %s", toDomain)
		}
		if _, err := api.DecodePolicy(api.KindAdminNetworkPolicy, anp); err != nil {
			return fmt.Errorf("ANP deny-x: %v", err)
		}
		if _, err := api.DecodePolicy(api.KindClusterNetworkPolicy, toDomain); err == nil {
			return fmt.Errorf("unenforceable CNP stored as an enforceable one: %s", toDomain)
		}
		return nil
	})
	e.waitFor(ctx, "status with the two problems", func() error {
		st, err := e.status(ctx)
		if err != nil {
			return err
		}
		joined := strings.Join(st.Errors, "\n")
		if st.Leader != "r1" || !st.Synced || !st.Connected || !strings.Contains(joined, "NetworkPolicy x/mine: not mirrored") ||
			!strings.Contains(joined, "ClusterNetworkPolicy to-domain: Skein cannot enforce") {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	e.waitFor(ctx, "Events on the two objects", func() error {
		evs, err := e.kube.CoreV1().Events("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		reasons := map[string]string{}
		for _, ev := range evs.Items {
			reasons[ev.InvolvedObject.Kind+" "+ev.InvolvedObject.Name] = ev.Reason
		}
		if reasons["NetworkPolicy mine"] != "SkeinConflict" || reasons["ClusterNetworkPolicy to-domain"] != "SkeinCannotEnforce" {
			return fmt.Errorf("events %v", reasons)
		}
		return nil
	})

	if err := e.kube.NetworkingV1().NetworkPolicies("x").Delete(ctx, "deny", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.kube.NetworkingV1().NetworkPolicies("x").Delete(ctx, "mine", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor(ctx, "policy deleted, the CLI's kept", func() error {
		raw, err := e.st.RawPolicies(ctx)
		if err != nil {
			return err
		}
		if raw["policies/NetworkPolicy/x/deny"] != nil || raw["policies/NetworkPolicy/x/mine"] == nil {
			return fmt.Errorf("policies %v", keysOf(raw))
		}
		return nil
	})
}

// TestFailoverAndResync: a second replica waits; when the leader stops,
// it leads, and its full resync removes what was deleted meanwhile.
func TestFailoverAndResync(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e := newSyncEnv(t, ctx)
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "p"}}
	if _, err := e.kube.NetworkingV1().NetworkPolicies("x").Create(ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	stop1, done1 := e.start(ctx, "r1")
	e.waitFor(ctx, "r1 leads and mirrors", func() error {
		st, err := e.status(ctx)
		if err != nil || st.Leader != "r1" || st.Policies != 1 {
			return fmt.Errorf("%+v %v", st, err)
		}
		return nil
	})
	stop2, done2 := e.start(ctx, "r2")
	defer func() {
		stop2()
		if err := <-done2; err != nil {
			t.Errorf("r2 stopped with %v", err)
		}
	}()
	stop1()
	if err := <-done1; err != nil {
		t.Fatalf("r1 stopped with %v", err)
	}
	// Deleted while nobody leads (r2 may already lead: either way the
	// record must go).
	if err := e.kube.NetworkingV1().NetworkPolicies("x").Delete(ctx, "p", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor(ctx, "r2 leads and removed x/p", func() error {
		st, err := e.status(ctx)
		if err != nil || st.Leader != "r2" || !st.Synced {
			return fmt.Errorf("%+v %v", st, err)
		}
		if _, err := e.st.GetPolicy(ctx, api.KindNetworkPolicy, "x", "p"); err == nil {
			return fmt.Errorf("x/p still stored")
		}
		return nil
	})
}

func keysOf(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
