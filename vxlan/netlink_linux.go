package vxlan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/nlretry"
)

// NetlinkDataplane is the Dataplane of a network namespace, reached through
// a netlink handle.
type NetlinkDataplane struct {
	h   *netlink.Handle
	log *slog.Logger
}

var _ Dataplane = (*NetlinkDataplane)(nil)

// NewNetlinkDataplane returns a Dataplane that works through h; a nil h means
// the calling thread's namespace. A nil log discards.
func NewNetlinkDataplane(h *netlink.Handle, log *slog.Logger) *NetlinkDataplane {
	if h == nil {
		h = &netlink.Handle{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &NetlinkDataplane{h: h, log: log.With("component", "vxlan")}
}

// dump reads a netlink table through nlretry and names it in errors.
func dump[T any](what string, f func() (T, error)) (T, error) {
	v, err := nlretry.Dump(f)
	if err != nil {
		return v, fmt.Errorf("list %s: %w", what, err)
	}
	return v, nil
}

// EnsureLink implements Dataplane.
func (d *NetlinkDataplane) EnsureLink(ctx context.Context, spec LinkSpec, addr, addr6 netip.Prefix) (Devices, error) {
	devs := Devices{Underlay: spec.UnderlayIndex}
	link, err := d.h.LinkByName(spec.Name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		link, err = d.createLink(spec)
	case err != nil:
		return devs, fmt.Errorf("get link %s: %w", spec.Name, err)
	default:
		if reason := incompat(spec, link); reason != "" {
			d.log.Info("recreating link", "ifname", spec.Name, "reason", reason)
			if err := d.h.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
				return devs, fmt.Errorf("delete link %s (%s): %w", spec.Name, reason, err)
			}
			link, err = d.createLink(spec)
		}
	}
	if err != nil {
		return devs, err
	}
	devs.Overlay = link.Attrs().Index
	if err := ctx.Err(); err != nil {
		return devs, err
	}

	attrs := link.Attrs()
	if spec.MTU != 0 && attrs.MTU != spec.MTU {
		if err := d.h.LinkSetMTU(link, spec.MTU); err != nil {
			return devs, fmt.Errorf("set mtu %d on %s: %w", spec.MTU, spec.Name, err)
		}
	}
	if spec.MAC != nil && !bytes.Equal(attrs.HardwareAddr, spec.MAC) {
		if err := d.h.LinkSetHardwareAddr(link, spec.MAC); err != nil {
			return devs, fmt.Errorf("set address %s on %s: %w", spec.MAC, spec.Name, err)
		}
	}
	if attrs.Flags&net.FlagUp == 0 {
		if err := d.h.LinkSetUp(link); err != nil {
			return devs, fmt.Errorf("set %s up: %w", spec.Name, err)
		}
	}
	if err := d.ensureAddr(link, netlink.FAMILY_V4, addr); err != nil {
		return devs, err
	}
	return devs, d.ensureAddr(link, netlink.FAMILY_V6, addr6)
}

func (d *NetlinkDataplane) createLink(spec LinkSpec) (netlink.Link, error) {
	vx := &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: spec.Name, MTU: spec.MTU, HardwareAddr: spec.MAC},
		VxlanId:      spec.VNI,
		VtepDevIndex: spec.UnderlayIndex,
		Port:         spec.Port,
		Learning:     spec.Learning,
	}
	if spec.Local.IsValid() {
		vx.SrcAddr = spec.Local.AsSlice()
	}
	if err := d.h.LinkAdd(vx); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("add link %s: %w", spec.Name, err)
	}
	link, err := d.h.LinkByName(spec.Name)
	if err != nil {
		return nil, fmt.Errorf("get new link %s: %w", spec.Name, err)
	}
	// No link-local address, so no IPv6 neighbour discovery or MLD over
	// the tunnel: IPv6 VTEP neighbours are permanent entries. Best effort:
	// a kernel without IPv6 refuses, and an IPv4-only cluster does not
	// need it.
	if err := d.h.LinkSetIP6AddrGenMode(link, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
		d.log.Debug("disable ipv6 link-local address", "ifname", spec.Name, "err", err)
	}
	d.log.Info("link created", "ifname", spec.Name, "vni", spec.VNI)
	return link, nil
}

