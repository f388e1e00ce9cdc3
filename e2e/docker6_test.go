//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
	"github.com/skeinnet/skein/store"
)

// docker6LabName is the dual-stack Docker test's own lab.
var docker6LabName = labName + "dk6"

// TestDockerIPv6 runs a real dockerd in each of two hosts of a dual-stack
// lab with Skein's driver: a network created with --ipv6 gives each
// container an IPv6 address of the cluster's IPv6 pool next to its IPv4
// one, both in its endpoint record; the container routes IPv6 through
// fe80::1 as CNI containers do; Docker containers on two hosts reach each
// other, and a CNI container, over IPv6; removing them frees both families.
func TestDockerIPv6(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	v6pool := netip.MustParsePrefix("fd00:10:244::/56")
	l, sc := dockerLab(ctx, t, docker6LabName, "10.244.0.0/16,"+v6pool.String())

	const net6 = "skeinnet6"
	hosts := l.Hosts()
	image := busyboxTar(t)
	var eng []*dockerHost
	for _, h := range hosts {
		d := newDockerHost(t, l, h)
		d.startAgent(ctx, t)
		d.start(ctx, t)
		d.must(ctx, t, image, "import", "-", dockerImage)
		args := []string{"network", "create", "-d", "skein", "--ipam-driver", "skein", "--ipv6", "--label", "skein.dev/namespace=" + dockerNS}
		// An older Docker asks an IPAM driver for no IPv6 pool unless an
		// IPv6 subnet is given (20.10.24 asks): the driver refuses, saying
		// what to add.
		if out, err := d.docker(ctx, nil, append(args, net6)...); err != nil {
			if !strings.Contains(out, "add --subnet ::/0") {
				t.Fatalf("network create --ipv6 on %s: %v, want success or the driver's hint:\n%s", h.Name, err, out)
			}
			t.Logf("%s: network create --ipv6 refused with the driver's hint, created with --subnet ::/0: %s", h.Name, strings.TrimSpace(out))
			d.must(ctx, t, nil, append(args, "--subnet", "::/0", net6)...)
		}
		eng = append(eng, d)
	}
	d1, d2 := eng[0], eng[1]
	// NET_ADMIN: the anti-spoofing check below adds an address by hand.
	d1.must(ctx, t, nil, "run", "-d", "--name", "web6", "--cap-add", "NET_ADMIN", "--network", net6, dockerImage, "sleep", "100000")
	d2.must(ctx, t, nil, "run", "-d", "--name", "client6", "--network", net6, dockerImage, "sleep", "100000")
	web := waitDualEndpoint(ctx, t, sc, "web6")
	client := waitDualEndpoint(ctx, t, sc, "client6")
	for _, ep := range []api.Endpoint{web, client} {
		if !v6pool.Contains(ep.IPs[1]) || !ep.IPs[0].Is4() {
			t.Fatalf("endpoint %s holds %v, want an IPv4 address and one of %s", ep.Name, ep.IPs, v6pool)
		}
	}
	t.Logf("web6 %v on %s, client6 %v on %s", web.IPs, web.Node, client.IPs, client.Node)

	// Inside the container: the IPv6 address as a /128, the default route
	// via fe80::1; on the host: a /128 route to the container's veth.
	addrs := d1.must(ctx, t, nil, "exec", "web6", "ip", "-6", "addr", "show", "dev", "eth0")
	if !strings.Contains(addrs, web.IPs[1].String()+"/128") {
		t.Errorf("web6's eth0 lacks %s/128:\n%s", web.IPs[1], addrs)
	}
	routes := d1.must(ctx, t, nil, "exec", "web6", "ip", "-6", "route", "show")
	if !strings.Contains(routes, "default via "+api.GatewayIPv6+" dev eth0") {
		t.Errorf("web6 has no IPv6 default route via %s:\n%s", api.GatewayIPv6, routes)
	}
	// The driver sets the gateway's permanent neighbour once the engine
	// names the container (as for 169.254.1.1).
	waitFor(ctx, t, 20*time.Second, "permanent neighbour "+api.GatewayIPv6+" in web6", func() (bool, string) {
		out, err := d1.docker(ctx, nil, "exec", "web6", "ip", "-6", "neigh", "show", "dev", "eth0")
		return err == nil && strings.Contains(out, api.GatewayIPv6+" ") && strings.Contains(out, "PERMANENT"), out
	})
	hostRoutes, err := l.Exec(ctx, hosts[0].Name, "ip", "-6", "route", "show", web.IPs[1].String()+"/128")
	if err != nil || !strings.Contains(string(hostRoutes), "dev "+web.HostIface) {
		t.Errorf("%s: no route %s/128 dev %s: %v\n%s", hosts[0].Name, web.IPs[1], web.HostIface, err, hostRoutes)
	}

	// Across hosts over IPv6 (and IPv4), and to and from a CNI container.
	waitPing(ctx, t, d2, "client6", web.IPs[1], true)
	waitPing(ctx, t, d1, "web6", client.IPs[1], true)
	waitPing(ctx, t, d1, "web6", client.IPs[0], true)
	cni := l.Containers()
	var far lab.Container
	for _, c := range cni {
		if c.Host == hosts[1].Name {
			far = c
		}
	}
	waitPing(ctx, t, d1, "web6", far.IP6, true)
	waitFor(ctx, t, 20*time.Second, "CNI container "+far.Name+" reaches web6 over IPv6", func() (bool, string) {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		defer pcancel()
		err := l.Ping(pctx, far.Name, web.IPs[1])
		return err == nil, fmt.Sprint(err)
	})
	ipamCheck(ctx, t, l, hosts[0].Name, "with IPv6 Docker containers")

	// Anti-spoofing knows the container's IPv6 address, and only that one:
	// echo requests from it reach the CNI container on the other host, those
	// from another address of the pool put on its eth0 by hand do not.
	spoof := netip.MustParseAddr("fd00:10:244:ff::5")
	d1.must(ctx, t, nil, "exec", "web6", "ip", "-6", "addr", "add", spoof.String()+"/128", "dev", "eth0")
	waitFor(ctx, t, 10*time.Second, "DAD of "+spoof.String()+" in web6", func() (bool, string) {
		out, err := d1.docker(ctx, nil, "exec", "web6", "ip", "-6", "addr", "show", "dev", "eth0")
		return err == nil && strings.Contains(out, spoof.String()) && !strings.Contains(out, "tentative"), out
	})
	got := echoSources(ctx, t, l, far, func() {
		_, _ = d1.docker(ctx, nil, "exec", "web6", "ping", "-c3", "-W1", "-I", spoof.String(), far.IP6.String()) // dropped: fails
		d1.must(ctx, t, nil, "exec", "web6", "ping", "-c1", "-W2", far.IP6.String())
	})
	t.Logf("echo requests at %s by source: %v", far.Name, got)
	if got[web.IPs[1]] == 0 || got[spoof] != 0 {
		t.Errorf("echo requests at %s by source: %v; want some from web6's %s and none from the spoofed %s", far.Name, got, web.IPs[1], spoof)
	}

	// Removing the containers frees both families.
	d1.must(ctx, t, nil, "rm", "-f", "web6")
	d2.must(ctx, t, nil, "rm", "-f", "client6")
	waitDockerEndpointsGone(ctx, t, sc.ListEndpoints)
	for _, h := range hosts {
		ipamCheck(ctx, t, l, h.Name, "after removing IPv6 Docker containers")
	}
}

