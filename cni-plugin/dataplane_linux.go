package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/nlretry"
)

// operUpTimeout bounds the wait for the host veth to be operationally up.
const operUpTimeout = 2 * time.Second

// netlinkDataplane plumbs attachments with netlink. The plugin runs in the
// host netns (the runtime execs it there); the container side is reached
// through a netlink handle opened in CNI_NETNS, so no goroutine ever
// switches namespace.
type netlinkDataplane struct {
	host *netlink.Handle
	log  *slog.Logger
}

// newNetlinkDataplane opens a netlink handle in the current (host) netns.
// The handle lives as long as the process, which is one CNI command.
func newNetlinkDataplane(log *slog.Logger) (*netlinkDataplane, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	return &netlinkDataplane{host: h, log: log}, nil
}

// Preflight implements dataplane.
func (d *netlinkDataplane) Preflight(netnsPath, hostIface string) error {
	nsh, err := openNetns(netnsPath)
	if err != nil {
		return err
	}
	closeNetns(nsh)
	_, err = d.host.LinkByName(hostIface)
	switch {
	case err == nil:
		return fmt.Errorf("%s: %w", hostIface, errHostIfaceExists)
	case !isLinkNotFound(err):
		return fmt.Errorf("look up %s: %w", hostIface, err)
	}
	return nil
}

// Plumb implements dataplane. The veth is created in the host netns with its
// peer born inside the container netns (no move), down, so the host side's
// sysctls are set before IPv6 could configure anything on it.
func (d *netlinkDataplane) Plumb(w wiring, ifName string) (plumbed, error) {
	st := newSteps()
	defer func() { d.log.Debug("plumb", st.attr()) }()
	nsh, err := openNetns(w.Netns)
	if err != nil {
		return plumbed{}, err
	}
	defer closeNetns(nsh)
	c, err := netlink.NewHandleAt(nsh, unix.NETLINK_ROUTE)
	if err != nil {
		return plumbed{}, fmt.Errorf("netlink in netns %s: %w", w.Netns, err)
	}
	defer c.Close()
	st.done("netns_handle")

	la := netlink.NewLinkAttrs()
	la.Name = w.HostIface
	la.MTU = w.MTU
	la.HardwareAddr = w.HostMAC
	veth := &netlink.Veth{LinkAttrs: la, PeerName: ifName, PeerHardwareAddr: w.CtrMAC, PeerNamespace: netlink.NsFd(nsh), PeerTxQLen: -1}
	if err := d.host.LinkAdd(veth); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return plumbed{}, fmt.Errorf("create veth %s: interface %s already exists in netns %s: %w", w.HostIface, ifName, w.Netns, err)
		}
		return plumbed{}, fmt.Errorf("create veth %s peer %s: %w", w.HostIface, ifName, err)
	}
	if veth.Index == 0 {
		return plumbed{}, fmt.Errorf("create veth %s: index unknown after creation", w.HostIface)
	}
	st.done("veth_add")
	if err := hostSysctls(w); err != nil {
		return plumbed{}, err
	}
	st.done("sysctls")
	if w.Gateway6.IsValid() {
		// The containers' IPv6 gateway, on every host veth (link-local:
		// one per link); nodad so it answers from the first packet.
		gw := &netlink.Addr{IPNet: prefixIPNetPtr(hostGateway6(w)), Flags: unix.IFA_F_NODAD}
		if err := d.host.AddrAdd(veth, gw); err != nil {
			return plumbed{}, fmt.Errorf("add address %s to %s: %w", hostGateway6(w), w.HostIface, err)
		}
	}
	if err := d.host.LinkSetUp(veth); err != nil {
		return plumbed{}, fmt.Errorf("set %s up: %w", w.HostIface, err)
	}
	st.done("host_up")

	cl, err := c.LinkByName(ifName)
	if err != nil {
		return plumbed{}, fmt.Errorf("find %s in netns %s: %w", ifName, w.Netns, err)
	}
	for _, ip := range w.IPs {
		addr := &netlink.Addr{IPNet: prefixIPNetPtr(netip.PrefixFrom(ip, ip.BitLen()))}
		if ip.Is6() {
			// Usable at once: no duplicate can exist (IPAM owns the
			// address), and a tentative address would fail the first sends.
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := c.AddrAdd(cl, addr); err != nil {
			return plumbed{}, fmt.Errorf("add address %s to %s: %w", ip, ifName, err)
		}
	}
	if err := c.LinkSetUp(cl); err != nil {
		return plumbed{}, fmt.Errorf("set %s up: %w", ifName, err)
	}
	for _, r := range containerRoutes(w) {
		// Add, not replace: an existing default route belongs to another
		// attachment, and taking it over would be a surprise.
		if err := c.RouteAdd(nlRoute(cl.Attrs().Index, r, 0)); err != nil {
			return plumbed{}, fmt.Errorf("add route %s dev %s: %w", r, ifName, err)
		}
	}
	for _, gw := range []netip.Addr{w.Gateway, w.Gateway6} {
		if !gw.IsValid() {
			continue
		}
		family := netlink.FAMILY_V4
		if gw.Is6() {
			family = netlink.FAMILY_V6
		}
		neigh := &netlink.Neigh{
			LinkIndex:    cl.Attrs().Index,
			Family:       family,
			State:        netlink.NUD_PERMANENT,
			IP:           gw.AsSlice(),
			HardwareAddr: w.HostMAC,
		}
		if err := c.NeighSet(neigh); err != nil {
			return plumbed{}, fmt.Errorf("set neighbour %s lladdr %s dev %s: %w", gw, w.HostMAC, ifName, err)
		}
	}
	st.done("container_addr_routes_neigh")
	for _, r := range hostRoutes(w) {
		if err := d.host.RouteReplace(nlRoute(veth.Index, r, api.RouteProtocol)); err != nil {
			return plumbed{}, fmt.Errorf("replace route %s dev %s: %w", r, w.HostIface, err)
		}
	}
	st.done("host_route")
	if err := d.waitOperUp(w.HostIface, operUpTimeout); err != nil {
		// Traffic flows once the kernel catches up; not worth failing the ADD.
		d.log.Warn("host veth not operationally up yet", "ifname", w.HostIface, "err", err)
	}
	st.done("wait_oper_up")
	return plumbed{ContainerMAC: cl.Attrs().HardwareAddr, MTU: cl.Attrs().MTU}, nil
}

