package dockerdrv

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/skeinnet/skein/api"
)

// newDualHarness is a driver on a dual-stack cluster.
func newDualHarness(t *testing.T) *harness {
	t.Helper()
	hs := &harness{t: t, be: newFakeBackend(), dp: newFakeDataplane(), state: t.TempDir() + "/docker.json"}
	hs.be.dual = true
	d, err := New(Config{Backend: hs.be, Dataplane: hs.dp, StatePath: hs.state, IPv6: true})
	if err != nil {
		t.Fatal(err)
	}
	hs.d, hs.h = d, d.Handler()
	return hs
}

const (
	macA = "02:42:0a:00:00:0a"
	macB = "02:42:0a:00:00:0b"
)

func (hs *harness) requestAddress(pool, mac string) (string, string) {
	hs.t.Helper()
	var addr requestAddressResponse
	code, msg := hs.call("IpamDriver.RequestAddress", requestAddressRequest{PoolID: pool, Options: map[string]string{macOption: mac}}, &addr)
	if code != http.StatusOK {
		return "", msg
	}
	return addr.Address, ""
}

// TestIPv6Network: on a dual-stack cluster a network created with --ipv6
// gets Skein's IPv6 pool; each endpoint gets the IPv6 address the agent
// allocated with its IPv4 one (paired by the endpoint's MAC, also when two
// endpoints' calls interleave), its veth routes both, Join gives the
// fe80::1 gateway next to 169.254.1.1, the endpoint record holds both, and
// releasing the IPv4 address frees both.
func TestIPv6Network(t *testing.T) {
	hs := newDualHarness(t)
	var ipamCaps ipamCapabilitiesResponse
	hs.mustCall("IpamDriver.GetCapabilities", nil, &ipamCaps)
	if !ipamCaps.RequiresMACAddress {
		t.Fatal("IPAM capabilities do not require the MAC address: IPv6 requests could not be paired with IPv4 ones")
	}
	var pool requestPoolResponse
	hs.mustCall("IpamDriver.RequestPool", requestPoolRequest{AddressSpace: addressSpce, V6: true}, &pool)
	if pool.PoolID != poolID6 || pool.Pool != "::/0" || pool.Data[gatewayRequest] != "::/0" {
		t.Errorf("IPv6 pool %+v", pool)
	}
	// An older Docker asks for the IPv6 pool only with --subnet ::/0.
	hs.mustCall("IpamDriver.RequestPool", requestPoolRequest{AddressSpace: addressSpce, Pool: "::/0", V6: true}, &pool)
	hs.mustCall("NetworkDriver.CreateNetwork", createNetworkRequest{NetworkID: testNet, Options: map[string]any{enableIPv6Option: true},
		IPv4Data: []ipamData{{Pool: poolAll, Gateway: poolAll}}, IPv6Data: []ipamData{{Pool: poolAll6, Gateway: poolAll6}}}, nil)

	// Two endpoints whose calls interleave: IPv4 A, IPv4 B, IPv6 A, IPv6 B
	// (neither the first nor the last IPv4 request is the right pair).
	a4, msg := hs.requestAddress(poolID, macA)
	b4, msg2 := hs.requestAddress(poolID, macB)
	a6, msg3 := hs.requestAddress(poolID6, macA)
	b6, msg4 := hs.requestAddress(poolID6, macB)
	if msg+msg2+msg3+msg4 != "" {
		t.Fatalf("RequestAddress: %q %q %q %q", msg, msg2, msg3, msg4)
	}
	for _, p := range []struct{ v4, v6 string }{{a4, a6}, {b4, b6}} {
		ip4, ip6 := netip.MustParsePrefix(p.v4), netip.MustParsePrefix(p.v6)
		if !ip6.Addr().Is6() || ip6.Bits() != 128 {
			t.Fatalf("IPv6 address %q, want a /128", p.v6)
		}
		a, _ := hs.d.st.byIP(ip4.Addr())
		if a == nil || a.IP6 != ip6.Addr() || hs.be.held6[a.Owner] != ip6.Addr() {
			t.Fatalf("%s got %s: not the IPv6 address the agent allocated with it (%+v)", p.v4, p.v6, a)
		}
	}

	hs.mustCall("NetworkDriver.CreateEndpoint", createEndpointRequest{NetworkID: testNet, EndpointID: testEP, Interface: &endpointInterface{Address: a4, AddressIPv6: a6, MacAddress: macA}}, nil)
	var join joinResponse
	hs.mustCall("NetworkDriver.Join", joinRequest{NetworkID: testNet, EndpointID: testEP, SandboxKey: "/var/run/docker/netns/x"}, &join)
	want := []staticRoute{
		{Destination: "169.254.1.1/32", RouteType: routeConnected},
		{Destination: "0.0.0.0/0", RouteType: routeNextHop, NextHop: "169.254.1.1"},
		{Destination: "fe80::1/128", RouteType: routeConnected},
		{Destination: "::/0", RouteType: routeNextHop, NextHop: "fe80::1"},
	}
	if len(join.StaticRoutes) != len(want) {
		t.Fatalf("routes %+v, want %+v", join.StaticRoutes, want)
	}
	for i := range want {
		if join.StaticRoutes[i] != want[i] {
			t.Errorf("route %d = %+v, want %+v", i, join.StaticRoutes[i], want[i])
		}
	}
	a, _ := hs.d.st.byEndpoint(testEP)
	v := hs.dp.veths[api.HostIfaceName(a.Owner)]
	if len(v.IPs) != 2 || v.IPs[1] != a.IP6 || !v.v6() {
		t.Errorf("veth %+v: want both addresses routed", v)
	}
	if ep, _ := hs.be.record(a.Owner); len(ep.IPs) != 2 || ep.IPs[1] != a.IP6 {
		t.Errorf("endpoint record holds %v, want %s and %s", ep.IPs, a.IP, a.IP6)
	}

	// B's endpoint naming A's IPv6 address is refused.
	code, msg := hs.call("NetworkDriver.CreateEndpoint", createEndpointRequest{NetworkID: testNet, EndpointID: "e2", Interface: &endpointInterface{Address: b4, AddressIPv6: a6}}, nil)
	if code == http.StatusOK || !strings.Contains(msg, "was not handed out with") {
		t.Errorf("CreateEndpoint with another endpoint's IPv6 address: %d %q", code, msg)
	}

	// libnetwork releases IPv4 first: both go, the IPv6 release is a no-op.
	hs.mustCall("NetworkDriver.Leave", endpointRequest{NetworkID: testNet, EndpointID: testEP}, nil)
	hs.mustCall("NetworkDriver.DeleteEndpoint", endpointRequest{NetworkID: testNet, EndpointID: testEP}, nil)
	hs.mustCall("IpamDriver.ReleaseAddress", releaseAddressRequest{PoolID: poolID, Address: strings.TrimSuffix(a4, "/32")}, nil)
	hs.mustCall("IpamDriver.ReleaseAddress", releaseAddressRequest{PoolID: poolID6, Address: strings.TrimSuffix(a6, "/128")}, nil)
	// B the other way round: its IPv6 release frees both as well.
	hs.mustCall("IpamDriver.ReleaseAddress", releaseAddressRequest{PoolID: poolID6, Address: b6}, nil)
	if hs.be.heldCount() != 0 || hs.be.held6Count() != 0 || len(hs.d.st.Attachments) != 0 {
		t.Errorf("after the releases the agent holds %d IPv4 and %d IPv6 addresses, the driver knows %d attachments", hs.be.heldCount(), hs.be.held6Count(), len(hs.d.st.Attachments))
	}
}