// incompat is LinkSpec.Incompat for a kernel link.
func incompat(want LinkSpec, link netlink.Link) string {
	vx, ok := link.(*netlink.Vxlan)
	if !ok {
		return fmt.Sprintf("type %s, want vxlan", link.Type())
	}
	return want.Incompat(specOf(vx))
}

func specOf(vx *netlink.Vxlan) LinkSpec {
	local, _ := netip.AddrFromSlice(vx.SrcAddr) // invalid when unset
	return LinkSpec{
		Name:          vx.Name,
		VNI:           vx.VxlanId,
		Port:          vx.Port,
		Local:         local.Unmap(),
		UnderlayIndex: vx.VtepDevIndex,
		Learning:      vx.Learning,
		MTU:           vx.MTU,
		MAC:           vx.HardwareAddr,
	}
}

// ensureAddr makes want (invalid: none) the link's only address of family,
// link-local IPv6 addresses aside. An IPv6 address is added nodad: IPAM
// owns it, and a tentative address could not source packets.
func (d *NetlinkDataplane) ensureAddr(link netlink.Link, family int, want netip.Prefix) error {
	name := link.Attrs().Name
	addrs, err := dump("addresses of "+name, func() ([]netlink.Addr, error) { return d.h.AddrList(link, family) })
	if err != nil {
		return err
	}
	addrs = slices.DeleteFunc(addrs, func(a netlink.Addr) bool { return a.IP.IsLinkLocalUnicast() })
	if len(addrs) == 0 && !want.IsValid() {
		return nil
	}
	// Add before delete: removing a device's last IPv4 address makes the
	// kernel flush every route through it.
	if want.IsValid() && !slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return prefixOf(a.IPNet) == want }) {
		a := &netlink.Addr{IPNet: ipNet(want)}
		if want.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := d.h.AddrAdd(link, a); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add address %s to %s: %w", want, name, err)
		}
	}
	for _, a := range addrs {
		if prefixOf(a.IPNet) == want {
			continue
		}
		if err := d.h.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("delete address %s from %s: %w", a.IPNet, name, err)
		}
		d.log.Info("stale address deleted", "ifname", name, "prefix", a.IPNet.String())
	}
	return nil
}

// Observe implements Dataplane.
func (d *NetlinkDataplane) Observe(_ context.Context, devs Devices) (State, error) {
	var st State
	link, err := d.h.LinkByIndex(devs.Overlay)
	if err != nil {
		return st, fmt.Errorf("get link %d: %w", devs.Overlay, err)
	}
	if vx, ok := link.(*netlink.Vxlan); ok {
		st.Link = specOf(vx)
	}
	addrs, err := dump("addresses", func() ([]netlink.Addr, error) { return d.h.AddrList(link, netlink.FAMILY_V4) })
	if err != nil {
		return st, err
	}
	if len(addrs) > 0 {
		st.Addr = prefixOf(addrs[0].IPNet)
	}
	addrs6, err := dump("addresses", func() ([]netlink.Addr, error) { return d.h.AddrList(link, netlink.FAMILY_V6) })
	if err != nil {
		return st, err
	}
	for _, a := range addrs6 {
		if !a.IP.IsLinkLocalUnicast() {
			st.Addr6 = prefixOf(a.IPNet)
			break
		}
	}

	st.Neighs = map[netip.Addr]Neigh{}
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		ns, err := dump("neighbours", func() ([]netlink.Neigh, error) { return d.h.NeighList(devs.Overlay, family) })
		if err != nil {
			return st, err
		}
		for _, n := range ns {
			ip, ok := netip.AddrFromSlice(n.IP)
			// Multicast entries (IPv6 MLD reports: ff02::16) are the
			// kernel's own, never Skein's to keep or delete.
			if !ok || n.LinkIndex != devs.Overlay || ip.IsMulticast() {
				continue
			}
			ip = ip.Unmap()
			st.Neighs[ip] = Neigh{IP: ip, MAC: n.HardwareAddr, Permanent: n.State&netlink.NUD_PERMANENT != 0}
		}
	}

	st.FDB = map[FDBKey]FDBEntry{}
	fdb, err := dump("fdb", func() ([]netlink.Neigh, error) { return d.h.NeighList(devs.Overlay, unix.AF_BRIDGE) })
	if err != nil {
		return st, err
	}
	for _, n := range fdb {
		if n.LinkIndex != devs.Overlay {
			continue
		}
		dst, _ := netip.AddrFromSlice(n.IP) // invalid when unset: then deleted as unplanned
		e := FDBEntry{MAC: n.HardwareAddr, Dst: dst.Unmap()}
		st.FDB[e.Key()] = e
	}

	st.Routes = map[netip.Prefix]Route{}
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := dump("routes", func() ([]netlink.Route, error) {
			return d.h.RouteListFiltered(family, &netlink.Route{Protocol: api.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
		})
		if err != nil {
			return st, err
		}
		for _, r := range rs {
			direct := devs.Underlay != 0 && r.LinkIndex == devs.Underlay
			if r.Dst == nil || (r.LinkIndex != devs.Overlay && !direct) {
				continue
			}
			gw, _ := netip.AddrFromSlice(r.Gw) // invalid for multipath: then replaced
			dst := prefixOf(r.Dst)
			st.Routes[dst] = Route{Dst: dst, Gw: gw.Unmap(), Direct: direct, OnLink: r.Flags&int(netlink.FLAG_ONLINK) != 0}
		}
	}
	return st, nil
}

