package vxlan

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/skeinnet/skein/api"
)

// Config is the local host's side of the overlay.
type Config struct {
	// Node is this host's node name; optional: peers with this name are skipped.
	Node string
	// Device names the VXLAN device; optional, default api.VXLANDevice.
	Device string
	// VNI is the VXLAN network identifier; optional, default api.DefaultVNI.
	VNI int
	// Port is the UDP destination port; optional, default api.DefaultVXLANPort.
	Port int
	// UnderlayIP is the local tunnel endpoint address; required. Its family
	// is the device's underlay family: IPv6 on an IPv6-only node.
	UnderlayIP netip.Addr
	// UnderlayIP6 is this host's IPv6 underlay address; optional. With
	// DirectRouting, peers' IPv6 blocks are routed directly only when it is
	// set.
	UnderlayIP6 netip.Addr
	// UnderlayIfIndex is the underlay interface: the device sends from it, and
	// direct routes leave through it; optional, 0 lets the kernel route
	// tunnel packets and disables DirectRouting.
	UnderlayIfIndex int
	// MTU of the device; optional, 0 keeps the kernel's choice. Usually the
	// underlay MTU minus api.VXLANOverhead.
	MTU int
	// VTEPMAC is the device's MAC address; required.
	VTEPMAC net.HardwareAddr
	// VTEPIP is the device's IPv4 address (installed as a /32); required
	// unless the cluster is IPv6 only (then VTEPIP6 is).
	VTEPIP netip.Addr
	// VTEPIP6 is the device's IPv6 address (a /128) in a dual-stack
	// cluster; optional. Without it no IPv6 block is routed.
	VTEPIP6 netip.Addr
	// DirectRouting routes blocks of peers on the same L2 subnet via their
	// underlay IP instead of through the tunnel; optional.
	DirectRouting bool
}

// Peer is a remote host as the planner needs it.
type Peer struct {
	Node string
	// UnderlayIP is the peer's tunnel endpoint (api.Node.UnderlayIP).
	UnderlayIP netip.Addr
	// UnderlayIP6 is the peer's IPv6 underlay address, the next hop of its
	// IPv6 blocks with direct routing; optional.
	UnderlayIP6 netip.Addr
	VTEPMAC     net.HardwareAddr
	VTEPIP      netip.Addr
	// VTEPIP6 is the next hop of the peer's IPv6 blocks; optional.
	VTEPIP6 netip.Addr
	Blocks  []netip.Prefix
	// SameSubnet reports whether UnderlayIP is on-link from this host's
	// underlay interface, so a direct route works.
	SameSubnet bool
	// SameSubnet6 is SameSubnet for UnderlayIP6.
	SameSubnet6 bool
}

// LinkSpec is the VXLAN device's configuration.
type LinkSpec struct {
	Name string
	VNI  int
	Port int
	// Local is the source address of tunnel packets.
	Local netip.Addr
	// UnderlayIndex is the ifindex tunnel packets leave through; 0 = any.
	UnderlayIndex int
	Learning      bool
	// MTU is the device MTU; 0 = don't care.
	MTU int
	// MAC is the device address; nil = don't care.
	MAC net.HardwareAddr
}

// Neigh is a neighbour entry on the VXLAN device: the next hop of every route
// to a peer's blocks resolves to the peer's VTEP MAC without ARP.
type Neigh struct {
	IP        netip.Addr
	MAC       net.HardwareAddr
	Permanent bool
}

// FDBKey identifies an FDB entry. The destination is part of the key because
// the kernel lists one entry per destination, and a broadcast (all-zero) MAC
// may have several; a unicast MAC has one, which setting a new one replaces.
// Plan never wants two destinations for one MAC.
type FDBKey struct {
	MAC string // net.HardwareAddr.String() form
	Dst netip.Addr
}

// FDBEntry sends frames for a VTEP MAC to a peer's underlay IP.
type FDBEntry struct {
	MAC net.HardwareAddr
	Dst netip.Addr
}

