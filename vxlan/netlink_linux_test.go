package vxlan

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/nstest"
)

// kernelLines lists, straight from the kernel, what the overlay owns in ns,
// in the format of State.Lines.
func kernelLines(t *testing.T, ns *nstest.NS, device string, underlay int) []string {
	t.Helper()
	h := ns.Handle
	link, err := h.LinkByName(device)
	if err != nil {
		t.Fatalf("get %s: %v", device, err)
	}
	vx, ok := link.(*netlink.Vxlan)
	if !ok {
		t.Fatalf("%s is a %s, want vxlan", device, link.Type())
	}
	if vx.Flags&net.FlagUp == 0 {
		t.Errorf("%s is down", device)
	}
	idx := vx.Index
	l := fmt.Sprintf("link %s vni %d port %d local %s", vx.Name, vx.VxlanId, vx.Port, vx.SrcAddr)
	if vx.VtepDevIndex != 0 {
		l += fmt.Sprintf(" dev %d", vx.VtepDevIndex)
	}
	if !vx.Learning {
		l += " nolearning"
	}
	l += fmt.Sprintf(" mtu %d address %s", vx.MTU, vx.HardwareAddr)
	lines := []string{l}
	var rest []string

	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("list addresses: %v", err)
	}
	for _, a := range addrs {
		rest = append(rest, "addr "+a.IPNet.String())
	}
	neighs, err := h.NeighList(idx, netlink.FAMILY_V4)
	if err != nil {
		t.Fatalf("list neighbours: %v", err)
	}
	for _, n := range neighs {
		s := fmt.Sprintf("neigh %s lladdr %s", n.IP, n.HardwareAddr)
		if n.State&netlink.NUD_PERMANENT != 0 {
			s += " permanent"
		}
		rest = append(rest, s)
	}
	fdb, err := h.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		t.Fatalf("list fdb: %v", err)
	}
	for _, n := range fdb {
		if n.Flags&netlink.NTF_SELF == 0 || n.State&netlink.NUD_PERMANENT == 0 {
			t.Errorf("fdb entry %+v: want self and permanent", n)
		}
		rest = append(rest, fmt.Sprintf("fdb %s dst %s", n.HardwareAddr, n.IP))
	}
	routes, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatalf("list routes: %v", err)
	}
	for _, r := range routes {
		if r.Protocol != api.RouteProtocol || (r.LinkIndex != idx && r.LinkIndex != underlay) {
			continue
		}
		s := fmt.Sprintf("route %s via %s", r.Dst, r.Gw)
		if r.LinkIndex != idx {
			s += " direct"
		}
		if r.Flags&int(netlink.FLAG_ONLINK) != 0 {
			s += " onlink"
		}
		rest = append(rest, s)
	}
	slices.Sort(rest)
	return append(lines, rest...)
}

// routeLines lists every route of the main table as "dst dev proto".
func routeLines(t *testing.T, h *netlink.Handle) []string {
	t.Helper()
	routes, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatalf("list routes: %v", err)
	}
	var out []string
	for _, r := range routes {
		out = append(out, fmt.Sprintf("%s dev %d proto %d", r.Dst, r.LinkIndex, r.Protocol))
	}
	slices.Sort(out)
	return out
}

func mustLink(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	return l
}

