package vxlan

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// randomPeer draws a peer from small value spaces, so that two peers often
// claim the same block, VTEP IP or VTEP MAC, and peers go in and out of the
// local subnet.
func randomPeer(rng *rand.Rand, node string) Peer {
	p := Peer{
		Node:       node,
		UnderlayIP: netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + rng.IntN(12))}),
		VTEPIP:     netip.AddrFrom4([4]byte{10, 244, byte(rng.IntN(12)), 0}),
		VTEPMAC:    net.HardwareAddr{0x0e, 0, 0, 0, 0, byte(rng.IntN(12))},
		SameSubnet: rng.IntN(3) == 0,
	}
	switch rng.IntN(10) {
	case 0:
		p.VTEPIP = netip.Addr{} // not usable: skipped by Plan
	case 1:
		p.VTEPMAC = nil
	case 2:
		p.UnderlayIP = netip.MustParseAddr("2001:db8::1") // wrong family
	}
	for range rng.IntN(3) {
		p.Blocks = append(p.Blocks, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(rng.IntN(16)), 0}), 24))
	}
	return p
}

// TestPlannerRandomWalk checks after every step of a random walk of peer
// changes that the incremental state equals Plan from scratch, and that the
// returned changes, applied to the previous state, give the new one.
func TestPlannerRandomWalk(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run(fmt.Sprintf("direct=%v", direct), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			cfg := Config{
				Node: "self", UnderlayIP: netip.MustParseAddr("192.0.2.100"), UnderlayIfIndex: 3,
				VTEPMAC: net.HardwareAddr{0x0e, 0, 0, 0, 0, 0x99}, VTEPIP: netip.MustParseAddr("10.245.0.0"),
				DirectRouting: direct,
			}
			peers := map[string]Peer{}
			p := NewPlanner(cfg, nil)
			full, incremental := 0, 0
			for step := range 3000 {
				node := fmt.Sprintf("n%02d", rng.IntN(16))
				prev := p.State().Clone()
				var c Changes
				if rng.IntN(4) == 0 {
					delete(peers, node)
					c = p.DeletePeer(node)
				} else {
					peer := randomPeer(rng, node)
					peers[node] = peer
					c = p.SetPeer(peer)
				}
				if c.FullReplan {
					full++
				} else {
					incremental++
				}
				want := Plan(cfg, slices.Collect(maps.Values(peers)))
				if d := cmp.Diff(want.Lines(), p.State().Lines()); d != "" {
					t.Fatalf("step %d (%s): incremental state != Plan (-plan +incremental):\n%s", step, node, d)
				}
				applyChanges(&prev, c)
				if d := cmp.Diff(want.Lines(), prev.Lines()); d != "" {
					t.Fatalf("step %d (%s): previous state + changes != Plan (-plan +applied):\n%s", step, node, d)
				}
			}
			// The walk must exercise both paths, or it proves nothing.
			if full == 0 || incremental == 0 {
				t.Fatalf("full replans %d, incremental %d: want both", full, incremental)
			}
			t.Logf("full replans %d, incremental %d", full, incremental)
		})
	}
}

// TestPlannerChangeCostsOnePeer: at 1 000 peers without conflicts, changing
// one peer's blocks reports exactly that peer's objects and no full replan.
func TestPlannerChangeCostsOnePeer(t *testing.T) {
	cfg := Config{Node: "self", UnderlayIP: netip.MustParseAddr("192.0.2.1"), VTEPMAC: net.HardwareAddr{2, 0, 0, 9, 9, 9}, VTEPIP: netip.MustParseAddr("10.0.0.0")}
	var peers []Peer
	for i := range 1000 {
		peers = append(peers, Peer{
			Node:       fmt.Sprintf("n%04d", i),
			UnderlayIP: netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}),
			VTEPIP:     netip.AddrFrom4([4]byte{10, 1, byte(i >> 2), byte(i&3) << 6}),
			VTEPMAC:    net.HardwareAddr{2, 0, 0, 0, byte(i >> 8), byte(i)},
			Blocks:     []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 2), byte(i&3) << 6}), 26)},
		})
	}
	p := NewPlanner(cfg, peers)
	if got := len(p.State().Routes); got != 1000 {
		t.Fatalf("routes = %d, want 1000", got)
	}
	q := peers[500]
	q.Blocks = append(slices.Clone(q.Blocks), netip.MustParsePrefix("10.2.0.0/26"))
	c := p.SetPeer(q)
	if c.FullReplan || c.Len() != 1 || len(c.SetRoutes) != 1 || c.SetRoutes[0].Dst != netip.MustParsePrefix("10.2.0.0/26") {
		t.Fatalf("changes = %+v, want one new route 10.2.0.0/26", c)
	}
	c = p.DeletePeer(q.Node)
	if c.FullReplan || len(c.DelRoutes) != 2 || len(c.DelNeighs) != 1 || len(c.DelFDB) != 1 || c.Len() != 4 {
		t.Fatalf("changes = %+v, want the peer's 2 routes, neighbour and FDB entry removed", c)
	}
}