// Key returns the map key of e.
func (e FDBEntry) Key() FDBKey { return FDBKey{MAC: e.MAC.String(), Dst: e.Dst} }

// Route is a route to a peer's block, marked with api.RouteProtocol.
type Route struct {
	Dst netip.Prefix
	Gw  netip.Addr
	// Direct routes leave through the underlay interface; the others through
	// the VXLAN device.
	Direct bool
	// OnLink tells the kernel Gw is reachable on the device although no
	// address of the device covers it.
	OnLink bool
}

// State is everything Skein keeps on a host for the overlay.
type State struct {
	Link LinkSpec
	// Addr is the VTEP IP as a host prefix on the device.
	Addr netip.Prefix
	// Addr6 is the IPv6 VTEP IP as a /128 on the device (dual-stack).
	Addr6  netip.Prefix
	Neighs map[netip.Addr]Neigh
	FDB    map[FDBKey]FDBEntry
	Routes map[netip.Prefix]Route
}

// Defaulted returns c with zero optional fields set to their defaults.
func (c Config) Defaulted() Config {
	if c.Device == "" {
		c.Device = api.VXLANDevice
	}
	if c.VNI == 0 {
		c.VNI = api.DefaultVNI
	}
	if c.Port == 0 {
		c.Port = api.DefaultVXLANPort
	}
	return c
}

