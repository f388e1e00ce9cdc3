package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skeinnet/skein/api"
)

func runSkein(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// TestPolicyTraceOffline: trace from files names the deciding policy, and
// the same cluster without the policy is allowed by default.
func TestPolicyTraceOffline(t *testing.T) {
	out, err := runSkein(t, "policy", "trace", "-f", "testdata/cluster.yaml", "-f", "testdata/deny-x.yaml",
		"--from", "y/b", "--to", "x/a", "--port", "80", "--protocol", "TCP")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "DENY") || !strings.Contains(out, "NetworkPolicy x/deny-all") {
		t.Errorf("trace with deny-all in x:\n%s", out)
	}
	out, err = runSkein(t, "policy", "trace", "-f", "testdata/cluster.yaml", "--from", "y/b", "--to", "x/a", "--port", "80")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "ALLOW") || !strings.Contains(out, "default allow") {
		t.Errorf("trace without policy:\n%s", out)
	}
	if _, err := runSkein(t, "policy", "trace", "-f", "testdata/cluster.yaml", "--from", "y/nope", "--to", "x/a", "--port", "80"); err == nil {
		t.Error("trace from an unknown endpoint succeeded")
	}
}

func TestPolicyMatrixOfflineJSON(t *testing.T) {
	out, err := runSkein(t, "policy", "matrix", "-f", "testdata/cluster.yaml", "-f", "testdata/deny-x.yaml", "--ports", "80", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var cells []struct {
		From, To, Protocol string
		Port               int
		Allowed            bool
		Rule               string
	}
	if err := json.Unmarshal([]byte(out), &cells); err != nil {
		t.Fatalf("matrix -o json: %v\n%s", err, out)
	}
	got := map[string]bool{}
	for _, c := range cells {
		got[c.From+">"+c.To] = c.Allowed
	}
	if got["y/b>x/a"] || !got["x/a>y/b"] {
		t.Errorf("matrix cells %+v: want y/b->x/a denied, x/a->y/b allowed", cells)
	}

	// --namespace keeps x's pairs, with the whole matrix's verdicts.
	out, err = runSkein(t, "policy", "matrix", "-f", "testdata/cluster.yaml", "-f", "testdata/deny-x.yaml", "--ports", "80", "--namespace", "x", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	cells = nil
	if err := json.Unmarshal([]byte(out), &cells); err != nil {
		t.Fatalf("matrix --namespace x -o json: %v\n%s", err, out)
	}
	if len(cells) == 0 {
		t.Fatal("matrix --namespace x: no cells")
	}
	for _, c := range cells {
		if !strings.HasPrefix(c.From, "x/") || !strings.HasPrefix(c.To, "x/") || c.Allowed != got[c.From+">"+c.To] {
			t.Errorf("matrix --namespace x cell %+v: want x's pairs only, as in the whole matrix (allowed %v)", c, got[c.From+">"+c.To])
		}
	}
}

// TestPolicyFileRecursiveAlias: the file `a: &a {b: *a}` is an
// error naming the file, document and line for apply, trace and matrix
// (readPolicyFiles, their shared decode path), not a stack overflow.
func TestPolicyFileRecursiveAlias(t *testing.T) {
	f := filepath.Join(t.TempDir(), "x.yaml")
	// What `printf 'a: &a {b: *a}\n' > x.yaml` writes (the "15-byte" file).
	if err := os.WriteFile(f, []byte("a: &a {b: *a}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := f + ": document 1 (line 1): yaml: line 1: alias *a refers to itself"
	if _, err := readPolicyFiles(nil, []string{f}); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("readPolicyFiles() error = %v, want %q", err, want)
	}
	for _, args := range [][]string{
		{"policy", "trace", "-f", f, "--from", "x/a", "--to", "x/b", "--port", "80"},
		{"policy", "matrix", "-f", f, "--ports", "80"},
	} {
		if _, err := runSkein(t, args...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("skein %s: error = %v, want %q", strings.Join(args, " "), err, want)
		}
	}
}

// TestPolicyTraceLiveInvalidPolicy: trace from etcd treats a stored policy
// that does not decode as the agents do: the pods it names are isolated,
// the deciding rule names it, and a warning says so.
func TestPolicyTraceLiveInvalidPolicy(t *testing.T) {
	tc := newTestCluster(t)
	ctx := tc.ctx(t)
	for i, name := range []string{"a", "b"} {
		ep := api.Endpoint{Namespace: "x", Name: name, Labels: map[string]string{"pod": name}, Node: "n1",
			ContainerID: "c" + name, IfName: "eth0", IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 244, 0, byte(i + 1)})}}
		if err := tc.cl.PutEndpoint(ctx, ep); err != nil {
			t.Fatal(err)
		}
	}
	raw := `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"deny-a","namespace":"x"},` +
		`"spec":{"podSelector":{"matchLabels":{"pod":"a"}},"policyTypes":["Ingress"],"policyTypes":[]}}`
	if _, err := tc.cl.Etcd().Put(ctx, tc.cl.Prefix()+"policies/NetworkPolicy/x/deny-a", raw); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, newPolicyTraceCmd(tc.g), "--from", "x/b", "--to", "x/a", "--port", "80")
	if err != nil {
		t.Fatalf("trace: %v\n%s", err, out)
	}
	want := "invalid stored policy NetworkPolicy x/deny-a: decode NetworkPolicy: line 1: spec.policyTypes: duplicate key"
	// The warning (stderr) and the verdict (stdout) share the buffer here.
	if !strings.Contains(out, "\nDENY ") || !strings.Contains(out, want) || !strings.Contains(out, "warning: invalid stored policy policies/NetworkPolicy/x/deny-a") {
		t.Errorf("trace to a pod of an invalid policy:\n%s\nwant DENY by %q and a warning", out, want)
	}
	out, err = run(t, newPolicyTraceCmd(tc.g), "--from", "x/a", "--to", "x/b", "--port", "80")
	if err != nil || !strings.Contains(out, "\nDENY ") {
		t.Errorf("trace from the quarantined pod (egress): %v\n%s", err, out)
	}
}

