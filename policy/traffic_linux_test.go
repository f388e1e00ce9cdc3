package policy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/nstest"
)

const (
	// allowWait bounds a connection that must succeed; denyWait is how long
	// a connection that must fail is given (its SYN is dropped, so it can
	// only time out).
	allowWait = 5 * time.Second
	denyWait  = time.Second
)

var gateway = netip.MustParseAddr(api.GatewayIP)

// podNS is a container namespace plumbed like skein-cni does it.
type podNS struct {
	ns    *nstest.NS
	ip    netip.Addr
	iface string // host side
}

// plumb connects a fresh namespace to host with the routed-veth layout:
// ip/32 on eth0, 169.254.1.1 as gateway through a permanent neighbour entry,
// a /32 route on the host veth.
func plumb(t *testing.T, host *nstest.NS, iface string, ip netip.Addr) podNS {
	t.Helper()
	p := podNS{ns: nstest.New(t), ip: ip, iface: iface}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: iface}, PeerName: "eth0", PeerNamespace: netlink.NsFd(p.ns.Fd())}
	if err := host.Handle.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s: %v", iface, err)
	}
	host.LinkUp(t, iface, netip.Prefix{})
	p.ns.LinkUp(t, "eth0", netip.PrefixFrom(ip, 32))
	hostLink, err := host.Handle.LinkByName(iface)
	if err != nil {
		t.Fatal(err)
	}
	eth0, err := p.ns.Handle.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	routes := []struct {
		h     *netlink.Handle
		route *netlink.Route
	}{
		{host.Handle, &netlink.Route{LinkIndex: hostLink.Attrs().Index, Dst: hostPrefix(ip), Scope: netlink.SCOPE_LINK}},
		{p.ns.Handle, &netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: hostPrefix(gateway), Scope: netlink.SCOPE_LINK}},
		{p.ns.Handle, &netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: gateway.AsSlice()}},
	}
	for _, r := range routes {
		if err := r.h.RouteAdd(r.route); err != nil {
			t.Fatalf("add route %v: %v", r.route, err)
		}
	}
	neigh := &netlink.Neigh{LinkIndex: eth0.Attrs().Index, IP: gateway.AsSlice(), HardwareAddr: hostLink.Attrs().HardwareAddr, State: netlink.NUD_PERMANENT}
	if err := p.ns.Handle.NeighSet(neigh); err != nil {
		t.Fatalf("add neighbour: %v", err)
	}
	return p
}

func hostPrefix(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}
}

// serve runs a TCP echo server in ns on addr until the test ends.
func serve(t *testing.T, ns *nstest.NS, addr netip.AddrPort) {
	t.Helper()
	var l net.Listener
	if err := ns.Do(func() error {
		var err error
		l, err = net.Listen("tcp", addr.String())
		return err
	}); err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = l.Close() }) // ends the accept loop
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c) // echo until the client closes
			}()
		}
	}()
}

// dial connects from ns (from src, if valid) to dst within wait and checks
// the connection echoes.
func dial(ns *nstest.NS, src netip.Addr, dst netip.AddrPort, wait time.Duration) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		d := net.Dialer{Timeout: wait}
		if src.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
		var err error
		c, err = d.Dial("tcp", dst.String())
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := echo(c, wait); err != nil {
		_ = c.Close() // the echo error is the one to report
		return nil, err
	}
	return c, nil
}

func echo(c net.Conn, wait time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(wait)); err != nil {
		return err
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ping" {
		return errors.New("echo mismatch")
	}
	return nil
}

func expectConnect(t *testing.T, what string, ns *nstest.NS, src netip.Addr, dst netip.AddrPort) {
	t.Helper()
	c, err := dial(ns, src, dst, allowWait)
	if err != nil {
		t.Errorf("%s: connect to %s: %v, want success", what, dst, err)
		return
	}
	_ = c.Close() // probe done
}

func expectBlocked(t *testing.T, what string, ns *nstest.NS, src netip.Addr, dst netip.AddrPort) {
	t.Helper()
	c, err := dial(ns, src, dst, denyWait)
	if err == nil {
		_ = c.Close() // probe done
		t.Errorf("%s: connect to %s succeeded, want it blocked", what, dst)
	}
}

// TestTraffic enforces programs on a host namespace with two routed pods and
// checks real TCP connections, with conntrack following all pod traffic and
// with TCP between pods no policy selects left out of it.
func TestTraffic(t *testing.T) {
	t.Run("track all", func(t *testing.T) { testTraffic(t, nil) })
	t.Run("untrack unselected", func(t *testing.T) { testTraffic(t, []netip.Prefix{netip.MustParsePrefix("10.99.0.0/16")}) })
}