// waitOperUp waits until the link called name is operationally up. The host
// veth comes up before its peer, without carrier; the kernel attaches its
// queueing discipline only when it processes the carrier change
// (asynchronously, in linkwatch, under the RTNL lock). Until then the veth
// drops what the host sends to the container, the first ARP request
// included, which costs the container a one-second ARP retransmit on a busy
// host. Usually the link is up by the time this looks.
func (d *netlinkDataplane) waitOperUp(name string, timeout time.Duration) error {
	updates := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{}); err != nil {
		return fmt.Errorf("subscribe to link updates: %w", err)
	}
	defer func() {
		close(done)
		go func() {
			for range updates { // let the subscription finish; it closes updates
			}
		}()
	}()
	// Looked at after subscribing, so a change in between is not missed.
	l, err := d.host.LinkByName(name)
	if err != nil {
		return fmt.Errorf("look up %s: %w", name, err)
	}
	if l.Attrs().OperState == netlink.OperUp {
		return nil
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case u, ok := <-updates:
			if !ok {
				return fmt.Errorf("link updates ended")
			}
			if u.Attrs().Name == name && u.Attrs().OperState == netlink.OperUp {
				return nil
			}
		case <-timer.C:
			return fmt.Errorf("%s still %s after %v", name, l.Attrs().OperState, timeout)
		}
	}
}