// TestPolicyTraceOfflineCNP: offline trace evaluates ClusterNetworkPolicies
// of both tiers (v1beta1 and v1alpha2) and names the deciding rule.
func TestPolicyTraceOfflineCNP(t *testing.T) {
	tests := []struct {
		port string
		want []string
	}{
		{"80", []string{"DENY", `ClusterNetworkPolicy baseline-x (Baseline tier, priority 10) ingress rule 0 "no-y": Deny`,
			`ClusterNetworkPolicy guard-x (Admin tier, priority 10) ingress rule 0 "pass-y": Pass to the NetworkPolicy tier`}},
		{"81", []string{"ALLOW", "no rule matches x/a ingress: default allow"}},
	}
	for _, tc := range tests {
		out, err := runSkein(t, "policy", "trace", "-f", "testdata/cluster.yaml", "-f", "testdata/cnp.yaml",
			"--from", "y/b", "--to", "x/a", "--port", tc.port)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("trace y/b -> x/a port %s lacks %q:\n%s", tc.port, w, out)
			}
		}
	}
}

// TestPolicyTraceOfflineNodesPeer: Node documents give offline trace the
// node records a nodes peer selects; a pod's own node stays reachable.
func TestPolicyTraceOfflineNodesPeer(t *testing.T) {
	tests := []struct {
		from, to string
		want     []string
	}{
		{"y/b", "192.168.0.1", []string{"DENY", `ClusterNetworkPolicy no-zone-a (Admin tier, priority 1) egress rule 0 "no-ssh": Deny`}},
		{"y/b", "192.168.0.2", []string{"ALLOW", "its own node node-2"}},
		{"x/a", "192.168.0.1", []string{"ALLOW", "its own node node-1"}},
	}
	for _, tc := range tests {
		out, err := runSkein(t, "policy", "trace", "-f", "testdata/cluster.yaml", "-f", "testdata/nodes.yaml",
			"--from", tc.from, "--to", tc.to, "--port", "22")
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("trace %s -> %s port 22 lacks %q:\n%s", tc.from, tc.to, w, out)
			}
		}
	}
}
