package store

import (
	"encoding/json"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
)

func TestInventory(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)
	if err := c.PutNode(ctx, api.Node{Name: "n1"}); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.ClaimBlock(ctx, netip.MustParsePrefix("10.244.0.0/26"), "n1"); err != nil || !ok {
		t.Fatalf("ClaimBlock: %v %v", ok, err)
	}
	if err := c.PutEndpoint(ctx, endpoint("n1", "c1")); err != nil {
		t.Fatal(err)
	}
	st, _ := json.Marshal(api.NodeStatus{Node: "n1", Ready: true})
	p := c.Prefix()
	for k, v := range map[string]string{
		"status/n1":     string(st),
		"status/broken": "{not json",
		"nodes/bad":     "[]",
		"alive/n1":      "{}",
	} {
		if _, err := c.Etcd().Put(ctx, p+k, v); err != nil {
			t.Fatal(err)
		}
	}

	inv, err := c.Inventory(ctx)
	if err != nil {
		t.Fatalf("Inventory: %v", err)
	}
	if _, ok := inv.Nodes["n1"]; !ok || !inv.Alive["n1"] || len(inv.Blocks) != 1 || len(inv.Endpoints) != 1 {
		t.Errorf("snapshot part: nodes %v alive %v blocks %v endpoints %v", inv.Nodes, inv.Alive, inv.Blocks, inv.Endpoints)
	}
	if d := cmp.Diff(map[string][]byte{"n1": st}, inv.Status); d != "" {
		t.Errorf("Status (-want +got):\n%s", d)
	}
	wantErrs := []string{
		p + "nodes/bad: json: cannot unmarshal array into Go value of type api.Node",
		p + "status/broken: undecodable status record",
	}
	if d := cmp.Diff(wantErrs, inv.Errors); d != "" {
		t.Errorf("Errors (-want +got):\n%s", d)
	}
	if inv.ModRevs[BlockModRevKey(netip.MustParsePrefix("10.244.0.0/26"))] == 0 {
		t.Errorf("no mod revision for the block: %v", inv.ModRevs)
	}
	if inv.ModRevs[EndpointModRevKey("n1", api.Owner{ContainerID: "c1", IfName: "eth0"})] == 0 {
		t.Errorf("no mod revision for the endpoint: %v", inv.ModRevs)
	}
}

// TestGuardedReleases: a release goes ahead only while what was read still
// holds: the block unchanged, its node still gone, no new claim.
func TestGuardedReleases(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)
	b := netip.MustParsePrefix("10.244.0.0/26")
	other := netip.MustParsePrefix("10.244.0.64/26")
	if _, err := c.ClaimBlock(ctx, b, "gone"); err != nil {
		t.Fatal(err)
	}
	inv, err := c.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rev := inv.ModRevs[BlockModRevKey(b)]

	// The node comes back before the release: nothing happens.
	if err := c.PutNode(ctx, api.Node{Name: "gone"}); err != nil {
		t.Fatal(err)
	}
	if err := c.ReleaseBlockIf(ctx, b, rev, Guard{NodesAbsent: []string{"gone"}}); !errors.Is(err, ErrChanged) {
		t.Fatalf("release while the node is back: %v, want ErrChanged", err)
	}
	if _, err := c.Etcd().Delete(ctx, c.Prefix()+"nodes/gone"); err != nil {
		t.Fatal(err)
	}
	// A block that must stay unclaimed gets claimed: nothing happens.
	if _, err := c.ClaimBlock(ctx, other, "n2"); err != nil {
		t.Fatal(err)
	}
	if err := c.ReleaseBlockIf(ctx, b, rev, Guard{Blocks: map[netip.Prefix]int64{other: 0}}); !errors.Is(err, ErrChanged) {
		t.Fatalf("release with a new claim: %v, want ErrChanged", err)
	}
	// A stale revision: nothing happens.
	if err := c.ReleaseBlockIf(ctx, b, rev-1, Guard{}); !errors.Is(err, ErrChanged) {
		t.Fatalf("release at a stale revision: %v, want ErrChanged", err)
	}
	if err := c.ReleaseBlockIf(ctx, b, rev, Guard{NodesAbsent: []string{"gone"}}); err != nil {
		t.Fatalf("release: %v", err)
	}
	blocks, err := c.ListBlocks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 1 || blocks[0].CIDR != other {
		t.Errorf("blocks after release: %v, want only %s", blocks, other)
	}

	// Endpoints: re-put between read and delete means a new ADD: keep it.
	ep := endpoint("n2", "c1")
	if err := c.PutEndpoint(ctx, ep); err != nil {
		t.Fatal(err)
	}
	inv, err = c.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	o := api.Owner{ContainerID: ep.ContainerID, IfName: ep.IfName}
	erev := inv.ModRevs[EndpointModRevKey("n2", o)]
	if err := c.PutEndpoint(ctx, ep); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteEndpointIf(ctx, "n2", o, erev, Guard{}); !errors.Is(err, ErrChanged) {
		t.Fatalf("delete of a re-put endpoint: %v, want ErrChanged", err)
	}
	if _, err := c.GetEndpoint(ctx, "n2", o); err != nil {
		t.Fatalf("endpoint gone after a refused delete: %v", err)
	}
	inv, _ = c.Inventory(ctx)
	if err := c.DeleteEndpointIf(ctx, "n2", o, inv.ModRevs[EndpointModRevKey("n2", o)], Guard{}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := c.GetEndpoint(ctx, "n2", o); !errors.Is(err, ErrNotFound) {
		t.Errorf("endpoint after delete: %v, want ErrNotFound", err)
	}
}

