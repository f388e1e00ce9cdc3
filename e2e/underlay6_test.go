//go:build e2e

package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
)

// The IPv6-underlay labs' names, next to the shared lab.
var (
	ipv6UnderlayLabName = labName + "u6"
	dualUnderlayLabName = labName + "ud"
)

// dualPools are the pod pools of the underlay labs: one of each family.
var dualPools = [2]netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:10:244::/56")}

// TestIPv6Underlay: a 3-host VXLAN lab whose underlay is IPv6 only, with
// dual-stack pods. Each node registers its IPv6 underlay address and an
// MTU that leaves room for the IPv6 outer header; every container reaches
// every other over IPv4 and IPv6 (ping and TCP); on the underlay bridge the
// tunnel packets are IPv6/UDP carrying both inner families, and no IPv4
// frame crosses it; traffic keeps flowing while an agent is down and after
// it restarts; an FDB entry to a peer's IPv6 underlay address deleted by
// hand comes back.
func TestIPv6Underlay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := upBGPLab(t, lab.Config{Name: ipv6UnderlayLabName, Hosts: 3, ContainersPerHost: 1,
		Underlay: lab.UnderlayIPv6, PodCIDR: dualPools[0].String() + "," + dualPools[1].String()})
	hosts, cs := l.Hosts(), l.Containers()

	cl := labStore(ctx, t, l)
	byName := nodeRecords(ctx, t, cl)
	for _, h := range hosts {
		n := byName[h.Name]
		if want := lab.UnderlayAddr6(0, h.Index); n.UnderlayIP != want || n.UnderlayIP6 != want {
			t.Errorf("node %s registered underlay %s / %s, want %s for both", h.Name, n.UnderlayIP, n.UnderlayIP6, want)
		}
		if want := lab.UnderlayMTU - api.VXLANOverhead6; n.MTU != want {
			t.Errorf("node %s MTU %d, want %d (IPv6 outer header)", h.Name, n.MTU, want)
		}
		// IPv6 forwarding is on; the underlay still takes router
		// advertisements (a host may get its address from them).
		out, err := l.Exec(ctx, h.Name, "cat", "/proc/sys/net/ipv6/conf/all/forwarding", "/proc/sys/net/ipv6/conf/"+lab.HostIface+"/accept_ra")
		if got := strings.Fields(string(out)); err != nil || !slices.Equal(got, []string{"1", "2"}) {
			t.Errorf("%s: IPv6 forwarding and %s accept_ra = %v (%v), want 1 and 2", h.Name, lab.HostIface, got, err)
		}
	}
	waitPeerRoutes(ctx, t, l, "-4")
	waitPeerRoutes(ctx, t, l, "-6")
	// The VXLAN source filter accepts the other nodes' IPv6 underlay
	// addresses (through its IPv6 set).
	for _, h := range hosts {
		var want []string
		for _, o := range hosts {
			if o.Name != h.Name {
				want = append(want, o.UnderlayIP6.String())
			}
		}
		waitFor(ctx, t, 30*time.Second, "VXLAN source filter on "+h.Name, func() (bool, string) {
			got, err := nftSetElems(ctx, l, h.Name, "vxlan_peers6")
			if err != nil {
				return false, err.Error()
			}
			slices.Sort(got)
			return slices.Equal(got, want), fmt.Sprintf("vxlan_peers6 = %v, want %v", got, want)
		})
	}
	checkAllPairsFamilies(ctx, t, l, cs)
	waitStatusHealthy(ctx, t, l)

	// The tunnel on the wire: IPv6/UDP to the VXLAN port, both inner
	// families, and nothing IPv4 at all.
	src, dst := cs[0], cs[1]
	frames := captureWhile(ctx, t, l, func() {
		for _, ip := range []netip.Addr{dst.IP, dst.IP6} {
			if err := l.Ping(ctx, src.Name, ip); err != nil {
				t.Errorf("ping %s -> %s during capture: %v", src.Name, ip, err)
			}
		}
	})
	var vx6, vx4, ipv4, inner4, inner6 int
	for _, f := range frames {
		switch ethType(f) {
		case 0x0800:
			ipv4++
			if udpDstPort(f) == api.DefaultVXLANPort {
				vx4++
			}
		case 0x86dd:
			if udpDstPort(f) == api.DefaultVXLANPort {
				vx6++
				// outer Ethernet 14, IPv6 40, UDP 8, VXLAN 8, inner MACs 12
				if len(f) >= 84 {
					switch binary.BigEndian.Uint16(f[82:84]) {
					case 0x0800:
						inner4++
					case 0x86dd:
						inner6++
					}
				}
			}
		}
	}
	t.Logf("capture: %d frames, %d VXLAN over IPv6 (%d inner IPv4, %d inner IPv6), %d IPv4 (%d VXLAN)", len(frames), vx6, inner4, inner6, ipv4, vx4)
	if vx6 == 0 || inner4 == 0 || inner6 == 0 || ipv4 != 0 {
		t.Errorf("underlay capture: %d VXLAN-over-IPv6 frames (%d inner IPv4, %d inner IPv6) and %d IPv4 frames; want IPv6/UDP tunnel packets of both inner families and no IPv4", vx6, inner4, inner6, ipv4)
	}

	// Agent restart: the data path stays while the agent is down, and after
	// it is back.
	h2 := dst.Host
	if err := l.StopAgent(ctx, h2); err != nil {
		t.Fatal(err)
	}
	for _, ip := range []netip.Addr{dst.IP, dst.IP6} {
		if err := l.Ping(ctx, src.Name, ip); err != nil {
			t.Errorf("ping %s -> %s with %s's agent stopped: %v", src.Name, ip, h2, err)
		}
	}
	if err := l.StartAgent(ctx, h2); err != nil {
		t.Fatal(err)
	}
	for _, ip := range []netip.Addr{dst.IP, dst.IP6} {
		if err := tcpEchoServed(ctx, t, l, src.Name, dst.Name, netip.AddrPortFrom(ip, 7131)); err != nil {
			t.Errorf("tcp %s -> %s after %s's agent restarted: %v", src.Name, ip, h2, err)
		}
	}

	// Drift: the FDB entry to h2's IPv6 underlay address, deleted by hand
	// on h1, comes back.
	h1, peer := src.Host, byName[h2]
	fdb := []string{"bridge", "fdb", "del", peer.VTEPMAC.String(), "dev", api.VXLANDevice, "dst", peer.UnderlayIP.String(), "self"}
	if out, err := l.Exec(ctx, h1, fdb...); err != nil {
		t.Fatalf("%s on %s: %v: %s", strings.Join(fdb, " "), h1, err, out)
	}
	want := peer.VTEPMAC.String() + " dst " + peer.UnderlayIP.String()
	waitFor(ctx, t, 30*time.Second, "FDB entry "+want+" back on "+h1, func() (bool, string) {
		out, err := l.Exec(ctx, h1, "bridge", "fdb", "show", "dev", api.VXLANDevice)
		return err == nil && strings.Contains(string(out), want), string(out)
	})
	if err := l.Ping(ctx, src.Name, dst.IP6); err != nil {
		t.Errorf("ping %s -> %s after the FDB repair: %v", src.Name, dst.IP6, err)
	}
}

