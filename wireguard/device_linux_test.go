package wireguard

import (
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/internal/nstest"
)

// TestOpenRefusesWithoutDevice: a host that can make neither device gets
// one error with both reasons, and no link is left behind. (The kernel
// here has no WireGuard module; a name the kernel refuses stands for a host
// without TUN.)
func TestOpenRefusesWithoutDevice(t *testing.T) {
	ns := nstest.New(t)
	const name = "skein.wg.far.too.long"
	err := ns.Do(func() error {
		_, err := Open(Config{Name: name, MTU: 1420})
		return err
	})
	if err == nil {
		t.Fatal("Open made a device with a name no device can have")
	}
	for _, want := range []string{"wireguard: no device", "kernel:", "userspace: create TUN device " + name} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	links, lerr := ns.Handle.LinkList()
	if lerr != nil {
		t.Fatal(lerr)
	}
	for _, l := range links {
		if l.Attrs().Name != "lo" {
			t.Errorf("link %s (%s) left behind", l.Attrs().Name, l.Type())
		}
	}
}

// TestTunnelBetweenTwoHosts: two namespaces joined by a veth (the IPv4
// underlay), each with the device Open picks (wireguard-go on TUN here)
// and the plan's peers and routes applied for a dual-stack cluster: a
// datagram from one host's device address reaches the other's through the
// tunnel in each family, and both peers then show a handshake.
func TestTunnelBetweenTwoHosts(t *testing.T) {
	nsA, nsB := nstest.Pair(t, netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("192.0.2.2/24"))
	dir := t.TempDir()
	privA, err := RotateKey(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	privB, err := RotateKey(filepath.Join(dir, "b"))
	if err != nil {
		t.Fatal(err)
	}
	pfx := netip.MustParsePrefix
	nodes := []Node{
		{Name: "a", Key: privA.PublicKey().String(), Underlay: netip.MustParseAddr("192.0.2.1"), Blocks: []netip.Prefix{pfx("10.244.0.0/26"), pfx("fd00:10:244::/122")}},
		{Name: "b", Key: privB.PublicKey().String(), Underlay: netip.MustParseAddr("192.0.2.2"), Blocks: []netip.Prefix{pfx("10.244.1.0/26"), pfx("fd00:10:244::40/122")}},
	}
	pools := []netip.Prefix{pfx("10.244.0.0/16"), pfx("fd00:10:244::/56")}
	type host struct {
		ns          *nstest.NS
		self        string
		priv        Key
		addr, addr6 netip.Addr
		dev         Device
	}
	hosts := []*host{
		{ns: nsA, self: "a", priv: privA, addr: netip.MustParseAddr("10.244.0.1"), addr6: netip.MustParseAddr("fd00:10:244::1")},
		{ns: nsB, self: "b", priv: privB, addr: netip.MustParseAddr("10.244.1.1"), addr6: netip.MustParseAddr("fd00:10:244::41")},
	}
	for _, h := range hosts {
		err := h.ns.Do(func() error {
			dev, err := Open(Config{Name: "skein.wg", MTU: 1420, Addr: h.addr, Addr6: h.addr6})
			if err != nil {
				return err
			}
			h.dev = dev
			if err := dev.SetKey(h.priv, 51822); err != nil { // binds its UDP socket here
				return err
			}
			r := NewReconciler(dev, pools, []netip.Addr{h.addr, h.addr6}, time.Minute, nil)
			_, err = r.applyFull(plannerOf(h.self, 51822, nodes).Entries())
			return err
		})
		if err != nil {
			t.Fatalf("host %s: %v", h.self, err)
		}
		t.Cleanup(func() { _ = h.dev.Close(false) })
	}
	for _, fam := range []struct{ net, src, dst string }{
		{"udp4", "10.244.0.1", "10.244.1.1"},
		{"udp6", "fd00:10:244::1", "fd00:10:244::41"},
	} {
		sendThrough(t, nsA, nsB, fam.net, fam.src, fam.dst)
	}
	for _, h := range hosts {
		ps, err := h.dev.Peers()
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != 1 || ps[0].LastHandshake.IsZero() || ps[0].RxBytes == 0 {
			t.Errorf("host %s (%s device): peers %+v, want one with a handshake and bytes received", h.self, h.dev.Kind(), ps)
		}
	}
}

// sendThrough sends datagrams from src in nsA to dst in nsB until one
// arrives (10 s at most).
func sendThrough(t *testing.T, nsA, nsB *nstest.NS, network, src, dst string) {
	t.Helper()
	var ln *net.UDPConn
	if err := nsB.Do(func() (err error) {
		ln, err = net.ListenUDP(network, &net.UDPAddr{IP: net.ParseIP(dst), Port: 9000})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	var c net.Conn
	if err := nsA.Do(func() (err error) {
		c, err = net.DialUDP(network, &net.UDPAddr{IP: net.ParseIP(src)}, &net.UDPAddr{IP: net.ParseIP(dst), Port: 9000})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := c.Write([]byte("through the tunnel")); err != nil {
			t.Fatalf("%s %s -> %s: %v", network, src, dst, err)
		}
		_ = ln.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, _, err := ln.ReadFromUDP(buf)
		if err == nil && string(buf[:n]) == "through the tunnel" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s -> %s: nothing came through the tunnel in 10s (last: %v)", network, src, dst, err)
		}
	}
}

// plannerOf plans nodes for self.
func plannerOf(self string, port int, nodes []Node) *Planner {
	p := NewPlanner(self, port)
	for _, n := range nodes {
		p.Set(n)
	}
	return p
}
