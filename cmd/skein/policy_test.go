package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// testCLI runs the policy and label commands against one embedded etcd.
type testCLI struct {
	t   *testing.T
	eps []string
	dir string
}

func newTestCLI(t *testing.T) *testCLI {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped under -short: needs an embedded etcd")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	e, err := store.StartEmbedded(ctx, store.EmbeddedConfig{Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Close)
	return &testCLI{t: t, eps: e.Endpoints(), dir: t.TempDir()}
}

// run executes `skein args...` with stdin and returns stdout and the error.
// The root is built like newRootCmd's, with the commands of this file set.
func (c *testCLI) run(stdin string, args ...string) (string, error) {
	c.t.Helper()
	g := &globalFlags{EtcdEndpoints: c.eps, EtcdPrefix: "/skein/", Timeout: 10 * time.Second}
	root := &cobra.Command{Use: "skein", SilenceUsage: true, SilenceErrors: true}
	root.PersistentFlags().StringVarP(&g.Output, "output", "o", "table", "")
	nsCmd := &cobra.Command{Use: "namespace"}
	nsCmd.AddCommand(newNamespaceLabelCmd(g))
	epCmd := &cobra.Command{Use: "endpoint"}
	epCmd.AddCommand(newEndpointLabelCmd(g))
	root.AddCommand(newPolicyCmd(g), nsCmd, epCmd)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.ExecuteContext(c.t.Context())
	return out.String(), err
}

func (c *testCLI) mustRun(stdin string, args ...string) string {
	c.t.Helper()
	out, err := c.run(stdin, args...)
	if err != nil {
		c.t.Fatalf("skein %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *testCLI) file(name, content string) string {
	c.t.Helper()
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return p
}

func (c *testCLI) client() *store.Client {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), 10*time.Second)
	defer cancel()
	cl, err := store.New(ctx, store.Config{Endpoints: c.eps})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = cl.Close() }) // test teardown
	return cl
}

const cliPolicies = `apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-web, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}], ports: [{port: 80}]}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: deny-z}
spec:
  priority: 5
  subject: {namespaces: {}}
  ingress: [{action: Deny, from: [{namespaces: {matchLabels: {ns: z}}}]}]
`