func TestNetlinkDataplane(t *testing.T) {
	ns := nstest.New(t)
	h := ns.Handle
	// The underlay: one end of a veth pair (this kernel may lack dummy).
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ul0"}, PeerName: "ul1"}); err != nil {
		t.Fatalf("add underlay veth: %v", err)
	}
	ns.LinkUp(t, "ul0", pfx("192.0.2.1/24"))
	ns.LinkUp(t, "ul1", netip.Prefix{})
	ul0 := mustLink(t, h, "ul0").Attrs().Index
	ul1 := mustLink(t, h, "ul1").Attrs().Index

	cfg := selfCfg
	cfg.UnderlayIfIndex = ul0
	dp := NewNetlinkDataplane(h, testLog(t))

	// What an earlier run left behind: the device with a stale route,
	// neighbour and FDB entry, next to routes Skein does not own.
	stale := Plan(cfg, []Peer{{Node: "gone", UnderlayIP: ip("192.0.2.9"), VTEPMAC: mac("02:00:00:00:00:99"),
		VTEPIP: ip("10.244.9.0"), Blocks: []netip.Prefix{pfx("10.244.9.0/26")}}})
	staleDP, err := NewReconciler(ReconcilerConfig{Dataplane: dp, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	staleDP.Set(stale)
	if err := staleDP.Sync(t.Context()); err != nil {
		t.Fatalf("program stale state: %v", err)
	}
	vxIdx := mustLink(t, h, api.VXLANDevice).Attrs().Index
	foreign := []*netlink.Route{
		// Ours by protocol, but on another device (think: a pod's veth).
		{LinkIndex: ul1, Dst: ipNet(pfx("10.244.0.10/32")), Protocol: api.RouteProtocol, Scope: netlink.SCOPE_LINK},
		// On our device, but not ours by protocol.
		{LinkIndex: vxIdx, Dst: ipNet(pfx("10.250.0.0/24")), Gw: net.ParseIP("10.244.9.0"), Flags: int(netlink.FLAG_ONLINK), Protocol: unix.RTPROT_STATIC},
	}
	for _, r := range foreign {
		if err := h.RouteAdd(r); err != nil {
			t.Fatalf("add foreign route %s: %v", r.Dst, err)
		}
	}
	foreignLines := []string{
		fmt.Sprintf("10.244.0.10/32 dev %d proto %d", ul1, api.RouteProtocol),
		fmt.Sprintf("10.250.0.0/24 dev %d proto %d", vxIdx, unix.RTPROT_STATIC),
	}

	r, err := NewReconciler(ReconcilerConfig{Dataplane: dp, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	step := func(name string, want State) {
		if want.Link.VNI != cfg.VNI {
			// A new device comes without the old one's routes.
			foreignLines = foreignLines[:1]
		}
		t.Helper()
		r.Set(want)
		if err := r.Sync(t.Context()); err != nil {
			t.Fatalf("%s: Sync() = %v", name, err)
		}
		if d := gocmp.Diff(want.Lines(), kernelLines(t, ns, want.Link.Name, ul0)); d != "" {
			t.Errorf("%s: kernel mismatch (-want +got):\n%s", name, d)
		}
		if err := r.Sync(t.Context()); err != nil {
			t.Fatalf("%s: second Sync() = %v", name, err)
		}
		if ops := r.Debug().LastOps; ops != 0 {
			t.Errorf("%s: second Sync() made %d operations, want 0", name, ops)
		}
		got := routeLines(t, h)
		for _, f := range foreignLines {
			if !slices.Contains(got, f) {
				t.Errorf("%s: foreign route %q gone; routes: %q", name, f, got)
			}
		}
	}

	step("converge, removing stale entries", Plan(cfg, []Peer{peerB, peerC}))
	step("peer removed", Plan(cfg, []Peer{peerB}))
	step("block added", Plan(cfg, []Peer{withBlock(peerB, pfx("10.244.2.0/26")), peerC}))
	moved := peerB
	moved.UnderlayIP = ip("192.0.2.22")
	step("peer moved", Plan(cfg, []Peer{moved, peerC}))
	direct := cfg
	direct.DirectRouting = true
	step("direct routing", Plan(direct, []Peer{peerB, peerC}))
	mtu := cfg
	mtu.MTU = 1400
	mtu.VTEPMAC = mac("02:00:00:00:00:aa")
	mtu.VTEPIP = ip("10.244.0.1")
	step("mtu, mac and address changed in place", Plan(mtu, []Peer{peerB}))
	if idx := mustLink(t, h, api.VXLANDevice).Attrs().Index; idx != vxIdx {
		t.Errorf("device recreated (ifindex %d, was %d) for an in-place change", idx, vxIdx)
	}
	vni := cfg
	vni.VNI = 77
	step("vni changed: device recreated", Plan(vni, []Peer{peerB, peerC}))
	if idx := mustLink(t, h, api.VXLANDevice).Attrs().Index; idx == vxIdx {
		t.Errorf("device kept ifindex %d across a VNI change, want a new device", idx)
	}
}

// TestNetlinkDataplaneReplacesForeignDevice checks that a non-VXLAN device
// squatting the name is replaced.
func TestNetlinkDataplaneReplacesForeignDevice(t *testing.T) {
	ns := nstest.New(t)
	if err := ns.Handle.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: api.VXLANDevice}, PeerName: "peer"}); err != nil {
		t.Fatalf("add squatter: %v", err)
	}
	dp := NewNetlinkDataplane(ns.Handle, testLog(t))
	want := Plan(selfCfg, []Peer{peerB})
	want.Link.UnderlayIndex = 0
	if _, err := dp.EnsureLink(t.Context(), want.Link, want.Addr, want.Addr6); err != nil {
		t.Fatalf("EnsureLink() = %v", err)
	}
	if _, ok := mustLink(t, ns.Handle, api.VXLANDevice).(*netlink.Vxlan); !ok {
		t.Errorf("%s is not a vxlan device after EnsureLink", api.VXLANDevice)
	}
}

