package bgp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/skeinnet/skein/api"
)

// Defaults for Config's optional fields. The timers favour fast convergence
// on a data-centre fabric; see doc.go for why each value was chosen.
const (
	DefaultPort           = 179
	DefaultHoldTime       = 9 * time.Second
	DefaultKeepAlive      = 3 * time.Second
	DefaultConnectRetry   = time.Second
	DefaultRestartTime    = 120 * time.Second
	DefaultStaleRouteTime = 60 * time.Second
	// MainTable is the kernel's main routing table (RT_TABLE_MAIN).
	MainTable = 254
)

// RRConfig makes a speaker a route reflector for the peers marked
// RouteReflectorClient.
type RRConfig struct {
	// ClusterID identifies the reflection cluster; optional, default the
	// speaker's RouterID. Reflectors that serve the same clients redundantly
	// share a cluster id.
	ClusterID netip.Addr
}

// Config configures a Speaker.
type Config struct {
	// RouterID is the BGP identifier, the node's underlay IPv4 address; required.
	RouterID netip.Addr
	// ASN is the local autonomous system number (2- or 4-byte); required.
	ASN uint32
	// ListenAddr is the only address the speaker listens on and the source
	// address of the sessions it opens; optional, default RouterID. It is
	// never the wildcard address unless set so explicitly.
	ListenAddr netip.Addr
	// ListenAddr6 is the IPv6 address the speaker also listens on and the
	// source of its sessions with IPv6 peers: the node's UnderlayIP6;
	// optional. Without it IPv6 peers get no session, and Set and Debug
	// name them (fail closed).
	ListenAddr6 netip.Addr
	// ListenPort is the TCP port to listen on; optional, default 179. -1
	// means do not listen (outgoing sessions only).
	ListenPort int
	// DisableGracefulRestart turns graceful restart (RFC 4724) off; optional,
	// default false: peers keep this node's routes for RestartTime while it
	// restarts, and this node keeps theirs while they do.
	DisableGracefulRestart bool
	// RestartTime is the graceful-restart time advertised to peers; optional,
	// default DefaultRestartTime. Whole seconds, at most 4095 s.
	RestartTime time.Duration
	// StaleRouteTime bounds how long, after Run starts, routes a previous
	// instance installed are kept while the speaker re-learns them (it stops
	// waiting earlier once every peer has sent End-of-RIB); optional, default
	// DefaultStaleRouteTime.
	StaleRouteTime time.Duration
	// RouteReflector makes this speaker a route reflector; optional.
	RouteReflector *RRConfig
	// HoldTime, KeepAlive and ConnectRetry are the BGP timers, rounded up to
	// whole seconds; optional, defaults DefaultHoldTime, DefaultKeepAlive
	// (HoldTime/3 when only HoldTime is set) and DefaultConnectRetry.
	HoldTime, KeepAlive, ConnectRetry time.Duration
	// Table is the kernel routing table for learned routes; optional, default
	// MainTable.
	Table int
	// RouteProtocol marks the kernel routes the speaker owns; optional,
	// default api.RouteProtocol.
	RouteProtocol int
	// Import limits which learned prefixes are installed to those inside one
	// of these prefixes (typically the cluster's pools), so that a top-of-rack
	// router announcing a default route or a full table cannot reroute the
	// host; optional, default: every learned prefix. IPv4 and IPv6 prefixes
	// may be mixed; each limits its own family.
	Import []netip.Prefix
	// Log receives lifecycle lines and gobgp's own, demoted; optional,
	// default discards.
	Log *slog.Logger
	// Dataplane installs learned routes; optional, default the netlink
	// dataplane of the calling thread's network namespace with Table and
	// RouteProtocol.
	Dataplane RouteDataplane
}