// Apply implements Dataplane.
func (d *NetlinkDataplane) Apply(_ context.Context, devs Devices, op Op) error {
	var err error
	switch {
	case op.Neigh != nil:
		n := &netlink.Neigh{
			LinkIndex:    devs.Overlay,
			Family:       familyOf(op.Neigh.IP),
			State:        netlink.NUD_PERMANENT,
			IP:           op.Neigh.IP.AsSlice(),
			HardwareAddr: op.Neigh.MAC,
		}
		if op.Kind == OpSet {
			err = d.h.NeighSet(n)
		} else {
			err = d.h.NeighDel(n)
		}
	case op.FDB != nil:
		n := &netlink.Neigh{
			LinkIndex:    devs.Overlay,
			Family:       unix.AF_BRIDGE,
			Flags:        netlink.NTF_SELF,
			State:        netlink.NUD_PERMANENT,
			HardwareAddr: op.FDB.MAC,
		}
		if op.FDB.Dst.IsValid() {
			n.IP = op.FDB.Dst.AsSlice()
		}
		if op.Kind == OpSet {
			// Replace, not append: the kernel keeps one destination per
			// unicast MAC and ignores NLM_F_APPEND for it, so a peer
			// that moved must have its destination replaced.
			err = d.h.NeighSet(n)
		} else {
			err = d.h.NeighDel(n)
		}
	case op.Route != nil:
		r := &netlink.Route{
			LinkIndex: devs.Overlay,
			Dst:       ipNet(op.Route.Dst),
			Protocol:  api.RouteProtocol,
			Table:     unix.RT_TABLE_MAIN,
			Scope:     netlink.SCOPE_UNIVERSE,
		}
		if op.Route.Direct {
			r.LinkIndex = devs.Underlay
		}
		if op.Route.OnLink {
			r.Flags = int(netlink.FLAG_ONLINK)
		}
		if op.Route.Gw.IsValid() {
			r.Gw = op.Route.Gw.AsSlice()
		}
		if op.Kind == OpSet {
			err = d.h.RouteReplace(r)
		} else {
			err = d.h.RouteDel(r)
		}
	default:
		return errors.New("empty op")
	}
	switch {
	case err == nil:
	case op.Kind == OpSet && errors.Is(err, unix.EEXIST):
		err = nil
	case op.Kind == OpDel && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH)):
		err = nil
	}
	return err
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// prefixOf converts n, keeping host bits (addresses) as they are.
func prefixOf(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}
	}
	a = a.Unmap()
	ones, bits := n.Mask.Size()
	if bits == 128 && a.Is4() {
		ones -= 96
	}
	return netip.PrefixFrom(a, ones)
}
