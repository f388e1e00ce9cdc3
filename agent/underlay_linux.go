package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/internal/nlretry"
)

// findUnderlay resolves the underlay: the named interface, else the one
// holding ip (or ip6), else the one that carries the default route (IPv4,
// else IPv6). ip and ip6, when valid, must be on it (pickUnderlay).
func findUnderlay(iface string, ip, ip6 netip.Addr) (underlay, error) {
	var link netlink.Link
	var err error
	switch {
	case iface != "":
		link, err = netlink.LinkByName(iface)
		if err != nil {
			return underlay{}, fmt.Errorf("underlay interface %q: %w", iface, err)
		}
	case ip.IsValid():
		link, err = linkWithAddr(ip, "--underlay-ip")
		if err != nil {
			return underlay{}, err
		}
	case ip6.IsValid():
		link, err = linkWithAddr(ip6, "--underlay-ip6")
		if err != nil {
			return underlay{}, err
		}
	default:
		link, err = defaultRouteLink()
		if err != nil {
			return underlay{}, fmt.Errorf("no --iface or --underlay-ip given and %w", err)
		}
	}
	addrs, err := nlretry.Dump(func() ([]netlink.Addr, error) { return netlink.AddrList(link, unix.AF_UNSPEC) })
	if err != nil {
		return underlay{}, fmt.Errorf("list addresses of %s: %w", link.Attrs().Name, err)
	}
	u, err := pickUnderlay(link.Attrs().Name, linkPrefixes(addrs), ip, ip6)
	if err != nil {
		return underlay{}, err
	}
	u.Index, u.MTU = link.Attrs().Index, link.Attrs().MTU
	return u, nil
}

// linkPrefixes converts netlink addresses, IPv4 ones as 4-byte addresses;
// addresses whose duplicate address detection failed are left out.
func linkPrefixes(addrs []netlink.Addr) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		if a.Flags&unix.IFA_F_DADFAILED != 0 {
			continue
		}
		addr, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		addr = addr.Unmap()
		if addr.Is4() && ones > 32 {
			ones -= 96
		}
		out = append(out, netip.PrefixFrom(addr, ones))
	}
	return out
}

func linkWithAddr(ip netip.Addr, flag string) (netlink.Link, error) {
	addrs, err := nlretry.Dump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, unix.AF_UNSPEC) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if addr, ok := netip.AddrFromSlice(a.IP); ok && addr.Unmap() == ip {
			return netlink.LinkByIndex(a.LinkIndex)
		}
	}
	return nil, fmt.Errorf("%s %s is not configured on any interface", flag, ip)
}

func defaultRouteLink() (netlink.Link, error) {
	for _, family := range []int{unix.AF_INET, unix.AF_INET6} {
		routes, err := nlretry.Dump(func() ([]netlink.Route, error) { return netlink.RouteList(nil, family) })
		if err != nil {
			return nil, fmt.Errorf("list routes: %w", err)
		}
		for _, r := range routes {
			if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.LinkIndex > 0 {
				return netlink.LinkByIndex(r.LinkIndex)
			}
		}
	}
	return nil, errors.New("there is no default route to find the underlay by")
}

// enableForwarding turns on IPv4 forwarding in the agent's network namespace:
// containers are routed, not bridged.
func enableForwarding() error {
	const p = "/proc/sys/net/ipv4/ip_forward"
	b, err := os.ReadFile(p)
	if err == nil && len(b) > 0 && b[0] == '1' {
		return nil
	}
	if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("enable forwarding: %w", err)
	}
	return nil
}

// enableForwarding6 turns on IPv6 forwarding in the agent's network
// namespace for a dual-stack cluster, or says why it cannot: a kernel
// without IPv6 (or with it disabled) cannot carry the cluster's IPv6 pools.
// Forwarding makes the host a router: its interfaces stop taking router
// advertisements, which the IPv4 underlay does not need.
func enableForwarding6(node string) error {
	const p = "/proc/sys/net/ipv6/conf/all/forwarding"
	if b, err := os.ReadFile("/proc/sys/net/ipv6/conf/all/disable_ipv6"); err != nil || (len(b) > 0 && b[0] == '1') {
		return fmt.Errorf("node %s: the cluster has IPv6 pools but this kernel has IPv6 disabled or not built in (net.ipv6.conf.all.disable_ipv6, err %v)", node, err)
	}
	b, err := os.ReadFile(p)
	if err == nil && len(b) > 0 && b[0] == '1' {
		return nil
	}
	if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("node %s: enable IPv6 forwarding: %w", node, err)
	}
	return nil
}

// keepRouterAdvertisements makes an IPv6 underlay interface keep taking
// router advertisements once forwarding is on (accept_ra 1 → 2): a host
// whose IPv6 underlay address or default route comes from them would
// otherwise lose it when they expire. An interface that takes none (0) or
// already takes them anyway (2) is left alone.
func keepRouterAdvertisements(node, iface string) error {
	p := "/proc/sys/net/ipv6/conf/" + iface + "/accept_ra"
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("node %s: read %s: %w", node, p, err)
	}
	if strings.TrimSpace(string(b)) != "1" {
		return nil
	}
	if err := os.WriteFile(p, []byte("2"), 0o644); err != nil {
		return fmt.Errorf("node %s: keep taking router advertisements on the IPv6 underlay %s (accept_ra=2): %w", node, iface, err)
	}
	return nil
}