// TestIPv6Errors: every IPv6 refusal names what to change, and a failed
// IPv6 request leaves the IPv4 address to libnetwork's release (never one
// family handed out alone by the driver).
func TestIPv6Errors(t *testing.T) {
	v4only := newHarness(t)
	code, msg := v4only.call("IpamDriver.RequestPool", requestPoolRequest{V6: true}, nil)
	if code == http.StatusOK || !strings.Contains(msg, "no IPv6 pool") || !strings.Contains(msg, "leave out --ipv6") {
		t.Errorf("--ipv6 on an IPv4-only cluster: %d %q", code, msg)
	}
	code, msg = v4only.call("NetworkDriver.CreateNetwork", createNetworkRequest{NetworkID: testNet, Options: map[string]any{enableIPv6Option: true}, IPv4Data: []ipamData{{Pool: poolAll}}}, nil)
	if code == http.StatusOK || !strings.Contains(msg, "no IPv6 pool") {
		t.Errorf("--ipv6 network on an IPv4-only cluster: %d %q", code, msg)
	}

	hs := newDualHarness(t)
	for _, c := range []struct {
		method string
		req    any
		want   string
	}{
		{"IpamDriver.RequestPool", requestPoolRequest{V6: true, Pool: "fd00:1::/64"}, "leave out the IPv6 --subnet"},
		{"NetworkDriver.CreateNetwork", createNetworkRequest{NetworkID: testNet, Options: map[string]any{enableIPv6Option: true}, IPv4Data: []ipamData{{Pool: poolAll}}}, "add --subnet ::/0"},
		{"NetworkDriver.CreateNetwork", createNetworkRequest{NetworkID: testNet, IPv4Data: []ipamData{{Pool: poolAll}}, IPv6Data: []ipamData{{Pool: "fd00:1::/64"}}}, "--ipam-driver skein"},
		{"IpamDriver.RequestAddress", requestAddressRequest{PoolID: poolID6}, "without the endpoint's MAC"},
		{"IpamDriver.RequestAddress", requestAddressRequest{PoolID: poolID6, Options: map[string]string{macOption: macA}}, "got no IPv4 address first"},
	} {
		code, msg := hs.call(c.method, c.req, nil)
		if code == http.StatusOK || !strings.Contains(msg, c.want) {
			t.Errorf("%s %+v: %d %q, want an error containing %q", c.method, c.req, code, msg, c.want)
		}
	}
	// A node without IPv6 blocks (agent answered IPv4 only): the IPv6
	// request fails, and the IPv4 release frees the attachment.
	hs.be.dual = false
	a4, _ := hs.requestAddress(poolID, macA)
	if _, msg := hs.requestAddress(poolID6, macA); !strings.Contains(msg, "no IPv6 address") {
		t.Errorf("IPv6 request for an IPv4-only attachment: %q", msg)
	}
	hs.mustCall("IpamDriver.ReleaseAddress", releaseAddressRequest{PoolID: poolID, Address: a4}, nil)
	if hs.be.heldCount() != 0 || len(hs.d.st.Attachments) != 0 {
		t.Errorf("after the failed IPv6 request and the IPv4 release: agent holds %d, driver knows %d", hs.be.heldCount(), len(hs.d.st.Attachments))
	}
	// An IPv4-only network on a dual-stack cluster: the endpoint and the
	// container get IPv4 only, no IPv6 route.
	hs.be.dual = true
	b4, _ := hs.requestAddress(poolID, macB)
	hs.mustCall("NetworkDriver.CreateEndpoint", createEndpointRequest{NetworkID: testNet, EndpointID: testEP, Interface: &endpointInterface{Address: b4}}, nil)
	var join joinResponse
	hs.mustCall("NetworkDriver.Join", joinRequest{NetworkID: testNet, EndpointID: testEP}, &join)
	if len(join.StaticRoutes) != 2 {
		t.Errorf("IPv4-only network: routes %+v, want the IPv4 ones only", join.StaticRoutes)
	}
	a, _ := hs.d.st.byEndpoint(testEP)
	if ep, _ := hs.be.record(a.Owner); len(ep.IPs) != 1 {
		t.Errorf("IPv4-only network: endpoint holds %v", ep.IPs)
	}
}
