package vxlan

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/nstest"
)

// TestDriftRepairedFromKernelEvents runs a Reconciler with the kernel watch
// in a namespace (periodic resync far away), removes a route, a neighbour,
// an FDB entry and the whole device by hand, changes a neighbour, and checks
// each is back within a second and counted as drift of its kind, while the
// reconciler's own changes count as none.
func TestDriftRepairedFromKernelEvents(t *testing.T) {
	ns := nstest.New(t)
	h := ns.Handle
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ul0"}, PeerName: "ul1"}); err != nil {
		t.Fatalf("add underlay veth: %v", err)
	}
	ns.LinkUp(t, "ul0", pfx("192.0.2.1/24"))
	ns.LinkUp(t, "ul1", pfx("192.0.2.200/24"))
	cfg := selfCfg
	cfg.UnderlayIfIndex = mustLink(t, h, "ul0").Attrs().Index

	r := runWatched(t, ns)

	p := NewPlanner(cfg, []Peer{peerB, peerC})
	r.Set(p.State())
	want := p.State().Lines()
	converged := func(what string) {
		t.Helper()
		deadline := time.Now().Add(time.Second)
		for {
			// A device the reconciler just re-created is up a moment
			// later: only an up device can have converged.
			if l, err := h.LinkByName(api.VXLANDevice); err == nil && l.Attrs().Flags&net.FlagUp != 0 {
				if gocmp.Equal(want, kernelLines(t, ns, api.VXLANDevice, cfg.UnderlayIfIndex)) {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not repaired within 1 s:\n%s", what, gocmp.Diff(want, kernelLines(t, ns, api.VXLANDevice, cfg.UnderlayIfIndex)))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	converged("initial sync")
	// Let the initial sync's echoes arrive first: one arriving after the
	// update below would name a route the update already dropped.
	time.Sleep(100 * time.Millisecond)
	// An incremental change of our own is no drift.
	c := p.DeletePeer(peerC.Node)
	r.Update(c)
	want = p.State().Lines()
	converged("own update")
	time.Sleep(100 * time.Millisecond) // let the echoes of our own changes arrive
	if d := r.Drifts(); len(d) != 0 {
		t.Fatalf("drift counted for the reconciler's own changes: %v", d)
	}

	vx := mustLink(t, h, api.VXLANDevice)
	route := &netlink.Route{LinkIndex: vx.Attrs().Index, Dst: ipNet(peerB.Blocks[0]), Gw: peerB.VTEPIP.AsSlice(), Protocol: api.RouteProtocol, Flags: int(netlink.FLAG_ONLINK)}
	if err := h.RouteDel(route); err != nil {
		t.Fatalf("delete route by hand: %v", err)
	}
	converged("route deleted by hand")
	neigh := &netlink.Neigh{LinkIndex: vx.Attrs().Index, Family: unix.AF_INET, IP: peerB.VTEPIP.AsSlice(), HardwareAddr: peerB.VTEPMAC, State: netlink.NUD_PERMANENT}
	if err := h.NeighDel(neigh); err != nil {
		t.Fatalf("delete neighbour by hand: %v", err)
	}
	converged("neighbour deleted by hand")
	neigh.HardwareAddr = net.HardwareAddr{2, 9, 9, 9, 9, 9}
	if err := h.NeighSet(neigh); err != nil {
		t.Fatalf("change neighbour by hand: %v", err)
	}
	converged("neighbour changed by hand")
	fdb := &netlink.Neigh{LinkIndex: vx.Attrs().Index, Family: unix.AF_BRIDGE, HardwareAddr: peerB.VTEPMAC, IP: peerB.UnderlayIP.AsSlice(), Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT}
	if err := h.NeighDel(fdb); err != nil {
		t.Fatalf("delete fdb entry by hand: %v", err)
	}
	converged("fdb entry deleted by hand")
	if err := h.LinkDel(vx); err != nil {
		t.Fatalf("delete device by hand: %v", err)
	}
	converged("device deleted by hand")

	d := r.Drifts()
	for _, kind := range []string{DriftRoute, DriftNeigh, DriftFDB, DriftLink} {
		if d[kind] == 0 {
			t.Errorf("drift of kind %s not counted: %v", kind, d)
		}
	}
}

// TestDebugKernelReadsTheKernel: a route deleted by hand (no watch running)
// is missing from DebugKernel's actual at once, while the last sync's view
// still lists it: a debug view compares with the kernel, not with memory.
func TestDebugKernelReadsTheKernel(t *testing.T) {
	ns := nstest.New(t)
	h := ns.Handle
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ul0"}, PeerName: "ul1"}); err != nil {
		t.Fatalf("add underlay veth: %v", err)
	}
	ns.LinkUp(t, "ul0", pfx("192.0.2.1/24"))
	cfg := selfCfg
	cfg.UnderlayIfIndex = mustLink(t, h, "ul0").Attrs().Index
	r, err := NewReconciler(ReconcilerConfig{Dataplane: NewNetlinkDataplane(h, testLog(t)), Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	r.Set(Plan(cfg, []Peer{peerB}))
	if err := r.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	vx := mustLink(t, h, api.VXLANDevice)
	route := &netlink.Route{LinkIndex: vx.Attrs().Index, Dst: ipNet(peerB.Blocks[0]), Gw: peerB.VTEPIP.AsSlice(), Protocol: api.RouteProtocol, Flags: int(netlink.FLAG_ONLINK)}
	if err := h.RouteDel(route); err != nil {
		t.Fatalf("delete route by hand: %v", err)
	}
	line := Route{Dst: peerB.Blocks[0], Gw: peerB.VTEPIP, OnLink: true}.String()
	if d := r.Debug(); !slices.Contains(d.Actual, line) || d.ActualFrom != "last sync" {
		t.Fatalf("Debug(): actual %q from %q, want the last sync's view with %q", d.Actual, d.ActualFrom, line)
	}
	d := r.DebugKernel(t.Context())
	if d.ActualFrom != "kernel" || slices.Contains(d.Actual, line) || !slices.Contains(d.Desired, line) {
		t.Fatalf("DebugKernel(): actual %q from %q (error %q), want the kernel's view without %q", d.Actual, d.ActualFrom, d.ActualError, line)
	}
}

// TestDirectRouteDriftRepaired: with direct routing, a same-subnet peer's
// route lives on the underlay device; the watch covers it there. A direct
// route deleted by hand comes back, a route with Skein's protocol Skein does
// not want is removed from the underlay device, and the host's own routes
// on that device (other protocols) are left alone.
func TestDirectRouteDriftRepaired(t *testing.T) {
	ns := nstest.New(t)
	h := ns.Handle
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ul0"}, PeerName: "ul1"}); err != nil {
		t.Fatalf("add underlay veth: %v", err)
	}
	ns.LinkUp(t, "ul0", pfx("192.0.2.1/24"))
	ns.LinkUp(t, "ul1", pfx("192.0.2.200/24"))
	cfg := selfCfg
	cfg.DirectRouting = true
	ul := mustLink(t, h, "ul0")
	cfg.UnderlayIfIndex = ul.Attrs().Index

	r := runWatched(t, ns)

	st := Plan(cfg, []Peer{peerB, peerC})
	if rt := st.Routes[peerB.Blocks[0]]; !rt.Direct || rt.Gw != peerB.UnderlayIP {
		t.Fatalf("plan routes peer B %v, want direct via %s", rt, peerB.UnderlayIP)
	}
	r.Set(st)
	want := st.Lines()
	converged := func(what string) {
		t.Helper()
		deadline := time.Now().Add(time.Second)
		for {
			if l, err := h.LinkByName(api.VXLANDevice); err == nil && l.Attrs().Flags&net.FlagUp != 0 &&
				gocmp.Equal(want, kernelLines(t, ns, api.VXLANDevice, cfg.UnderlayIfIndex)) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not repaired within 1 s:\n%s", what, gocmp.Diff(want, kernelLines(t, ns, api.VXLANDevice, cfg.UnderlayIfIndex)))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	converged("initial sync")

	// The host's own route on the underlay device: not Skein's to touch.
	hostRoute := &netlink.Route{LinkIndex: ul.Attrs().Index, Dst: ipNet(pfx("203.0.113.0/24")), Gw: ip("192.0.2.200").AsSlice(), Protocol: unix.RTPROT_STATIC}
	if err := h.RouteAdd(hostRoute); err != nil {
		t.Fatalf("add host route: %v", err)
	}
	direct := &netlink.Route{LinkIndex: ul.Attrs().Index, Dst: ipNet(peerB.Blocks[0]), Gw: peerB.UnderlayIP.AsSlice(), Protocol: api.RouteProtocol}
	if err := h.RouteDel(direct); err != nil {
		t.Fatalf("delete direct route by hand: %v", err)
	}
	converged("direct route deleted by hand")
	foreign := &netlink.Route{LinkIndex: ul.Attrs().Index, Dst: ipNet(pfx("10.244.9.0/26")), Gw: ip("192.0.2.200").AsSlice(), Protocol: api.RouteProtocol}
	if err := h.RouteAdd(foreign); err != nil {
		t.Fatalf("add unwanted marked route: %v", err)
	}
	converged("unwanted marked route on the underlay")
	if d := r.Drifts(); d[DriftRoute] < 2 {
		t.Errorf("route drifts %v, want at least 2", d)
	}
	rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: unix.RTPROT_STATIC}, netlink.RT_FILTER_PROTOCOL)
	if err != nil || len(rs) != 1 {
		t.Errorf("host's own route on the underlay: %v, %v; want it kept", rs, err)
	}
}

// runWatched runs a reconciler on ns's netlink with the kernel watch
// feeding it, both stopped (and their errors checked) when the test ends.
func runWatched(t *testing.T, ns *nstest.NS) *Reconciler {
	t.Helper()
	r, err := NewReconciler(ReconcilerConfig{Dataplane: NewNetlinkDataplane(ns.Handle, testLog(t)), Log: testLog(t), Resync: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	nsh := netns.NsHandle(ns.Fd())
	watching := make(chan error, 1)
	go func() { watching <- WatchKernel(ctx, &nsh, api.VXLANDevice, func(ev Event) { r.KernelEvent(ev) }) }()
	running := make(chan error, 1)
	go func() { running <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-running; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := <-watching; err != nil {
			t.Errorf("WatchKernel: %v", err)
		}
	})
	return r
}
