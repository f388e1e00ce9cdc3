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

// TestLinuxAddCheckDelDualStack: with an IPv4 and an IPv6 address from the
// agent, ADD plumbs both (the IPv6 one /128, usable at once), the container
// routes ::/0 via fe80::1 (a permanent neighbour), the host veth carries
// fe80::1 and a /128 route to the container; the host reaches the container
// over both families, CHECK sees a missing IPv6 route, 0.2.0 results carry
// only the IPv4 address, and DEL frees everything.
func TestLinuxAddCheckDelDualStack(t *testing.T) {
	t.Parallel()
	e := newLinuxEnv(t)
	e.agent.pool6 = netip.MustParsePrefix("fd00:18::/120")
	lo := mustLink(t, e.host, "lo")
	if err := e.host.NL.AddrAdd(lo, &netlink.Addr{IPNet: prefixIPNetPtr(netip.MustParsePrefix("fd00:19::1/128"))}); err != nil {
		t.Fatalf("address lo: %v", err)
	}
	c := newTestNS(t, "c")
	const id = "c6"
	hostIface := api.HostIfaceName(api.Owner{ContainerID: id, IfName: "eth0"})

	res := e.host.run(t, cniEnv("ADD", id, c.Path, k8sArgs), e.conf("1.1.0", ""))
	res.OK(t, "ADD")
	var r types100.Result
	if err := json.Unmarshal(res.Stdout, &r); err != nil {
		t.Fatalf("ADD output: %v\n%s", err, res.Stdout)
	}
	hostLink := mustLink(t, e.host, hostIface)
	wantResult := fmt.Sprintf(`{cniVersion:1.1.0 interfaces:[%s/%s/sandbox= eth0/mtu=1450/sandbox=%s] ips:[198.18.0.2/32 gw 169.254.1.1 if 1 fd00:18::2/128 gw fe80::1 if 1] routes:[0.0.0.0/0 via 169.254.1.1 ::/0 via fe80::1]}`,
		hostIface, hostLink.Attrs().HardwareAddr, c.Path)
	if got := summarize(&r); got != wantResult {
		t.Errorf("ADD result\n got %s\nwant %s", got, wantResult)
	}
	cl := mustLink(t, c, "eth0")
	assertAddr(t, c, cl, "198.18.0.2/32")
	assertAddr(t, c, cl, "fd00:18::2/128") // not tentative: no DAD wait
	assertRoute(t, c, cl, "::/0", "fe80::1", netlink.SCOPE_UNIVERSE, -1)
	assertPermanentNeigh(t, c, cl, "fe80::1", hostLink.Attrs().HardwareAddr)
	assertAddr(t, e.host, hostLink, "fe80::1/64")
	assertRoute(t, e.host, hostLink, "fd00:18::2/128", "", netlink.SCOPE_UNIVERSE, api.RouteProtocol)
	for key, want := range map[string]string{"disable_ipv6": "0", "accept_ra": "0", "forwarding": "1"} {
		if got := readSysctl(t, e.host, "ipv6/conf/"+hostIface+"/"+key); got != want {
			t.Errorf("ipv6 %s on %s = %q, want %s", key, hostIface, got, want)
		}
	}
	for _, dst := range []string{"198.18.0.2", "fd00:18::2"} {
		if err := ping(e.host, netip.MustParseAddr(dst)); err != nil {
			t.Errorf("ping container from host: %v", err)
		}
	}
	if d := e.agent.Commits(); len(d) != 1 || len(d[0].IPs) != 2 {
		t.Errorf("commits = %+v, want one naming both addresses", d)
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

	// 0.2.0 (Mesos): the IPv4 address only.
	c2 := newTestNS(t, "c")
	res = e.host.run(t, cniEnv("ADD", "m6", c2.Path, ""), e.conf("0.2.0", ""))
	res.OK(t, "ADD 0.2.0")
	var got map[string]any
	if err := json.Unmarshal(res.Stdout, &got); err != nil {
		t.Fatalf("ADD 0.2.0 output: %v\n%s", err, res.Stdout)
	}
	if _, ok := got["ip4"]; !ok {
		t.Errorf("0.2.0 result %s lacks ip4", res.Stdout)
	}
	if _, ok := got["ip6"]; ok {
		t.Errorf("0.2.0 result %s carries ip6, want IPv4 only", res.Stdout)
	}
	if err := ping(e.host, netip.MustParseAddr("fd00:18::2")); err != nil {
		t.Errorf("0.2.0 container not reachable over IPv6 (plumbed even if not reported): %v", err)
	}
	e.host.run(t, cniEnv("DEL", "m6", c2.Path, ""), e.conf("0.2.0", "")).OK(t, "DEL 0.2.0")
}