// hostSysctls tunes the host veth (never a global sysctl: the agent owns
// forwarding and the rest).
//   - proxy_arp (with no delay): the fallback answer for 169.254.1.1 should
//     the container lose its permanent neighbour entry.
//   - forwarding: per device, so the container's traffic is routed even if
//     this veth appeared before the agent enabled forwarding globally.
//   - disable_ipv6 while the attachment is IPv4-only: no link-local address,
//     DAD or router solicitations on a link that carries no IPv6.
//   - dual-stack: IPv6 on, no router advertisements accepted, no DAD (the
//     gateway fe80::1 is added nodad; the kernel's own link-local address
//     need not wait either), IPv6 forwarding on the device. Forwarding
//     between devices is the agent's (net.ipv6.conf.all.forwarding).
func hostSysctls(w wiring) error {
	type sysctl struct {
		path     string
		value    string
		optional bool // absent when the kernel runs without IPv6
	}
	set := []sysctl{
		{filepath.Join("/proc/sys/net/ipv4/conf", w.HostIface, "proxy_arp"), "1", false},
		{filepath.Join("/proc/sys/net/ipv4/neigh", w.HostIface, "proxy_delay"), "0", false},
		{filepath.Join("/proc/sys/net/ipv4/conf", w.HostIface, "forwarding"), "1", false},
		{filepath.Join("/proc/sys/net/ipv6/conf", w.HostIface, "disable_ipv6"), "1", true},
	}
	if w.Gateway6.IsValid() {
		v6 := filepath.Join("/proc/sys/net/ipv6/conf", w.HostIface)
		set = append(set[:3],
			sysctl{filepath.Join(v6, "disable_ipv6"), "0", false},
			sysctl{filepath.Join(v6, "accept_ra"), "0", false},
			sysctl{filepath.Join(v6, "accept_dad"), "0", false},
			sysctl{filepath.Join(v6, "forwarding"), "1", false},
		)
	}
	for _, s := range set {
		err := os.WriteFile(s.path, []byte(s.value), 0o644)
		if err != nil && !(s.optional && errors.Is(err, os.ErrNotExist)) {
			return fmt.Errorf("sysctl %s=%s: %w", s.path, s.value, err)
		}
	}
	return nil
}

// Unplumb implements dataplane. Deleting the host veth takes its peer and the
// host /32 routes with it; the container side is looked at as well in case
// the pair was split, and deleted only if it still has the MAC it was
// created with.
func (d *netlinkDataplane) Unplumb(netnsPath string, owner api.Owner) error {
	var errs []error
	deleted, err := delVeth(d.host, api.HostIfaceName(owner), nil)
	if err != nil {
		errs = append(errs, fmt.Errorf("host: %w", err))
	}
	// A veth's peer goes with it: entering the netns to find nothing
	// there cost every DEL a namespace open and a netlink socket.
	if !deleted && netnsPath != "" && owner.IfName != "" {
		if err := d.delContainerIface(netnsPath, owner); err != nil {
			errs = append(errs, fmt.Errorf("netns %s: %w", netnsPath, err))
		}
	}
	return errors.Join(errs...)
}

func (d *netlinkDataplane) delContainerIface(netnsPath string, owner api.Owner) error {
	nsh, err := openNetns(netnsPath)
	if err != nil {
		// A DEL may come after the runtime removed the netns (it takes the veth along).
		d.log.Debug("netns gone, nothing to delete inside", "netns", netnsPath, "err", err)
		return nil
	}
	defer closeNetns(nsh)
	c, err := netlink.NewHandleAt(nsh, unix.NETLINK_ROUTE)
	if err != nil {
		d.log.Debug("netns not enterable, nothing to delete inside", "netns", netnsPath, "err", err)
		return nil
	}
	defer c.Close()
	_, err = delVeth(c, owner.IfName, containerMAC(owner))
	return err
}

// delVeth deletes the veth called name, if it has the MAC mac (any MAC when
// nil), and reports whether it did. A missing link, or one that is not
// provably ours, is left alone without error.
func delVeth(h *netlink.Handle, name string, mac net.HardwareAddr) (bool, error) {
	l, err := h.LinkByName(name)
	if isLinkNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up %s: %w", name, err)
	}
	if l.Type() != "veth" || (mac != nil && l.Attrs().HardwareAddr.String() != mac.String()) {
		return false, nil
	}
	if err := h.LinkDel(l); err != nil {
		if errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("delete %s: %w", name, err)
	}
	return true, nil
}

// Observe implements dataplane.
func (d *netlinkDataplane) Observe(netnsPath, ifName, hostIface string) (observed, error) {
	var o observed
	hs, err := observeLink(d.host, hostIface)
	if err != nil {
		return observed{}, fmt.Errorf("host: %w", err)
	}
	o.Host = hs
	nsh, err := openNetns(netnsPath)
	if err != nil {
		return observed{}, err
	}
	defer closeNetns(nsh)
	c, err := netlink.NewHandleAt(nsh, unix.NETLINK_ROUTE)
	if err != nil {
		return observed{}, fmt.Errorf("netlink in netns %s: %w: %w", netnsPath, errNetns, err)
	}
	defer c.Close()
	cs, err := observeLink(c, ifName)
	if err != nil {
		return observed{}, fmt.Errorf("netns %s: %w", netnsPath, err)
	}
	o.Container = cs
	return o, nil
}

