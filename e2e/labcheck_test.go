//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLabCheckVerdicts: `skein lab check` (what `make demo` probes with)
// tells "reached" (0), "no reply" (2) and "not probed" (1) apart, so a probe
// that cannot run is never reported as blocked traffic.
func TestLabCheckVerdicts(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	check := func(args ...string) opsResult {
		return opsSkein(ctx, t, append([]string{"lab", "check", "--name", labName, "--ping-timeout", "2s"}, args...)...)
	}
	if r := check("--from", "h1-c1", "--to", "h3-c1"); r.code != 0 || !strings.Contains(r.stdout, "ok") {
		t.Fatalf("h1-c1 -> h3-c1 before any policy: want exit 0 and ok\n%s", r)
	}

	// Isolate h3-c1 for ingress: the same pair gets no reply.
	const label = "e2e-labcheck"
	pol := filepath.Join(t.TempDir(), "deny.yaml")
	if err := os.WriteFile(pol, []byte(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: labcheck-deny, namespace: default}
spec:
  podSelector: {matchLabels: {`+label+`: isolated}}
  policyTypes: [Ingress]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		for _, args := range [][]string{{"policy", "delete", "NetworkPolicy", "default/labcheck-deny"}, {"endpoint", "label", "default/h3-c1", label + "-"}} {
			if r := opsSkein(ctx, t, args...); r.code != 0 {
				t.Errorf("cleanup %v:\n%s", args, r)
			}
		}
	})
	for _, args := range [][]string{{"policy", "apply", "-f", pol}, {"endpoint", "label", "default/h3-c1", label + "=isolated"}} {
		if r := opsSkein(ctx, t, args...); r.code != 0 {
			t.Fatalf("%v:\n%s", args, r)
		}
	}
	var r opsResult
	waitFor(ctx, t, 30*time.Second, "h1-c1 -> h3-c1 blocked", func() (bool, string) {
		r = check("--from", "h1-c1", "--to", "h3-c1")
		return r.code == 2, r.String()
	})
	if !strings.Contains(r.stdout, "FAILED") || strings.Contains(r.stdout, "NOT CHECKED") {
		t.Errorf("blocked pair: want FAILED, not NOT CHECKED\n%s", r)
	}

	// A probe that cannot run says so, with exit 1, and claims nothing.
	if r := check("--from", "h9-c9", "--to", "h3-c1"); r.code != 1 || !strings.Contains(r.stderr, "h9-c9") || strings.Contains(r.stdout, "FAILED") {
		t.Errorf("unknown source: want exit 1 naming h9-c9\n%s", r)
	}
}
