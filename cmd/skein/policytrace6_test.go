package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPolicyTraceMatrixIPv6: with dual-stack endpoints in the files, trace
// and matrix answer over IPv6 (--family 6, or an IPv6 address peer), where
// an IPv4 ipBlock allows nothing.
func TestPolicyTraceMatrixIPv6(t *testing.T) {
	dir := t.TempDir()
	cluster := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(cluster, []byte(`apiVersion: v1
kind: Namespace
metadata: {name: x}
---
apiVersion: skein.dev/v1
kind: Endpoint
metadata: {namespace: x, name: a, labels: {pod: a}}
node: node-1
ips: [10.244.1.10, "fd00:10:244:1::10"]
---
apiVersion: skein.dev/v1
kind: Endpoint
metadata: {namespace: x, name: b, labels: {pod: b}}
node: node-2
ips: [10.244.2.10, "fd00:10:244:2::10"]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-v4, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{from: [{ipBlock: {cidr: 10.244.0.0/16}}]}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--from", "x/a", "--to", "x/b"}, "ALLOW"},
		{[]string{"--from", "x/a", "--to", "x/b", "--family", "6"}, "DENY"},
		{[]string{"--from", "fd00:10:244:1::10", "--to", "x/b"}, "DENY"},
	} {
		out, err := runSkein(t, append([]string{"policy", "trace", "-f", cluster, "--port", "80"}, tc.args...)...)
		if err != nil {
			t.Fatalf("trace %v: %v", tc.args, err)
		}
		if !strings.HasPrefix(out, tc.want) {
			t.Errorf("trace %v:\n%s\nwant %s", tc.args, out, tc.want)
		}
	}
	out, err := runSkein(t, "policy", "matrix", "-f", cluster, "--ports", "80", "--family", "6")
	if err != nil {
		t.Fatal(err)
	}
	// Rows are sources: x/a's row has x/b denied.
	if !strings.HasPrefix(out, "TCP/80 over IPv6\n") || !strings.Contains(out, "x/a\t.\tX") {
		t.Errorf("matrix --family 6:\n%s", out)
	}
	if _, err := runSkein(t, "policy", "matrix", "-f", cluster, "--family", "5"); err == nil || !strings.Contains(err.Error(), "address family 5") {
		t.Errorf("matrix --family 5: err = %v", err)
	}
}
