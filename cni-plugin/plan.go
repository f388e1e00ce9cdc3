package main

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/skeinnet/skein/api"
)

// Limits on the MTU the agent may hand out (IPv4 minimum, jumbo maximum).
const (
	minMTU = 68
	maxMTU = 65535
)

// wiring is what ADD plumbs for one attachment and what CHECK verifies. It
// is computed from the agent's allocation (ADD) or the cached result (CHECK).
type wiring struct {
	Owner     api.Owner
	Netns     string
	HostIface string
	HostMAC   net.HardwareAddr
	CtrMAC    net.HardwareAddr // as created; a chained plugin may change it
	IPs       []netip.Addr     // IPv4 first, then IPv6 when dual-stack (IPv6 alone when IPv6-only); each plumbed as a /32 or /128
	// Gateway is the IPv4 next hop; valid exactly when IPs holds an IPv4
	// address.
	Gateway netip.Addr
	// Gateway6 is the IPv6 next hop, a link-local address the host veth
	// carries; valid exactly when IPs holds an IPv6 address.
	Gateway6 netip.Addr
	MTU      int // 0 leaves the kernel default
}

// route is a route on one device: with Gw it goes via that next hop, without
// it is on-link (scope link).
type route struct {
	Dst netip.Prefix
	Gw  netip.Addr
}

func (r route) String() string {
	if r.Gw.IsValid() {
		return fmt.Sprintf("%s via %s", r.Dst, r.Gw)
	}
	return fmt.Sprintf("%s scope link", r.Dst)
}

// planWiring validates an allocation and turns it into the wiring to plumb.
func planWiring(o api.Owner, netnsPath string, alloc api.AllocateResponse) (wiring, error) {
	w := wiring{
		Owner:     o,
		Netns:     netnsPath,
		HostIface: api.HostIfaceName(o),
		HostMAC:   hostMAC(o),
		CtrMAC:    containerMAC(o),
		Gateway:   alloc.Gateway,
		MTU:       alloc.MTU,
	}
	if len(alloc.IPs) == 0 {
		return wiring{}, fmt.Errorf("allocation for %s has no address", o)
	}
	var n4, n6 int
	for _, p := range alloc.IPs {
		a := p.Addr()
		switch {
		case !a.IsValid() || a.Is4In6() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified():
			return wiring{}, fmt.Errorf("allocated address %s: not a unicast pod address", p)
		case a.Is4():
			n4++
		default:
			n6++
		}
		w.IPs = append(w.IPs, a)
	}
	if n4 > 1 || n6 > 1 {
		return wiring{}, fmt.Errorf("allocation for %s: %v, want at most one address per family", o, alloc.IPs)
	}
	if n4 == 0 {
		// IPv6 only: no IPv4 gateway, route or neighbour in the container.
		w.Gateway = netip.Addr{}
	} else {
		if !w.Gateway.IsValid() {
			w.Gateway = netip.MustParseAddr(api.GatewayIP)
		}
		if !w.Gateway.Is4() {
			return wiring{}, fmt.Errorf("gateway %s: want an IPv4 address", w.Gateway)
		}
	}
	if n6 > 0 {
		w.Gateway6 = alloc.Gateway6
		if !w.Gateway6.IsValid() {
			w.Gateway6 = netip.MustParseAddr(api.GatewayIPv6)
		}
		if !w.Gateway6.Is6() || !w.Gateway6.IsLinkLocalUnicast() {
			return wiring{}, fmt.Errorf("IPv6 gateway %s: want a link-local IPv6 address", w.Gateway6)
		}
	}
	if w.MTU != 0 && (w.MTU < minMTU || w.MTU > maxMTU) {
		return wiring{}, fmt.Errorf("MTU %d out of range %d-%d", w.MTU, minMTU, maxMTU)
	}
	return w, nil
}

// hostMAC is the host veth's MAC: derived from the owner so that it is known
// before the link exists (the container's gateway neighbour points at it).
func hostMAC(o api.Owner) net.HardwareAddr { return ownerMAC("host", o) }

// containerMAC is the container interface's MAC as created. DEL deletes a
// container interface only if it still carries it: an interface with the
// name but another MAC is not provably ours.
func containerMAC(o api.Owner) net.HardwareAddr { return ownerMAC("container", o) }

// ownerMAC derives a locally administered unicast MAC from the owner. Only
// the two ends of one veth ever see it, so collisions elsewhere do not matter.
func ownerMAC(side string, o api.Owner) net.HardwareAddr {
	sum := sha256.Sum256([]byte(side + "\x00" + o.ContainerID + "\x00" + o.IfName))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}

