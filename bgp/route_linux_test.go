package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/nstest"
)

// kernelRoutes lists every IPv4 route of table in ns as
// "dst [via gw] dev name proto N", sorted, skipping the kernel's own.
func kernelRoutes(t *testing.T, ns *nstest.NS, table int) []string {
	t.Helper()
	rs, err := ns.Handle.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatalf("list routes: %v", err)
	}
	var out []string
	for _, r := range rs {
		if r.Protocol == unix.RTPROT_KERNEL || r.Type != unix.RTN_UNICAST {
			continue
		}
		link, err := ns.Handle.LinkByIndex(r.LinkIndex)
		if err != nil {
			t.Fatalf("link %d: %v", r.LinkIndex, err)
		}
		s := "default"
		if r.Dst != nil {
			s = r.Dst.String()
		}
		if r.Gw != nil {
			s += " via " + r.Gw.String()
		}
		out = append(out, fmt.Sprintf("%s dev %s proto %d", s, link.Attrs().Name, r.Protocol))
	}
	slices.Sort(out)
	return out
}

// link returns the link called name in ns.
func link(t *testing.T, ns *nstest.NS, name string) netlink.Link {
	t.Helper()
	l, err := ns.Handle.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func addRoute(t *testing.T, ns *nstest.NS, r *netlink.Route) {
	t.Helper()
	if err := ns.Handle.RouteAdd(r); err != nil {
		t.Fatalf("add route %s: %v", r, err)
	}
}

func ipnet(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

func TestNetlinkDataplane(t *testing.T) {
	ns, other := nstest.Pair(t, netip.MustParsePrefix("10.0.0.1/24"), netip.MustParsePrefix("10.0.0.2/24"))
	// A veth stands in for the VXLAN device: only its name matters.
	nstest.Veth(t, ns, other, api.VXLANDevice, netip.MustParsePrefix("10.9.9.1/24"), netip.MustParsePrefix("10.9.9.2/24"))
	eth, vx := link(t, ns, "veth0"), link(t, ns, api.VXLANDevice)
	// Routes that are not the bgp backend's: another protocol, a
	// container's device route with Skein's protocol, the vxlan backend's.
	addRoute(t, ns, &netlink.Route{Dst: ipnet("10.50.0.0/24"), Gw: net.ParseIP("10.0.0.9"), LinkIndex: eth.Attrs().Index, Protocol: unix.RTPROT_STATIC})
	addRoute(t, ns, &netlink.Route{Dst: ipnet("10.60.0.5/32"), LinkIndex: eth.Attrs().Index, Scope: netlink.SCOPE_LINK, Protocol: api.RouteProtocol})
	addRoute(t, ns, &netlink.Route{Dst: ipnet("10.70.0.0/24"), Gw: net.ParseIP("10.9.9.2"), LinkIndex: vx.Attrs().Index, Protocol: api.RouteProtocol})
	// A stale route of an earlier run.
	addRoute(t, ns, &netlink.Route{Dst: ipnet("10.80.0.0/24"), Gw: net.ParseIP("10.0.0.8"), LinkIndex: eth.Attrs().Index, Protocol: api.RouteProtocol})
	foreign := []string{
		"10.50.0.0/24 via 10.0.0.9 dev veth0 proto 4",
		"10.60.0.5/32 dev veth0 proto 78",
		"10.70.0.0/24 via 10.9.9.2 dev skein.vxlan proto 78",
	}

	ctx := context.Background()
	dp := NewNetlinkDataplane(ns.Handle, MainTable, api.RouteProtocol, nil)
	have, err := dp.Routes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(routesOf("10.80.0.0/24", "10.0.0.8"), have, cmp.Comparer(func(a, b Route) bool { return a == b })); d != "" {
		t.Errorf("Routes() mismatch (-want +got):\n%s", d)
	}

	s := newRouteSyncer(dp, slog.New(slog.NewTextHandler(t.Output(), nil)))
	want := routesOf(
		"10.1.1.0/24", "10.0.0.2", // new
		"10.80.0.0/24", "10.0.0.3", // replaced
		"10.50.0.0/24", "10.0.0.2", // someone else's: left alone
	)
	ops, _, err := s.sync(ctx, want, nil)
	if err != nil || ops != 2 {
		t.Fatalf("sync = %d ops, %v; want 2, nil", ops, err)
	}
	wantKernel := append([]string{"10.1.1.0/24 via 10.0.0.2 dev veth0 proto 78", "10.80.0.0/24 via 10.0.0.3 dev veth0 proto 78"}, foreign...)
	slices.Sort(wantKernel)
	if d := cmp.Diff(wantKernel, kernelRoutes(t, ns, MainTable)); d != "" {
		t.Errorf("kernel routes mismatch (-want +got):\n%s", d)
	}
	if _, blocked := s.state(); len(blocked) != 1 {
		t.Errorf("blocked = %v, want 10.50.0.0/24", blocked)
	}
	if ops, _, err := s.sync(ctx, want, nil); err != nil || ops != 0 {
		t.Errorf("second sync = %d ops, %v; want 0, nil", ops, err)
	}

	// A next hop that is not on a connected subnet is an error of its own;
	// the rest still applies.
	want = routesOf("10.1.1.0/24", "10.0.0.2", "10.1.2.0/24", "192.0.2.1")
	if _, _, err := s.sync(ctx, want, nil); !errors.Is(err, unix.ENETUNREACH) {
		t.Errorf("sync with an unreachable next hop = %v, want ENETUNREACH", err)
	}

	// Nothing wanted: only our routes go.
	if _, _, err := s.sync(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(foreign, kernelRoutes(t, ns, MainTable)); d != "" {
		t.Errorf("kernel routes after removing all mismatch (-want +got):\n%s", d)
	}
	if err := dp.Delete(ctx, Route{Dst: netip.MustParsePrefix("10.1.1.0/24"), Gw: netip.MustParseAddr("10.0.0.2")}); err != nil {
		t.Errorf("deleting a missing route = %v, want nil", err)
	}
	if err := dp.Delete(ctx, Route{Dst: netip.MustParsePrefix("10.50.0.0/24"), Gw: netip.MustParseAddr("10.0.0.9")}); err != nil {
		t.Errorf("deleting a foreign route = %v, want nil (no match)", err)
	}
	if got := kernelRoutes(t, ns, MainTable); !slices.Contains(got, foreign[0]) {
		t.Errorf("Delete removed a foreign route: %v", got)
	}
}

func TestNetlinkDataplaneOwnTable(t *testing.T) {
	ns, _ := nstest.Pair(t, netip.MustParsePrefix("10.0.0.1/24"), netip.MustParsePrefix("10.0.0.2/24"))
	ctx := context.Background()
	dp := NewNetlinkDataplane(ns.Handle, 100, 200, nil)
	r := Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("10.0.0.254")}
	if err := dp.Add(ctx, r); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"0.0.0.0/0 via 10.0.0.254 dev veth0 proto 200"}, kernelRoutes(t, ns, 100)); d != "" {
		t.Errorf("table 100 mismatch (-want +got):\n%s", d)
	}
	if got := kernelRoutes(t, ns, MainTable); len(got) != 0 {
		t.Errorf("main table = %v, want nothing added", got)
	}
	have, err := dp.Routes(ctx)
	if err != nil || len(have) != 1 || have[r.Dst] != r {
		t.Errorf("Routes() = %v, %v; want the default route", have, err)
	}
	if err := dp.Add(ctx, r); !errors.Is(err, ErrForeignRoute) {
		t.Errorf("second Add = %v, want ErrForeignRoute (create only)", err)
	}
}

