package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/internal/namedns"
)

// The named-namespace plumbing is shared with the benchmarks (internal/namedns).

func ipCommand() string                                { return namedns.IPCommand() }
func addNetNS(ctx context.Context, name string) error  { return namedns.Add(ctx, name) }
func delNetNS(ctx context.Context, name string) error  { return namedns.Delete(ctx, name) }
func listNetNS() ([]string, error)                     { return namedns.List() }
func inNetNS(name string, fn func() error) error       { return namedns.Do(name, fn) }
func handleAt(name string) (*netlink.Handle, error)    { return namedns.Handle(name) }
func setSysctls(ns string, kv map[string]string) error { return namedns.SetSysctls(ns, kv) }

// loUp brings up lo in h's namespace.
func loUp(h *netlink.Handle) error {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// linkAddr is an address for netlink; IPv6 ones skip duplicate address
// detection (nodad), so nothing in the lab waits for it.
func linkAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// setupUnderlay brings up lo and the bridge with the gateway addresses in
// the underlay namespace ns.
func setupUnderlay(ns string, gws []netip.Prefix) error {
	h, err := handleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := loUp(h); err != nil {
		return fmt.Errorf("underlay %s: %w", ns, err)
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: BridgeName, MTU: UnderlayMTU}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("underlay %s: add bridge %s: %w", ns, BridgeName, err)
	}
	link, err := h.LinkByName(BridgeName)
	if err != nil {
		return fmt.Errorf("underlay %s: find bridge %s: %w", ns, BridgeName, err)
	}
	for _, gw := range gws {
		if err := h.AddrAdd(link, linkAddr(gw)); err != nil {
			return fmt.Errorf("underlay %s: add %s to %s: %w", ns, gw, BridgeName, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("underlay %s: set %s up: %w", ns, BridgeName, err)
	}
	return nil
}

// addBridge adds an address-less bridge (a host subnet's L2 segment) in the
// underlay namespace ns.
func addBridge(ns, name string) error {
	h, err := handleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: UnderlayMTU}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("underlay %s: add bridge %s: %w", ns, name, err)
	}
	if err := h.LinkSetUp(br); err != nil {
		return fmt.Errorf("underlay %s: set %s up: %w", ns, name, err)
	}
	return nil
}

// addRoute adds the route dst via gw in namespace ns.
func addRoute(ns string, dst netip.Prefix, gw netip.Addr) error {
	h, err := handleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	r := &netlink.Route{
		Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), dst.Addr().BitLen())},
		Gw:  gw.AsSlice(),
	}
	if err := h.RouteAdd(r); err != nil {
		return fmt.Errorf("%s: add route %s via %s: %w", ns, dst, gw, err)
	}
	return nil
}

// attachHost wires namespace hostNS to bridge in ulNS: a veth whose bridge
// side is port and whose other side is iface with addrs. Each of gws
// becomes the default route of its family in hostNS.
func attachHost(ulNS, bridge, port, hostNS, iface string, addrs []netip.Prefix, gws []netip.Addr) error {
	ul, err := handleAt(ulNS)
	if err != nil {
		return err
	}
	defer ul.Close()
	hh, err := handleAt(hostNS)
	if err != nil {
		return err
	}
	defer hh.Close()
	target, err := netns.GetFromPath(netnsPath(hostNS))
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", hostNS, err)
	}
	defer target.Close()

	br, err := ul.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("find bridge %s in %s: %w", bridge, ulNS, err)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: port, MTU: UnderlayMTU},
		PeerName:      iface,
		PeerNamespace: netlink.NsFd(int(target)),
		PeerMTU:       UnderlayMTU,
	}
	if err := ul.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s (peer %s in %s): %w", port, iface, hostNS, err)
	}
	pl, err := ul.LinkByName(port)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", port, ulNS, err)
	}
	if err := ul.LinkSetMaster(pl, br); err != nil {
		return fmt.Errorf("attach %s to %s: %w", port, bridge, err)
	}
	if err := ul.LinkSetUp(pl); err != nil {
		return fmt.Errorf("set %s up: %w", port, err)
	}

	if err := loUp(hh); err != nil {
		return fmt.Errorf("host %s: %w", hostNS, err)
	}
	hl, err := hh.LinkByName(iface)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", iface, hostNS, err)
	}
	for _, addr := range addrs {
		if err := hh.AddrAdd(hl, linkAddr(addr)); err != nil {
			return fmt.Errorf("add %s to %s in %s: %w", addr, iface, hostNS, err)
		}
	}
	if err := hh.LinkSetUp(hl); err != nil {
		return fmt.Errorf("set %s up in %s: %w", iface, hostNS, err)
	}
	for _, gw := range gws {
		def := &netlink.Route{LinkIndex: hl.Attrs().Index, Gw: gw.AsSlice()}
		if gw.Is6() {
			def.Dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
		if err := hh.RouteAdd(def); err != nil {
			return fmt.Errorf("add default route via %s in %s: %w", gw, hostNS, err)
		}
	}
	return nil
}

// setLoUp brings lo up in the named namespace.
func setLoUp(ns string) error {
	h, err := handleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := loUp(h); err != nil {
		return fmt.Errorf("%s: %w", ns, err)
	}
	return nil
}
