package store

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/audit"
)

// newAuditedClient connects to e as the CLI does: every write audited.
func newAuditedClient(t *testing.T, e *Embedded, who string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := New(ctx, Config{Endpoints: e.Endpoints(), Log: testLog(t), Audit: &audit.Actor{Who: who, OSUser: "tester", Host: "h"}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() }) // the test's checks are done by then
	return c
}

// TestAuditedWrites checks that each CLI write leaves exactly one record,
// written at the same etcd revision as the change, with the field diff.
func TestAuditedWrites(t *testing.T) {
	e := startEtcd(t)
	c := newAuditedClient(t, e, "alice")
	ctx := ctxTimeout(t)

	steps := []struct {
		name string
		do   func() error
		key  string // without prefix; "" when nothing is written
		op   audit.Op
		kind string
		diff string // one line the diff must hold
	}{
		{"cluster init", func() error {
			return c.CreateCluster(ctx, api.Cluster{Backend: "vxlan"})
		}, "cluster", audit.Create, "cluster", `+ backend: "vxlan"`},
		{"policy create", func() error { _, err := c.PutPolicy(ctx, decodeOne(t, fmt.Sprintf(testNP, 80))); return err },
			"policies/NetworkPolicy/x/allow-web", audit.Create, "policy", "+ spec.ingress[0].ports[0].port: 80"},
		{"policy unchanged", func() error { _, err := c.PutPolicy(ctx, decodeOne(t, fmt.Sprintf(testNP, 80))); return err },
			"", "", "", ""},
		{"policy update", func() error { _, err := c.PutPolicy(ctx, decodeOne(t, fmt.Sprintf(testNP, 81))); return err },
			"policies/NetworkPolicy/x/allow-web", audit.Update, "policy", "- spec.ingress[0].ports[0].port: 80"},
		{"namespace label", func() error { _, err := c.LabelNamespace(ctx, "x", map[string]string{"team": "a"}, nil); return err },
			"namespaces/x", audit.Create, "namespace", `+ labels.team: "a"`},
		{"bgp peer add", func() error {
			return c.CreateBGPPeer(ctx, api.BGPPeer{Name: "tor", PeerIP: netip.MustParseAddr("10.0.0.1"), ASN: 65001})
		}, "bgppeers/tor", audit.Create, "bgppeer", `+ asn: 65001`},
		{"bgp peer delete", func() error { return c.DeleteBGPPeer(ctx, "tor") }, "bgppeers/tor", audit.Delete, "bgppeer", `- asn: 65001`},
		{"policy delete", func() error { return c.DeletePolicy(ctx, "NetworkPolicy", "x", "allow-web") },
			"policies/NetworkPolicy/x/allow-web", audit.Delete, "policy", "- spec.ingress[0].ports[0].port: 81"},
	}
	seen := 0
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		recs, err := c.AuditRecords(ctx)
		if err != nil {
			t.Fatalf("%s: AuditRecords: %v", s.name, err)
		}
		if s.key == "" {
			if len(recs) != seen {
				t.Fatalf("%s wrote nothing but left %d records, want %d", s.name, len(recs), seen)
			}
			continue
		}
		if len(recs) != seen+1 {
			t.Fatalf("%s: %d records, want %d", s.name, len(recs), seen+1)
		}
		seen++
		r := recs[len(recs)-1]
		kind, name := audit.KindOf(s.key)
		if r.Op != s.op || r.Kind != s.kind || r.Name != name || kind != s.kind || r.Who != "alice" || r.OSUser != "tester" {
			t.Errorf("%s: record %+v, want op %s kind %s name %s by alice", s.name, r, s.op, s.kind, name)
		}
		if !slices.Contains(r.Diff, s.diff) {
			t.Errorf("%s: diff %q lacks %q", s.name, r.Diff, s.diff)
		}
		checkSameRevision(ctx, t, c, s.key)
	}
}

// checkSameRevision checks that the newest audit record was written in the
// transaction that last changed key.
func checkSameRevision(ctx context.Context, t *testing.T, c *Client, key string) {
	t.Helper()
	resp, err := c.cli.Get(ctx, c.prefix+audit.LogPrefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithLimit(1))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("newest record: %v", err)
	}
	rec := resp.Kvs[0].ModRevision
	kr, err := c.cli.Get(ctx, c.prefix+key)
	if err != nil {
		t.Fatal(err)
	}
	want := resp.Header.Revision // a delete leaves no key: the record must be the newest revision
	if len(kr.Kvs) > 0 {
		want = kr.Kvs[0].ModRevision
	}
	if rec != want {
		t.Errorf("%s: record at revision %d, change at %d: not one transaction", key, rec, want)
	}
}

// TestAuditPrune checks that records past the retention go and newer ones
// stay, and that a watch never carries audit keys to agents.
func TestAuditPrune(t *testing.T) {
	e := startEtcd(t)
	c := newAuditedClient(t, e, "bob")
	ctx := ctxTimeout(t)
	if err := c.SetAuditRetention(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := c.LabelNamespace(ctx, "x", map[string]string{"a": "b"}, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := c.PruneAudit(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("PruneAudit(now) = %d, %v; want 0 deleted", n, err)
	}
	if n, err := c.PruneAudit(ctx, time.Now().Add(2*time.Hour)); err != nil || n != 2 {
		t.Fatalf("PruneAudit(now+2h) = %d, %v; want the 2 records deleted", n, err)
	}
	if recs, err := c.AuditRecords(ctx); err != nil || len(recs) != 0 {
		t.Fatalf("after prune: %d records, %v", len(recs), err)
	}
	inv, err := c.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k := range inv.Other {
		if strings.HasPrefix(k, audit.KeyKind+"/") {
			t.Errorf("snapshot carries audit key %s", k)
		}
	}
}