// TestDualUnderlayDirectRouting: a dual-stack underlay (IPv4 and IPv6 on
// every host) with VXLAN direct routing and dual-stack pods. Each host
// routes the other hosts' IPv6 blocks via their IPv6 underlay address on
// the underlay interface (IPv4 ones via the IPv4 address); IPv6 pod traffic
// crosses the underlay bridge unencapsulated and reaches its target. Bad
// input, each refused with an error naming the node: an IPv6-only agent
// joining these IPv4-underlay nodes, an --underlay-ip6 the interface does
// not hold, and an IPv6 pool on a host whose kernel has IPv6 disabled.
func TestDualUnderlayDirectRouting(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := upBGPLab(t, lab.Config{Name: dualUnderlayLabName, Hosts: 3, ContainersPerHost: 1, VXLANDirectRouting: true,
		Underlay: lab.UnderlayDual, PodCIDR: dualPools[0].String() + "," + dualPools[1].String()})
	hosts, cs := l.Hosts(), l.Containers()
	cl := labStore(ctx, t, l)
	blocks, err := cl.ListBlocks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitDirectRoutes(ctx, t, l, blocks)
	checkAllPairsFamilies(ctx, t, l, cs)
	waitStatusHealthy(ctx, t, l) // every peer direct: none has an FDB entry, all count
	cmd := exec.CommandContext(ctx, opsBin(), "node", "show", hosts[0].Name)
	cmd.Env = append(cmd.Environ(), "SKEIN_ETCD_ENDPOINTS="+l.EtcdEndpoints()[0])
	if r := runCmd(t, cmd); r.code != 0 || !strings.Contains(r.stdout, hosts[0].UnderlayIP.String()+","+hosts[0].UnderlayIP6.String()) {
		t.Errorf("skein node show %s does not list both underlay addresses: %s", hosts[0].Name, r)
	}

	// IPv6 pod traffic on the wire: plain IPv6 between the pods, no tunnel.
	src, dst := cs[0], cs[1]
	frames := captureWhile(ctx, t, l, func() {
		if err := tcpEchoServed(ctx, t, l, src.Name, dst.Name, netip.AddrPortFrom(dst.IP6, 7132)); err != nil {
			t.Errorf("tcp %s -> %s: %v", src.Name, dst.IP6, err)
		}
	})
	var plain, vxlan int
	for _, f := range frames {
		if ethType(f) != 0x86dd || len(f) < 54 {
			continue
		}
		s, _ := netip.AddrFromSlice(f[22:38])
		d, _ := netip.AddrFromSlice(f[38:54])
		switch {
		case udpDstPort(f) == api.DefaultVXLANPort:
			vxlan++
		case (s == src.IP6 && d == dst.IP6) || (s == dst.IP6 && d == src.IP6):
			plain++
		}
	}
	t.Logf("capture: %d frames, %d between %s and %s unencapsulated, %d VXLAN over IPv6", len(frames), plain, src.IP6, dst.IP6, vxlan)
	if plain == 0 || vxlan != 0 {
		t.Errorf("direct IPv6 path: %d plain frames between the pods and %d VXLAN frames; want the pods' packets on the wire as they are and no tunnel", plain, vxlan)
	}

	// Bad input on host 3, its agent stopped first.
	h3 := hosts[2].Name
	if err := l.StopAgent(ctx, h3); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--underlay-ip", lab.UnderlayAddr6(0, 3).String()}, []string{
			"node " + h3 + ": its VXLAN underlay address " + lab.UnderlayAddr6(0, 3).String() + " is IPv6 but node(s) " +
				hosts[0].Name + " (" + hosts[0].UnderlayIP.String() + "), " + hosts[1].Name + " (" + hosts[1].UnderlayIP.String() + ") have IPv4 underlay addresses"}},
		{[]string{"--underlay-ip6", "fd00:99::1"}, []string{"node " + h3 + ": --underlay-ip6 fd00:99::1 is not an address of underlay interface " + lab.HostIface}},
	} {
		err := l.StartAgentArgs(ctx, h3, tc.args...)
		if err == nil {
			t.Errorf("skeind %s started, want it refused", strings.Join(tc.args, " "))
			_ = l.StopAgent(ctx, h3)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("skeind %s: %v\nwant it to say %q", strings.Join(tc.args, " "), err, w)
			}
		}
	}
	// The refused agents claimed nothing: h3's record keeps its IPv4 underlay.
	n3, err := cl.GetNode(ctx, h3)
	if err != nil || n3.UnderlayIP != hosts[2].UnderlayIP {
		t.Errorf("node %s after the refusals: %+v, %v; want underlay %s kept", h3, n3, err, hosts[2].UnderlayIP)
	}
	// Last, since it takes the host's IPv6 addresses away for good.
	if out, err := l.Exec(ctx, h3, "sysctl", "-w", "net.ipv6.conf.all.disable_ipv6=1"); err != nil {
		t.Fatalf("disable IPv6 on %s: %v: %s", h3, err, out)
	}
	err = l.StartAgent(ctx, h3)
	if want := "node " + h3 + ": the cluster has IPv6 pools but this kernel has IPv6 disabled"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("skeind on %s with IPv6 disabled: %v, want %q", h3, err, want)
		_ = l.StopAgent(ctx, h3)
	}
}

