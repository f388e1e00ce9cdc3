package bgp

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPlan(t *testing.T) {
	t.Parallel()
	ip := netip.MustParseAddr
	peerA, peerB, self := ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.1")
	peerA6, peerB6, self6 := ip("fd00:255::2"), ip("fd00:255::3"), ip("fd00:255::1")
	path := func(prefix string, nh, peer netip.Addr) Path {
		return Path{Prefix: netip.MustParsePrefix(prefix), NextHop: nh, Peer: peer}
	}
	route := func(prefix string, gw netip.Addr) Route { return Route{Dst: netip.MustParsePrefix(prefix), Gw: gw} }
	tests := []struct {
		name   string
		in     PlanInput
		routes []Route
		rej    []string
	}{
		{name: "nothing"},
		{
			name:   "learned paths become routes, own paths are skipped",
			in:     PlanInput{Paths: []Path{path("10.1.2.0/24", peerA, peerA), path("10.1.1.0/24", self, netip.Addr{}), path("10.1.3.0/24", peerB, peerA)}},
			routes: []Route{route("10.1.2.0/24", peerA), route("10.1.3.0/24", peerB)},
		},
		{
			name:   "host bits are masked",
			in:     PlanInput{Paths: []Path{path("10.1.2.7/24", peerA, peerA)}},
			routes: []Route{route("10.1.2.0/24", peerA)},
		},
		{
			name: "overlap with a local block, either way",
			in: PlanInput{
				Paths: []Path{path("10.1.1.0/25", peerA, peerA), path("10.1.0.0/16", peerB, peerB), path("10.2.0.0/24", peerA, peerA)},
				Local: []netip.Prefix{netip.MustParsePrefix("10.1.1.0/24")},
			},
			routes: []Route{route("10.2.0.0/24", peerA)},
			rej: []string{
				"10.1.0.0/16 via 10.0.0.3 from 10.0.0.3: overlaps local block 10.1.1.0/24",
				"10.1.1.0/25 via 10.0.0.2 from 10.0.0.2: overlaps local block 10.1.1.0/24",
			},
		},
		{
			name: "import filter",
			in: PlanInput{
				Paths:  []Path{path("0.0.0.0/0", peerA, peerA), path("10.244.3.0/26", peerA, peerA), path("10.0.0.0/8", peerA, peerA), path("192.168.0.0/24", peerA, peerA)},
				Import: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
			},
			routes: []Route{route("10.244.3.0/26", peerA)},
			rej: []string{
				"0.0.0.0/0 via 10.0.0.2 from 10.0.0.2: outside the import prefixes",
				"10.0.0.0/8 via 10.0.0.2 from 10.0.0.2: outside the import prefixes",
				"192.168.0.0/24 via 10.0.0.2 from 10.0.0.2: outside the import prefixes",
			},
		},
		{
			name: "bad next hops",
			in: PlanInput{
				Paths: []Path{path("10.1.2.0/24", netip.Addr{}, peerA), path("10.1.3.0/24", ip("fd00::1"), peerA), path("10.1.4.0/24", self, peerA), path("10.1.5.0/24", ip("0.0.0.0"), peerA)},
				Self:  []netip.Addr{self},
			},
			rej: []string{
				"10.1.2.0/24 via  from 10.0.0.2: no usable IPv4 next hop",
				"10.1.3.0/24 via fd00::1 from 10.0.0.2: no usable IPv4 next hop",
				"10.1.4.0/24 via 10.0.0.1 from 10.0.0.2: next hop is this node",
				"10.1.5.0/24 via 0.0.0.0 from 10.0.0.2: no usable IPv4 next hop",
			},
		},
		{
			name: "ipv6 prefixes over ipv4 sessions take ipv6 next hops",
			in: PlanInput{
				Paths: []Path{
					path("fd00:10::/122", peerA6, peerA), path("fd00:10::40/122", peerB6, peerB),
					path("fd00:10::80/122", peerA, peerA), path("fd00:10::c0/122", ip("fe80::1"), peerA),
					path("fd00:10::100/122", ip("::"), peerA), path("fd00:10::140/122", ip("::ffff:10.0.0.2"), peerA),
					path("fd00:10::180/122", self6, peerA), path("fd00:10::1c0/122", netip.Addr{}, peerA),
				},
				Self: []netip.Addr{self, self6},
			},
			routes: []Route{route("fd00:10::/122", peerA6), route("fd00:10::40/122", peerB6)},
			rej: []string{
				"fd00:10::80/122 via 10.0.0.2 from 10.0.0.2: no usable IPv6 next hop",
				"fd00:10::c0/122 via fe80::1 from 10.0.0.2: no usable IPv6 next hop",
				"fd00:10::100/122 via :: from 10.0.0.2: no usable IPv6 next hop",
				"fd00:10::140/122 via ::ffff:10.0.0.2 from 10.0.0.2: no usable IPv6 next hop",
				"fd00:10::180/122 via fd00:255::1 from 10.0.0.2: next hop is this node",
				"fd00:10::1c0/122 via  from 10.0.0.2: no usable IPv6 next hop",
			},
		},
		{
			name: "no ipv6 underlay: ipv6 paths are refused, ipv4 ones still installed",
			in: PlanInput{
				Paths:  []Path{path("fd00:10::/122", peerA6, peerA), path("10.1.2.0/24", peerA, peerA)},
				NoIPv6: "this node has no IPv6 underlay address",
			},
			routes: []Route{route("10.1.2.0/24", peerA)},
			rej:    []string{"fd00:10::/122 via fd00:255::2 from 10.0.0.2: this node has no IPv6 underlay address"},
		},
		{
			name: "ipv6 import filter and local blocks",
			in: PlanInput{
				Paths:  []Path{path("::/0", peerA6, peerA), path("fd00:11::/64", peerA6, peerA), path("fd00:10::40/122", peerA6, peerA), path("fd00:10::/122", peerA6, peerA)},
				Import: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:10::/56")},
				Local:  []netip.Prefix{netip.MustParsePrefix("fd00:10::/122")},
			},
			routes: []Route{route("fd00:10::40/122", peerA6)},
			rej: []string{
				"::/0 via fd00:255::2 from 10.0.0.2: overlaps local block fd00:10::/122",
				"fd00:10::/122 via fd00:255::2 from 10.0.0.2: overlaps local block fd00:10::/122",
				"fd00:11::/64 via fd00:255::2 from 10.0.0.2: outside the import prefixes",
			},
		},
		{
			name:   "one route per prefix, deterministic",
			in:     PlanInput{Paths: []Path{path("10.1.2.0/24", peerB, peerB), path("10.1.2.0/24", peerA, peerA)}},
			routes: []Route{route("10.1.2.0/24", peerA)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := Plan(tc.in)
			want := map[netip.Prefix]Route{}
			for _, r := range tc.routes {
				want[r.Dst] = r
			}
			if d := cmp.Diff(want, got.Routes, cmp.Comparer(func(a, b Route) bool { return a == b })); d != "" {
				t.Errorf("Plan() routes mismatch (-want +got):\n%s", d)
			}
			var rej []string
			for _, r := range got.Rejected {
				rej = append(rej, r.String())
			}
			if d := cmp.Diff(tc.rej, rej); d != "" {
				t.Errorf("Plan() rejected mismatch (-want +got):\n%s", d)
			}
		})
	}
}
