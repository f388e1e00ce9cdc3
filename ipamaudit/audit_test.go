package ipamaudit

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/ipam"
	"github.com/skeinnet/skein/store"
)

// inventory builds an etcd view of nodes n1..nN, node i holding block
// 10.244.i.0/26 of the pool 10.244.0.0/16, all alive.
func inventory(n int) store.Inventory {
	inv := store.Inventory{
		Snapshot: store.Snapshot{
			Rev:       7,
			Cluster:   &api.Cluster{Backend: api.BackendVXLAN, Pools: []api.Pool{{CIDR: netip.MustParsePrefix("10.244.0.0/16"), BlockSize: 26}}},
			Nodes:     map[string]api.Node{},
			Blocks:    map[netip.Prefix]api.Block{},
			Endpoints: map[string]api.Endpoint{},
			Alive:     map[string]bool{},
		},
		Status:  map[string][]byte{},
		ModRevs: map[string]int64{},
	}
	for i := 1; i <= n; i++ {
		name := "n" + string(rune('0'+i))
		block := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 26)
		inv.Nodes[name] = api.Node{Name: name, UnderlayIP: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})}
		inv.Blocks[block] = api.Block{CIDR: block, Node: name}
		inv.ModRevs[store.BlockModRevKey(block)] = int64(100 + i)
		inv.Alive[name] = true
	}
	return inv
}

func TestAudit(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	ip := netip.MustParseAddr
	owner := func(c string) api.Owner { return api.Owner{ContainerID: c, IfName: "eth0"} }
	ep := func(node, c string, ips ...string) api.Endpoint {
		e := api.Endpoint{Namespace: "x", Name: c, Node: node, ContainerID: c, IfName: "eth0"}
		for _, s := range ips {
			e.IPs = append(e.IPs, ip(s))
		}
		return e
	}
	inv := inventory(2) // n1 holds 10.244.1.0/26, n2 10.244.2.0/26
	gone := netip.MustParsePrefix("10.244.9.0/26")
	outside := netip.MustParsePrefix("10.99.0.0/26")
	inv.Blocks[gone] = api.Block{CIDR: gone, Node: "gone"}
	inv.Blocks[outside] = api.Block{CIDR: outside, Node: "n2"}
	for _, e := range []api.Endpoint{
		ep("n1", "ok1", "10.244.1.2"),
		ep("n1", "dup1", "10.244.1.3"),
		ep("n2", "dup2", "10.244.1.3"),    // also outside n2's blocks
		ep("n1", "far", "10.244.5.7"),     // in no block of n1 (and unclaimed)
		ep("n1", "unalloc", "10.244.1.9"), // the agent holds nothing for it
		ep("gone", "orphan", "10.244.9.2"),
	} {
		key := e.Node + "/" + e.ContainerID + "/eth0"
		inv.Endpoints[key] = e
		inv.ModRevs[store.EndpointModRevKey(e.Node, owner(e.ContainerID))] = 50
	}
	alloc := func(c, addr string, age time.Duration) ipam.Allocation {
		return ipam.Allocation{IP: ip(addr), Owner: owner(c), Pod: "x/" + c, Block: netip.MustParsePrefix("10.244.1.0/26"), Created: now.Add(-age)}
	}
	allocs := map[string]AgentIPAM{"n1": {Node: "n1", Allocations: []ipam.Allocation{
		alloc("ok1", "10.244.1.2", time.Hour),
		alloc("dup1", "10.244.1.3", time.Hour),
		alloc("far", "10.244.5.7", time.Hour),          // an allocation outside n1's blocks
		alloc("leak", "10.244.1.20", time.Hour),        // no endpoint: leaked
		alloc("adding", "10.244.1.21", 10*time.Second), // no endpoint yet: an ADD in flight
	}}}
	rep := Audit(inv, allocs, map[string]string{"n2": "debug endpoint: connection refused"}, now, 5*time.Minute)

	type row struct{ Kind, Node, What string }
	var got []row
	for _, f := range rep.Findings {
		got = append(got, row{f.Kind, f.Node, f.What()})
	}
	want := []row{
		{AllocationOutsideBlocks, "n1", "far/eth0 10.244.5.7"},
		{BlockOutsidePools, "n2", "block 10.99.0.0/26"},
		{DoubleClaim, "", "10.244.1.3"},
		{EndpointOutsideBlocks, "n1", "far/eth0 10.244.5.7"},
		{EndpointOutsideBlocks, "n2", "dup2/eth0 10.244.1.3"},
		{EndpointNoAllocation, "n1", "unalloc/eth0 10.244.1.9"},
		{LeakedAddress, "n1", "leak/eth0 10.244.1.20"},
		{OrphanBlock, "gone", "block 10.244.9.0/26"},
		{StaleEndpoint, "gone", "orphan/eth0 10.244.9.2"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("findings (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]Unchecked{{"n2", "debug endpoint: connection refused"}}, rep.Unchecked); d != "" {
		t.Errorf("unchecked (-want +got):\n%s", d)
	}
	// The guards a release would use.
	for _, f := range rep.Findings {
		switch {
		case f.Kind == OrphanBlock:
			if f.modRev != inv.ModRevs[store.BlockModRevKey(gone)] || !cmp.Equal(f.guard.NodesAbsent, []string{"gone"}) {
				t.Errorf("orphan block guard: rev %d %+v", f.modRev, f.guard)
			}
		case f.Kind == EndpointOutsideBlocks && f.Node == "n1":
			// 10.244.5.0/26 was unclaimed: it must still be.
			if d := cmp.Diff(map[netip.Prefix]int64{netip.MustParsePrefix("10.244.5.0/26"): 0}, f.guard.Blocks); d != "" || f.modRev != 50 {
				t.Errorf("endpoint-outside-blocks guard (-want +got):\n%s", d)
			}
		case f.Kind == EndpointOutsideBlocks && f.Node == "n2":
			// 10.244.1.0/26 is n1's: it must not change hands.
			if d := cmp.Diff(map[netip.Prefix]int64{netip.MustParsePrefix("10.244.1.0/26"): 101}, f.guard.Blocks); d != "" {
				t.Errorf("endpoint-outside-blocks guard (-want +got):\n%s", d)
			}
		}
	}
	clean := Audit(inventory(2), nil, nil, now, time.Minute)
	if len(clean.Findings) != 0 {
		t.Errorf("findings on a clean cluster: %+v", clean.Findings)
	}
}