// TestLastSeen: the status time while the heartbeat lives, and the last one
// from etcd's history after the lease ended.
func TestLastSeen(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)
	if _, err := c.LastSeen(ctx, "n1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("LastSeen of an unknown node: %v, want ErrNotFound", err)
	}
	if err := c.PutNode(ctx, api.Node{Name: "n1"}); err != nil {
		t.Fatal(err)
	}
	lease, err := c.Etcd().Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	// As an agent does: the heartbeat first, its first status a little later.
	alive, _ := json.Marshal(Alive{Node: "n1", Since: base.Add(-time.Minute)})
	if _, err := c.Etcd().Put(ctx, c.Prefix()+"alive/n1", string(alive), clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	for range 9 {
		if _, err := c.Etcd().Put(ctx, c.Prefix()+"namespaces/y", `{"name":"y"}`); err != nil {
			t.Fatal(err)
		}
	}
	var last time.Time
	for i := range 5 {
		last = base.Add(time.Duration(i) * 10 * time.Second)
		b, _ := json.Marshal(api.NodeStatus{Node: "n1", Updated: last})
		if _, err := c.Etcd().Put(ctx, c.Prefix()+"status/n1", string(b), clientv3.WithLease(lease.ID)); err != nil {
			t.Fatal(err)
		}
		// Other traffic between the updates, as other agents make.
		if _, err := c.Etcd().Put(ctx, c.Prefix()+"namespaces/x", `{"name":"x"}`); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := c.LastSeen(ctx, "n1"); err != nil || !got.Equal(last) {
		t.Errorf("LastSeen while alive = %v, %v; want %v", got, err, last)
	}
	if _, err := c.Etcd().Revoke(ctx, lease.ID); err != nil {
		t.Fatal(err)
	}
	for range 37 {
		if _, err := c.Etcd().Put(ctx, c.Prefix()+"namespaces/x", `{"name":"x"}`); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := c.LastSeen(ctx, "n1"); err != nil || !got.Equal(last) {
		t.Errorf("LastSeen after the lease ended = %v, %v; want %v", got, err, last)
	}
	// An agent that ended before its first status: the heartbeat's start.
	if err := c.PutNode(ctx, api.Node{Name: "n2"}); err != nil {
		t.Fatal(err)
	}
	lease2, err := c.Etcd().Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	alive2, _ := json.Marshal(Alive{Node: "n2", Since: base})
	if _, err := c.Etcd().Put(ctx, c.Prefix()+"alive/n2", string(alive2), clientv3.WithLease(lease2.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Etcd().Revoke(ctx, lease2.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := c.LastSeen(ctx, "n2"); err != nil || !got.Equal(base) {
		t.Errorf("LastSeen of an agent without status = %v, %v; want its heartbeat start %v", got, err, base)
	}
	// Once the history is compacted, LastSeen says so.
	resp, err := c.Etcd().Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Etcd().Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	if _, err := c.LastSeen(ctx, "n1"); !errors.Is(err, ErrHistoryCompacted) {
		t.Errorf("LastSeen after compaction: %v, want ErrHistoryCompacted", err)
	}
}