// addAddr6 adds an IPv6 address without duplicate address detection, so
// that it is usable at once.
func addAddr6(t *testing.T, ns *nstest.NS, name, addr string) {
	t.Helper()
	p := netip.MustParsePrefix(addr)
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 128)}, Flags: unix.IFA_F_NODAD}
	if err := ns.Handle.AddrAdd(link(t, ns, name), a); err != nil {
		t.Fatalf("add %s to %s: %v", addr, name, err)
	}
}

// kernelRoutes6 lists the IPv6 routes of the main table with Skein's
// protocol as "dst via gw".
func kernelRoutes6(t *testing.T, ns *nstest.NS) []string {
	t.Helper()
	rs, err := ns.Handle.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Protocol: api.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatalf("list routes: %v", err)
	}
	var out []string
	for _, r := range rs {
		s := r.Dst.String()
		if r.Gw != nil {
			s += " via " + r.Gw.String()
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// TestNetlinkDataplaneIPv6: IPv6 routes via an IPv6 next hop are owned and
// synced next to the IPv4 ones; a container's IPv6 device route is not.
func TestNetlinkDataplaneIPv6(t *testing.T) {
	ns, other := nstest.Pair(t, netip.MustParsePrefix("10.0.0.1/24"), netip.MustParsePrefix("10.0.0.2/24"))
	addAddr6(t, ns, "veth0", "fd00:255::1/64")
	addAddr6(t, other, "veth0", "fd00:255::2/64")
	eth := link(t, ns, "veth0")
	addRoute(t, ns, &netlink.Route{Dst: ipnet("fd00:10::5/128"), LinkIndex: eth.Attrs().Index, Protocol: api.RouteProtocol})

	ctx := context.Background()
	dp := NewNetlinkDataplane(ns.Handle, MainTable, api.RouteProtocol, nil)
	s := newRouteSyncer(dp, slog.New(slog.NewTextHandler(t.Output(), nil)))
	want := routesOf("10.1.1.0/24", "10.0.0.2", "fd00:10::40/122", "fd00:255::2")
	if ops, _, err := s.sync(ctx, want, nil); err != nil || ops != 2 {
		t.Fatalf("sync = %d ops, %v; want 2, nil", ops, err)
	}
	if d := cmp.Diff([]string{"fd00:10::40/122 via fd00:255::2", "fd00:10::5/128"}, kernelRoutes6(t, ns)); d != "" {
		t.Errorf("IPv6 kernel routes mismatch (-want +got):\n%s", d)
	}
	have, err := dp.Routes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, have, cmp.Comparer(func(a, b Route) bool { return a == b })); d != "" {
		t.Errorf("Routes() mismatch (-want +got):\n%s", d)
	}
	// A new next hop replaces; nothing wanted removes only ours.
	addAddr6(t, other, "veth0", "fd00:255::3/64")
	if ops, _, err := s.sync(ctx, routesOf("fd00:10::40/122", "fd00:255::3"), nil); err != nil || ops != 2 {
		t.Fatalf("sync = %d ops, %v; want 2 (replace, delete), nil", ops, err)
	}
	if d := cmp.Diff([]string{"fd00:10::40/122 via fd00:255::3", "fd00:10::5/128"}, kernelRoutes6(t, ns)); d != "" {
		t.Errorf("IPv6 kernel routes after replace mismatch (-want +got):\n%s", d)
	}
	if _, _, err := s.sync(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"fd00:10::5/128"}, kernelRoutes6(t, ns)); d != "" {
		t.Errorf("IPv6 kernel routes after removing all mismatch (-want +got):\n%s", d)
	}
}
