package wireguard

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// TestWantRoutesBothFamilies: in a dual-stack cluster each tunnel block
// goes through the device with the host's address of its own family as
// source, and the IPv6 pool and a keyless node's IPv6 block get
// unreachable routes like the IPv4 ones (fail closed in both families).
func TestWantRoutesBothFamilies(t *testing.T) {
	pfx, addr := netip.MustParsePrefix, netip.MustParseAddr
	p := map[string]Entry{
		"b": {Peer: &Peer{Node: "b"}, Blocks: []netip.Prefix{pfx("10.244.1.0/26"), pfx("fd00:10:244::40/122")}},
		"c": {Refused: "no WireGuard key published", Blocks: []netip.Prefix{pfx("10.244.2.0/26"), pfx("fd00:10:244::80/122")}},
	}
	pools := []netip.Prefix{pfx("10.244.0.0/16"), pfx("fd00:10:244::/56")}
	srcs := []netip.Addr{addr("10.244.0.1"), addr("fd00:10:244::1")}
	got := wantRoutes(p, pools, 7, srcs)
	for dst, src := range map[string]string{"10.244.1.0/26": "10.244.0.1", "fd00:10:244::40/122": "fd00:10:244::1"} {
		r, ok := got[routeKey{dst: pfx(dst)}]
		if !ok || r.LinkIndex != 7 || r.Src.String() != src {
			t.Errorf("tunnel route %s = %+v, want dev 7 src %s", dst, r, src)
		}
	}
	for _, dst := range []string{"10.244.2.0/26", "fd00:10:244::80/122", "10.244.0.0/16", "fd00:10:244::/56"} {
		r, ok := got[routeKey{dst: pfx(dst), unreachable: true}]
		if !ok || r.Type != unix.RTN_UNREACHABLE {
			t.Errorf("no unreachable route for %s: %+v", dst, r)
		}
	}
	if len(got) != 6 {
		t.Errorf("%d routes, want 6: %v", len(got), got)
	}
	// An IPv4-only host: IPv6 blocks would get no source, never a wrong one.
	got = wantRoutes(p, pools, 7, srcs[:1])
	if r := got[routeKey{dst: pfx("fd00:10:244::40/122")}]; r == nil || r.Src != nil {
		t.Errorf("IPv6 route with only an IPv4 source = %+v, want no source", r)
	}
}