// containerRoutes are the routes on the container interface: with IPv4,
// the gateway on-link, then the default route through it; with IPv6, the
// IPv6 default route via the link-local gateway (always on-link, no route
// needed).
func containerRoutes(w wiring) []route {
	var out []route
	if w.Gateway.IsValid() {
		out = append(out,
			route{Dst: netip.PrefixFrom(w.Gateway, 32)},
			route{Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Gw: w.Gateway},
		)
	}
	if w.Gateway6.IsValid() {
		out = append(out, route{Dst: netip.PrefixFrom(netip.IPv6Unspecified(), 0), Gw: w.Gateway6})
	}
	return out
}

// hostGateway6 is the host veth's IPv6 address: the containers' gateway.
func hostGateway6(w wiring) netip.Prefix { return netip.PrefixFrom(w.Gateway6, 64) }

// hostRoutes are the /32 routes to the container on the host veth.
func hostRoutes(w wiring) []route {
	out := make([]route, 0, len(w.IPs))
	for _, ip := range w.IPs {
		out = append(out, route{Dst: netip.PrefixFrom(ip, ip.BitLen())})
	}
	return out
}

// linkState is what CHECK observed about one interface.
type linkState struct {
	Name   string
	Veth   bool
	Up     bool
	MTU    int
	MAC    net.HardwareAddr
	Addrs  []netip.Prefix
	Routes []route                         // main-table routes out of this link
	Neighs map[netip.Addr]net.HardwareAddr // permanent neighbours on this link
}

// observed is the kernel state of an attachment; a nil link is missing.
type observed struct {
	Container *linkState
	Host      *linkState
}

// checkWiring lists what is missing or wrong in have compared with w, in a
// stable order; nil means the attachment is intact. Extra routes or
// addresses are fine: chained plugins may add their own.
func checkWiring(w wiring, ifName string, have observed) []string {
	var problems []string
	c, h := have.Container, have.Host
	switch {
	case c == nil:
		problems = append(problems, fmt.Sprintf("interface %s missing in netns %s", ifName, w.Netns))
	default:
		if !c.Veth {
			problems = append(problems, fmt.Sprintf("interface %s is not a veth", ifName))
		}
		if !c.Up {
			problems = append(problems, fmt.Sprintf("interface %s is down", ifName))
		}
		if w.MTU != 0 && c.MTU != w.MTU {
			problems = append(problems, fmt.Sprintf("interface %s has MTU %d, want %d", ifName, c.MTU, w.MTU))
		}
		for _, ip := range w.IPs {
			want := netip.PrefixFrom(ip, ip.BitLen())
			if !slices.Contains(c.Addrs, want) {
				problems = append(problems, fmt.Sprintf("interface %s lacks address %s", ifName, want))
			}
		}
		for _, r := range containerRoutes(w) {
			if !slices.Contains(c.Routes, r) {
				problems = append(problems, fmt.Sprintf("netns %s lacks route %s dev %s", w.Netns, r, ifName))
			}
		}
		if h != nil {
			for _, gw := range []netip.Addr{w.Gateway, w.Gateway6} {
				if !gw.IsValid() {
					continue
				}
				if mac, ok := c.Neighs[gw]; !ok || mac.String() != h.MAC.String() {
					problems = append(problems, fmt.Sprintf("netns %s lacks permanent neighbour %s lladdr %s dev %s", w.Netns, gw, h.MAC, ifName))
				}
			}
		}
	}
	switch {
	case h == nil:
		problems = append(problems, fmt.Sprintf("host veth %s missing", w.HostIface))
	default:
		if !h.Veth {
			problems = append(problems, fmt.Sprintf("host interface %s is not a veth", w.HostIface))
		}
		if !h.Up {
			problems = append(problems, fmt.Sprintf("host veth %s is down", w.HostIface))
		}
		for _, r := range hostRoutes(w) {
			if !slices.Contains(h.Routes, r) {
				problems = append(problems, fmt.Sprintf("host lacks route %s dev %s", r, w.HostIface))
			}
		}
		if w.Gateway6.IsValid() && !slices.Contains(h.Addrs, hostGateway6(w)) {
			problems = append(problems, fmt.Sprintf("host veth %s lacks address %s", w.HostIface, hostGateway6(w)))
		}
	}
	return problems
}
