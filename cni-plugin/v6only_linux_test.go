package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/skeinnet/skein/api"
)

// TestLinuxAddCheckDelV6Only: with an IPv6 address alone from the agent (an
// IPv6-only cluster), ADD plumbs only it: the container has no IPv4
// address, route or gateway neighbour, routes ::/0 via fe80::1; the host
// veth has fe80::1 and a /128 route and no IPv4 route; the result lists the
// IPv6 address only (and ip6 alone in 0.2.0); CHECK passes and sees a
// missing IPv6 route; DEL removes everything.
func TestLinuxAddCheckDelV6Only(t *testing.T) {
	t.Parallel()
	e := newLinuxEnv(t)
	e.agent.pool = netip.MustParsePrefix("fd00:1a::/120")
	lo := mustLink(t, e.host, "lo")
	if err := e.host.NL.AddrAdd(lo, &netlink.Addr{IPNet: prefixIPNetPtr(netip.MustParsePrefix("fd00:1b::1/128"))}); err != nil {
		t.Fatalf("address lo: %v", err)
	}
	c := newTestNS(t, "c")
	const id = "v6o"
	hostIface := api.HostIfaceName(api.Owner{ContainerID: id, IfName: "eth0"})

	res := e.host.run(t, cniEnv("ADD", id, c.Path, k8sArgs), e.conf("1.1.0", ""))
	res.OK(t, "ADD")
	var r types100.Result
	if err := json.Unmarshal(res.Stdout, &r); err != nil {
		t.Fatalf("ADD output: %v\n%s", err, res.Stdout)
	}
	hostLink := mustLink(t, e.host, hostIface)
	wantResult := fmt.Sprintf(`{cniVersion:1.1.0 interfaces:[%s/%s/sandbox= eth0/mtu=1450/sandbox=%s] ips:[fd00:1a::2/128 gw fe80::1 if 1] routes:[::/0 via fe80::1]}`,
		hostIface, hostLink.Attrs().HardwareAddr, c.Path)
	if got := summarize(&r); got != wantResult {
		t.Errorf("ADD result\n got %s\nwant %s", got, wantResult)
	}
	cl := mustLink(t, c, "eth0")
	assertAddr(t, c, cl, "fd00:1a::2/128")
	assertRoute(t, c, cl, "::/0", "fe80::1", netlink.SCOPE_UNIVERSE, -1)
	assertPermanentNeigh(t, c, cl, "fe80::1", hostLink.Attrs().HardwareAddr)
	assertAddr(t, e.host, hostLink, "fe80::1/64")
	assertRoute(t, e.host, hostLink, "fd00:1a::2/128", "", netlink.SCOPE_UNIVERSE, api.RouteProtocol)
	// Nothing of IPv4: no address, route or neighbour in the container, no
	// IPv4 route to it on the host.
	assertNoFamily4(t, c, cl)
	if rs, err := e.host.NL.RouteList(hostLink, netlink.FAMILY_V4); err != nil || len(rs) != 0 {
		t.Errorf("host IPv4 routes on %s = %v, %v; want none", hostIface, rs, err)
	}
	if err := ping(e.host, netip.MustParseAddr("fd00:1a::2")); err != nil {
		t.Errorf("ping container from host over IPv6: %v", err)
	}
	if d := e.agent.Commits(); len(d) != 1 || len(d[0].IPs) != 1 || !d[0].IPs[0].Is6() {
		t.Errorf("commits = %+v, want one naming the IPv6 address", d)
	}

	check := e.conf("1.1.0", `"prevResult":`+string(res.Stdout))
	e.host.run(t, cniEnv("CHECK", id, c.Path, k8sArgs), check).OK(t, "CHECK after ADD")
	def := &netlink.Route{LinkIndex: cl.Attrs().Index, Dst: prefixIPNetPtr(netip.MustParsePrefix("::/0")), Gw: net.ParseIP("fe80::1")}
	if err := c.NL.RouteDel(def); err != nil {
		t.Fatalf("delete IPv6 default route: %v", err)
	}
	er := e.host.run(t, cniEnv("CHECK", id, c.Path, k8sArgs), check).Error(t)
	if er.Code != errCodeCheckFailed || !strings.Contains(er.Details, "::/0 via fe80::1") {
		t.Errorf("CHECK without IPv6 default route = %+v, want code %d naming the route", er, errCodeCheckFailed)
	}
	e.host.run(t, cniEnv("DEL", id, c.Path, k8sArgs), e.conf("1.1.0", "")).OK(t, "DEL")
	assertNoLink(t, e.host, hostIface)

	// 0.2.0 (Mesos): ip6 alone.
	c2 := newTestNS(t, "c")
	res = e.host.run(t, cniEnv("ADD", "m6o", c2.Path, ""), e.conf("0.2.0", ""))
	res.OK(t, "ADD 0.2.0")
	var got map[string]json.RawMessage
	if err := json.Unmarshal(res.Stdout, &got); err != nil {
		t.Fatalf("ADD 0.2.0 output: %v\n%s", err, res.Stdout)
	}
	if _, ok := got["ip4"]; ok {
		t.Errorf("0.2.0 result %s carries ip4, want ip6 only", res.Stdout)
	}
	if ip6 := string(got["ip6"]); !strings.Contains(ip6, `"fd00:1a::2/128"`) || !strings.Contains(ip6, `"::/0"`) {
		t.Errorf("0.2.0 result %s: ip6 %s, want fd00:1a::2/128 and the ::/0 route", res.Stdout, ip6)
	}
	e.host.run(t, cniEnv("DEL", "m6o", c2.Path, ""), e.conf("0.2.0", "")).OK(t, "DEL 0.2.0")
	assertNoSkeinLinks(t, e.host)
}

// assertNoFamily4 checks that l in n has no IPv4 address, route or neighbour.
func assertNoFamily4(t *testing.T, n *testNS, l netlink.Link) {
	t.Helper()
	if as, err := n.NL.AddrList(l, netlink.FAMILY_V4); err != nil || len(as) != 0 {
		t.Errorf("IPv4 addresses of %s in %s = %v, %v; want none", l.Attrs().Name, n.Name, as, err)
	}
	if rs, err := n.NL.RouteList(l, netlink.FAMILY_V4); err != nil || len(rs) != 0 {
		t.Errorf("IPv4 routes of %s in %s = %v, %v; want none", l.Attrs().Name, n.Name, rs, err)
	}
	if ns, err := n.NL.NeighList(l.Attrs().Index, netlink.FAMILY_V4); err != nil || len(ns) != 0 {
		t.Errorf("IPv4 neighbours of %s in %s = %v, %v; want none", l.Attrs().Name, n.Name, ns, err)
	}
}
