//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/backup"
	"github.com/skeinnet/skein/lab"
	"github.com/skeinnet/skein/store"
)

// TestBackupRestore: a lab with a policy is backed up, its whole prefix is
// wiped (all but the agents' heartbeats and status records), and restored:
// every container reaches the same peers as before and `skein ipam check`
// is clean. A corrupted backup, one of a newer format, and --dry-run change
// nothing.
func TestBackupRestore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	waitHealthy(ctx, t)
	hosts := shared.Hosts()
	var cs []lab.Container
	for i, app := range []string{"a", "b", "c"} {
		c, err := shared.AddContainer(ctx, hosts[i%len(hosts)].Name, lab.ContainerOpts{Name: "bk-" + app, Namespace: "bk", Labels: map[string]string{"app": app}})
		if err != nil {
			t.Fatalf("add bk-%s: %v", app, err)
		}
		t.Cleanup(func() { _ = shared.DelContainer(context.WithoutCancel(ctx), c.Name) }) // best effort: the lab goes down after the suite
		cs = append(cs, c)
	}
	pol := filepath.Join(t.TempDir(), "bk.yaml")
	if err := os.WriteFile(pol, []byte(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-a, namespace: bk}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}]}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := opsSkein(ctx, t, "policy", "apply", "-f", pol); r.code != 0 {
		t.Fatalf("policy apply:\n%s", r)
	}
	t.Cleanup(func() {
		_ = opsSkein(context.WithoutCancel(ctx), t, "policy", "delete", "NetworkPolicy", "bk/b-from-a") // best effort, as above
	})
	// c -> b is the one pair the policy blocks.
	want := map[string]bool{}
	for _, from := range cs {
		for _, to := range cs {
			if from.Name != to.Name {
				want[from.Name+" -> "+to.Name] = from.Name != cs[2].Name || to.Name != cs[1].Name
			}
		}
	}
	waitReach(ctx, t, cs, want, "before the backup")

	dir := t.TempDir()
	file := filepath.Join(dir, "skein-backup.json")
	if r := opsSkein(ctx, t, "backup", "-f", file); r.code != 0 || !strings.Contains(r.stdout, "at revision") {
		t.Fatalf("backup:\n%s", r)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Decode(b); err != nil {
		t.Fatalf("the backup does not decode: %v", err)
	}
	cl := storeClient(ctx, t)
	before := configKeys(ctx, t, cl)

	// Bad input changes nothing.
	bad := map[string]string{
		"corrupted": strings.Replace(string(b), "b-from-a", "b-from-x", 1),
		"newer":     strings.Replace(string(b), `"version": 1`, `"version": 99`, 1),
	}
	wantErr := map[string]string{"corrupted": "checksum mismatch", "newer": "newer format version"}
	for name, content := range bad {
		p := filepath.Join(dir, name+".json")
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if r := opsSkein(ctx, t, "restore", "-f", p); r.code == 0 || !strings.Contains(r.stderr, wantErr[name]) {
			t.Errorf("restore of a %s backup: want an error saying %q\n%s", name, wantErr[name], r)
		}
	}
	if after := configKeys(ctx, t, cl); !maps.EqualFunc(before, after, func(a, b []byte) bool { return string(a) == string(b) }) {
		t.Fatalf("a refused restore changed the store")
	}

	// Wipe everything an admin could lose; the agents' leases keep theirs.
	for k := range before {
		if _, err := cl.Etcd().Delete(ctx, cl.Prefix()+k); err != nil {
			t.Fatal(err)
		}
	}
	r := opsSkein(ctx, t, "restore", "-f", file, "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "+ policies/NetworkPolicy/bk/b-from-a") || !strings.Contains(r.stdout, "+ cluster") {
		t.Errorf("restore --dry-run: want the policy and the cluster listed as created\n%s", r)
	}
	// The agents re-register their node records on their own meanwhile;
	// nothing else may appear.
	for k := range configKeys(ctx, t, cl) {
		if !strings.HasPrefix(k, "nodes/") {
			t.Errorf("restore --dry-run wrote %s", k)
		}
	}
	r = opsSkein(ctx, t, "restore", "-f", file)
	t.Logf("restore:\n%s", r)
	if r.code != 0 || !strings.Contains(r.stdout, "0 to delete") || !strings.Contains(r.stdout, "restored") {
		t.Fatalf("restore:\n%s", r)
	}
	after := configKeys(ctx, t, cl)
	for k, v := range before {
		if string(after[k]) != string(v) {
			t.Errorf("after restore %s = %s, want %s", k, after[k], v)
		}
	}
	waitReach(ctx, t, cs, want, "after wipe and restore")
	waitHealthy(ctx, t)
	if r := opsSkein(ctx, t, "ipam", "check", "--etcd-only"); r.code != 0 {
		t.Errorf("ipam check --etcd-only after restore:\n%s", r)
	}
	// On each host the check reaches that host's agent only (exit 3 names
	// the others); together they check every node.
	for _, h := range hosts {
		if r := opsSkeinIn(ctx, t, h.Name, "ipam", "check"); (r.code != 0 && r.code != 3) || !strings.Contains(r.stdout, "no problems found") {
			t.Errorf("ipam check on %s after restore:\n%s", h.Name, r)
		}
	}
	if r := opsSkein(ctx, t, "audit", "--kind", "restore", "--since", "5m"); r.code != 0 || !strings.Contains(r.stdout, "skein-backup.json") {
		t.Errorf("the restore left no audit record:\n%s", r)
	}

	// A restore that would change a live node's record needs --force.
	n, err := cl.GetNode(ctx, hosts[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	n.Labels["backup-test"] = "changed"
	if err := cl.PutNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	r = opsSkein(ctx, t, "restore", "-f", file)
	if r.code == 0 || !strings.Contains(r.stderr, "nodes whose agents are running") || !strings.Contains(r.stderr, hosts[0].Name) ||
		!strings.Contains(r.stdout, "~ nodes/"+hosts[0].Name) {
		t.Errorf("restore over a live node without --force: want the diff and a refusal naming %s\n%s", hosts[0].Name, r)
	}
	if got, err := cl.GetNode(ctx, hosts[0].Name); err != nil || got.Labels["backup-test"] != "changed" {
		t.Errorf("the refused restore changed the node record: %+v, %v", got.Labels, err)
	}
	if r := opsSkein(ctx, t, "restore", "-f", file, "--force"); r.code != 0 {
		t.Errorf("restore --force:\n%s", r)
	}
	if got, err := cl.GetNode(ctx, hosts[0].Name); err != nil || got.Labels["backup-test"] != "" {
		t.Errorf("restore --force left the node record as it was: %+v, %v", got.Labels, err)
	}
}

// configKeys returns the keys a backup holds and a restore writes (all but
// heartbeats, status and audit records), without the prefix.
func configKeys(ctx context.Context, t *testing.T, cl *store.Client) map[string][]byte {
	t.Helper()
	resp, err := cl.Etcd().Get(ctx, cl.Prefix(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, kv := range resp.Kvs {
		k := strings.TrimPrefix(string(kv.Key), cl.Prefix())
		if !backup.Skipped(k) && !strings.HasPrefix(k, "audit/") {
			out[k] = kv.Value
		}
	}
	return out
}

// waitReach waits (bounded) until every pair reaches or not as want says.
func waitReach(ctx context.Context, t *testing.T, cs []lab.Container, want map[string]bool, when string) {
	t.Helper()
	var diff []string
	for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline); {
		diff = nil
		for _, from := range cs {
			for _, to := range cs {
				if from.Name == to.Name {
					continue
				}
				pctx, pcancel := context.WithTimeout(ctx, 1500*time.Millisecond)
				got := shared.Ping(pctx, from.Name, to.IP) == nil
				pcancel()
				if k := from.Name + " -> " + to.Name; got != want[k] {
					diff = append(diff, fmt.Sprintf("%s: reached %v, want %v", k, got, want[k]))
				}
			}
		}
		if len(diff) == 0 {
			return
		}
	}
	t.Fatalf("%s, after 45 s:\n%s", when, strings.Join(diff, "\n"))
}
