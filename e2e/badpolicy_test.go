//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
)

// TestInvalidStoredPolicyIsolates: a deny-all written straight into etcd
// with an invalid field (as another tool, another Skein version or a hand
// edit would) is not dropped: the pods it selects are isolated both ways,
// the pods it does not select keep working, and every node reports it in
// `skein status`. Deleting it opens the pods again.
func TestInvalidStoredPolicyIsolates(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hosts := shared.Hosts()
	add := func(host, name, app string) lab.Container {
		c, err := shared.AddContainer(ctx, host, lab.ContainerOpts{Name: name, Namespace: "quar", Labels: map[string]string{"app": app}})
		if err != nil {
			t.Fatalf("add %s: %v", name, err)
		}
		t.Cleanup(func() { _ = shared.DelContainer(context.WithoutCancel(ctx), c.Name) }) // best effort: the lab goes down after the suite
		return c
	}
	db := add(hosts[0].Name, "db", "db")
	web := add(hosts[1].Name, "web", "web")
	var peer lab.Container
	for _, c := range shared.Containers() {
		if c.Host == hosts[2].Name {
			peer = c
			break
		}
	}
	if peer.Name == "" {
		t.Fatalf("no container on %s", hosts[2].Name)
	}
	reach := func(from string, to netip.Addr) bool {
		pctx, pcancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		defer pcancel()
		return shared.Ping(pctx, from, to) == nil
	}
	// until waits for every check to hold at once.
	until := func(what string, checks ...func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			ok := true
			for _, c := range checks {
				ok = ok && c()
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not so after 20 s", what)
			}
			time.Sleep(250 * time.Millisecond) // the agents converge on their own; nothing here to wait on
		}
	}
	until("all pods reachable before the policy",
		func() bool { return reach(peer.Name, db.IP) }, func() bool { return reach(peer.Name, web.IP) })

	cl := storeClient(ctx, t)
	key := cl.Prefix() + api.PolicyKey(api.KindNetworkPolicy, "quar", "deny-db")
	// "Ingres" is no policy type: the value fails validation from its first write.
	raw := `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"deny-db","namespace":"quar"},` +
		`"spec":{"podSelector":{"matchLabels":{"app":"db"}},"policyTypes":["Ingres","Egress"]}}`
	if _, err := cl.Etcd().Put(ctx, key, raw); err != nil {
		t.Fatalf("write the invalid policy: %v", err)
	}
	t.Cleanup(func() { _, _ = cl.Etcd().Delete(context.WithoutCancel(ctx), key) }) // also deleted below on success
	until("db isolated both ways, web still reachable",
		func() bool { return !reach(peer.Name, db.IP) },
		func() bool { return !reach(db.Name, peer.IP) },
		func() bool { return reach(peer.Name, web.IP) })

	// Every node reports it, with what it enforces instead.
	until("skein status lists the invalid policy on every node", func() bool {
		r := opsSkein(ctx, t, "status", "--agents=false", "-o", "json")
		var rep struct {
			Nodes []struct {
				Name            string              `json:"name"`
				InvalidPolicies []api.InvalidPolicy `json:"invalidPolicies"`
			} `json:"nodes"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || len(rep.Nodes) < len(hosts) {
			return false
		}
		for _, n := range rep.Nodes {
			if len(n.InvalidPolicies) != 1 || n.InvalidPolicies[0].Enforced != api.EnforcedQuarantine ||
				!strings.Contains(n.InvalidPolicies[0].Error, "spec.policyTypes[0]") {
				return false
			}
		}
		return r.code == 2 && // unhealthy
			strings.Contains(opsSkein(ctx, t, "status", "--agents=false").stdout, "invalid stored policy policies/NetworkPolicy/quar/deny-db")
	})

	if _, err := cl.Etcd().Delete(ctx, key); err != nil {
		t.Fatalf("delete the invalid policy: %v", err)
	}
	until("db reachable again after the delete",
		func() bool { return reach(peer.Name, db.IP) }, func() bool { return reach(db.Name, peer.IP) })
}
