//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/audit"
)

// TestAuditPolicyApplyDelete: `skein policy apply` and `policy delete`
// leave one audit record each, with who (etcd identity and OS user), from
// where, and the diff of the spec; `skein audit` filters them and refuses a
// bad time without listing anything.
func TestAuditPolicyApplyDelete(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	pol := filepath.Join(t.TempDir(), "audit-np.yaml")
	doc := `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: audit-probe, namespace: audit}
spec:
  podSelector: {matchLabels: {app: nothing-here}}
  ingress: [{ports: [{port: %s}]}]
`
	for _, port := range []string{"8080", "8081"} {
		if err := os.WriteFile(pol, []byte(strings.ReplaceAll(doc, "%s", port)), 0o644); err != nil {
			t.Fatal(err)
		}
		if r := opsSkein(ctx, t, "policy", "apply", "-f", pol); r.code != 0 {
			t.Fatalf("policy apply:\n%s", r)
		}
	}
	if r := opsSkein(ctx, t, "policy", "delete", "NetworkPolicy", "audit/audit-probe"); r.code != 0 {
		t.Fatalf("policy delete:\n%s", r)
	}

	r := opsSkein(ctx, t, "audit", "--kind", "policy", "--since", time.Since(start).Round(time.Second).String()+"1s", "-o", "json")
	if r.code != 0 {
		t.Fatalf("skein audit:\n%s", r)
	}
	var recs []audit.Record
	if err := json.Unmarshal([]byte(r.stdout), &recs); err != nil {
		t.Fatalf("skein audit -o json: %v\n%s", err, r)
	}
	var mine []audit.Record
	for _, rec := range recs {
		if rec.Name == "NetworkPolicy/audit/audit-probe" {
			mine = append(mine, rec)
		}
	}
	ops := make([]audit.Op, len(mine))
	for i, rec := range mine {
		ops[i] = rec.Op
	}
	if !slices.Equal(ops, []audit.Op{audit.Create, audit.Update, audit.Delete}) {
		t.Fatalf("records of the policy: ops %v, want create, update, delete\n%s", ops, r.stdout)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range mine {
		if rec.Who != audit.Anonymous || rec.OSUser != me.Username || rec.Host != host || rec.Kind != "policy" || rec.Time.Before(start.Add(-time.Second)) {
			t.Errorf("record %+v: want who %s (etcd without auth), OS user %s, host %s, kind policy, after %s", rec, audit.Anonymous, me.Username, host, start)
		}
	}
	if d := mine[1].Diff; !slices.Contains(d, "- spec.ingress[0].ports[0].port: 8080") || !slices.Contains(d, "+ spec.ingress[0].ports[0].port: 8081") {
		t.Errorf("update diff %q: want the port change", d)
	}
	if d := mine[2].Diff; !slices.Contains(d, "- spec.ingress[0].ports[0].port: 8081") {
		t.Errorf("delete diff %q: want the deleted spec", d)
	}

	if r := opsSkein(ctx, t, "audit", "--who", "somebody-else", "--kind", "policy", "-o", "json"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("audit --who somebody-else: want an empty list\n%s", r)
	}
	if r := opsSkein(ctx, t, "audit", "--since", "yesterday"); r.code == 0 || r.stdout != "" || !strings.Contains(r.stderr, `--since "yesterday"`) {
		t.Errorf("audit --since yesterday: want an error naming the flag and no output\n%s", r)
	}
	if r := opsSkein(ctx, t, "audit"); r.code != 0 || !strings.Contains(r.stdout, "audit-probe") {
		t.Errorf("audit table:\n%s", r)
	}
}
