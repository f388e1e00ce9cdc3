package wireguard

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/api"
)

// routeKey names a route for comparing wanted with actual.
type routeKey struct {
	dst         netip.Prefix
	unreachable bool
}

// wantRoutes turns entries into routes: tunnel blocks of both families
// through the device (source: the host's address of the block's family on
// it), and unreachable routes for blocked blocks and, under everything, for
// the pools themselves, so that pod traffic to a block not (yet) tunnelled
// never follows a default route out in clear, in either family.
func wantRoutes(entries map[string]Entry, pools []netip.Prefix, link int, srcs []netip.Addr) map[routeKey]*netlink.Route {
	out := map[routeKey]*netlink.Route{}
	for _, e := range entries {
		entryRoutes(e, link, srcs, out)
	}
	for _, pool := range pools {
		out[routeKey{dst: pool, unreachable: true}] = unreachableRoute(pool)
	}
	return out
}

// entryRoutes adds one node's routes to out.
func entryRoutes(e Entry, link int, srcs []netip.Addr, out map[routeKey]*netlink.Route) {
	for _, b := range e.Blocks {
		if e.Peer == nil {
			out[routeKey{dst: b, unreachable: true}] = unreachableRoute(b)
			continue
		}
		r := &netlink.Route{Dst: netipNet(b), LinkIndex: link, Scope: netlink.SCOPE_LINK, Protocol: api.RouteProtocol}
		for _, src := range srcs {
			if src.IsValid() && src.Is4() == b.Addr().Is4() {
				r.Src = src.AsSlice()
			}
		}
		out[routeKey{dst: b}] = r
	}
}

func unreachableRoute(dst netip.Prefix) *netlink.Route {
	return &netlink.Route{Dst: netipNet(dst), Type: unix.RTN_UNREACHABLE, Protocol: api.RouteProtocol}
}

// applyRoutes makes Skein's routes through link and its unreachable routes
// exactly want; it returns how many it changed.
func applyRoutes(want map[routeKey]*netlink.Route, link int) (int, error) {
	have, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: api.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return 0, fmt.Errorf("list routes: %w", err)
	}
	changed := 0
	seen := map[routeKey]bool{}
	for _, r := range have {
		if r.Dst == nil {
			continue
		}
		unreach := r.Type == unix.RTN_UNREACHABLE
		if !unreach && r.LinkIndex != link {
			continue // the containers' routes, or another component's
		}
		dst, ok := netipPrefix(*r.Dst)
		if !ok {
			continue
		}
		k := routeKey{dst: dst, unreachable: unreach}
		w, wanted := want[k]
		if wanted && (unreach || sameSrc(r, w)) {
			seen[k] = true
			continue
		}
		if !wanted {
			if err := netlink.RouteDel(&r); err != nil {
				return changed, fmt.Errorf("delete route %s: %w", dst, err)
			}
			changed++
		}
	}
	for k, r := range want {
		if seen[k] {
			continue
		}
		if err := netlink.RouteReplace(r); err != nil {
			return changed, fmt.Errorf("route %s: %w", k.dst, err)
		}
		changed++
	}
	return changed, nil
}

func sameSrc(have netlink.Route, want *netlink.Route) bool {
	return have.Src.Equal(want.Src) || (len(have.Src) == 0 && len(want.Src) == 0)
}
