package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/nlretry"
)

// NetlinkDataplane is the RouteDataplane of a network namespace, reached
// through a netlink handle. It owns the IPv4 and IPv6 unicast routes of its table
// that carry its protocol and a gateway, except those on the VXLAN device
// (the vxlan backend's) — so the CNI plugin's per-container routes (same
// protocol, no gateway) are never its business.
type NetlinkDataplane struct {
	h        *netlink.Handle
	table    int
	protocol netlink.RouteProtocol
	exclude  string
	log      *slog.Logger
}

var _ RouteDataplane = (*NetlinkDataplane)(nil)

// NewNetlinkDataplane returns a RouteDataplane working through h (nil: the
// calling thread's namespace) on kernel table table with route protocol
// protocol. A nil log discards.
func NewNetlinkDataplane(h *netlink.Handle, table, protocol int, log *slog.Logger) *NetlinkDataplane {
	if h == nil {
		h = &netlink.Handle{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &NetlinkDataplane{h: h, table: table, protocol: netlink.RouteProtocol(protocol), exclude: api.VXLANDevice, log: log}
}

func defaultDataplane(cfg Config, log *slog.Logger) (RouteDataplane, error) {
	return NewNetlinkDataplane(nil, cfg.Table, cfg.RouteProtocol, log), nil
}

// Routes implements RouteDataplane.
func (d *NetlinkDataplane) Routes(context.Context) (map[netip.Prefix]Route, error) {
	excluded := 0
	if l, err := d.h.LinkByName(d.exclude); err == nil {
		excluded = l.Attrs().Index
	}
	filter := &netlink.Route{Protocol: d.protocol, Table: d.table}
	out := map[netip.Prefix]Route{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := nlretry.Dump(func() ([]netlink.Route, error) {
			return d.h.RouteListFiltered(fam, filter, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
		})
		if err != nil {
			return nil, fmt.Errorf("list routes of table %d protocol %d: %w", d.table, d.protocol, err)
		}
		d.collect(out, rs, fam, excluded)
	}
	return out, nil
}

// collect adds the owned routes among rs, of family fam, to out.
func (d *NetlinkDataplane) collect(out map[netip.Prefix]Route, rs []netlink.Route, fam, excluded int) {
	for _, r := range rs {
		if r.Protocol != d.protocol || r.Table != d.table || r.Type != unix.RTN_UNICAST {
			continue
		}
		if r.Gw == nil && len(r.MultiPath) == 0 {
			continue // a device route: a container's, not ours
		}
		if excluded != 0 && r.LinkIndex == excluded {
			continue
		}
		dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if fam == netlink.FAMILY_V6 {
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		if r.Dst != nil {
			var ok bool
			if dst, ok = prefixOf(r.Dst); !ok {
				continue
			}
		}
		gw, _ := netip.AddrFromSlice(r.Gw) // invalid for multipath: then replaced
		out[dst] = Route{Dst: dst, Gw: gw.Unmap()}
	}
}

func (d *NetlinkDataplane) route(r Route) *netlink.Route {
	return &netlink.Route{
		Dst:      &net.IPNet{IP: r.Dst.Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), r.Dst.Addr().BitLen())},
		Gw:       r.Gw.AsSlice(),
		Protocol: d.protocol,
		Table:    d.table,
		Scope:    netlink.SCOPE_UNIVERSE,
		Type:     unix.RTN_UNICAST,
	}
}

// Add implements RouteDataplane: create-only, so that a route of someone
// else's with the same destination is never replaced.
func (d *NetlinkDataplane) Add(_ context.Context, r Route) error {
	err := d.h.RouteAdd(d.route(r))
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add %s: %w", r, ErrForeignRoute)
	}
	return err
}

// Replace implements RouteDataplane.
func (d *NetlinkDataplane) Replace(_ context.Context, r Route) error {
	return d.h.RouteReplace(d.route(r))
}

// Delete implements RouteDataplane. The protocol is part of the match, so
// only an owned route can go.
func (d *NetlinkDataplane) Delete(_ context.Context, r Route) error {
	nr := d.route(r)
	nr.Gw = nil // whatever the gateway is now
	err := d.h.RouteDel(nr)
	if errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := n.Mask.Size()
	if bits == 128 && a.Is4() {
		ones -= 96
	}
	return netip.PrefixFrom(a, ones).Masked(), true
}
