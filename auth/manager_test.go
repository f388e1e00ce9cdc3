package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/audit"
	"github.com/skeinnet/skein/store"
)

func startEtcd(t *testing.T) *store.Embedded {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped under -short: needs an embedded etcd")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	e, err := store.StartEmbedded(ctx, store.EmbeddedConfig{Dir: t.TempDir(), UnsafeNoFsync: true, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// connect opens an audited client as user (none: no auth).
func connect(t *testing.T, e *store.Embedded, user, password string) *store.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	who := user
	if who == "" {
		who = audit.Anonymous
	}
	c, err := store.New(ctx, store.Config{Endpoints: e.Endpoints(), Username: user, Password: password, Audit: &audit.Actor{Who: who}})
	if err != nil {
		t.Fatalf("connect as %q: %v", user, err)
	}
	t.Cleanup(func() { _ = c.Close() }) // nothing to check after the test
	return c
}

const pw = "secret-pw"

// TestRolesAgainstWrites tries every role against every kind of write on a
// real etcd with auth enabled: allowed writes land with their audit record,
// denied ones say which role cannot write which key and change nothing.
func TestRolesAgainstWrites(t *testing.T) {
	e := startEtcd(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	var steps []string
	anon := connect(t, e, "", "")
	if err := NewManager(anon).Setup(ctx, SetupConfig{}, func(s string) {}); err == nil {
		t.Fatal("Setup without an admin or root password succeeded: it would lock everybody out")
	}
	if err := NewManager(anon).Setup(ctx, SetupConfig{RootPassword: pw}, func(s string) { steps = append(steps, s) }); err != nil {
		t.Fatalf("Setup: %v", err)
	}
	if !strings.Contains(strings.Join(steps, "\n"), "auth: enabled") {
		t.Errorf("Setup said %q, want auth: enabled", steps)
	}
	root := connect(t, e, "root", pw)
	steps = nil
	if err := NewManager(root).Setup(ctx, SetupConfig{RootPassword: pw}, func(s string) { steps = append(steps, s) }); err != nil {
		t.Fatalf("second Setup: %v", err)
	}
	for _, s := range steps {
		if strings.HasPrefix(s, "role ") && !strings.HasSuffix(s, ": unchanged") || strings.HasPrefix(s, "auth") && s != "auth: already enabled" {
			t.Errorf("second Setup changed something: %q", s)
		}
	}
	m := NewManager(root)
	users := map[string][]string{"viewer": nil, "padmin": nil, "tenant": {"team-a"}, "netadmin": nil, "agent": nil}
	roles := map[string]string{"viewer": Viewer, "padmin": PolicyAdmin, "tenant": PolicyAdmin, "netadmin": NetworkAdmin, "agent": Node}
	for u, ns := range users {
		if err := m.Grant(ctx, u, roles[u], ns, pw, func(string) {}); err != nil {
			t.Fatalf("Grant %s: %v", u, err)
		}
	}
	if err := m.Grant(ctx, "x", "superuser", nil, pw, func(string) {}); !errors.Is(err, ErrUnknownRole) {
		t.Errorf("Grant of an unknown role = %v, want ErrUnknownRole", err)
	}
	if err := root.CreateCluster(ctx, api.Cluster{Backend: "vxlan"}); err != nil {
		t.Fatal(err)
	}

	np := func(ns string) api.Object {
		objs, err := api.DecodeDocuments("t.yaml", fmt.Appendf(nil, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: %s}\nspec: {podSelector: {}}\n", ns))
		if err != nil {
			t.Fatal(err)
		}
		return objs[0]
	}
	anp, err := api.DecodeDocuments("t.yaml", []byte("apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: a}\nspec: {priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}]}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	type write struct {
		name, key string
		do        func(c *store.Client) error
	}
	writes := []write{
		{"policy in team-a", "policies/NetworkPolicy/team-a/p", func(c *store.Client) error { _, err := c.PutPolicy(ctx, np("team-a")); return err }},
		{"policy in team-b", "policies/NetworkPolicy/team-b/p", func(c *store.Client) error { _, err := c.PutPolicy(ctx, np("team-b")); return err }},
		{"admin policy", "policies/AdminNetworkPolicy/_/a", func(c *store.Client) error { _, err := c.PutPolicy(ctx, anp[0]); return err }},
		{"namespace label team-a", "namespaces/team-a", func(c *store.Client) error {
			_, err := c.LabelNamespace(ctx, "team-a", map[string]string{"k": "v"}, nil)
			return err
		}},
		{"cluster", "cluster", func(c *store.Client) error { return c.PutCluster(ctx, api.Cluster{Backend: "bgp"}) }},
		{"bgp peer", "bgppeers/tor", func(c *store.Client) error {
			return c.CreateBGPPeer(ctx, api.BGPPeer{Name: "tor", PeerIP: netip.MustParseAddr("10.0.0.9"), ASN: 65001})
		}},
		{"node record", "nodes/n1", func(c *store.Client) error {
			return c.PutNode(ctx, api.Node{Name: "n1", UnderlayIP: netip.MustParseAddr("10.0.0.1")})
		}},
		{"audit record of root", "audit/log/root/x", func(c *store.Client) error {
			_, err := c.Etcd().Put(ctx, c.Prefix()+"audit/log/root/x", "forged")
			return err
		}},
	}
	allowed := map[string]map[string]bool{
		"viewer":   {},
		"padmin":   {"policy in team-a": true, "policy in team-b": true, "admin policy": true, "namespace label team-a": true},
		"tenant":   {"policy in team-a": true, "namespace label team-a": true},
		"netadmin": {"policy in team-a": true, "policy in team-b": true, "admin policy": true, "namespace label team-a": true, "cluster": true, "bgp peer": true, "node record": true, "audit record of root": true},
		// Through the CLI (audited) an agent's identity writes no audit
		// record, so it can label nothing; its own writes are below.
		"agent": {"node record": true},
	}
	for _, u := range []string{"viewer", "padmin", "tenant", "netadmin", "agent"} {
		c := connect(t, e, u, pw)
		for _, w := range writes {
			// Start each write from nothing, so an allowed one is a change.
			for _, k := range []string{w.key, "bgppeers/tor"} {
				if _, err := root.Etcd().Delete(ctx, root.Prefix()+k); err != nil {
					t.Fatal(err)
				}
			}
			before := countRecords(ctx, t, root, u)
			err := w.do(c)
			after := countRecords(ctx, t, root, u)
			exists := keyExists(ctx, t, root, w.key)
			if allowed[u][w.name] {
				if err != nil {
					t.Errorf("%s (%s): %s: %v, want allowed", u, roles[u], w.name, err)
				}
				continue
			}
			if err == nil {
				t.Errorf("%s (%s): %s allowed, want denied", u, roles[u], w.name)
				continue
			}
			want := fmt.Sprintf("permission denied: role %s", roles[u])
			if w.name != "audit record of root" && !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "cannot write") && w.name != "audit record of root" {
				t.Errorf("%s: %s: error %q, want it to say %q ... cannot write", u, w.name, err, want)
			}
			if exists || after != before {
				t.Errorf("%s: denied %s left a change: key present %v, audit records %d -> %d", u, w.name, exists, before, after)
			}
		}
	}
}

// TestNodeRoleWritesWhatAnAgentWrites checks the node role against the
// agent's own (unaudited) writes, and that it cannot touch policies.
func TestNodeRoleWritesWhatAnAgentWrites(t *testing.T) {
	e := startEtcd(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := NewManager(connect(t, e, "", "")).Setup(ctx, SetupConfig{RootPassword: pw}, func(string) {}); err != nil {
		t.Fatal(err)
	}
	if err := NewManager(connect(t, e, "root", pw)).Grant(ctx, "h1", Node, nil, pw, func(string) {}); err != nil {
		t.Fatal(err)
	}
	c, err := store.New(ctx, store.Config{Endpoints: e.Endpoints(), Username: "h1", Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close() //nolint:errcheck // test teardown
	o := api.Owner{ContainerID: "c1", IfName: "eth0"}
	for name, do := range map[string]func() error{
		"node":      func() error { return c.PutNode(ctx, api.Node{Name: "h1", UnderlayIP: netip.MustParseAddr("10.0.0.1")}) },
		"namespace": func() error { return c.EnsureNamespace(ctx, "default") },
		"endpoint": func() error {
			return c.PutEndpoint(ctx, api.Endpoint{Namespace: "default", Name: "p", Node: "h1", ContainerID: o.ContainerID, IfName: o.IfName,
				IPs: []netip.Addr{netip.MustParseAddr("10.244.0.2")}})
		},
		"block": func() error {
			_, err := c.ClaimBlock(ctx, netip.MustParsePrefix("10.244.0.0/26"), "h1")
			return err
		},
		"heartbeat": func() error {
			hctx, hcancel := context.WithTimeout(ctx, 10*time.Second)
			defer hcancel()
			seen := make(chan bool, 1)
			wch := c.Etcd().Watch(hctx, c.Prefix()+"alive/h1")
			go func() { // the heartbeat runs until its context ends
				defer hcancel()
				for resp := range wch {
					if len(resp.Events) > 0 {
						seen <- true
						return
					}
				}
				seen <- false
			}()
			err := c.Heartbeat(hctx, "h1", 10*time.Second, nil)
			if !<-seen {
				return fmt.Errorf("alive/h1 never appeared (heartbeat: %v)", err)
			}
			return nil
		},
	} {
		if err := do(); err != nil {
			t.Errorf("node role: %s write: %v", name, err)
		}
	}
	if err := c.DeleteEndpoint(ctx, "h1", o); err != nil {
		t.Errorf("node role: delete endpoint: %v", err)
	}
	if _, err := c.Etcd().Put(ctx, c.Prefix()+"policies/NetworkPolicy/x/p", "{}"); err == nil {
		t.Error("node role wrote a policy")
	}
}

func countRecords(ctx context.Context, t *testing.T, c *store.Client, who string) int {
	t.Helper()
	resp, err := c.Etcd().Get(ctx, c.Prefix()+audit.LogPrefix+who+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return int(resp.Count)
}

func keyExists(ctx context.Context, t *testing.T, c *store.Client, key string) bool {
	t.Helper()
	resp, err := c.Etcd().Get(ctx, c.Prefix()+key, clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count > 0
}