func TestCLIPolicyLifecycle(t *testing.T) {
	c := newTestCLI(t)
	f := c.file("policies.yaml", cliPolicies)

	out := c.mustRun("", "policy", "apply", "-f", f)
	want := "namespace x created\nnetworkpolicy x/allow-web created\nadminnetworkpolicy deny-z created\n"
	if d := cmp.Diff(want, out); d != "" {
		t.Errorf("apply output mismatch (-want +got):\n%s", d)
	}
	out = c.mustRun("", "policy", "apply", "-f", f)
	want = "namespace x unchanged\nnetworkpolicy x/allow-web unchanged\nadminnetworkpolicy deny-z unchanged\n"
	if d := cmp.Diff(want, out); d != "" {
		t.Errorf("second apply output mismatch (-want +got):\n%s", d)
	}
	// From stdin, replacing the policy.
	changed := strings.Replace(cliPolicies, "port: 80", "port: 8080", 1)
	out = c.mustRun(changed, "policy", "apply", "-f", "-")
	if !strings.Contains(out, "networkpolicy x/allow-web configured") {
		t.Errorf("apply from stdin: %q, want the policy configured", out)
	}

	out = c.mustRun("", "policy", "list")
	for _, s := range []string{
		"KIND", "AdminNetworkPolicy", "deny-z", "priority=5 subject=namespaces(<all>) ingress=1 egress=0",
		"NetworkPolicy", "x", "allow-web", "pods=pod=a types=Ingress ingress=1 egress=0",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("policy list output lacks %q:\n%s", s, out)
		}
	}
	if strings.Index(out, "AdminNetworkPolicy") > strings.Index(out, "allow-web") {
		t.Errorf("policy list: ANPs should come first:\n%s", out)
	}
	out = c.mustRun("", "policy", "list", "--kind", "np", "-n", "y")
	if strings.Contains(out, "allow-web") {
		t.Errorf("policy list -n y shows x's policy:\n%s", out)
	}
	out = c.mustRun("", "policy", "list", "-o", "json")
	var listed []map[string]any
	if err := json.Unmarshal([]byte(out), &listed); err != nil || len(listed) != 2 {
		t.Errorf("policy list -o json = %d items, %v:\n%s", len(listed), err, out)
	}

	// get prints YAML that applies back unchanged.
	out = c.mustRun("", "policy", "get", "networkpolicy", "x/allow-web")
	if !strings.Contains(out, "port: 8080") || !strings.Contains(out, "apiVersion: networking.k8s.io/v1") {
		t.Errorf("policy get output:\n%s", out)
	}
	again := c.mustRun(out, "policy", "apply", "-f", "-")
	if again != "networkpolicy x/allow-web unchanged\n" {
		t.Errorf("re-applying get's output: %q", again)
	}
	out = c.mustRun("", "policy", "get", "anp", "deny-z", "-o", "json")
	var anp api.AdminNetworkPolicy
	if err := json.Unmarshal([]byte(out), &anp); err != nil || anp.Spec.Priority != 5 {
		t.Errorf("policy get anp -o json: %v\n%s", err, out)
	}
	if _, err := c.run("", "policy", "get", "np", "x/nope"); err == nil || !strings.Contains(err.Error(), "NetworkPolicy x/nope not found") {
		t.Errorf("get of a missing policy: %v", err)
	}
	if _, err := c.run("", "policy", "get", "pod", "x/a"); err == nil || !strings.Contains(err.Error(), `unknown policy kind "pod"`) {
		t.Errorf("get of a bad kind: %v", err)
	}

	out = c.mustRun("", "policy", "delete", "np", "x/allow-web")
	if out != "networkpolicy x/allow-web deleted\n" {
		t.Errorf("delete output %q", out)
	}
	if _, err := c.run("", "policy", "delete", "np", "x/allow-web"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("second delete: %v", err)
	}
	c.mustRun("", "policy", "delete", "np", "x/allow-web", "--ignore-not-found")
	out, err := c.run("", "policy", "delete", "-f", f)
	if err == nil || !strings.Contains(err.Error(), "NetworkPolicy x/allow-web not found") || !strings.Contains(out, "adminnetworkpolicy deny-z deleted") || !strings.Contains(out, "namespace x skipped") {
		t.Errorf("delete -f: %v\n%s", err, out)
	}
	objs, err := c.client().ListPolicies(t.Context(), "")
	if err != nil || len(objs) != 0 {
		t.Errorf("after deletes: %d policies left, %v", len(objs), err)
	}
}

const cliCNPs = `apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: base}
spec:
  tier: Baseline
  priority: 7
  subject: {namespaces: {}}
  ingress: [{action: Deny, from: [{namespaces: {}}]}]
---
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: admin}
spec:
  tier: Admin
  priority: 3
  subject: {namespaces: {}}
  egress: [{action: Pass, to: [{nodes: {}}]}]
`

