package vxlan

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
)

// TestPlanV6Only: in an IPv6-only cluster nodes have an IPv6 VTEP IP and
// no IPv4 one; each peer's IPv6 blocks go through the tunnel via its IPv6
// VTEP IP, over an IPv4 or an IPv6 underlay, and the device has no IPv4
// address. The planner holds the same state.
func TestPlanV6Only(t *testing.T) {
	v6only := func(p Peer, vtep6, block string) Peer {
		p.VTEPIP = netip.Addr{}
		p.VTEPIP6 = ip(vtep6)
		p.Blocks = []netip.Prefix{pfx(block)}
		return p
	}
	b, c := v6only(peerB, "fd00::40", "fd00::40/122"), v6only(peerC, "fd00::80", "fd00::80/122")
	c.Blocks = append(c.Blocks, pfx("fd00::100/122"))
	self := selfCfg
	self.VTEPIP, self.VTEPIP6 = netip.Addr{}, ip("fd00::")

	want := []string{
		wantLink().String(),
		"addr fd00::/128",
		"fdb 02:00:00:00:00:0b dst 192.0.2.2",
		"fdb 02:00:00:00:00:0c dst 198.51.100.3",
		"neigh fd00::40 lladdr 02:00:00:00:00:0b permanent",
		"neigh fd00::80 lladdr 02:00:00:00:00:0c permanent",
		"route fd00::100/122 via fd00::80 onlink",
		"route fd00::40/122 via fd00::40 onlink",
		"route fd00::80/122 via fd00::80 onlink",
	}
	check := func(name string, cfg Config, peers []Peer, want []string) {
		t.Helper()
		if d := gocmp.Diff(want, Plan(cfg, peers).Lines()); d != "" {
			t.Errorf("%s: plan (-want +got):\n%s", name, d)
		}
		pl := NewPlanner(cfg, nil)
		for _, p := range peers {
			pl.SetPeer(p)
		}
		if d := gocmp.Diff(want, pl.State().Lines()); d != "" {
			t.Errorf("%s: planner (-want +got):\n%s", name, d)
		}
	}
	check("IPv4 underlay", self, []Peer{b, c}, want)
	// DirectRouting on an IPv4 underlay: no IPv4 block to route directly,
	// the IPv6 ones stay on the tunnel.
	direct := self
	direct.DirectRouting = true
	check("IPv4 underlay, direct routing", direct, []Peer{b, c}, want)

	// IPv6 underlay: the same with IPv6 FDB destinations.
	self6 := self
	self6.UnderlayIP, self6.UnderlayIP6 = ip("2001:db8::1"), ip("2001:db8::1")
	b6, c6 := b, c
	b6.UnderlayIP, b6.UnderlayIP6 = ip("2001:db8::2"), ip("2001:db8::2")
	c6.UnderlayIP, c6.UnderlayIP6 = ip("2001:db8:1::3"), ip("2001:db8:1::3")
	link := wantLink()
	link.Local = ip("2001:db8::1")
	want6 := append([]string{link.String()}, want[1:]...)
	want6[2], want6[3] = "fdb 02:00:00:00:00:0b dst 2001:db8::2", "fdb 02:00:00:00:00:0c dst 2001:db8:1::3"
	check("IPv6 underlay", self6, []Peer{b6, c6}, want6)

	// A peer without an IPv6 VTEP IP yet (its record is being written)
	// gets nothing, not an FDB entry without routes.
	noVTEP := b
	noVTEP.VTEPIP6 = netip.Addr{}
	if got := Plan(self, []Peer{noVTEP}); len(got.FDB)+len(got.Neighs)+len(got.Routes) != 0 {
		t.Errorf("peer without VTEP IPs: plan %v, want nothing", got.Lines())
	}
}

// randomV6OnlyPeer is randomPeer for an IPv6-only cluster: an IPv6 VTEP
// IP and IPv6 blocks, no IPv4 VTEP IP, with conflicts (shared VTEP IPs,
// MACs and blocks) and unusable records now and then.
func randomV6OnlyPeer(rng *rand.Rand, node string) Peer {
	p := Peer{
		Node:       node,
		UnderlayIP: netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + rng.IntN(12))}),
		VTEPIP6:    netip.AddrFrom16([16]byte{0: 0xfd, 13: byte(rng.IntN(12))}),
		VTEPMAC:    net.HardwareAddr{0x0e, 0, 0, 0, 0, byte(rng.IntN(12))},
	}
	switch rng.IntN(10) {
	case 0:
		p.VTEPIP6 = netip.Addr{} // not usable: skipped by Plan
	case 1:
		p.VTEPMAC = nil
	}
	for range rng.IntN(3) {
		p.Blocks = append(p.Blocks, netip.PrefixFrom(netip.AddrFrom16([16]byte{0: 0xfd, 13: byte(rng.IntN(16))}), 120))
	}
	return p
}

// TestPlannerRandomWalkV6Only is TestPlannerRandomWalk for an IPv6-only
// cluster: the incremental state equals Plan after every step.
func TestPlannerRandomWalkV6Only(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cfg := Config{
		Node: "self", UnderlayIP: netip.MustParseAddr("192.0.2.100"), UnderlayIfIndex: 3,
		VTEPMAC: net.HardwareAddr{0x0e, 0, 0, 0, 0, 0x99}, VTEPIP6: netip.MustParseAddr("fd00::99:0"),
	}
	peers := map[string]Peer{}
	p := NewPlanner(cfg, nil)
	routes := 0
	for step := range 3000 {
		node := fmt.Sprintf("n%02d", rng.IntN(16))
		prev := p.State().Clone()
		var c Changes
		if rng.IntN(4) == 0 {
			delete(peers, node)
			c = p.DeletePeer(node)
		} else {
			peer := randomV6OnlyPeer(rng, node)
			peers[node] = peer
			c = p.SetPeer(peer)
		}
		want := Plan(cfg, slices.Collect(maps.Values(peers)))
		if d := gocmp.Diff(want.Lines(), p.State().Lines()); d != "" {
			t.Fatalf("step %d (%s): incremental state != Plan (-plan +incremental):\n%s", step, node, d)
		}
		applyChanges(&prev, c)
		if d := gocmp.Diff(want.Lines(), prev.Lines()); d != "" {
			t.Fatalf("step %d (%s): previous state + changes != Plan (-plan +applied):\n%s", step, node, d)
		}
		routes += len(want.Routes)
	}
	if routes == 0 {
		t.Fatal("the walk planned no route: it proves nothing")
	}
}