// Plan returns the overlay state for this host given its peers. Per remote
// peer it wants a permanent neighbour VTEP IP → VTEP MAC and an FDB entry VTEP
// MAC → underlay IP on the device, and a route per block via the VTEP IP,
// onlink.
//
// The device's underlay family is cfg.UnderlayIP's: IPv4, or IPv6 on an
// IPv6-only node (FDB destinations are then IPv6). A kernel VXLAN device has
// one underlay family, so a peer whose UnderlayIP is of the other family is
// skipped whole (agents refuse to join such a cluster, and report the pair;
// docs/ipv6.md).
//
// Dual-stack (both this host and the peer have an IPv6 VTEP IP): the peer's
// IPv6 blocks are routed via its IPv6 VTEP IP, onlink, through the same
// device, with a second permanent neighbour (IPv6 VTEP IP → the same VTEP
// MAC) and the same FDB entry.
//
// With DirectRouting (and an underlay interface), the blocks of each family
// of a peer whose underlay address of that family is on this host's subnet
// are routed via that address on the underlay interface instead: IPv4
// blocks via an IPv4 UnderlayIP, IPv6 blocks via UnderlayIP6 when this host
// has an IPv6 underlay address too. Blocks of a family without such a next
// hop stay on the overlay; a peer with no block on the overlay gets no
// neighbour or FDB entry.
//
// Peers are taken in node name order, so when two peers claim the same block,
// VTEP IP or VTEP MAC, the first name wins whatever the input order. Skipped:
// this host (by name, VTEP IP, VTEP MAC or underlay IP), peers missing a VTEP IP, a
// 6-byte VTEP MAC or an underlay IP of the local underlay's family, and blocks
// whose family differs from their next hop's.
func Plan(cfg Config, peers []Peer) State {
	cfg = cfg.Defaulted()
	st := State{
		Link: LinkSpec{
			Name:          cfg.Device,
			VNI:           cfg.VNI,
			Port:          cfg.Port,
			Local:         cfg.UnderlayIP,
			UnderlayIndex: cfg.UnderlayIfIndex,
			MTU:           cfg.MTU,
			MAC:           slices.Clone(cfg.VTEPMAC),
		},
		Neighs: map[netip.Addr]Neigh{},
		FDB:    map[FDBKey]FDBEntry{},
		Routes: map[netip.Prefix]Route{},
	}
	if cfg.VTEPIP.IsValid() {
		st.Addr = netip.PrefixFrom(cfg.VTEPIP, cfg.VTEPIP.BitLen())
	}
	dual := cfg.VTEPIP6.Is6() && !cfg.VTEPIP6.Is4In6()
	if dual {
		st.Addr6 = netip.PrefixFrom(cfg.VTEPIP6, 128)
	}

	sorted := slices.Clone(peers)
	slices.SortStableFunc(sorted, func(a, b Peer) int {
		return cmp.Or(strings.Compare(a.Node, b.Node), a.UnderlayIP.Compare(b.UnderlayIP))
	})
	addRoute := func(block netip.Prefix, r Route) {
		block = block.Masked()
		if !block.IsValid() || block.Addr().Is4() != r.Gw.Is4() {
			return
		}
		if _, taken := st.Routes[block]; !taken {
			r.Dst = block
			st.Routes[block] = r
		}
	}
	canDirect := cfg.DirectRouting && cfg.UnderlayIfIndex != 0
	macs := map[string]bool{cfg.VTEPMAC.String(): true} // one peer per VTEP MAC
	for _, p := range sorted {
		if (cfg.Node != "" && p.Node == cfg.Node) ||
			(p.VTEPIP.IsValid() && p.VTEPIP == cfg.VTEPIP) ||
			(p.UnderlayIP.IsValid() && p.UnderlayIP == cfg.UnderlayIP) {
			continue
		}
		if !p.UnderlayIP.IsValid() || p.UnderlayIP.Is4() != cfg.UnderlayIP.Is4() {
			continue
		}
		// The next hop of each family's blocks on the underlay, if any.
		var direct4, direct6 netip.Addr
		if canDirect && p.SameSubnet && p.UnderlayIP.Is4() {
			direct4 = p.UnderlayIP
		}
		if canDirect && p.SameSubnet6 && p.UnderlayIP6.Is6() && cfg.UnderlayIP6.Is6() {
			direct6 = p.UnderlayIP6
		}
		for _, b := range p.Blocks {
			switch {
			case b.Addr().Is4() && direct4.IsValid():
				addRoute(b, Route{Gw: direct4, Direct: true})
			case b.Addr().Is6() && direct6.IsValid():
				addRoute(b, Route{Gw: direct6, Direct: true})
			}
		}
		v6 := dual && !direct6.IsValid() && p.VTEPIP6.Is6() && !p.VTEPIP6.Is4In6() && p.VTEPIP6 != cfg.VTEPIP6 &&
			slices.ContainsFunc(p.Blocks, func(b netip.Prefix) bool { return b.Addr().Is6() })
		if direct4.IsValid() && !v6 {
			continue
		}
		// A peer of an IPv6-only cluster has no IPv4 VTEP IP: only its
		// IPv6 one carries it.
		has4 := p.VTEPIP.Is4()
		if (!has4 && !v6) || len(p.VTEPMAC) != 6 {
			continue
		}
		if _, taken := st.Neighs[p.VTEPIP]; (has4 && taken) || macs[p.VTEPMAC.String()] {
			continue
		}
		if _, taken := st.Neighs[p.VTEPIP6]; v6 && taken {
			v6 = false
		}
		if !has4 && !v6 {
			continue
		}
		macs[p.VTEPMAC.String()] = true
		fdb := FDBEntry{MAC: slices.Clone(p.VTEPMAC), Dst: p.UnderlayIP}
		st.FDB[fdb.Key()] = fdb
		// IPv4 through the tunnel unless routed directly; IPv6 likewise.
		type hop struct {
			gw  netip.Addr
			is6 bool
		}
		var hops []hop
		if !direct4.IsValid() && has4 {
			hops = append(hops, hop{p.VTEPIP, false})
		}
		if v6 {
			hops = append(hops, hop{p.VTEPIP6, true})
		}
		for _, h := range hops {
			st.Neighs[h.gw] = Neigh{IP: h.gw, MAC: slices.Clone(p.VTEPMAC), Permanent: true}
			covered := false
			for _, b := range p.Blocks {
				if b.Addr().Is6() != h.is6 {
					continue
				}
				addRoute(b, Route{Gw: h.gw, OnLink: true})
				covered = covered || b.Contains(h.gw)
			}
			if !covered {
				// Replies to this host's VTEP IP (the source of host-to-pod
				// traffic) need a way back when no block holds the VTEP IP.
				addRoute(netip.PrefixFrom(h.gw, h.gw.BitLen()), Route{Gw: h.gw, OnLink: true})
			}
		}
	}
	return st
}