// TestCLIClusterNetworkPolicy: apply, list (tiers in evaluation order around
// the NetworkPolicies), get and delete of ClusterNetworkPolicies by their
// short name.
func TestCLIClusterNetworkPolicy(t *testing.T) {
	c := newTestCLI(t)
	out := c.mustRun(cliPolicies+"---\n"+cliCNPs, "policy", "apply", "-f", "-")
	for _, s := range []string{"clusternetworkpolicy base created", "clusternetworkpolicy admin created"} {
		if !strings.Contains(out, s) {
			t.Errorf("apply output lacks %q:\n%s", s, out)
		}
	}
	out = c.mustRun("", "policy", "list")
	if !strings.Contains(out, "tier=Admin priority=3 subject=namespaces(<all>) ingress=0 egress=1") {
		t.Errorf("policy list lacks the CNP summary:\n%s", out)
	}
	order := []string{"deny-z", "admin", "allow-web", "base"}
	for i := 1; i < len(order); i++ {
		if strings.Index(out, order[i-1]) > strings.Index(out, order[i]) {
			t.Errorf("policy list: want the order %v (evaluation order):\n%s", order, out)
		}
	}
	out = c.mustRun("", "policy", "list", "--kind", "cnp")
	if strings.Contains(out, "allow-web") || !strings.Contains(out, "base") {
		t.Errorf("policy list --kind cnp:\n%s", out)
	}
	out = c.mustRun("", "policy", "get", "clusternetworkpolicies", "base", "-o", "json")
	var got api.ClusterNetworkPolicy
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Spec.Tier != api.TierBaseline || got.Spec.Priority != 7 {
		t.Errorf("policy get cnp -o json: %v\n%s", err, out)
	}
	if _, err := c.run("", "policy", "get", "cnp", "x/base"); err == nil || !strings.Contains(err.Error(), "cluster-scoped") {
		t.Errorf("get cnp with a namespace: %v", err)
	}
	if out := c.mustRun("", "policy", "delete", "cnp", "base"); out != "clusternetworkpolicy base deleted\n" {
		t.Errorf("delete output %q", out)
	}
	node := "apiVersion: skein.dev/v1\nkind: Node\nmetadata: {name: n1}\nunderlayIP: 192.168.0.1\n"
	if _, err := c.run(node, "policy", "apply", "-f", "-"); err == nil || !strings.Contains(err.Error(), "node n1: nodes register themselves") {
		t.Errorf("apply of a Node document: %v", err)
	}
	bad := strings.Replace(cliCNPs, "tier: Admin", "tier: admin", 1)
	if _, err := c.run(bad, "policy", "apply", "-f", "-"); err == nil || !strings.Contains(err.Error(), `document 2 (line 10): line 14: spec.tier: unsupported value "admin"`) {
		t.Errorf("apply with a bad tier: %v", err)
	}
}

