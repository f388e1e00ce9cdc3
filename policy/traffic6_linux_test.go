package policy

import (
	"context"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/nstest"
)

// gateway6 is the IPv6 gateway of the routed veth in these tests: a
// link-local address on the host side, resolved by neighbor discovery.
var gateway6 = netip.MustParseAddr("fe80::1")

// pod6 is a dual-stack container namespace.
type pod6 struct {
	podNS
	ip6 netip.Addr
}

// addrNoDAD adds a (as prefix bits) to link in ns, usable at once (no
// duplicate address detection).
func addrNoDAD(t *testing.T, ns *nstest.NS, link netlink.Link, a netip.Addr, bits int) {
	t.Helper()
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, 128)}, Flags: unix.IFA_F_NODAD}
	if err := ns.Handle.AddrAdd(link, addr); err != nil {
		t.Fatalf("add %s/%d to %s in %s: %v", a, bits, link.Attrs().Name, ns.Name, err)
	}
}

// plumb6 plumbs a pod like plumb and adds IPv6: ip6/128 on eth0, a default
// route via fe80::1 (on the host veth), a /128 route on the host. Neighbor
// discovery resolves both ends: no static neighbor entries.
func plumb6(t *testing.T, host *nstest.NS, iface string, ip4, ip6 netip.Addr) pod6 {
	t.Helper()
	p := pod6{podNS: plumb(t, host, iface, ip4), ip6: ip6}
	hostLink, err := host.Handle.LinkByName(iface)
	if err != nil {
		t.Fatal(err)
	}
	eth0, err := p.ns.Handle.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	addrNoDAD(t, host, hostLink, gateway6, 64)
	addrNoDAD(t, p.ns, eth0, ip6, 128)
	if err := host.Handle.RouteAdd(&netlink.Route{LinkIndex: hostLink.Attrs().Index, Dst: prefix6(ip6), Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatalf("add host route to %s: %v", ip6, err)
	}
	def := &netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, Gw: gateway6.AsSlice()}
	if err := p.ns.Handle.RouteAdd(def); err != nil {
		t.Fatalf("add default route via %s: %v", gateway6, err)
	}
	return p
}

func prefix6(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(128, 128)}
}

func sysctl(t *testing.T, ns *nstest.NS, path, value string) {
	t.Helper()
	if err := ns.Do(func() error { return os.WriteFile(path, []byte(value), 0o644) }); err != nil {
		t.Fatalf("set %s in %s: %v", path, ns.Name, err)
	}
}

// flushNeigh6 forgets every IPv6 neighbor of ns, so that the next packets
// resolve their next hop with neighbor discovery again.
func flushNeigh6(t *testing.T, ns *nstest.NS) {
	t.Helper()
	neighs, err := ns.Handle.NeighList(0, netlink.FAMILY_V6)
	if err != nil {
		t.Fatalf("list neighbors in %s: %v", ns.Name, err)
	}
	for _, n := range neighs {
		if n.State&(netlink.NUD_NOARP|netlink.NUD_PERMANENT) != 0 || n.IP.IsMulticast() {
			continue
		}
		if err := ns.Handle.NeighDel(&n); err != nil {
			t.Fatalf("delete neighbor %s in %s: %v", n.IP, ns.Name, err)
		}
	}
}

// neighResolved reports whether ns has a link-layer address for a on link.
func neighResolved(t *testing.T, ns *nstest.NS, link string, a netip.Addr) bool {
	t.Helper()
	l, err := ns.Handle.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	neighs, err := ns.Handle.NeighList(l.Attrs().Index, netlink.FAMILY_V6)
	if err != nil {
		t.Fatalf("list neighbors in %s: %v", ns.Name, err)
	}
	for _, n := range neighs {
		if ip, _ := netip.AddrFromSlice(n.IP); ip == a && len(n.HardwareAddr) > 0 && n.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) == 0 {
			return true
		}
	}
	return false
}

// sendRA sends a router advertisement (router lifetime 1800 s) from ns's
// eth0, from link-local src, to all nodes.
func sendRA(t *testing.T, ns *nstest.NS, src netip.Addr) {
	t.Helper()
	// type, code, checksum (the kernel fills it), hop limit, flags, router
	// lifetime, reachable time, retransmit timer.
	ra := []byte{134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0}
	sendICMP6(t, ns, src, netip.MustParseAddr("ff02::1"), ra)
}