// tcpFlows counts the TCP conntrack entries between a and b in ns.
func tcpFlows(t *testing.T, ns *nstest.NS, a, b netip.Addr) int {
	t.Helper()
	return flows(t, ns, a, b, false)
}

// flows counts the TCP conntrack entries between a and b in ns, only those
// that a opened (conntrack saw a's SYN first) when opened is set.
func flows(t *testing.T, ns *nstest.NS, a, b netip.Addr, opened bool) int {
	t.Helper()
	flows, err := ns.Handle.ConntrackTableList(netlink.ConntrackTable, netlink.FAMILY_V4)
	if err != nil {
		t.Fatalf("list conntrack in %s: %v", ns.Name, err)
	}
	n := 0
	for _, f := range flows {
		src, _ := netip.AddrFromSlice(f.Forward.SrcIP.To4())
		dst, _ := netip.AddrFromSlice(f.Forward.DstIP.To4())
		if f.Forward.Protocol == 6 && (src == a && dst == b || !opened && src == b && dst == a) {
			n++
		}
	}
	return n
}

func testTraffic(t *testing.T, pods []netip.Prefix) {
	host := nstest.New(t)
	if err := host.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	}); err != nil {
		t.Fatalf("enable forwarding in %s: %v", host.Name, err)
	}
	// The host's own address, the source of its connections to pods.
	hostIP := netip.MustParseAddr("192.168.77.1")
	host.LinkUp(t, "lo", netip.PrefixFrom(hostIP, 32))

	a := plumb(t, host, "sk0000000000a", netip.MustParseAddr("10.99.0.2"))
	b := plumb(t, host, "sk0000000000b", netip.MustParseAddr("10.99.0.3"))
	for _, port := range []uint16{8080, 8081} {
		serve(t, a.ns, netip.AddrPortFrom(a.ip, port))
		serve(t, b.ns, netip.AddrPortFrom(b.ip, port))
	}
	b8080, b8081 := netip.AddrPortFrom(b.ip, 8080), netip.AddrPortFrom(b.ip, 8081)
	// A host address inside the pod pool, as a VTEP address is.
	vtep := netip.MustParseAddr("10.99.0.1")
	host.LinkUp(t, "lo", netip.PrefixFrom(vtep, 32))
	serve(t, host, netip.AddrPortFrom(vtep, 8080))

	// A second address in a, routed back to a by the host, for spoofing.
	spoofed := netip.MustParseAddr("10.99.0.99")
	eth0, err := a.ns.Handle.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ns.Handle.AddrAdd(eth0, &netlink.Addr{IPNet: hostPrefix(spoofed)}); err != nil {
		t.Fatal(err)
	}
	aLink, err := host.Handle.LinkByName(a.iface)
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Handle.RouteAdd(&netlink.Route{LinkIndex: aLink.Attrs().Index, Dst: hostPrefix(spoofed), Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatal(err)
	}

	// Controls without any table: everything connects, spoofing included.
	expectConnect(t, "no table: a to b", a.ns, netip.Addr{}, b8080)
	expectConnect(t, "no table: a to b from a spoofed address", a.ns, spoofed, b8080)

	ap := NewApplierWith(ApplierConfig{Conn: newConn(t, host), PodCIDRs: pods})
	ctx := context.Background()
	apply := func(docs string) {
		t.Helper()
		in := withPolicies(t, Input{
			Namespaces: []api.Namespace{{Name: "x"}},
			Endpoints: []api.Endpoint{
				{Namespace: "x", Name: "a", Labels: map[string]string{"pod": "a"}, IPs: []netip.Addr{a.ip}, Node: "h", HostIface: a.iface},
				{Namespace: "x", Name: "b", Labels: map[string]string{"pod": "b"}, IPs: []netip.Addr{b.ip}, Node: "h", HostIface: b.iface},
			},
			Node: "h",
		}, docs)
		if err := ap.Apply(ctx, Compile(in)); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}

	apply("")
	expectConnect(t, "no policy: a to b", a.ns, netip.Addr{}, b8080)
	expectBlocked(t, "no policy: a to b from a spoofed address", a.ns, spoofed, b8080)
	// Opened while no policy selects a or b: untracked with pods set.
	early, err := dial(a.ns, netip.Addr{}, b8080, allowWait)
	if err != nil {
		t.Fatalf("open a connection before any policy: %v", err)
	}
	defer early.Close()
	switch n := tcpFlows(t, host, a.ip, b.ip); {
	case pods == nil && n == 0:
		t.Errorf("no TCP conntrack entries between a and b, want them tracked")
	case pods != nil && n != 0:
		t.Errorf("%d TCP conntrack entries between a and b, want none: no policy selects them", n)
	}
	expectConnect(t, "no policy: a to the host's pool address", a.ns, netip.Addr{}, netip.AddrPortFrom(vtep, 8080))
	// Entries the host's replies open (OUTPUT is tracked) do not count.
	if n := flows(t, host, a.ip, vtep, true); n == 0 {
		t.Errorf("no TCP conntrack entries from a to the host's pool address, want them tracked")
	}

	apply(`
metadata: {name: b-from-a-8080, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: a}}}], ports: [{port: 8080}]}]`)
	expectConnect(t, "b allows a on 8080", a.ns, netip.Addr{}, b8080)
	expectBlocked(t, "b allows a on 8080 only", a.ns, netip.Addr{}, b8081)

	long, err := dial(a.ns, netip.Addr{}, b8080, allowWait)
	if err != nil {
		t.Fatalf("open a long-lived connection: %v", err)
	}
	defer long.Close()

	apply(`
metadata: {name: b-deny-all, namespace: x}
spec: {podSelector: {matchLabels: {pod: b}}}`)
	expectBlocked(t, "b denies all ingress: new connection", a.ns, netip.Addr{}, b8080)
	if err := echo(long, allowWait); err != nil {
		t.Errorf("established connection after the policy flip: %v, want it to survive", err)
	}
	if err := echo(early, allowWait); err != nil {
		t.Errorf("connection opened before any policy, after b's deny-all: %v, want it to survive", err)
	}
	if n := tcpFlows(t, host, a.ip, b.ip); n == 0 {
		t.Errorf("no TCP conntrack entries between a and b once b is selected, want them tracked")
	}
	expectConnect(t, "host to b despite b's deny-all", host, netip.Addr{}, b8080)
	if err := long.Close(); err != nil {
		t.Fatal(err)
	}
	expectBlocked(t, "b denies all ingress: after the long connection closed", a.ns, netip.Addr{}, b8080)

	apply(`
metadata: {name: a-deny-egress, namespace: x}
spec: {podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress]}`)
	expectBlocked(t, "a denies all egress", a.ns, netip.Addr{}, b8080)
	// Replies of connections to a pass although a's egress denies all.
	expectConnect(t, "b to a despite a's egress deny", b.ns, netip.Addr{}, netip.AddrPortFrom(a.ip, 8080))
	expectConnect(t, "host to a", host, netip.Addr{}, netip.AddrPortFrom(a.ip, 8081))

	if err := ap.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	expectConnect(t, "table deleted: a to b", a.ns, netip.Addr{}, b8080)
}