// observeLink reads one link's state through h; nil when the link is missing.
func observeLink(h *netlink.Handle, name string) (*linkState, error) {
	l, err := h.LinkByName(name)
	if isLinkNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", name, err)
	}
	a := l.Attrs()
	s := &linkState{
		Name:   name,
		Veth:   l.Type() == "veth",
		Up:     a.Flags&net.FlagUp != 0,
		MTU:    a.MTU,
		MAC:    a.HardwareAddr,
		Neighs: map[netip.Addr]net.HardwareAddr{},
	}
	addrs, err := nlretry.Dump(func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", name, err)
	}
	for _, ad := range addrs {
		if p, ok := ipNetPrefix(ad.IPNet); ok {
			s.Addrs = append(s.Addrs, p)
		}
	}
	filter := &netlink.Route{LinkIndex: a.Index, Table: unix.RT_TABLE_MAIN}
	routes, err := nlretry.Dump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes of %s: %w", name, err)
	}
	for _, r := range routes {
		dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if r.Family == netlink.FAMILY_V6 {
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		if r.Dst != nil {
			p, ok := ipNetPrefix(r.Dst)
			if !ok {
				continue
			}
			dst = p
		}
		var gw netip.Addr
		if g, ok := netip.AddrFromSlice(r.Gw); ok {
			gw = g.Unmap()
		}
		s.Routes = append(s.Routes, route{Dst: dst, Gw: gw})
	}
	var neighs []netlink.Neigh
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		ns, err := nlretry.Dump(func() ([]netlink.Neigh, error) { return h.NeighList(a.Index, family) })
		if err != nil {
			return nil, fmt.Errorf("list neighbours of %s: %w", name, err)
		}
		neighs = append(neighs, ns...)
	}
	for _, n := range neighs {
		if n.State&netlink.NUD_PERMANENT == 0 {
			continue
		}
		if ip, ok := netip.AddrFromSlice(n.IP); ok {
			s.Neighs[ip.Unmap()] = n.HardwareAddr
		}
	}
	return s, nil
}

// openNetns opens a network namespace file and makes sure it is one: a stray
// regular file would only fail later, inside netlink, with EINVAL.
func openNetns(path string) (netns.NsHandle, error) {
	if path == "" {
		return netns.None(), fmt.Errorf("no netns path: %w", errNetns)
	}
	nsh, err := netns.GetFromPath(path)
	if err != nil {
		return netns.None(), fmt.Errorf("open %s: %w: %w", path, errNetns, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(nsh), &st); err != nil {
		closeNetns(nsh)
		return netns.None(), fmt.Errorf("statfs %s: %w: %w", path, errNetns, err)
	}
	if st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC {
		closeNetns(nsh)
		return netns.None(), fmt.Errorf("%s is not a network namespace (fs type %#x): %w", path, st.Type, errNetns)
	}
	return nsh, nil
}

// closeNetns closes a namespace handle; the fd is read-only, so a close
// error cannot lose anything.
func closeNetns(nsh netns.NsHandle) {
	_ = nsh.Close()
}

func isLinkNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENODEV)
}

// nlRoute converts a route on link index idx at the netlink boundary.
func nlRoute(idx int, r route, proto netlink.RouteProtocol) *netlink.Route {
	nr := &netlink.Route{LinkIndex: idx, Dst: prefixIPNetPtr(r.Dst), Protocol: proto, Scope: netlink.SCOPE_LINK}
	if r.Gw.IsValid() {
		nr.Gw = r.Gw.AsSlice()
		nr.Scope = netlink.SCOPE_UNIVERSE
	}
	return nr
}

func prefixIPNetPtr(p netip.Prefix) *net.IPNet {
	n := prefixIPNet(p)
	return &n
}

func ipNetPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := n.Mask.Size()
	if bits == 8*net.IPv6len && a.Is4In6() {
		ones -= 8 * (net.IPv6len - net.IPv4len)
	}
	a = a.Unmap()
	if ones < 0 || ones > a.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}