// sendNA sends a solicited, overriding neighbor advertisement from ns's
// eth0, from src to dst, claiming target for eth0's link-layer address.
func sendNA(t *testing.T, ns *nstest.NS, src, dst, target netip.Addr) {
	t.Helper()
	eth0, err := ns.Handle.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	na := []byte{136, 0, 0, 0, 0x60, 0, 0, 0}
	tgt := target.As16()
	na = append(na, tgt[:]...)
	na = append(na, 2, 1) // target link-layer address option
	na = append(na, eth0.Attrs().HardwareAddr...)
	sendICMP6(t, ns, src, dst, na)
}

// sendICMP6 sends msg as ICMPv6, hop limit 255 (as neighbor discovery
// wants), from ns's eth0, from src to dst.
func sendICMP6(t *testing.T, ns *nstest.NS, src, dst netip.Addr, msg []byte) {
	t.Helper()
	eth0, err := ns.Handle.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	zone := uint32(eth0.Attrs().Index)
	err = ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, opt := range []int{unix.IPV6_MULTICAST_HOPS, unix.IPV6_UNICAST_HOPS} {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, opt, 255); err != nil {
				return err
			}
		}
		if err := unix.Bind(fd, &unix.SockaddrInet6{Addr: src.As16(), ZoneId: zone}); err != nil {
			return err
		}
		return unix.Sendto(fd, msg, 0, &unix.SockaddrInet6{Addr: dst.As16(), ZoneId: zone})
	})
	if err != nil {
		t.Fatalf("send ICMPv6 type %d from %s: %v", msg[0], ns.Name, err)
	}
}

// raRoute reports whether host has a default route via gw on link.
func raRoute(t *testing.T, host *nstest.NS, link string, gw netip.Addr) bool {
	t.Helper()
	l, err := host.Handle.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := host.Handle.RouteList(l, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if g, _ := netip.AddrFromSlice(r.Gw); g == gw && (r.Dst == nil || r.Dst.IP.IsUnspecified()) {
			return true
		}
	}
	return false
}

// ping6 sends ICMPv6 echo requests from ns's eth0, from src to dst, and
// reports whether a reply came within wait.
func ping6(t *testing.T, ns *nstest.NS, src, dst netip.Addr, wait time.Duration) bool {
	t.Helper()
	eth0, err := ns.Handle.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	zone := uint32(eth0.Attrs().Index)
	if !dst.IsLinkLocalUnicast() {
		zone = 0
	}
	var fd int
	err = ns.Do(func() error {
		var err error
		if fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrInet6{Addr: src.As16(), ZoneId: zone})
	})
	if err != nil {
		t.Fatalf("echo socket in %s: %v", ns.Name, err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	req := []byte{128, 0, 0, 0, 0x5c, 0x6b, 0, 1}
	buf := make([]byte, 1500)
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if err := unix.Sendto(fd, req, 0, &unix.SockaddrInet6{Addr: dst.As16(), ZoneId: zone}); err != nil {
			t.Fatalf("send echo request to %s: %v", dst, err)
		}
		for {
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				break // timeout: send again
			}
			if f, ok := from.(*unix.SockaddrInet6); ok && netip.AddrFrom16(f.Addr) == dst && n >= 8 && buf[0] == 129 && buf[4] == req[4] && buf[5] == req[5] {
				return true
			}
		}
	}
	return false
}

// dhcp6Reply sends UDP from port 547 (a DHCPv6 server's) of pod a's
// link-local src to the host's gateway6 port 546 (a client's) and reports
// whether the host received it within wait.
func dhcp6Reply(t *testing.T, host *nstest.NS, a pod6, src netip.Addr, wait time.Duration) bool {
	t.Helper()
	var pc net.PacketConn
	if err := host.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp6", "[::]:546")
		return err
	}); err != nil {
		t.Fatalf("listen on UDP 546 in the host: %v", err)
	}
	defer pc.Close()
	var c net.Conn
	if err := a.ns.Do(func() error {
		d := net.Dialer{LocalAddr: &net.UDPAddr{IP: src.AsSlice(), Port: 547, Zone: "eth0"}}
		var err error
		c, err = d.Dial("udp6", "[fe80::1%eth0]:546")
		return err
	}); err != nil {
		t.Fatalf("dial from UDP 547 in %s: %v", a.ns.Name, err)
	}
	defer c.Close()
	got := make(chan bool, 1)
	go func() {
		buf := make([]byte, 64)
		_ = pc.SetReadDeadline(time.Now().Add(wait))
		_, _, err := pc.ReadFrom(buf)
		got <- err == nil
	}()
	_, _ = c.Write([]byte("advertise")) // a drop shows as nothing received
	return <-got
}