// TestOverlayCarriesTraffic joins two namespaces ("hosts") with a veth
// underlay, programs each with a plan naming the other, and sends a UDP
// datagram between "pod" addresses (on lo) across the overlay and back.
func TestOverlayCarriesTraffic(t *testing.T) {
	for _, directRouting := range []bool{false, true} {
		t.Run(fmt.Sprintf("direct=%t", directRouting), func(t *testing.T) {
			nsA, nsB := nstest.Pair(t, pfx("192.0.2.1/24"), pfx("192.0.2.2/24"))
			hosts := []struct {
				ns   *nstest.NS
				peer Peer
				pod  netip.Addr
			}{
				{nsA, peerA, ip("10.244.0.10")},
				{nsB, peerB, ip("10.244.0.74")},
			}
			for i, me := range hosts {
				other := hosts[1-i]
				cfg := Config{
					Node:            me.peer.Node,
					UnderlayIP:      me.peer.UnderlayIP,
					UnderlayIfIndex: mustLink(t, me.ns.Handle, "veth0").Attrs().Index,
					MTU:             1500 - api.VXLANOverhead,
					VTEPMAC:         me.peer.VTEPMAC,
					VTEPIP:          me.peer.VTEPIP,
					DirectRouting:   directRouting,
				}
				r, err := NewReconciler(ReconcilerConfig{Dataplane: NewNetlinkDataplane(me.ns.Handle, testLog(t))})
				if err != nil {
					t.Fatal(err)
				}
				r.Set(Plan(cfg, []Peer{me.peer, other.peer}))
				if err := r.Sync(t.Context()); err != nil {
					t.Fatalf("sync %s: %v", me.peer.Node, err)
				}
				me.ns.LinkUp(t, "lo", netip.PrefixFrom(me.pod, 32))
			}

			var server *net.UDPConn
			if err := nsB.Do(func() (err error) {
				server, err = net.ListenUDP("udp4", &net.UDPAddr{IP: hosts[1].pod.AsSlice()})
				return err
			}); err != nil {
				t.Fatalf("listen in %s: %v", nsB.Name, err)
			}
			t.Cleanup(func() { _ = server.Close() })
			go func() { // echo once
				buf := make([]byte, 64)
				n, from, err := server.ReadFromUDP(buf)
				if err == nil {
					_, _ = server.WriteToUDP(buf[:n], from) // the client reports a lost echo
				}
			}()

			var client *net.UDPConn
			if err := nsA.Do(func() (err error) {
				client, err = net.DialUDP("udp4", &net.UDPAddr{IP: hosts[0].pod.AsSlice()}, server.LocalAddr().(*net.UDPAddr))
				return err
			}); err != nil {
				t.Fatalf("dial from %s: %v", nsA.Name, err)
			}
			t.Cleanup(func() { _ = client.Close() })
			if err := client.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			if _, err := client.Write([]byte("across the overlay")); err != nil {
				t.Fatalf("send: %v", err)
			}
			buf := make([]byte, 64)
			n, err := client.Read(buf)
			if err != nil {
				t.Fatalf("no echo from %s to %s: %v", hosts[1].pod, hosts[0].pod, err)
			}
			if got := string(buf[:n]); got != "across the overlay" {
				t.Errorf("echo = %q", got)
			}

			// The datagrams took the path the plan chose.
			rx := mustLink(t, nsB.Handle, api.VXLANDevice).Attrs().Statistics.RxPackets
			if directRouting && rx != 0 {
				t.Errorf("direct routing: %d packets came through the tunnel, want 0", rx)
			}
			if !directRouting && rx == 0 {
				t.Errorf("overlay: no packet came through the tunnel")
			}
		})
	}
}
