package vxlan

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/nstest"
)

// TestOverlayOverIPv6Underlay: two IPv6-only hosts (no IPv4 on the
// underlay) with dual-stack blocks; the device is made with an IPv6 local
// address, its FDB entry points at the peer's IPv6 underlay address (as
// observed back from the kernel), and UDP between pod addresses of both
// families crosses the tunnel and is answered. A deleted FDB entry is put
// back by the next sync.
func TestOverlayOverIPv6Underlay(t *testing.T) {
	nsA, nsB := nstest.Pair(t, pfx("2001:db8::1/64"), pfx("2001:db8::2/64"))
	a, b := v6Peer(peerA, "2001:db8::1", "fd00::", "fd00::/122"), v6Peer(peerB, "2001:db8::2", "fd00::40", "fd00::40/122")
	hosts := []struct {
		ns   *nstest.NS
		peer Peer
		pods []netip.Addr
		dp   *NetlinkDataplane
		rec  *Reconciler
	}{
		{ns: nsA, peer: a, pods: []netip.Addr{ip("10.244.0.10"), ip("fd00::10")}},
		{ns: nsB, peer: b, pods: []netip.Addr{ip("10.244.0.74"), ip("fd00::4a")}},
	}
	for i := range hosts {
		me, other := &hosts[i], hosts[1-i]
		cfg := Config{
			Node:            me.peer.Node,
			UnderlayIP:      me.peer.UnderlayIP,
			UnderlayIP6:     me.peer.UnderlayIP6,
			UnderlayIfIndex: mustLink(t, me.ns.Handle, "veth0").Attrs().Index,
			MTU:             1500 - api.VXLANOverhead6,
			VTEPMAC:         me.peer.VTEPMAC,
			VTEPIP:          me.peer.VTEPIP,
			VTEPIP6:         me.peer.VTEPIP6,
		}
		me.dp = NewNetlinkDataplane(me.ns.Handle, testLog(t))
		var err error
		if me.rec, err = NewReconciler(ReconcilerConfig{Dataplane: me.dp}); err != nil {
			t.Fatal(err)
		}
		want := Plan(cfg, []Peer{me.peer, other.peer})
		me.rec.Set(want)
		if err := me.rec.Sync(t.Context()); err != nil {
			t.Fatalf("sync %s: %v", me.peer.Node, err)
		}
		have := observe(t, me.dp, me.ns, cfg.UnderlayIfIndex)
		if d := gocmp.Diff(want.Lines(), have.Lines()); d != "" {
			t.Errorf("%s: kernel state (-want +have):\n%s", me.peer.Node, d)
		}
		_, fdbOK := have.FDB[FDBEntry{MAC: other.peer.VTEPMAC, Dst: other.peer.UnderlayIP}.Key()]
		if have.Link.Local != me.peer.UnderlayIP || !fdbOK {
			t.Errorf("%s: device local %s and FDB %v, want IPv6 local and an FDB entry to %s", me.peer.Node, have.Link.Local, have.FDB, other.peer.UnderlayIP)
		}
		me.ns.LinkUp(t, "lo", netip.Prefix{})
		lo := mustLink(t, me.ns.Handle, "lo")
		for _, pod := range me.pods {
			a := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(pod, pod.BitLen())), Flags: unix.IFA_F_NODAD}
			if err := me.ns.Handle.AddrAdd(lo, a); err != nil {
				t.Fatalf("add %s to lo: %v", pod, err)
			}
		}
	}
	for f := range 2 {
		udpEcho(t, nsA, nsB, hosts[0].pods[f], hosts[1].pods[f])
	}
	if rx := mustLink(t, nsB.Handle, api.VXLANDevice).Attrs().Statistics.RxPackets; rx == 0 {
		t.Errorf("no packet came through the tunnel")
	}

	// Drift: the FDB entry to the IPv6 peer deleted by hand is seen by the
	// kernel watch and put back.
	me := hosts[0]
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	nsh := netns.NsHandle(me.ns.Fd())
	watching, running := make(chan error, 1), make(chan error, 1)
	go func() { watching <- WatchKernel(ctx, &nsh, api.VXLANDevice, func(ev Event) { me.rec.KernelEvent(ev) }) }()
	go func() { running <- me.rec.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-running; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := <-watching; err != nil {
			t.Errorf("WatchKernel: %v", err)
		}
	}()
	time.Sleep(100 * time.Millisecond) // the watch subscribes
	underlay := mustLink(t, me.ns.Handle, "veth0").Attrs().Index
	fdb := FDBEntry{MAC: b.VTEPMAC, Dst: b.UnderlayIP}
	del := &netlink.Neigh{LinkIndex: mustLink(t, me.ns.Handle, api.VXLANDevice).Attrs().Index, Family: unix.AF_BRIDGE,
		HardwareAddr: fdb.MAC, IP: fdb.Dst.AsSlice(), Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT}
	if err := me.ns.Handle.NeighDel(del); err != nil {
		t.Fatalf("delete FDB entry %s by hand: %v", fdb, err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, ok := observe(t, me.dp, me.ns, underlay).FDB[fdb.Key()]; ok && me.rec.Drifts()[DriftFDB] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("FDB entry %s not repaired within 2 s (drifts %v)", fdb, me.rec.Drifts())
		}
		time.Sleep(10 * time.Millisecond)
	}
	udpEcho(t, nsA, nsB, hosts[0].pods[1], hosts[1].pods[1])
}

func observe(t *testing.T, dp *NetlinkDataplane, ns *nstest.NS, underlay int) State {
	t.Helper()
	devs := Devices{Overlay: mustLink(t, ns.Handle, api.VXLANDevice).Attrs().Index, Underlay: underlay}
	st, err := dp.Observe(t.Context(), devs)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// udpEcho sends datagrams from src in nsA to an echo server on dst in nsB
// until one is answered (bounded): the first packets after the devices are
// made are sometimes dropped; what is tested is that the path works.
func udpEcho(t *testing.T, nsA, nsB *nstest.NS, src, dst netip.Addr) {
	t.Helper()
	network := "udp4"
	if dst.Is6() {
		network = "udp6"
	}
	var server *net.UDPConn
	if err := nsB.Do(func() (err error) {
		server, err = net.ListenUDP(network, &net.UDPAddr{IP: dst.AsSlice()})
		return err
	}); err != nil {
		t.Fatalf("listen on %s in %s: %v", dst, nsB.Name, err)
	}
	defer func() { _ = server.Close() }()
	go func() { // echo until the server closes
		buf := make([]byte, 64)
		for {
			n, from, err := server.ReadFromUDP(buf)
			if err != nil {
				return
			}
			_, _ = server.WriteToUDP(buf[:n], from) // the client reports a lost echo
		}
	}()
	var client *net.UDPConn
	if err := nsA.Do(func() (err error) {
		client, err = net.DialUDP(network, &net.UDPAddr{IP: src.AsSlice()}, server.LocalAddr().(*net.UDPAddr))
		return err
	}); err != nil {
		t.Fatalf("dial from %s in %s: %v", src, nsA.Name, err)
	}
	defer func() { _ = client.Close() }()
	if err := client.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	msg := "across the overlay from " + src.String()
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	go func() {
		for {
			_, _ = client.Write([]byte(msg)) // the read reports a lost echo
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	buf := make([]byte, 64)
	n, err := client.Read(buf)
	if err != nil {
		t.Fatalf("no echo from %s to %s: %v", dst, src, err)
	}
	if got := string(buf[:n]); !strings.EqualFold(got, msg) {
		t.Errorf("echo = %q, want %q", got, msg)
	}
}