// TestTrafficIfaceMatch checks that the anti-spoofing drop only takes Skein
// host interfaces: "sk" plus 11 characters, not other devices whose names
// start with "sk" (the overlay device is skein.vxlan).
func TestTrafficIfaceMatch(t *testing.T) {
	host := nstest.New(t)
	if err := host.Do(func() error {
		return os.WriteFile(filepath.Join("/proc/sys/net/ipv4/ip_forward"), []byte("1"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	// "skein.vxlan" is a veth here: the name is what matters.
	other := plumb(t, host, api.VXLANDevice, netip.MustParseAddr("10.99.1.2"))
	sk := plumb(t, host, "sk00000000000", netip.MustParseAddr("10.99.1.3"))
	serve(t, sk.ns, netip.AddrPortFrom(sk.ip, 8080))
	serve(t, other.ns, netip.AddrPortFrom(other.ip, 8080))

	ap := NewApplier(newConn(t, host), nil)
	// Only the sk endpoint is known: traffic from the other device has no
	// anti-spoofing entry, but must not be dropped.
	in := Input{Endpoints: []api.Endpoint{{Namespace: "x", Name: "sk", IPs: []netip.Addr{sk.ip}, Node: "h", HostIface: sk.iface}}}
	if err := ap.Apply(context.Background(), Compile(in)); err != nil {
		t.Fatal(err)
	}
	expectConnect(t, "from skein.vxlan", other.ns, netip.Addr{}, netip.AddrPortFrom(sk.ip, 8080))
	expectConnect(t, "from a Skein host interface", sk.ns, netip.Addr{}, netip.AddrPortFrom(other.ip, 8080))
}