// claim makes host resolve claimed (routed to a) while a answers with forged
// neighbor advertisements from its link-local address src, and reports
// whether the host took one within wait. It leaves the host without a
// neighbor entry for claimed.
func claim(t *testing.T, host *nstest.NS, a pod6, src, claimed netip.Addr, wait time.Duration) bool {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Fails: a does not have the address. It makes the host solicit.
		if c, err := dial(host, netip.Addr{}, netip.AddrPortFrom(claimed, 8080), wait); err == nil {
			_ = c.Close()
		}
	}()
	took := waitUntil(wait, func() bool {
		sendNA(t, a.ns, src, gateway6, claimed)
		return neighResolved(t, host, a.iface, claimed)
	})
	<-done
	flushNeigh6(t, host)
	return took
}

// tcpFlows6 counts the IPv6 TCP conntrack entries between x and y in ns.
func tcpFlows6(t *testing.T, ns *nstest.NS, x, y netip.Addr) int {
	t.Helper()
	flows, err := ns.Handle.ConntrackTableList(netlink.ConntrackTable, netlink.FAMILY_V6)
	if err != nil {
		t.Fatalf("list conntrack in %s: %v", ns.Name, err)
	}
	n := 0
	for _, f := range flows {
		src, _ := netip.AddrFromSlice(f.Forward.SrcIP)
		dst, _ := netip.AddrFromSlice(f.Forward.DstIP)
		if f.Forward.Protocol == unix.IPPROTO_TCP && (src == x && dst == y || src == y && dst == x) {
			n++
		}
	}
	return n
}

