package vxlan

import (
	"net/netip"
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
