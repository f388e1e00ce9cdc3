package vxlan

import (
	"net/netip"
	"slices"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
)

// v6Peer is peer p on an IPv6-only underlay (2001:db8::N), dual-stack pods.
func v6Peer(p Peer, underlay, vtep6, block6 string) Peer {
	p.UnderlayIP, p.UnderlayIP6 = ip(underlay), ip(underlay)
	p.VTEPIP6 = ip(vtep6)
	p.Blocks = append(slices.Clone(p.Blocks), pfx(block6))
	p.SameSubnet, p.SameSubnet6 = true, true
	return p
}

// TestPlanIPv6Underlay: on an IPv6-only node the device's local address
// and every FDB destination are IPv6, both pod families ride the tunnel;
// a peer with an IPv4 underlay is skipped whole (one family per device).
func TestPlanIPv6Underlay(t *testing.T) {
	self := selfCfg
	self.UnderlayIP, self.UnderlayIP6 = ip("2001:db8::1"), ip("2001:db8::1")
	self.MTU = 1430
	self.VTEPIP6 = ip("fd00::")
	b := v6Peer(peerB, "2001:db8::2", "fd00::40", "fd00::40/122")
	c := peerC // IPv4 underlay: another family
	c.VTEPIP6, c.Blocks = ip("fd00::80"), append(slices.Clone(c.Blocks), pfx("fd00::80/122"))

	got := Plan(self, []Peer{b, c})
	link := wantLink()
	link.Local, link.MTU = ip("2001:db8::1"), 1430
	want := []string{
		link.String(),
		"addr 10.244.0.0/32",
		"addr fd00::/128",
		"fdb 02:00:00:00:00:0b dst 2001:db8::2",
		"neigh 10.244.0.64 lladdr 02:00:00:00:00:0b permanent",
		"neigh fd00::40 lladdr 02:00:00:00:00:0b permanent",
		"route 10.244.0.64/26 via 10.244.0.64 onlink",
		"route fd00::40/122 via fd00::40 onlink",
	}
	if d := gocmp.Diff(want, got.Lines()); d != "" {
		t.Errorf("IPv6 underlay plan (-want +got):\n%s", d)
	}

	// The same peers seen from an IPv4 node: node-b (IPv6-only) is skipped.
	self4 := selfCfg
	self4.VTEPIP6 = ip("fd00::")
	for _, l := range Plan(self4, []Peer{b}).Lines()[1:] {
		if l != "addr 10.244.0.0/32" && l != "addr fd00::/128" {
			t.Errorf("IPv4 node plans %q for an IPv6-only peer", l)
		}
	}

	// DirectRouting between IPv6-only nodes on one subnet: IPv6 blocks go
	// directly via the peer's underlay address, IPv4 ones over the tunnel.
	direct := self
	direct.DirectRouting = true
	got = Plan(direct, []Peer{b})
	want = []string{
		link.String(),
		"addr 10.244.0.0/32",
		"addr fd00::/128",
		"fdb 02:00:00:00:00:0b dst 2001:db8::2",
		"neigh 10.244.0.64 lladdr 02:00:00:00:00:0b permanent",
		"route 10.244.0.64/26 via 10.244.0.64 onlink",
		"route fd00::40/122 via 2001:db8::2 direct",
	}
	if d := gocmp.Diff(want, got.Lines()); d != "" {
		t.Errorf("IPv6 underlay direct plan (-want +got):\n%s", d)
	}
	pl := NewPlanner(direct, nil)
	pl.SetPeer(b)
	pl.SetPeer(c)
	if d := gocmp.Diff(Plan(direct, []Peer{b, c}).Lines(), pl.State().Lines()); d != "" {
		t.Errorf("planner vs Plan (-plan +planner):\n%s", d)
	}
}

// TestPlanDirectRoutingDualUnderlay: on a dual-stack underlay a same-subnet
// peer's IPv4 blocks go via its UnderlayIP and its IPv6 blocks via its
// UnderlayIP6, with no tunnel entry at all; a peer without UnderlayIP6 (or
// off this host's IPv6 subnet) keeps its IPv6 blocks on VXLAN.
func TestPlanDirectRoutingDualUnderlay(t *testing.T) {
	self := selfCfg
	self.UnderlayIP6 = ip("2001:db8::1")
	self.VTEPIP6 = ip("fd00::")
	self.DirectRouting = true
	b := peerB
	b.UnderlayIP6, b.SameSubnet6 = ip("2001:db8::2"), true
	b.VTEPIP6, b.Blocks = ip("fd00::40"), append(slices.Clone(b.Blocks), pfx("fd00::40/122"))

	got := Plan(self, []Peer{b})
	want := []string{
		wantLink().String(),
		"addr 10.244.0.0/32",
		"addr fd00::/128",
		"route 10.244.0.64/26 via 192.0.2.2 direct",
		"route fd00::40/122 via 2001:db8::2 direct",
	}
	if d := gocmp.Diff(want, got.Lines()); d != "" {
		t.Errorf("dual underlay direct plan (-want +got):\n%s", d)
	}

	for name, p := range map[string]Peer{
		"no UnderlayIP6":      func() Peer { p := b; p.UnderlayIP6, p.SameSubnet6 = netip.Addr{}, false; return p }(),
		"another IPv6 subnet": func() Peer { p := b; p.SameSubnet6 = false; return p }(),
		"this host has no v6": b,
	} {
		cfg := self
		if name == "this host has no v6" {
			cfg.UnderlayIP6 = netip.Addr{}
		}
		want := []string{
			wantLink().String(),
			"addr 10.244.0.0/32",
			"addr fd00::/128",
			"fdb 02:00:00:00:00:0b dst 192.0.2.2",
			"neigh fd00::40 lladdr 02:00:00:00:00:0b permanent",
			"route 10.244.0.64/26 via 192.0.2.2 direct",
			"route fd00::40/122 via fd00::40 onlink",
		}
		if d := gocmp.Diff(want, Plan(cfg, []Peer{p}).Lines()); d != "" {
			t.Errorf("%s: IPv6 blocks should stay on VXLAN (-want +got):\n%s", name, d)
		}
	}
}