// nftSetElems lists the elements of set name in host's table inet skein.
func nftSetElems(ctx context.Context, l *lab.Lab, host, name string) ([]string, error) {
	out, err := l.Exec(ctx, host, "nft", "-j", "list", "set", "inet", "skein", name)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, out)
	}
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []string `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("parse nft -j: %w: %s", err, out)
	}
	for _, o := range doc.Nftables {
		if o.Set != nil {
			return o.Set.Elem, nil
		}
	}
	return nil, fmt.Errorf("no set %s in: %s", name, out)
}

// TestIPv6UnderlayDirectRoutingPaths: direct routing wherever an underlay
// address of the block's family is on the host's subnet, VXLAN elsewhere.
// A dual-stack underlay on two subnets behind a BIRD ToR: hosts 1 and 3
// route each other's blocks of both families directly, host 2 is across
// the ToR and stays on VXLAN (over IPv4) both ways. An IPv6-only underlay:
// IPv6 blocks direct, IPv4 blocks on VXLAN over IPv6 (no IPv4 next hop).
// Every container reaches every other over both families.
func TestIPv6UnderlayDirectRoutingPaths(t *testing.T) {
	for _, cfg := range []lab.Config{
		{Name: labName + "ux", Underlay: lab.UnderlayDual, ToR: lab.ToRBIRD, Subnets: 2},
		{Name: labName + "u6d", Underlay: lab.UnderlayIPv6},
	} {
		t.Run(cfg.Underlay, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cfg.Hosts, cfg.ContainersPerHost, cfg.VXLANDirectRouting = 3, 1, true
			cfg.PodCIDR = dualPools[0].String() + "," + dualPools[1].String()
			l := upBGPLab(t, cfg)
			blocks, err := labStore(ctx, t, l).ListBlocks(ctx)
			if err != nil {
				t.Fatal(err)
			}
			waitDirectRoutes(ctx, t, l, blocks)
			checkAllPairsFamilies(ctx, t, l, l.Containers())
			waitStatusHealthy(ctx, t, l)
		})
	}
}

// TestIPv6UnderlayWireGuard: WireGuard between IPv6-only hosts with
// dual-stack pods: every pair over both families, and on the underlay
// bridge only IPv6/UDP WireGuard packets, no pod address in clear, nothing
// IPv4.
func TestIPv6UnderlayWireGuard(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := upBGPLab(t, lab.Config{Name: labName + "u6w", Hosts: 2, ContainersPerHost: 1, Underlay: lab.UnderlayIPv6,
		Encryption: string(api.EncryptionWireGuard), PodCIDR: dualPools[0].String() + "," + dualPools[1].String()})
	cs := l.Containers()
	checkAllPairsFamilies(ctx, t, l, cs)
	src, dst := cs[0], cs[1]
	frames := captureWhile(ctx, t, l, func() {
		for i, ip := range []netip.Addr{dst.IP, dst.IP6} {
			if err := tcpEchoServed(ctx, t, l, src.Name, dst.Name, netip.AddrPortFrom(ip, uint16(7133+i))); err != nil {
				t.Errorf("tcp %s -> %s: %v", src.Name, ip, err)
			}
		}
	})
	pods := map[netip.Addr]bool{src.IP6: true, dst.IP6: true}
	var wg, clear, ipv4 int
	for _, f := range frames {
		switch ethType(f) {
		case 0x0800:
			ipv4++
		case 0x86dd:
			if len(f) < 54 {
				continue
			}
			s, _ := netip.AddrFromSlice(f[22:38])
			d, _ := netip.AddrFromSlice(f[38:54])
			if pods[s] || pods[d] {
				clear++
			}
			if sp, dp := udpPorts(f); sp == api.DefaultWireGuardPort || dp == api.DefaultWireGuardPort {
				wg++
			}
		}
	}
	t.Logf("capture: %d frames, %d WireGuard over IPv6, %d with a pod address in clear, %d IPv4", len(frames), wg, clear, ipv4)
	if wg == 0 || clear != 0 || ipv4 != 0 {
		t.Errorf("underlay capture: %d WireGuard-over-IPv6 frames, %d with pod addresses in clear, %d IPv4; want WireGuard only", wg, clear, ipv4)
	}
}

// waitDirectRoutes waits until every host routes every other host's blocks
// as direct routing should: via the other host's underlay address of the
// block's family on the underlay interface when that address is on the
// host's subnet (and the host has an address of that family), else through
// the VXLAN device.
func waitDirectRoutes(ctx context.Context, t *testing.T, l *lab.Lab, blocks []api.Block) {
	t.Helper()
	hosts := l.Hosts()
	hostOf := map[string]lab.Host{}
	for _, h := range hosts {
		hostOf[h.Name] = h
	}
	for _, h := range hosts {
		waitFor(ctx, t, 30*time.Second, "routes on "+h.Name, func() (bool, string) {
			var bad []string
			for _, family := range []string{"-4", "-6"} {
				routes, err := hostSkeinRoutesFamily(ctx, l, h.Name, family)
				if err != nil {
					return false, err.Error()
				}
				for _, b := range blocks {
					if b.Node == h.Name || b.CIDR.Addr().Is6() != (family == "-6") {
						continue
					}
					peer := hostOf[b.Node]
					gw, mine := peer.UnderlayIP, h.UnderlayIP
					if b.CIDR.Addr().Is6() {
						gw, mine = peer.UnderlayIP6, h.UnderlayIP6
					}
					r := routes[b.CIDR.String()]
					direct := peer.Subnet == h.Subnet && gw.IsValid() && mine.IsValid() && gw.Is4() == b.CIDR.Addr().Is4()
					switch {
					case direct && (r.Dev != lab.HostIface || r.Gateway != gw.String()):
						bad = append(bad, fmt.Sprintf("%s (%s) = %+v, want via %s dev %s", b.CIDR, b.Node, r, gw, lab.HostIface))
					case !direct && r.Dev != api.VXLANDevice:
						bad = append(bad, fmt.Sprintf("%s (%s) = %+v, want dev %s", b.CIDR, b.Node, r, api.VXLANDevice))
					}
				}
			}
			return len(bad) == 0, strings.Join(bad, "\n")
		})
	}
}

// waitStatusHealthy waits until `skein status` sees every node healthy and
// every peer programmed and up, whatever its link's kind.
func waitStatusHealthy(ctx context.Context, t *testing.T, l *lab.Lab) {
	t.Helper()
	waitFor(ctx, t, 30*time.Second, "skein status healthy", func() (bool, string) {
		cmd := exec.CommandContext(ctx, opsBin(), "status")
		cmd.Env = append(cmd.Environ(), "SKEIN_ETCD_ENDPOINTS="+l.EtcdEndpoints()[0])
		r := runCmd(t, cmd)
		return r.code == 0, r.String()
	})
}

// waitPeerRoutes waits until every host routes every other host's blocks
// of family ("-4" or "-6") through the VXLAN device.
func waitPeerRoutes(ctx context.Context, t *testing.T, l *lab.Lab, family string) {
	t.Helper()
	cl := labStore(ctx, t, l)
	blocks, err := cl.ListBlocks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range l.Hosts() {
		waitFor(ctx, t, 30*time.Second, family+" routes on "+h.Name, func() (bool, string) {
			routes, err := hostSkeinRoutesFamily(ctx, l, h.Name, family)
			if err != nil {
				return false, err.Error()
			}
			for _, b := range blocks {
				if b.Node == h.Name || b.CIDR.Addr().Is6() != (family == "-6") {
					continue
				}
				if r := routes[b.CIDR.String()]; r.Dev != api.VXLANDevice {
					return false, fmt.Sprintf("route to %s (%s) = %+v, want dev %s; all: %v", b.CIDR, b.Node, r, api.VXLANDevice, routes)
				}
			}
			return true, ""
		})
	}
}

// captureWhile captures the lab's underlay bridge while fn runs.
func captureWhile(ctx context.Context, t *testing.T, l *lab.Lab, fn func()) [][]byte {
	t.Helper()
	capt, err := l.CaptureUnderlay(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fn()
	time.Sleep(200 * time.Millisecond) // the last frames reach the capture
	frames, err := capt.Stop()
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	if len(frames) == 0 {
		t.Fatalf("the capture on %s's underlay saw no frame at all", l.Name())
	}
	return frames
}

// tcpEchoServed runs an echo server on dst and a TCP round trip from src.
func tcpEchoServed(ctx context.Context, t *testing.T, l *lab.Lab, src, dst string, addr netip.AddrPort) error {
	t.Helper()
	stop := serveEcho(ctx, t, l, dst, addr)
	defer stop()
	return tcpEcho(ctx, l, src, addr)
}

// ethType is an Ethernet frame's EtherType (0 when too short).
func ethType(f []byte) uint16 {
	if len(f) < 14 {
		return 0
	}
	return binary.BigEndian.Uint16(f[12:14])
}

// udpDstPort is the UDP destination port of an IPv4 or IPv6 frame without
// extension headers, 0 for anything else.
func udpDstPort(f []byte) int {
	_, dst := udpPorts(f)
	return dst
}

// udpPorts are the UDP source and destination ports of an IPv4 or IPv6
// frame without extension headers, 0 for anything else.
func udpPorts(f []byte) (src, dst int) {
	off := 0
	switch ethType(f) {
	case 0x0800:
		if len(f) < 14+20+8 || f[14+9] != 17 {
			return 0, 0
		}
		off = 14 + int(f[14]&0x0f)*4
	case 0x86dd:
		if len(f) < 14+40+8 || f[14+6] != 17 {
			return 0, 0
		}
		off = 14 + 40
	default:
		return 0, 0
	}
	if len(f) < off+8 {
		return 0, 0
	}
	return int(binary.BigEndian.Uint16(f[off:])), int(binary.BigEndian.Uint16(f[off+2:]))
}
