package bgp

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/skeinnet/skein/api"
)

// Path is one best path of the BGP table, as the planner sees it.
type Path struct {
	Prefix  netip.Prefix
	NextHop netip.Addr
	// Peer is the neighbour the path was learned from; invalid for the
	// paths this speaker originates.
	Peer netip.Addr
	// Stale marks a path kept for a restarting peer (graceful restart).
	Stale bool
}

// Route is a kernel route the speaker owns: Dst via Gw.
type Route struct {
	Dst netip.Prefix
	Gw  netip.Addr
}

// String renders r as "10.1.0.0/24 via 10.0.0.2".
func (r Route) String() string { return r.Dst.String() + " via " + r.Gw.String() }

// Rejection is a learned path that is not installed, and why.
type Rejection = api.BGPRejection

// PlanInput is everything the route planner depends on.
type PlanInput struct {
	// Paths are the best paths of the IPv4 and IPv6 unicast tables.
	Paths []Path
	// Local are this node's own blocks: never installed from BGP.
	Local []netip.Prefix
	// Import, when not empty, limits installed prefixes to those inside one
	// of them.
	Import []netip.Prefix
	// Self are this node's addresses: a path with one of them as next hop
	// points back here and is not installed.
	Self []netip.Addr
	// NoIPv6, when set, is why this node installs no IPv6 routes (it has no
	// IPv6 underlay address to reach a next hop from); every IPv6 path is
	// rejected with it.
	NoIPv6 string
}

// RoutePlan is the desired kernel state.
type RoutePlan struct {
	Routes   map[netip.Prefix]Route
	Rejected []Rejection // sorted by prefix, then peer
}

// Plan turns the best paths into kernel routes: one route per learned
// prefix, via the path's next hop, which must be of the prefix's family
// (MP-BGP carries IPv6 prefixes with IPv6 next hops over IPv4 sessions).
// Paths this speaker originates, paths overlapping a local block, paths
// outside Import, IPv6 paths when NoIPv6 is set and paths whose next hop is
// missing, of the other family, link-local or this node are not installed;
// all but the first are reported as rejected. Plan is pure and
// deterministic.
func Plan(in PlanInput) RoutePlan {
	out := RoutePlan{Routes: map[netip.Prefix]Route{}}
	paths := slices.Clone(in.Paths)
	slices.SortFunc(paths, func(a, b Path) int {
		return cmp.Or(a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()),
			a.Peer.Compare(b.Peer), a.NextHop.Compare(b.NextHop))
	})
	reject := func(p Path, reason string) {
		out.Rejected = append(out.Rejected, Rejection{Prefix: p.Prefix, NextHop: p.NextHop, Peer: p.Peer, Reason: reason})
	}
	for _, p := range paths {
		if !p.Peer.IsValid() {
			continue // our own advertisement
		}
		dst := p.Prefix.Masked()
		v6 := dst.Addr().Is6()
		switch {
		case !dst.IsValid():
			reject(p, "not a valid prefix")
			continue
		case v6 && in.NoIPv6 != "":
			reject(p, in.NoIPv6)
			continue
		case !v6 && !usableNextHop(p.NextHop, false):
			reject(p, "no usable IPv4 next hop")
			continue
		case v6 && !usableNextHop(p.NextHop, true):
			reject(p, "no usable IPv6 next hop")
			continue
		case slices.Contains(in.Self, p.NextHop):
			reject(p, "next hop is this node")
			continue
		}
		if i := slices.IndexFunc(in.Local, func(l netip.Prefix) bool { return l.Overlaps(dst) }); i >= 0 {
			reject(p, "overlaps local block "+in.Local[i].String())
			continue
		}
		if len(in.Import) > 0 && !slices.ContainsFunc(in.Import, func(i netip.Prefix) bool {
			return i.Bits() <= dst.Bits() && i.Contains(dst.Addr())
		}) {
			reject(p, "outside the import prefixes")
			continue
		}
		if _, dup := out.Routes[dst]; dup {
			continue // the table has one best path per prefix; keep the first
		}
		out.Routes[dst] = Route{Dst: dst, Gw: p.NextHop}
	}
	return out
}

// usableNextHop reports whether nh can be a kernel gateway for a prefix of
// the family v6 says: same family, specified, not link-local (a link-local
// gateway needs a device, which a BGP path does not name) and not an
// IPv4-mapped address.
func usableNextHop(nh netip.Addr, v6 bool) bool {
	if !nh.IsValid() || nh.IsUnspecified() || nh.IsLinkLocalUnicast() {
		return false
	}
	if v6 {
		return nh.Is6() && !nh.Is4In6()
	}
	return nh.Is4()
}