// waitDualEndpoint waits until the endpoint of a Docker container is named
// after it and holds two addresses.
func waitDualEndpoint(ctx context.Context, t *testing.T, sc *store.Client, name string) api.Endpoint {
	t.Helper()
	var got api.Endpoint
	waitFor(ctx, t, 30*time.Second, "dual-stack endpoint of Docker container "+name, func() (bool, string) {
		eps, err := sc.ListEndpoints(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, ep := range eps {
			if ep.Name == name && ep.Namespace == dockerNS && len(ep.IPs) == 2 {
				got = ep
				return true, ""
			}
		}
		return false, fmt.Sprintf("endpoints: %+v", eps)
	})
	return got
}

// echoSources counts the ICMPv6 echo requests container c receives on its
// IPv6 address while send runs, by source address.
func echoSources(ctx context.Context, t *testing.T, l *lab.Lab, c lab.Container, send func()) map[netip.Addr]int {
	t.Helper()
	pc, err := l.ListenPacket(ctx, c.Name, "ip6:ipv6-icmp", c.IP6.String())
	if err != nil {
		t.Fatalf("raw ICMPv6 socket in %s: %v", c.Name, err)
	}
	got := map[netip.Addr]int{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			ip, ok := netip.AddrFromSlice(from.(*net.IPAddr).IP)
			if n > 0 && buf[0] == 128 && ok { // echo request
				got[ip]++
			}
		}
	}()
	send()
	time.Sleep(200 * time.Millisecond) // the last request arrives
	pc.Close()
	<-done
	return got
}