// Incompat reports why a device configured as have cannot serve as want
// without being recreated, or "" when it can (MTU and MAC can be changed in
// place).
func (want LinkSpec) Incompat(have LinkSpec) string {
	switch {
	case want.Name != have.Name:
		return fmt.Sprintf("name %q, want %q", have.Name, want.Name)
	case want.VNI != have.VNI:
		return fmt.Sprintf("vni %d, want %d", have.VNI, want.VNI)
	case want.Port != have.Port:
		return fmt.Sprintf("port %d, want %d", have.Port, want.Port)
	case want.Local != have.Local:
		return fmt.Sprintf("local %s, want %s", have.Local, want.Local)
	case want.UnderlayIndex != have.UnderlayIndex:
		return fmt.Sprintf("underlay ifindex %d, want %d", have.UnderlayIndex, want.UnderlayIndex)
	case want.Learning != have.Learning:
		return fmt.Sprintf("learning %t, want %t", have.Learning, want.Learning)
	}
	return ""
}

// String renders the spec like iproute2 would show it.
func (s LinkSpec) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "link %s vni %d port %d local %s", s.Name, s.VNI, s.Port, s.Local)
	if s.UnderlayIndex != 0 {
		fmt.Fprintf(&b, " dev %d", s.UnderlayIndex)
	}
	if !s.Learning {
		b.WriteString(" nolearning")
	}
	if s.MTU != 0 {
		fmt.Fprintf(&b, " mtu %d", s.MTU)
	}
	if s.MAC != nil {
		fmt.Fprintf(&b, " address %s", s.MAC)
	}
	return b.String()
}

// String renders n like `ip neigh`.
func (n Neigh) String() string {
	s := fmt.Sprintf("neigh %s lladdr %s", n.IP, n.MAC)
	if n.Permanent {
		s += " permanent"
	}
	return s
}

// String renders e like `bridge fdb`.
func (e FDBEntry) String() string { return fmt.Sprintf("fdb %s dst %s", e.MAC, e.Dst) }

// String renders r like `ip route`.
func (r Route) String() string {
	s := fmt.Sprintf("route %s via %s", r.Dst, r.Gw)
	if r.Direct {
		s += " direct"
	}
	if r.OnLink {
		s += " onlink"
	}
	return s
}

// Lines renders s as sorted text lines, one per object.
func (s State) Lines() []string {
	lines := []string{s.Link.String()}
	if s.Addr.IsValid() {
		lines = append(lines, "addr "+s.Addr.String())
	}
	if s.Addr6.IsValid() {
		lines = append(lines, "addr "+s.Addr6.String())
	}
	for _, n := range s.Neighs {
		lines = append(lines, n.String())
	}
	for _, e := range s.FDB {
		lines = append(lines, e.String())
	}
	for _, r := range s.Routes {
		lines = append(lines, r.String())
	}
	slices.Sort(lines[1:])
	return lines
}

// Clone returns a deep copy of s.
func (s State) Clone() State {
	c := s
	c.Link.MAC = slices.Clone(s.Link.MAC)
	c.Neighs = maps.Clone(s.Neighs)
	for k, n := range c.Neighs {
		n.MAC = slices.Clone(n.MAC)
		c.Neighs[k] = n
	}
	c.FDB = maps.Clone(s.FDB)
	for k, e := range c.FDB {
		e.MAC = slices.Clone(e.MAC)
		c.FDB[k] = e
	}
	c.Routes = maps.Clone(s.Routes)
	return c
}

func neighEqual(a, b Neigh) bool {
	return a.IP == b.IP && bytes.Equal(a.MAC, b.MAC) && a.Permanent == b.Permanent
}

func fdbEqual(a, b FDBEntry) bool { return a.Dst == b.Dst && bytes.Equal(a.MAC, b.MAC) }

func routeEqual(a, b Route) bool { return a == b }