// TestCLIApplyAllOrNothing: one bad document writes nothing and the error
// names the file, document, line and field.
func TestCLIApplyAllOrNothing(t *testing.T) {
	c := newTestCLI(t)
	good := c.file("good.yaml", cliPolicies)
	bad := c.file("bad.yaml", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ok, namespace: y}
spec: {podSelector: {}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: broken, namespace: y}
spec:
  podSelector: {}
  ingress:
  - ports:
    - port: 80
      endPort: 70
`)
	_, err := c.run("", "policy", "apply", "-f", good, "-f", bad)
	want := "bad.yaml: document 2 (line 6): line 14: spec.ingress[0].ports[0].endPort: must be >= port"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("apply = %v, want error containing %q", err, want)
	}
	objs, err := c.client().ListPolicies(t.Context(), "")
	if err != nil || len(objs) != 0 {
		t.Errorf("after a rejected apply: %d policies stored, %v", len(objs), err)
	}

	ep := c.file("ep.yaml", "apiVersion: skein.dev/v1\nkind: Endpoint\nmetadata: {namespace: x, name: a}\nips: [10.0.0.1]\n")
	if _, err := c.run("", "policy", "apply", "-f", good, "-f", ep); err == nil || !strings.Contains(err.Error(), "endpoints come from the CNI plugin") {
		t.Errorf("apply of an Endpoint: %v", err)
	}
	dup := c.file("dup.yaml", cliPolicies)
	if _, err := c.run("", "policy", "apply", "-f", good, "-f", dup); err == nil || !strings.Contains(err.Error(), "is also defined in") {
		t.Errorf("apply of the same object in two files: %v", err)
	}
	if _, err := c.run("", "policy", "apply"); err == nil {
		t.Error("apply without -f: nil error")
	}
	if _, err := c.run("", "policy", "apply", "-f", filepath.Join(c.dir, "missing.yaml")); err == nil {
		t.Error("apply of a missing file: nil error")
	}
	objs, err = c.client().ListPolicies(t.Context(), "")
	if err != nil || len(objs) != 0 {
		t.Errorf("after rejected applies: %d policies stored, %v", len(objs), err)
	}
}

func TestCLILabels(t *testing.T) {
	c := newTestCLI(t)
	cl := c.client()
	ctx := t.Context()
	for _, ep := range []api.Endpoint{
		{Namespace: "x", Name: "a", Node: "n1", ContainerID: "c1", IfName: "eth0", Labels: map[string]string{"pod": "a"}, IPs: []netip.Addr{netip.MustParseAddr("10.244.0.2")}},
		{Namespace: "x", Name: "b", Node: "n1", ContainerID: "c2", IfName: "eth0", Labels: map[string]string{"pod": "b"}, IPs: []netip.Addr{netip.MustParseAddr("10.244.0.3")}},
	} {
		if err := cl.PutEndpoint(ctx, ep); err != nil {
			t.Fatal(err)
		}
	}

	out := c.mustRun("", "namespace", "label", "x", "ns=x", "team=web")
	if !strings.Contains(out, "namespace x labelled: kubernetes.io/metadata.name=x,ns=x,team=web") {
		t.Errorf("namespace label output %q", out)
	}
	c.mustRun("", "namespace", "label", "x", "team-")
	ns, err := cl.GetNamespace(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]string{"ns": "x"}, ns.Labels); d != "" {
		t.Errorf("namespace labels (-want +got):\n%s", d)
	}

	out = c.mustRun("", "endpoint", "label", "x/a", "tier=web", "pod-")
	if !strings.Contains(out, "endpoint x/a (n1 c1/eth0) labelled: tier=web") {
		t.Errorf("endpoint label output %q", out)
	}
	got, err := cl.GetEndpoint(ctx, "n1", api.Owner{ContainerID: "c1", IfName: "eth0"})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]string{"tier": "web"}, got.Labels); d != "" {
		t.Errorf("endpoint labels (-want +got):\n%s", d)
	}
	other, err := cl.GetEndpoint(ctx, "n1", api.Owner{ContainerID: "c2", IfName: "eth0"})
	if err != nil || other.Labels["pod"] != "b" || len(other.Labels) != 1 {
		t.Errorf("another pod's labels changed: %v %v", other.Labels, err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"namespace", "label", "x", "kubernetes.io/metadata.name=y"}, "is implied"},
		{[]string{"namespace", "label", "x", "novalue"}, `want KEY=VALUE to set or KEY- to remove`},
		{[]string{"namespace", "label", "x", "a=1", "a-"}, "label a given twice"},
		{[]string{"namespace", "label", "x", "a=b c"}, "invalid label value"},
		{[]string{"endpoint", "label", "x-a", "a=b"}, "want NAMESPACE/NAME"},
		{[]string{"endpoint", "label", "x/nope", "a=b"}, "endpoint x/nope not found"},
	} {
		if _, err := c.run("", tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("skein %s = %v, want error containing %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

func TestParseLabelArgs(t *testing.T) {
	t.Parallel()
	set, remove, err := parseLabelArgs([]string{"a=b", "c=", "d-", "e=f=g"})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]string{"a": "b", "c": "", "e": "f=g"}, set); d != "" {
		t.Errorf("set (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"d"}, remove); d != "" {
		t.Errorf("remove (-want +got):\n%s", d)
	}
	for _, bad := range [][]string{{"-"}, {"a"}, {"a=b", "a=c"}} {
		if _, _, err := parseLabelArgs(bad); err == nil {
			t.Errorf("parseLabelArgs(%q) = nil error", bad)
		}
	}
}

func TestSelectorString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sel  *api.LabelSelector
		want string
	}{
		{nil, "<none>"},
		{&api.LabelSelector{}, "<all>"},
		{&api.LabelSelector{
			MatchLabels: map[string]string{"b": "2", "a": "1"},
			MatchExpressions: []api.LabelSelectorRequirement{
				{Key: "c", Operator: api.LabelSelectorOpIn, Values: []string{"x", "y"}},
				{Key: "d", Operator: api.LabelSelectorOpNotIn, Values: []string{"z"}},
				{Key: "e", Operator: api.LabelSelectorOpExists},
				{Key: "f", Operator: api.LabelSelectorOpDoesNotExist},
			},
		}, "a=1,b=2,c in (x,y),d notin (z),e,!f"},
	}
	for _, tc := range tests {
		if got := selectorString(tc.sel); got != tc.want {
			t.Errorf("selectorString = %q, want %q", got, tc.want)
		}
	}
}