// Defaulted returns c with zero optional fields set to their defaults.
func (c Config) Defaulted() Config {
	if !c.ListenAddr.IsValid() {
		c.ListenAddr = c.RouterID
	}
	if c.ListenPort == 0 {
		c.ListenPort = DefaultPort
	}
	if c.RestartTime == 0 {
		c.RestartTime = DefaultRestartTime
	}
	if c.StaleRouteTime == 0 {
		c.StaleRouteTime = DefaultStaleRouteTime
	}
	switch {
	case c.HoldTime == 0 && c.KeepAlive == 0:
		c.HoldTime, c.KeepAlive = DefaultHoldTime, DefaultKeepAlive
	case c.HoldTime == 0:
		c.HoldTime = 3 * c.KeepAlive
	case c.KeepAlive == 0:
		c.KeepAlive = c.HoldTime / 3
	}
	if c.ConnectRetry == 0 {
		c.ConnectRetry = DefaultConnectRetry
	}
	if c.Table == 0 {
		c.Table = MainTable
	}
	if c.RouteProtocol == 0 {
		c.RouteProtocol = api.RouteProtocol
	}
	if c.RouteReflector != nil && !c.RouteReflector.ClusterID.IsValid() {
		rr := *c.RouteReflector
		rr.ClusterID = c.RouterID
		c.RouteReflector = &rr
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports why a defaulted config cannot run, or nil.
func (c Config) Validate() error {
	var errs []error
	if !c.RouterID.IsValid() || !c.RouterID.Is4() || c.RouterID.IsUnspecified() {
		errs = append(errs, fmt.Errorf("router id %q: must be a non-zero IPv4 address", addrString(c.RouterID)))
	}
	if c.ASN == 0 {
		errs = append(errs, errors.New("asn 0 is reserved"))
	}
	if c.ListenAddr.IsValid() && !c.ListenAddr.Is4() {
		errs = append(errs, fmt.Errorf("listen address %s: only IPv4 is supported", c.ListenAddr))
	}
	if a := c.ListenAddr6; a.IsValid() && (!usablePeerAddr(a) || !a.Is6()) {
		errs = append(errs, fmt.Errorf("IPv6 listen address %s: must be a unicast, non-link-local IPv6 address", a))
	}
	if c.ListenPort != -1 && (c.ListenPort < 1 || c.ListenPort > 65535) {
		errs = append(errs, fmt.Errorf("listen port %d: out of range 1-65535 (or -1: do not listen)", c.ListenPort))
	}
	if c.HoldTime < 3*time.Second {
		errs = append(errs, fmt.Errorf("hold time %s: at least 3s", c.HoldTime))
	}
	if c.KeepAlive <= 0 || c.KeepAlive > c.HoldTime {
		errs = append(errs, fmt.Errorf("keepalive %s: must be positive and at most the hold time %s", c.KeepAlive, c.HoldTime))
	}
	if c.ConnectRetry < 0 {
		errs = append(errs, fmt.Errorf("connect retry %s: negative", c.ConnectRetry))
	}
	if c.RestartTime < time.Second || c.RestartTime > 4095*time.Second {
		errs = append(errs, fmt.Errorf("restart time %s: out of range 1s-4095s", c.RestartTime))
	}
	if c.StaleRouteTime < 0 {
		errs = append(errs, fmt.Errorf("stale route time %s: negative", c.StaleRouteTime))
	}
	if c.Table < 1 || c.Table > 1<<31-1 {
		errs = append(errs, fmt.Errorf("table %d: out of range", c.Table))
	}
	if c.RouteProtocol < 1 || c.RouteProtocol > 255 {
		errs = append(errs, fmt.Errorf("route protocol %d: out of range 1-255", c.RouteProtocol))
	}
	if rr := c.RouteReflector; rr != nil && rr.ClusterID.IsValid() && !rr.ClusterID.Is4() {
		errs = append(errs, fmt.Errorf("cluster id %s: must be an IPv4 address", rr.ClusterID))
	}
	for _, p := range c.Import {
		if !p.IsValid() || p.Addr().Is4In6() {
			errs = append(errs, fmt.Errorf("import prefix %s: must be an IPv4 or IPv6 prefix (not IPv4-mapped)", p))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("bgp config: %w", errors.Join(errs...))
	}
	return nil
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// Peer is one BGP neighbour the speaker should have.
type Peer struct {
	// Name identifies the peer (a node name, or the name of an external
	// peer); unique among the peers of one Set call.
	Name string
	// Address is the peer's address; unique among the peers. A session
	// with an IPv4 address carries IPv4 and IPv6 unicast (MP-BGP); one with
	// an IPv6 address runs from Config.ListenAddr6 and carries IPv6 unicast
	// only (IPv4 routes would need IPv4 next hops over IPv6, RFC 8950).
	Address netip.Addr
	// ASN is the peer's AS number: equal to the local ASN for iBGP.
	ASN uint32
	// Port is the peer's TCP port; 0 means 179.
	Port int
	// RouteReflectorClient marks the peer as a client of this speaker, which
	// then reflects routes to it (Config.RouteReflector should be set).
	RouteReflectorClient bool
	// Passive makes the speaker wait for the peer to connect.
	Passive bool
	// Description is free text shown in the debug state.
	Description string
}

// usablePeerAddr reports whether a can be a session's end: specified,
// unicast, not IPv6 link-local (a session would need an interface) and not
// IPv4-mapped (written as the IPv4 address instead).
func usablePeerAddr(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() && !(a.Is6() && a.IsLinkLocalUnicast()) && a.Zone() == "" &&
		!a.Is4In6() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// families are the address families of p's session: IPv4 and IPv6 unicast
// over IPv4, IPv6 unicast only over IPv6.
func (p Peer) families() []family {
	if p.Address.Is6() {
		return []family{ipv6Unicast}
	}
	return families
}

// Sentinel errors for peer validation.
var (
	ErrDuplicatePeer = errors.New("duplicate peer")
	ErrInvalidPeer   = errors.New("invalid peer")
)

// validatePeer reports why p cannot be configured, or nil.
func validatePeer(p Peer) error {
	var errs []error
	if p.Name == "" {
		errs = append(errs, errors.New("empty name"))
	}
	if !usablePeerAddr(p.Address) {
		errs = append(errs, fmt.Errorf("address %q: must be a unicast IPv4 or IPv6 address (not IPv6 link-local, not IPv4-mapped)", addrString(p.Address)))
	}
	if p.ASN == 0 {
		errs = append(errs, errors.New("asn 0 is reserved"))
	}
	if p.Port < 0 || p.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d: out of range 0-65535", p.Port))
	}
	if len(errs) > 0 {
		return fmt.Errorf("peer %q: %w: %w", p.Name, ErrInvalidPeer, errors.Join(errs...))
	}
	return nil
}

// ValidatePeers checks every peer and that names and addresses are unique.
// It returns the peers that can be configured, in input order (the first of
// duplicates wins), and an error naming every rejected peer.
func ValidatePeers(peers []Peer) ([]Peer, error) {
	var (
		errs  []error
		ok    = make([]Peer, 0, len(peers))
		names = make(map[string]bool, len(peers))
		addrs = make(map[netip.Addr]string, len(peers))
	)
	for _, p := range peers {
		if err := validatePeer(p); err != nil {
			errs = append(errs, err)
			continue
		}
		if names[p.Name] {
			errs = append(errs, fmt.Errorf("peer %q: %w name", p.Name, ErrDuplicatePeer))
			continue
		}
		if other, dup := addrs[p.Address]; dup {
			errs = append(errs, fmt.Errorf("peer %q: %w address %s (also peer %q)", p.Name, ErrDuplicatePeer, p.Address, other))
			continue
		}
		names[p.Name] = true
		addrs[p.Address] = p.Name
		ok = append(ok, p)
	}
	return ok, errors.Join(errs...)
}
