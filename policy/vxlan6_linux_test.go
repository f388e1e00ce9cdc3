package policy

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/skeinnet/skein/internal/nstest"
)

// TestVXLANFilterTraffic sends UDP to the VXLAN port of a host from a
// cluster node's underlay address and from a stranger's, over IPv4 and over
// IPv6 underlays: only the node's arrive.
func TestVXLANFilterTraffic(t *testing.T) {
	host, other := nstest.Pair(t, netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("192.0.2.2/24"))
	hl, err := host.Handle.LinkByName("veth0")
	if err != nil {
		t.Fatal(err)
	}
	ol, err := other.Handle.LinkByName("veth0")
	if err != nil {
		t.Fatal(err)
	}
	hostIP6 := netip.MustParseAddr("fd00:5::1")
	node4, node6 := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("fd00:5::2")
	stranger4, stranger6 := netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("fd00:5::3")
	addrNoDAD(t, host, hl, hostIP6, 64)
	for _, a := range []netip.Addr{node6, stranger6} {
		addrNoDAD(t, other, ol, a, 64)
	}
	if err := other.Handle.AddrAdd(ol, &netlink.Addr{IPNet: &net.IPNet{IP: stranger4.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	// Static neighbors both ways: the test is about the filter, not
	// neighbor discovery.
	for _, n := range []struct {
		ns   *nstest.NS
		link netlink.Link
		ip   netip.Addr
		mac  net.HardwareAddr
	}{{other, ol, hostIP6, hl.Attrs().HardwareAddr}, {host, hl, node6, ol.Attrs().HardwareAddr}, {host, hl, stranger6, ol.Attrs().HardwareAddr}} {
		if err := n.ns.Handle.NeighSet(&netlink.Neigh{LinkIndex: n.link.Attrs().Index, Family: netlink.FAMILY_V6, IP: n.ip.AsSlice(), HardwareAddr: n.mac, State: netlink.NUD_PERMANENT}); err != nil {
			t.Fatal(err)
		}
	}
	var pc net.PacketConn
	if err := host.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp", ":4789")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	// arrives sends from src to the host's address of its family and
	// reports whether the host received it within wait.
	arrives := func(src netip.Addr, wait time.Duration) bool {
		t.Helper()
		dst := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), 4789)
		if src.Is6() {
			dst = netip.AddrPortFrom(hostIP6, 4789)
		}
		var c net.Conn
		if err := other.Do(func() error {
			d := net.Dialer{LocalAddr: &net.UDPAddr{IP: src.AsSlice()}}
			var err error
			c, err = d.Dial("udp", dst.String())
			return err
		}); err != nil {
			t.Fatalf("dial from %s: %v", src, err)
		}
		defer c.Close()
		buf := make([]byte, 64)
		deadline := time.Now().Add(wait)
		for time.Now().Before(deadline) {
			_, _ = c.Write([]byte(src.String())) // a drop shows as nothing received
			_ = pc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			for {
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					break
				}
				if string(buf[:n]) == src.String() {
					return true
				}
			}
		}
		return false
	}
	for _, src := range []netip.Addr{node4, stranger4, node6, stranger6} {
		if !arrives(src, allowWait) {
			t.Fatalf("no table: UDP to the VXLAN port from %s did not arrive", src)
		}
	}
	ap := NewApplier(newConn(t, host), nil)
	if err := ap.Apply(t.Context(), &Program{Sets: map[string]Set{}, VXLAN: &VXLANFilter{Port: 4789, Peers: []netip.Addr{node4, node6}}}); err != nil {
		t.Fatal(err)
	}
	for _, src := range []netip.Addr{node4, node6} {
		if !arrives(src, allowWait) {
			t.Errorf("UDP to the VXLAN port from node %s did not arrive", src)
		}
	}
	for _, src := range []netip.Addr{stranger4, stranger6} {
		if arrives(src, denyWait) {
			t.Errorf("UDP to the VXLAN port from stranger %s arrived", src)
		}
	}
}