// waitUntil polls cond until it holds or wait passes.
func waitUntil(wait time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(wait)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTraffic6 enforces programs of dual-stack pods on a host namespace and
// checks real IPv6 TCP connections, IPv6 anti-spoofing and neighbor
// discovery, with conntrack following all pod traffic and with TCP between
// pods no policy selects left out of it.
func TestTraffic6(t *testing.T) {
	t.Run("track all", func(t *testing.T) { testTraffic6(t, nil) })
	t.Run("untrack unselected", func(t *testing.T) {
		testTraffic6(t, []netip.Prefix{netip.MustParsePrefix("10.99.0.0/16"), netip.MustParsePrefix("fd00:99::/64")})
	})
}

func testTraffic6(t *testing.T, pods []netip.Prefix) {
	host := nstest.New(t)
	sysctl(t, host, "/proc/sys/net/ipv4/ip_forward", "1")
	sysctl(t, host, "/proc/sys/net/ipv6/conf/all/forwarding", "1")
	hostIP6 := netip.MustParseAddr("fd00:77::1")
	lo, err := host.Handle.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	addrNoDAD(t, host, lo, hostIP6, 128)

	a := plumb6(t, host, "sk000000006a", netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("fd00:99::2"))
	b := plumb6(t, host, "sk000000006b", netip.MustParseAddr("10.99.0.3"), netip.MustParseAddr("fd00:99::3"))
	c := plumb6(t, host, "sk000000006c", netip.MustParseAddr("10.99.0.4"), netip.MustParseAddr("fd00:99::4"))
	for _, p := range []pod6{a, b, c} {
		for _, port := range []uint16{8080, 8081} {
			serve(t, p.ns, netip.AddrPortFrom(p.ip6, port))
		}
		serve(t, p.ns, netip.AddrPortFrom(p.ip, 8080))
	}
	b8080, b8081 := netip.AddrPortFrom(b.ip6, 8080), netip.AddrPortFrom(b.ip6, 8081)
	a8080 := netip.AddrPortFrom(a.ip6, 8080)
	b4 := netip.AddrPortFrom(b.ip, 8080)

	aEth0, err := a.ns.Handle.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	aLink, err := host.Handle.LinkByName(a.iface)
	if err != nil {
		t.Fatal(err)
	}
	// A second address in a the host routes to a, with a static neighbor
	// entry, for source spoofing; another the host routes to a, which a
	// does not have but claims with forged neighbor advertisements.
	spoofed := netip.MustParseAddr("fd00:99::99")
	claimed := netip.MustParseAddr("fd00:99::98")
	// A link-local address of a's, to send router and neighbor
	// advertisements from.
	aLL := netip.MustParseAddr("fe80::a")
	addrNoDAD(t, a.ns, aEth0, spoofed, 128)
	addrNoDAD(t, a.ns, aEth0, aLL, 64)
	for _, ip := range []netip.Addr{spoofed, claimed} {
		if err := host.Handle.RouteAdd(&netlink.Route{LinkIndex: aLink.Attrs().Index, Dst: prefix6(ip), Scope: netlink.SCOPE_LINK}); err != nil {
			t.Fatal(err)
		}
	}
	if err := host.Handle.NeighSet(&netlink.Neigh{LinkIndex: aLink.Attrs().Index, Family: netlink.FAMILY_V6, IP: spoofed.AsSlice(), HardwareAddr: aEth0.Attrs().HardwareAddr, State: netlink.NUD_PERMANENT}); err != nil {
		t.Fatal(err)
	}
	// The host takes router advertisements on a's veth although it forwards.
	sysctl(t, host, "/proc/sys/net/ipv6/conf/"+a.iface+"/accept_ra", "2")

	// Controls without any table: all of it works.
	expectConnect(t, "no table: a to b over IPv6", a.ns, netip.Addr{}, b8080)
	expectConnect(t, "no table: a to b from a spoofed IPv6 address", a.ns, spoofed, b8080)
	if !claim(t, host, a, aLL, claimed, allowWait) {
		t.Errorf("no table: the host did not take a's forged neighbor advertisement for %s", claimed)
	}
	sendRA(t, a.ns, aLL)
	if !waitUntil(allowWait, func() bool { return raRoute(t, host, a.iface, aLL) }) {
		t.Errorf("no table: a's router advertisement gave the host no default route via %s", aLL)
	}
	if err := host.Handle.RouteDel(&netlink.Route{LinkIndex: aLink.Attrs().Index, Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, Gw: aLL.AsSlice()}); err != nil {
		t.Fatalf("delete the route the router advertisement made: %v", err)
	}
	if !dhcp6Reply(t, host, a, aLL, allowWait) {
		t.Errorf("no table: the host did not receive a's DHCPv6 server reply")
	}

	ap := NewApplierWith(ApplierConfig{Conn: newConn(t, host), PodCIDRs: pods})
	ctx := context.Background()
	apply := func(docs string) {
		t.Helper()
		var eps []api.Endpoint
		for _, p := range []struct {
			name string
			pod  pod6
		}{{"a", a}, {"b", b}, {"c", c}} {
			eps = append(eps, api.Endpoint{Namespace: "x", Name: p.name, Labels: map[string]string{"pod": p.name}, Ports: []api.NamedPort{{Name: "http", Port: 8080, Protocol: "TCP"}}, IPs: []netip.Addr{p.pod.ip, p.pod.ip6}, Node: "h", HostIface: p.pod.iface})
		}
		in := withPolicies(t, Input{Namespaces: []api.Namespace{{Name: "x"}}, Endpoints: eps, Node: "h"}, docs)
		if err := ap.Apply(ctx, Compile(in)); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}

	apply("")
	// Everything resolves anew through the table: a and b find fe80::1,
	// the host finds a and b (they advertise their own addresses).
	for _, ns := range []*nstest.NS{host, a.ns, b.ns, c.ns} {
		flushNeigh6(t, ns)
	}
	expectConnect(t, "no policy: a to b over IPv6, neighbor discovery included", a.ns, netip.Addr{}, b8080)
	if !neighResolved(t, a.ns, "eth0", gateway6) {
		t.Errorf("no policy: a did not resolve its gateway %s", gateway6)
	}
	if !ping6(t, a.ns, aLL, gateway6, allowWait) {
		t.Errorf("no policy: a's ping from its link-local %s to its gateway %s got no reply", aLL, gateway6)
	}
	if !ping6(t, a.ns, a.ip6, b.ip6, allowWait) {
		t.Errorf("no policy: a's ping to b %s got no reply", b.ip6)
	}
	expectBlocked(t, "no policy: a to b from a spoofed IPv6 address", a.ns, spoofed, b8080)
	if claim(t, host, a, aLL, claimed, denyWait) {
		t.Errorf("no policy: the host took a's forged neighbor advertisement for %s, which is not a's", claimed)
	}
	sendRA(t, a.ns, aLL)
	// What passes shows within allowWait (see the control); this is long
	// enough for a dropped advertisement to have been dropped.
	time.Sleep(denyWait)
	if raRoute(t, host, a.iface, aLL) {
		t.Errorf("no policy: a's router advertisement gave the host a default route via %s", aLL)
	}
	if dhcp6Reply(t, host, a, aLL, denyWait) {
		t.Errorf("no policy: the host received a's DHCPv6 server reply")
	}
	early, err := dial(a.ns, netip.Addr{}, b8080, allowWait)
	if err != nil {
		t.Fatalf("open an IPv6 connection before any policy: %v", err)
	}
	defer early.Close()
	switch n := tcpFlows6(t, host, a.ip6, b.ip6); {
	case pods == nil && n == 0:
		t.Errorf("no IPv6 TCP conntrack entries between a and b, want them tracked")
	case pods != nil && n != 0:
		t.Errorf("%d IPv6 TCP conntrack entries between a and b, want none: no policy selects them", n)
	}

	apply(`
metadata: {name: b-from-a-8080, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: a}}}], ports: [{port: 8080}]}]`)
	expectConnect(t, "b allows a on 8080: IPv6", a.ns, netip.Addr{}, b8080)
	expectConnect(t, "b allows a on 8080: IPv4", a.ns, netip.Addr{}, b4)
	expectBlocked(t, "b allows a on 8080 only: IPv6 8081", a.ns, netip.Addr{}, b8081)
	expectBlocked(t, "b allows a only: c over IPv6", c.ns, netip.Addr{}, b8080)

	long, err := dial(a.ns, netip.Addr{}, b8080, allowWait)
	if err != nil {
		t.Fatalf("open a long-lived IPv6 connection: %v", err)
	}
	defer long.Close()

	apply(`
metadata: {name: b-deny-all, namespace: x}
spec: {podSelector: {matchLabels: {pod: b}}}`)
	expectBlocked(t, "b denies all ingress: new IPv6 connection", a.ns, netip.Addr{}, b8080)
	expectBlocked(t, "b denies all ingress: new IPv4 connection", a.ns, netip.Addr{}, b4)
	if err := echo(long, allowWait); err != nil {
		t.Errorf("established IPv6 connection after the policy flip: %v, want it to survive", err)
	}
	if err := echo(early, allowWait); err != nil {
		t.Errorf("IPv6 connection opened before any policy, after b's deny-all: %v, want it to survive", err)
	}
	expectConnect(t, "host to b over IPv6 despite b's deny-all", host, netip.Addr{}, b8080)
	if n := tcpFlows6(t, host, a.ip6, b.ip6); n == 0 {
		t.Errorf("no IPv6 TCP conntrack entries between a and b once b is selected, want them tracked")
	}

	apply(`
metadata: {name: b-from-pods-but-a, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{from: [{ipBlock: {cidr: "fd00:99::/64", except: ["fd00:99::2/128"]}}]}]`)
	expectConnect(t, "ipBlock fd00:99::/64: c over IPv6", c.ns, netip.Addr{}, b8080)
	expectBlocked(t, "ipBlock fd00:99::/64 except a: a over IPv6", a.ns, netip.Addr{}, b8080)
	expectBlocked(t, "IPv6 ipBlock only: c over IPv4", c.ns, netip.Addr{}, b4)

	apply(`
metadata: {name: b-from-v4-pods, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{from: [{ipBlock: {cidr: "10.99.0.0/16"}}]}]`)
	expectConnect(t, "IPv4 ipBlock: a over IPv4", a.ns, netip.Addr{}, b4)
	expectBlocked(t, "IPv4 ipBlock only: a over IPv6", a.ns, netip.Addr{}, b8080)

	// The whole IPv6 space: an interval that runs to the end of the family.
	apply(`
metadata: {name: b-from-any-v6, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{from: [{ipBlock: {cidr: "::/0"}}]}]`)
	expectConnect(t, "ipBlock ::/0: a over IPv6", a.ns, netip.Addr{}, b8080)
	expectBlocked(t, "ipBlock ::/0 only: a over IPv4", a.ns, netip.Addr{}, b4)

	// Egress to a named port: (address, protocol, port) sets of each family.
	apply(`
metadata: {name: a-to-http, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{podSelector: {}}], ports: [{port: http}]}]`)
	expectConnect(t, "a to named port http of c over IPv6", a.ns, netip.Addr{}, netip.AddrPortFrom(c.ip6, 8080))
	expectConnect(t, "a to named port http of c over IPv4", a.ns, netip.Addr{}, netip.AddrPortFrom(c.ip, 8080))
	expectBlocked(t, "a to c over IPv6 on a port not named http", a.ns, netip.Addr{}, netip.AddrPortFrom(c.ip6, 8081))

	apply(`
metadata: {name: a-deny-egress, namespace: x}
spec: {podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress]}`)
	expectBlocked(t, "a denies all egress: IPv6", a.ns, netip.Addr{}, netip.AddrPortFrom(c.ip6, 8080))
	expectConnect(t, "c to a over IPv6 despite a's egress deny", c.ns, netip.Addr{}, a8080)

	if err := ap.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	expectConnect(t, "table deleted: a to b over IPv6", a.ns, netip.Addr{}, b8080)
}
