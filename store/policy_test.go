package store

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinnet/skein/api"
)

func decodeOne(t *testing.T, doc string) api.Object {
	t.Helper()
	objs, err := api.DecodeDocuments("test.yaml", []byte(doc))
	if err != nil || len(objs) != 1 {
		t.Fatalf("DecodeDocuments = %d objects, %v", len(objs), err)
	}
	return objs[0]
}

const (
	testNP = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-web, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{ports: [{port: %d}]}]
`
	testANP = `apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: deny-y}
spec:
  priority: 5
  subject: {namespaces: {}}
  ingress: [{action: Deny, from: [{namespaces: {matchLabels: {ns: "y"}}}]}]
`
	testBANP = `apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress: [{action: Deny, from: [{namespaces: {}}]}]
`
	testCNP = `apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: guard}
spec:
  tier: Baseline
  priority: 3
  subject: {namespaces: {}}
  egress: [{action: Pass, to: [{nodes: {matchLabels: {zone: a}}}]}]
`
)

func TestPolicyCRUD(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)

	np := decodeOne(t, fmt.Sprintf(testNP, 80))
	anp := decodeOne(t, testANP)
	banp := decodeOne(t, testBANP)
	cnp := decodeOne(t, testCNP)

	for _, step := range []struct {
		o    api.Object
		want PutResult
	}{
		{np, Created}, {np, Unchanged}, {decodeOne(t, fmt.Sprintf(testNP, 81)), Configured},
		{anp, Created}, {banp, Created}, {cnp, Created}, {cnp, Unchanged},
	} {
		got, err := c.PutPolicy(ctx, step.o)
		if err != nil {
			t.Fatalf("PutPolicy(%s %s): %v", step.o.GetKind(), api.ObjectName(step.o), err)
		}
		if got != step.want {
			t.Errorf("PutPolicy(%s %s) = %s, want %s", step.o.GetKind(), api.ObjectName(step.o), got, step.want)
		}
	}

	got, err := c.GetPolicy(ctx, api.KindNetworkPolicy, "x", "allow-web")
	if err != nil {
		t.Fatalf("GetPolicy: %v", err)
	}
	if port := got.(*api.NetworkPolicy).Spec.Ingress[0].Ports[0].Port.IntVal; port != 81 {
		t.Errorf("GetPolicy after replace: port %d, want 81", port)
	}
	if d := cmp.Diff(decodeOne(t, testANP), mustGet(t, c, api.KindAdminNetworkPolicy, "", "deny-y")); d != "" {
		t.Errorf("GetPolicy(ANP) mismatch (-want +got):\n%s", d)
	}

	if d := cmp.Diff(decodeOne(t, testCNP), mustGet(t, c, api.KindClusterNetworkPolicy, "", "guard")); d != "" {
		t.Errorf("GetPolicy(CNP) mismatch (-want +got):\n%s", d)
	}
	if resp, err := c.Etcd().Get(ctx, c.Prefix()+"policies/ClusterNetworkPolicy/_/guard"); err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("raw get of the CNP key: %v", err)
	}

	// Keys are as documented, so agents can find them in Snapshot.Other.
	resp, err := c.Etcd().Get(ctx, c.Prefix()+"policies/AdminNetworkPolicy/_/deny-y")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("raw get of the ANP key: %v, %d kvs", err, len(resp.Kvs))
	}

	all, err := c.ListPolicies(ctx, "")
	if err != nil {
		t.Fatalf("ListPolicies: %v", err)
	}
	if d := cmp.Diff([]string{"AdminNetworkPolicy deny-y", "BaselineAdminNetworkPolicy default", "ClusterNetworkPolicy guard", "NetworkPolicy x/allow-web"}, names(all)); d != "" {
		t.Errorf("ListPolicies mismatch (-want +got):\n%s", d)
	}
	only, err := c.ListPolicies(ctx, api.KindNetworkPolicy)
	if err != nil {
		t.Fatalf("ListPolicies(NetworkPolicy): %v", err)
	}
	if d := cmp.Diff([]string{"NetworkPolicy x/allow-web"}, names(only)); d != "" {
		t.Errorf("ListPolicies(NetworkPolicy) mismatch (-want +got):\n%s", d)
	}

	if err := c.DeletePolicy(ctx, api.KindNetworkPolicy, "x", "allow-web"); err != nil {
		t.Fatalf("DeletePolicy: %v", err)
	}
	if err := c.DeletePolicy(ctx, api.KindNetworkPolicy, "x", "allow-web"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeletePolicy = %v, want ErrNotFound", err)
	}
	if _, err := c.GetPolicy(ctx, api.KindNetworkPolicy, "x", "allow-web"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetPolicy after delete = %v, want ErrNotFound", err)
	}
}

func TestPolicyBadKeys(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)
	tests := []struct {
		name            string
		kind, ns, pname string
		want            string
	}{
		{"not a policy kind", "Namespace", "", "x", `"Namespace" is not a policy kind`},
		{"namespace on ANP", api.KindAdminNetworkPolicy, "x", "a", "cluster-scoped"},
		{"namespace on CNP", api.KindClusterNetworkPolicy, "x", "a", "cluster-scoped"},
		{"no namespace on NP", api.KindNetworkPolicy, "", "a", "empty namespace"},
		{"slash in name", api.KindNetworkPolicy, "x", "a/b", "contains '/'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.GetPolicy(ctx, tc.kind, tc.ns, tc.pname); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("GetPolicy = %v, want error containing %q", err, tc.want)
			}
			if err := c.DeletePolicy(ctx, tc.kind, tc.ns, tc.pname); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("DeletePolicy = %v, want error containing %q", err, tc.want)
			}
		})
	}
	if _, err := c.ListPolicies(ctx, "Pod"); err == nil {
		t.Error("ListPolicies(Pod) = nil error")
	}
	// A corrupt stored value is reported with its key, the rest still listed.
	if _, err := c.PutPolicy(ctx, decodeOne(t, testANP)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Etcd().Put(ctx, c.Prefix()+"policies/NetworkPolicy/x/bad", "{"); err != nil {
		t.Fatal(err)
	}
	all, err := c.ListPolicies(ctx, "")
	if err == nil || !strings.Contains(err.Error(), "policies/NetworkPolicy/x/bad") {
		t.Errorf("ListPolicies with a corrupt value: err = %v", err)
	}
	if d := cmp.Diff([]string{"AdminNetworkPolicy deny-y"}, names(all)); d != "" {
		t.Errorf("ListPolicies mismatch (-want +got):\n%s", d)
	}
}

// TestSnapshotPolicies: policies show up in Snapshot.Other and decode with
// api.ParsePolicyKey and api.DecodePolicy, as the agent does.
func TestSnapshotPolicies(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)
	for _, doc := range []string{fmt.Sprintf(testNP, 80), testANP} {
		if _, err := c.PutPolicy(ctx, decodeOne(t, doc)); err != nil {
			t.Fatal(err)
		}
	}
	st, err := c.load(ctx)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	var got []string
	for key, raw := range st.snapshot().Other {
		kind, _, _, ok := api.ParsePolicyKey(key)
		if !ok {
			continue
		}
		o, err := api.DecodePolicy(kind, raw)
		if err != nil {
			t.Fatalf("DecodePolicy(%s): %v", key, err)
		}
		got = append(got, o.GetKind()+" "+api.ObjectName(o))
	}
	slices.Sort(got)
	if d := cmp.Diff([]string{"AdminNetworkPolicy deny-y", "NetworkPolicy x/allow-web"}, got); d != "" {
		t.Errorf("snapshot policies mismatch (-want +got):\n%s", d)
	}
}

func TestLabelNamespace(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)

	// Labelling a namespace that does not exist yet creates it.
	ns, err := c.LabelNamespace(ctx, "x", map[string]string{"ns": "x", "team": "a"}, nil)
	if err != nil {
		t.Fatalf("LabelNamespace: %v", err)
	}
	want := api.Namespace{Name: "x", Labels: map[string]string{"ns": "x", "team": "a"}}
	if d := cmp.Diff(want, ns); d != "" {
		t.Errorf("LabelNamespace mismatch (-want +got):\n%s", d)
	}
	if _, err := c.LabelNamespace(ctx, "x", map[string]string{"ns": "z"}, []string{"team", "absent"}); err != nil {
		t.Fatalf("LabelNamespace: %v", err)
	}
	got, err := c.GetNamespace(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(api.Namespace{Name: "x", Labels: map[string]string{"ns": "z"}}, got); d != "" {
		t.Errorf("after relabel (-want +got):\n%s", d)
	}

	for _, tc := range []struct {
		name   string
		set    map[string]string
		remove []string
		want   string
	}{
		{"implied label set", map[string]string{api.NamespaceNameLabel: "y"}, nil, "is implied"},
		{"implied label removed", nil, []string{api.NamespaceNameLabel}, "is implied"},
		{"bad key", map[string]string{"a b": "c"}, nil, `invalid label key "a b"`},
		{"bad value", map[string]string{"a": "b c"}, nil, `label a: invalid label value "b c"`},
		{"set and removed", map[string]string{"a": "b"}, []string{"a"}, "both set and removed"},
	} {
		if _, err := c.LabelNamespace(ctx, "x", tc.set, tc.remove); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: LabelNamespace = %v, want error containing %q", tc.name, err, tc.want)
		}
	}
}

// TestLabelNamespaceConcurrent: two writers labelling one namespace 50 times
// each lose no update.
func TestLabelNamespaceConcurrent(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)
	if err := c.PutNamespace(ctx, api.Namespace{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for w := range 2 {
		wg.Go(func() {
			for i := range n {
				k := fmt.Sprintf("w%d-%d", w, i)
				if _, err := c.LabelNamespace(ctx, "x", map[string]string{k: "v"}, nil); err != nil {
					errs <- fmt.Errorf("%s: %w", k, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ns, err := c.GetNamespace(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if len(ns.Labels) != 2*n {
		t.Errorf("namespace has %d labels after %d concurrent updates: updates were lost", len(ns.Labels), 2*n)
	}
}

func TestLabelEndpoint(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)
	mk := func(node, ctr, ifname, ns, name string) api.Endpoint {
		return api.Endpoint{Namespace: ns, Name: name, Labels: map[string]string{"pod": name}, Node: node, ContainerID: ctr, IfName: ifname,
			IPs: []netip.Addr{netip.MustParseAddr("10.244.0.1")}}
	}
	for _, ep := range []api.Endpoint{
		mk("n1", "c1", "eth0", "x", "a"),
		mk("n1", "c1", "net1", "x", "a"), // a second interface of the same pod
		mk("n2", "c2", "eth0", "x", "b"),
		mk("n2", "c3", "eth0", "y", "a"),
	} {
		if err := c.PutEndpoint(ctx, ep); err != nil {
			t.Fatal(err)
		}
	}
	eps, err := c.LabelEndpoint(ctx, "x", "a", map[string]string{"tier": "web"}, []string{"pod"})
	if err != nil {
		t.Fatalf("LabelEndpoint: %v", err)
	}
	if len(eps) != 2 {
		t.Fatalf("LabelEndpoint updated %d endpoints, want 2", len(eps))
	}
	all, err := c.ListEndpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ep := range all {
		got = append(got, fmt.Sprintf("%s/%s/%s %s/%s %v", ep.Node, ep.ContainerID, ep.IfName, ep.Namespace, ep.Name, ep.Labels))
	}
	want := []string{
		"n1/c1/eth0 x/a map[tier:web]",
		"n1/c1/net1 x/a map[tier:web]",
		"n2/c2/eth0 x/b map[pod:b]",
		"n2/c3/eth0 y/a map[pod:a]",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("endpoints mismatch (-want +got):\n%s", d)
	}
	if _, err := c.LabelEndpoint(ctx, "x", "nope", map[string]string{"a": "b"}, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("LabelEndpoint of a missing pod = %v, want ErrNotFound", err)
	}
	if _, err := c.LabelEndpoint(ctx, "x", "a", map[string]string{"-": "b"}, nil); err == nil {
		t.Error("LabelEndpoint with a bad key = nil error")
	}
}

// TestLabelEndpointConcurrent: concurrent label updates and an agent
// rewriting the endpoint lose nothing.
func TestLabelEndpointConcurrent(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)
	ep := api.Endpoint{Namespace: "x", Name: "a", Node: "n1", ContainerID: "c1", IfName: "eth0", IPs: []netip.Addr{netip.MustParseAddr("10.244.0.1")}}
	if err := c.PutEndpoint(ctx, ep); err != nil {
		t.Fatal(err)
	}
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for w := range 2 {
		wg.Go(func() {
			for i := range n {
				k := fmt.Sprintf("w%d-%d", w, i)
				if _, err := c.LabelEndpoint(ctx, "x", "a", map[string]string{k: "v"}, nil); err != nil {
					errs <- fmt.Errorf("%s: %w", k, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, err := c.GetEndpoint(ctx, "n1", api.Owner{ContainerID: "c1", IfName: "eth0"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Labels) != 2*n {
		t.Errorf("endpoint has %d labels after %d concurrent updates: updates were lost", len(got.Labels), 2*n)
	}
}

func mustGet(t *testing.T, c *Client, kind, ns, name string) api.Object {
	t.Helper()
	o, err := c.GetPolicy(ctxTimeout(t), kind, ns, name)
	if err != nil {
		t.Fatalf("GetPolicy(%s %s/%s): %v", kind, ns, name, err)
	}
	return o
}

func names(objs []api.Object) []string {
	out := []string{}
	for _, o := range objs {
		out = append(out, o.GetKind()+" "+api.ObjectName(o))
	}
	return out
}
