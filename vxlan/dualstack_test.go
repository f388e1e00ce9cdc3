package vxlan

import (
	"net/netip"
	"slices"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
)

// TestPlanDualStack: IPv6 blocks go through the same device to the peer's
// IPv6 VTEP IP (a second permanent neighbour with the same MAC, the same FDB
// entry), also for a same-subnet peer under DirectRouting (its IPv4 blocks
// are routed directly); peers or a host without an IPv6 VTEP get no IPv6
// routes.
func TestPlanDualStack(t *testing.T) {
	self := selfCfg
	self.VTEPIP6 = ip("fd00::")
	b6 := func(p Peer, vtep6, block string) Peer {
		p.VTEPIP6 = ip(vtep6)
		p.Blocks = append(slices.Clone(p.Blocks), pfx(block))
		return p
	}
	peerB6 := b6(peerB, "fd00::40", "fd00::40/122")
	peerC6 := b6(peerC, "fd00::80", "fd00::80/122")

	got := Plan(self, []Peer{peerB6, peerC6})
	want := []string{
		wantLink().String(),
		"addr 10.244.0.0/32",
		"addr fd00::/128",
		"fdb 02:00:00:00:00:0b dst 192.0.2.2",
		"fdb 02:00:00:00:00:0c dst 198.51.100.3",
		"neigh 10.244.0.128 lladdr 02:00:00:00:00:0c permanent",
		"neigh 10.244.0.64 lladdr 02:00:00:00:00:0b permanent",
		"neigh fd00::40 lladdr 02:00:00:00:00:0b permanent",
		"neigh fd00::80 lladdr 02:00:00:00:00:0c permanent",
		"route 10.244.0.128/26 via 10.244.0.128 onlink",
		"route 10.244.0.64/26 via 10.244.0.64 onlink",
		"route 10.244.1.0/26 via 10.244.0.128 onlink",
		"route fd00::40/122 via fd00::40 onlink",
		"route fd00::80/122 via fd00::80 onlink",
	}
	if d := gocmp.Diff(want, got.Lines()); d != "" {
		t.Errorf("dual-stack plan (-want +got):\n%s", d)
	}

	// DirectRouting: node-b's IPv4 block directly, its IPv6 block over VXLAN.
	direct := self
	direct.DirectRouting = true
	got = Plan(direct, []Peer{peerB6})
	want = []string{
		wantLink().String(),
		"addr 10.244.0.0/32",
		"addr fd00::/128",
		"fdb 02:00:00:00:00:0b dst 192.0.2.2",
		"neigh fd00::40 lladdr 02:00:00:00:00:0b permanent",
		"route 10.244.0.64/26 via 192.0.2.2 direct",
		"route fd00::40/122 via fd00::40 onlink",
	}
	if d := gocmp.Diff(want, got.Lines()); d != "" {
		t.Errorf("dual-stack direct plan (-want +got):\n%s", d)
	}

	// This host without an IPv6 VTEP (IPv4-only agent): no IPv6 at all.
	got = Plan(selfCfg, []Peer{peerB6})
	for _, l := range got.Lines() {
		if slices.Contains([]string{"neigh fd00::40 lladdr 02:00:00:00:00:0b permanent", "route fd00::40/122 via fd00::40 onlink"}, l) {
			t.Errorf("IPv4-only host plans %q", l)
		}
	}
	// A peer without an IPv6 VTEP: its IPv6 block is not routed.
	noV6 := peerB6
	noV6.VTEPIP6 = netip.Addr{}
	if _, ok := Plan(self, []Peer{noV6}).Routes[pfx("fd00::40/122")]; ok {
		t.Errorf("IPv6 block of a peer without an IPv6 VTEP IP is routed")
	}
	// The planner holds the same state, change by change.
	pl := NewPlanner(self, nil)
	pl.SetPeer(peerB6)
	pl.SetPeer(peerC6)
	if d := gocmp.Diff(Plan(self, []Peer{peerB6, peerC6}).Lines(), pl.State().Lines()); d != "" {
		t.Errorf("planner vs Plan (-plan +planner):\n%s", d)
	}
}
