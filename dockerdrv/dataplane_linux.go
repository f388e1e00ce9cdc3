package dockerdrv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/api"
)

// NetlinkDataplane plumbs the host side of Docker attachments in the
// agent's own (host) network namespace.
type NetlinkDataplane struct {
	h *netlink.Handle
}

// NewNetlinkDataplane opens a netlink handle in the current netns.
func NewNetlinkDataplane() (*NetlinkDataplane, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	return &NetlinkDataplane{h: h}, nil
}

// Close releases the netlink handle.
func (d *NetlinkDataplane) Close() { d.h.Close() }

// AddVeth implements Dataplane: the pair is created in the host netns (the
// peer stays there until libnetwork moves it into the container), the host
// side is tuned as skein-cni tunes it, brought up and routed to.
func (d *NetlinkDataplane) AddVeth(_ context.Context, v Veth) error {
	la := netlink.NewLinkAttrs()
	la.Name = v.HostIface
	la.MTU = v.MTU
	veth := &netlink.Veth{LinkAttrs: la, PeerName: v.Peer, PeerTxQLen: -1}
	if err := d.h.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s peer %s: %w", v.HostIface, v.Peer, err)
	}
	if err := hostSysctls(v.HostIface, v.v6()); err != nil {
		return err
	}
	host, err := d.h.LinkByName(v.HostIface)
	if err != nil {
		return fmt.Errorf("find %s: %w", v.HostIface, err)
	}
	if v.v6() {
		// The container's IPv6 gateway, as skein-cni sets it: link-local,
		// so the same on every veth; nodad, so it answers at once.
		gw := &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(api.GatewayIPv6), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD}
		if err := d.h.AddrReplace(host, gw); err != nil {
			return fmt.Errorf("address %s/64 on %s: %w", api.GatewayIPv6, v.HostIface, err)
		}
	}
	if err := d.h.LinkSetUp(host); err != nil {
		return fmt.Errorf("set %s up: %w", v.HostIface, err)
	}
	for _, ip := range v.IPs {
		r := &netlink.Route{
			LinkIndex: host.Attrs().Index,
			Dst:       &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(ip.BitLen(), ip.BitLen())},
			Scope:     netlink.SCOPE_LINK,
			Protocol:  netlink.RouteProtocol(api.RouteProtocol),
		}
		if err := d.h.RouteReplace(r); err != nil {
			return fmt.Errorf("replace route %s dev %s: %w", netip.PrefixFrom(ip, ip.BitLen()), v.HostIface, err)
		}
	}
	return nil
}

// DelVeth implements Dataplane.
func (d *NetlinkDataplane) DelVeth(_ context.Context, hostIface string) error {
	l, err := d.h.LinkByName(hostIface)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
		return nil
	case err != nil:
		return fmt.Errorf("look up %s: %w", hostIface, err)
	}
	if _, ok := l.(*netlink.Veth); !ok {
		return fmt.Errorf("delete %s: not a veth, not Skein's", hostIface)
	}
	if err := d.h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete veth %s: %w", hostIface, err)
	}
	return nil
}

// SetGatewayNeigh implements Dataplane. The container interface is the host
// veth's peer, found by index in the container's netns.
func (d *NetlinkDataplane) SetGatewayNeigh(_ context.Context, netnsPath, hostIface string, v6 bool) error {
	host, err := d.h.LinkByName(hostIface)
	if err != nil {
		return fmt.Errorf("look up %s: %w", hostIface, err)
	}
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", netnsPath, err)
	}
	defer ns.Close()
	c, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in netns %s: %w", netnsPath, err)
	}
	defer c.Close()
	peer, err := c.LinkByIndex(host.Attrs().ParentIndex)
	if err != nil {
		return fmt.Errorf("peer of %s in netns %s: %w", hostIface, netnsPath, err)
	}
	gws := []net.IP{net.ParseIP(api.GatewayIP).To4()}
	if v6 {
		gws = append(gws, net.ParseIP(api.GatewayIPv6))
	}
	for _, gw := range gws {
		fam := netlink.FAMILY_V4
		if gw.To4() == nil {
			fam = netlink.FAMILY_V6
		}
		n := &netlink.Neigh{
			LinkIndex:    peer.Attrs().Index,
			Family:       fam,
			State:        netlink.NUD_PERMANENT,
			IP:           gw,
			HardwareAddr: host.Attrs().HardwareAddr,
		}
		if err := c.NeighSet(n); err != nil {
			return fmt.Errorf("set neighbour %s lladdr %s dev %s in netns %s: %w", gw, host.Attrs().HardwareAddr, peer.Attrs().Name, netnsPath, err)
		}
	}
	return nil
}

// hostSysctls tunes the host veth as skein-cni does: proxy ARP (no delay)
// answers the container's ARP for the gateway 169.254.1.1 (libnetwork sets
// no permanent neighbour), per-device forwarding, no IPv6 on an IPv4-only
// link; on an IPv6 one: IPv6 on, no router advertisements taken, no DAD
// (the gateway fe80::1 is nodad), IPv6 forwarding on the device.
func hostSysctls(iface string, v6 bool) error {
	type sysctl struct {
		path, value string
		optional    bool // absent when the kernel runs without IPv6
	}
	set := []sysctl{
		{filepath.Join("/proc/sys/net/ipv4/conf", iface, "proxy_arp"), "1", false},
		{filepath.Join("/proc/sys/net/ipv4/neigh", iface, "proxy_delay"), "0", false},
		{filepath.Join("/proc/sys/net/ipv4/conf", iface, "forwarding"), "1", false},
		{filepath.Join("/proc/sys/net/ipv6/conf", iface, "disable_ipv6"), "1", true},
	}
	if v6 {
		c := filepath.Join("/proc/sys/net/ipv6/conf", iface)
		set = append(set[:3],
			sysctl{filepath.Join(c, "disable_ipv6"), "0", false},
			sysctl{filepath.Join(c, "accept_ra"), "0", false},
			sysctl{filepath.Join(c, "accept_dad"), "0", false},
			sysctl{filepath.Join(c, "forwarding"), "1", false},
		)
	}
	for _, s := range set {
		if err := os.WriteFile(s.path, []byte(s.value), 0o644); err != nil {
			if s.optional && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return fmt.Errorf("sysctl %s=%s: %w", s.path, s.value, err)
		}
	}
	return nil
}
