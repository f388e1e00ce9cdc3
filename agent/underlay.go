package agent

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/skeinnet/skein/api"
)

// underlay describes the host interface that carries inter-host traffic.
type underlay struct {
	Iface string
	Index int
	MTU   int
	// IP is the address VXLAN, BGP and etcd use (api.Node.UnderlayIP):
	// IPv4 when the interface has one, else its IPv6 address.
	IP      netip.Addr
	Network netip.Prefix // the on-link subnet of IP (for same-L2 checks)
	// IP6 is the interface's IPv6 underlay address (api.Node.UnderlayIP6),
	// invalid when it has none; equal to IP on an IPv6-only node.
	IP6      netip.Addr
	Network6 netip.Prefix // the on-link subnet of IP6
}

// pickUnderlay chooses the underlay addresses of interface iface among its
// addresses addrs, in the kernel's order. ip (--underlay-ip) and ip6
// (--underlay-ip6), when valid, must be among them. Without ip the IPv4
// address is the first IPv4 one, else the IPv6 one; without ip6 the IPv6
// address is the first global one (link-local addresses change with the
// MAC and cannot be routed).
func pickUnderlay(iface string, addrs []netip.Prefix, ip, ip6 netip.Addr) (underlay, error) {
	u := underlay{Iface: iface}
	find := func(a netip.Addr) (netip.Prefix, bool) {
		for _, p := range addrs {
			if p.Addr().Unmap() == a {
				return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()), true
			}
		}
		return netip.Prefix{}, false
	}
	if ip.IsValid() && ip.Is6() && ip6.IsValid() && ip6 != ip {
		return underlay{}, fmt.Errorf("--underlay-ip %s is IPv6, so it is the IPv6 underlay address too, and --underlay-ip6 %s differs", ip, ip6)
	}
	if ip.Is6() && !ip6.IsValid() {
		ip6 = ip
	}
	if ip6.IsValid() {
		p, ok := find(ip6)
		if !ok {
			return underlay{}, fmt.Errorf("--underlay-ip6 %s is not an address of underlay interface %s", ip6, iface)
		}
		u.IP6, u.Network6 = p.Addr(), p.Masked()
	} else {
		for _, p := range addrs {
			if a := p.Addr(); a.Is6() && !a.Is4In6() && a.IsGlobalUnicast() {
				u.IP6, u.Network6 = a, p.Masked()
				break
			}
		}
	}
	switch {
	case ip.IsValid():
		p, ok := find(ip)
		if !ok {
			return underlay{}, fmt.Errorf("underlay interface %s does not hold --underlay-ip %s", iface, ip)
		}
		u.IP, u.Network = p.Addr(), p.Masked()
	default:
		for _, p := range addrs {
			if a := p.Addr().Unmap(); a.Is4() {
				u.IP, u.Network = a, netip.PrefixFrom(a, p.Bits()).Masked()
				break
			}
		}
		if !u.IP.IsValid() {
			u.IP, u.Network = u.IP6, u.Network6
		}
	}
	if !u.IP.IsValid() {
		return underlay{}, fmt.Errorf("underlay interface %s has no IPv4 address and no global IPv6 address", iface)
	}
	return u, nil
}

// familyName names an address's family in messages.
func familyName(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// vxlanFamilyConflict reports the nodes whose underlay address is of
// another family than this node's ip: a kernel VXLAN device carries one
// underlay family, so this node could not reach them over the overlay, nor
// they it. nil when there are none.
func vxlanFamilyConflict(self string, ip netip.Addr, nodes []api.Node) error {
	var others []string
	for _, n := range nodes {
		if n.Name != self && n.UnderlayIP.IsValid() && n.UnderlayIP.Is4() != ip.Is4() {
			others = append(others, fmt.Sprintf("%s (%s)", n.Name, n.UnderlayIP))
		}
	}
	if len(others) == 0 {
		return nil
	}
	slices.Sort(others)
	other := "IPv6"
	if ip.Is6() {
		other = "IPv4"
	}
	const most = 5
	more := ""
	if len(others) > most {
		more = fmt.Sprintf(" and %d more", len(others)-most)
		others = others[:most]
	}
	return fmt.Errorf("node %s: its VXLAN underlay address %s is %s but node(s) %s%s have %s underlay addresses; a VXLAN device carries one underlay family, so every node of a VXLAN cluster needs an underlay address of one family (give this node one with --underlay-ip, or remove nodes that are gone with `skein node delete`)",
		self, ip, familyName(ip), strings.Join(others, ", "), more, other)
}

// checkV6Only refuses, before any block is claimed, what an IPv6-only
// cluster cannot do on this node: route its pods over BGP without an IPv6
// underlay address (their blocks' next hop), or serve the Docker driver
// (libnetwork asks for an IPv4 address first and pairs IPv6 with it).
func checkV6Only(node string, cl api.Cluster, ul underlay, dockerSocket string) error {
	if !api.V6Only(cl.Pools) {
		return nil
	}
	if cl.Backend == api.BackendBGP && !ul.IP6.IsValid() {
		return fmt.Errorf("node %s: backend bgp in an IPv6-only cluster needs an IPv6 underlay address (the next hop of its IPv6 blocks); %s has none: give it one (--underlay-ip6)", node, ul.Iface)
	}
	if dockerSocket != "" {
		return fmt.Errorf("node %s: --docker-plugin-socket: the Docker driver needs an IPv4 pool (Docker asks for an IPv4 address first) and this cluster is IPv6-only; leave the flag out", node)
	}
	return nil
}
