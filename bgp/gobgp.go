package bgp

// This file and gobgp_log.go are the only ones that know GoBGP: moving to
// GoBGP v4 means rewriting gobgpRouter and gobgpLogger, nothing else.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/config/oc"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// grDeferralTime bounds how long a restarting speaker holds back its own
// advertisements waiting for End-of-RIB from its peers (RFC 4724 selection
// deferral); gobgp's default is 360 s, far too long for a node's own blocks.
const grDeferralTime = 10

// family is an address family the speaker negotiates: IPv4 unicast and,
// through MP-BGP on the same IPv4 sessions, IPv6 unicast; IPv6 sessions
// carry IPv6 unicast only (Peer.families).
type family uint8

const (
	ipv4Unicast family = iota + 1
	ipv6Unicast
)

// families are the families of an IPv4 session, in this order.
var families = []family{ipv4Unicast, ipv6Unicast}

var (
	familyIPv4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	familyIPv6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

// familyOf returns the family of a prefix.
func familyOf(p netip.Prefix) family {
	if p.Addr().Is4() {
		return ipv4Unicast
	}
	return ipv6Unicast
}

func (f family) api() *api.Family {
	if f == ipv6Unicast {
		return familyIPv6
	}
	return familyIPv4
}

func (f family) String() string {
	if f == ipv6Unicast {
		return "ipv6-unicast"
	}
	return "ipv4-unicast"
}

// familyFromAPI maps gobgp's family; ok is false for any other.
func familyFromAPI(a *api.Family) (family, bool) {
	for _, f := range families {
		if proto.Equal(a, f.api()) {
			return f, true
		}
	}
	return 0, false
}

// neighbor is the state of one configured BGP neighbour.
type neighbor struct {
	Address netip.Addr
	ASN     uint32
	// State is the FSM state: Idle, Connect, Active, OpenSent,
	// OpenConfirm or Established.
	State string
	// Uptime and Downtime are the last transitions into and out of
	// Established; zero when none happened.
	Uptime, Downtime               time.Time
	Received, Accepted, Advertised int // both families
	Received6, Advertised6         int // the IPv6 share
	Flaps                          int
	// GR reports that graceful restart was negotiated for at least one
	// family; GRFamilies lists them.
	GR         bool
	GRFamilies []family
	// PeerRestarting reports that gobgp keeps the peer's routes as stale
	// while it restarts.
	PeerRestarting bool
	// LocalRestarting reports that the session's next OPEN says this node
	// restarted with its forwarding state kept (Restart State and
	// Forwarding State bits).
	LocalRestarting bool
}

// established reports whether the session is up.
func (n neighbor) established() bool { return n.State == "Established" }

// gobgpRouter runs one embedded GoBGP server. Its methods are safe for
// concurrent use; gobgp serializes them on its own goroutine.
type gobgpRouter struct {
	s   *server.BgpServer
	cfg Config

	mu    sync.Mutex
	paths map[netip.Prefix]advertised // what AddPath installed
	peers map[netip.Addr]Peer         // what AddPeer installed
}

type advertised struct {
	NextHop netip.Addr
	UUID    []byte
}

// startRouter starts a gobgp server with cfg (defaulted and valid). gobgp
// v3's Serve loop has no way to end: its goroutine outlives stop, idle,
// one per Speaker that ever ran.
func startRouter(ctx context.Context, cfg Config, lg *gobgpLogger) (*gobgpRouter, error) {
	s := server.NewBgpServer(server.LoggerOption(lg)) // no gRPC API
	go s.Serve()
	g := &api.Global{
		Asn:        cfg.ASN,
		RouterId:   cfg.RouterID.String(),
		ListenPort: int32(cfg.ListenPort),
		Families: []uint32{
			uint32(oc.AfiSafiTypeToIntMap[oc.AFI_SAFI_TYPE_IPV4_UNICAST]),
			uint32(oc.AfiSafiTypeToIntMap[oc.AFI_SAFI_TYPE_IPV6_UNICAST]),
		},
	}
	if cfg.ListenPort > 0 {
		g.ListenAddresses = []string{cfg.ListenAddr.String()}
		if cfg.ListenAddr6.IsValid() {
			g.ListenAddresses = append(g.ListenAddresses, cfg.ListenAddr6.String())
		}
	}
	if err := s.StartBgp(ctx, &api.StartBgpRequest{Global: g}); err != nil {
		return nil, fmt.Errorf("start gobgp on %s:%d: %w", cfg.ListenAddr, cfg.ListenPort, err)
	}
	return &gobgpRouter{
		s:     s,
		cfg:   cfg,
		paths: map[netip.Prefix]advertised{},
		peers: map[netip.Addr]Peer{},
	}, nil
}

// watch calls onTable after every change of the best paths, onEOR for
// every End-of-RIB marker a peer sends, and onPeer after every session state
// change, until ctx is done. The callbacks run on a gobgp goroutine and must
// not block.
func (r *gobgpRouter) watch(ctx context.Context, onTable func(), onEOR func(peer netip.Addr, f family), onPeer func(addr netip.Addr, state string)) error {
	req := &api.WatchEventRequest{
		Peer: &api.WatchEventRequest_Peer{},
		Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{
			{Type: api.WatchEventRequest_Table_Filter_BEST},
			{Type: api.WatchEventRequest_Table_Filter_EOR},
		}},
	}
	err := r.s.WatchEvent(ctx, req, func(ev *api.WatchEventResponse) {
		switch {
		case ev.GetTable() != nil:
			for _, p := range ev.GetTable().GetPaths() {
				// gobgp reports an End-of-RIB as a path without NLRI.
				if p.GetNlri() != nil {
					continue
				}
				f, ok := familyFromAPI(p.GetFamily())
				if a, err := netip.ParseAddr(p.GetNeighborIp()); err == nil && ok {
					onEOR(a.Unmap(), f)
				}
			}
			onTable()
		case ev.GetPeer() != nil:
			p := ev.GetPeer().GetPeer()
			if ev.GetPeer().GetType() != api.WatchEventResponse_PeerEvent_STATE || p.GetState() == nil {
				return
			}
			addr, err := netip.ParseAddr(p.GetState().GetNeighborAddress())
			if err != nil {
				return
			}
			onPeer(addr.Unmap(), stateName(p.GetState().GetSessionState()))
		}
	})
	if err != nil {
		return fmt.Errorf("watch gobgp events: %w", err)
	}
	return nil
}

func stateName(s api.PeerState_SessionState) string {
	switch s {
	case api.PeerState_IDLE:
		return "Idle"
	case api.PeerState_CONNECT:
		return "Connect"
	case api.PeerState_ACTIVE:
		return "Active"
	case api.PeerState_OPENSENT:
		return "OpenSent"
	case api.PeerState_OPENCONFIRM:
		return "OpenConfirm"
	case api.PeerState_ESTABLISHED:
		return "Established"
	}
	return "Unknown"
}

// advertisedPaths returns what addPath installed, by prefix.
func (r *gobgpRouter) advertisedPaths() map[netip.Prefix]netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[netip.Prefix]netip.Addr, len(r.paths))
	for p, a := range r.paths {
		out[p] = a.NextHop
	}
	return out
}

// addPath originates prefix with next hop nh, replacing an earlier path for
// the same prefix. gobgp carries an IPv6 prefix in MP_REACH_NLRI with nh as
// its (global) next hop.
func (r *gobgpRouter) addPath(ctx context.Context, prefix netip.Prefix, nh netip.Addr) error {
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: prefix.Addr().String(), PrefixLen: uint32(prefix.Bits())})
	if err != nil {
		return fmt.Errorf("encode prefix %s: %w", prefix, err)
	}
	origin, err := anypb.New(&api.OriginAttribute{Origin: 0}) // IGP
	if err != nil {
		return fmt.Errorf("encode origin: %w", err)
	}
	next, err := anypb.New(&api.NextHopAttribute{NextHop: nh.String()})
	if err != nil {
		return fmt.Errorf("encode next hop %s: %w", nh, err)
	}
	resp, err := r.s.AddPath(ctx, &api.AddPathRequest{
		TableType: api.TableType_GLOBAL,
		Path:      &api.Path{Family: familyOf(prefix).api(), Nlri: nlri, Pattrs: []*anypb.Any{origin, next}},
	})
	if err != nil {
		return fmt.Errorf("advertise %s via %s: %w", prefix, nh, err)
	}
	r.mu.Lock()
	r.paths[prefix] = advertised{NextHop: nh, UUID: resp.GetUuid()}
	r.mu.Unlock()
	return nil
}

// deletePath withdraws what addPath originated for prefix.
func (r *gobgpRouter) deletePath(ctx context.Context, prefix netip.Prefix) error {
	r.mu.Lock()
	a, ok := r.paths[prefix]
	r.mu.Unlock()
	if !ok {
		return nil
	}
	err := r.s.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: familyOf(prefix).api(), Uuid: a.UUID})
	if err != nil && !strings.Contains(err.Error(), "can't find") {
		return fmt.Errorf("withdraw %s: %w", prefix, err)
	}
	r.mu.Lock()
	delete(r.paths, prefix)
	r.mu.Unlock()
	return nil
}

// configuredPeers returns what addPeer installed, by address.
func (r *gobgpRouter) configuredPeers() map[netip.Addr]Peer {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[netip.Addr]Peer, len(r.peers))
	for a, p := range r.peers {
		out[a] = p
	}
	return out
}

// seconds converts d to whole seconds, rounding up, at least 1.
func seconds(d time.Duration) uint64 {
	return uint64(max(1, math.Ceil(d.Seconds())))
}

// addPeer configures a neighbour. restarting sets the graceful-restart
// Restart State and Forwarding State bits in the OPEN (this node restarted
// and kept its forwarding state), which makes gobgp defer its own
// advertisements until the peers' End-of-RIB, up to grDeferralTime.
func (r *gobgpRouter) addPeer(ctx context.Context, p Peer, restarting bool) error {
	gr := !r.cfg.DisableGracefulRestart
	local := r.cfg.ListenAddr
	if p.Address.Is6() {
		if !r.cfg.ListenAddr6.IsValid() {
			return fmt.Errorf("add peer %s (%s): %s", p.Name, p.Address, errNoIPv6)
		}
		local = r.cfg.ListenAddr6
	}
	ap := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASN,
			Description:     p.Name,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:      seconds(r.cfg.ConnectRetry),
			HoldTime:          seconds(r.cfg.HoldTime),
			KeepaliveInterval: seconds(r.cfg.KeepAlive),
		}},
		Transport: &api.Transport{
			// Sessions come from the address peers know this node by,
			// whatever source address the kernel would pick.
			LocalAddress: local.String(),
			RemotePort:   uint32(p.Port),
			PassiveMode:  p.Passive,
		},
	}
	// Both families on an IPv4 session (MP-BGP: IPv6 prefixes travel with
	// IPv6 next hops over it), IPv6 alone on an IPv6 one; each with
	// graceful restart.
	for _, f := range p.families() {
		ap.AfiSafis = append(ap.AfiSafis, &api.AfiSafi{
			Config:            &api.AfiSafiConfig{Family: f.api(), Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: gr}},
		})
	}
	if gr {
		ap.GracefulRestart = &api.GracefulRestart{
			Enabled:         true,
			RestartTime:     uint32(seconds(r.cfg.RestartTime)),
			DeferralTime:    grDeferralTime,
			LocalRestarting: restarting,
		}
	}
	if p.RouteReflectorClient {
		clusterID := r.cfg.RouterID
		if r.cfg.RouteReflector != nil {
			clusterID = r.cfg.RouteReflector.ClusterID
		}
		ap.RouteReflector = &api.RouteReflector{RouteReflectorClient: true, RouteReflectorClusterId: clusterID.String()}
	}
	if err := r.s.AddPeer(ctx, &api.AddPeerRequest{Peer: ap}); err != nil {
		return fmt.Errorf("add peer %s (%s): %w", p.Name, p.Address, err)
	}
	r.mu.Lock()
	r.peers[p.Address] = p
	r.mu.Unlock()
	return nil
}

// deletePeer removes a neighbour; its routes are withdrawn at once (a
// Cease notification tells the peer to drop ours without graceful restart).
func (r *gobgpRouter) deletePeer(ctx context.Context, addr netip.Addr) error {
	err := r.s.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()})
	if err != nil && !strings.Contains(err.Error(), "can't delete a peer configuration") {
		return fmt.Errorf("delete peer %s: %w", addr, err)
	}
	r.mu.Lock()
	delete(r.peers, addr)
	r.mu.Unlock()
	return nil
}

// bestPaths returns the best path of every IPv4 and IPv6 unicast
// destination.
func (r *gobgpRouter) bestPaths(ctx context.Context) ([]Path, error) {
	var out []Path
	for _, f := range families {
		ps, err := r.bestPathsOf(ctx, f)
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	return out, nil
}

func (r *gobgpRouter) bestPathsOf(ctx context.Context, f family) ([]Path, error) {
	var (
		out  []Path
		errs []error
	)
	err := r.s.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: f.api()}, func(d *api.Destination) {
		prefix, err := netip.ParsePrefix(d.GetPrefix())
		if err != nil {
			errs = append(errs, fmt.Errorf("parse destination %q: %w", d.GetPrefix(), err))
			return
		}
		for _, p := range d.GetPaths() {
			if !p.GetBest() || p.GetIsWithdraw() {
				continue
			}
			path := Path{Prefix: prefix, Stale: p.GetStale()}
			// Locally originated paths have no source address ("<nil>").
			if a, err := netip.ParseAddr(p.GetNeighborIp()); err == nil {
				path.Peer = a.Unmap()
			}
			if !p.GetIsNexthopInvalid() {
				path.NextHop = nextHopOf(p.GetPattrs())
			}
			out = append(out, path)
			break
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list best %s paths: %w", f, err)
	}
	return out, errors.Join(errs...)
}

// nextHopOf returns the next hop in a path's attributes; invalid when none.
func nextHopOf(attrs []*anypb.Any) netip.Addr {
	for _, a := range attrs {
		m, err := a.UnmarshalNew()
		if err != nil {
			continue
		}
		var s string
		switch v := m.(type) {
		case *api.NextHopAttribute:
			s = v.GetNextHop()
		case *api.MpReachNLRIAttribute:
			if len(v.GetNextHops()) > 0 {
				s = v.GetNextHops()[0]
			}
		default:
			continue
		}
		if nh, err := netip.ParseAddr(s); err == nil {
			return nh.Unmap()
		}
	}
	return netip.Addr{}
}

// neighbors returns the state of every configured neighbour.
func (r *gobgpRouter) neighbors(ctx context.Context) ([]neighbor, error) {
	var out []neighbor
	err := r.s.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		addr, err := netip.ParseAddr(p.GetConf().GetNeighborAddress())
		if err != nil {
			return
		}
		n := neighbor{
			Address:        addr.Unmap(),
			ASN:            p.GetConf().GetPeerAsn(),
			State:          stateName(p.GetState().GetSessionState()),
			Flaps:          int(p.GetState().GetFlops()),
			PeerRestarting: p.GetGracefulRestart().GetPeerRestarting(),
			// gobgp clears it on every neighbour once the neighbours that
			// are up have sent End-of-RIB, including those not up yet.
			LocalRestarting: p.GetGracefulRestart().GetLocalRestarting(),
		}
		if t := p.GetTimers().GetState(); t != nil {
			if u := t.GetUptime(); u != nil && u.GetSeconds() > 0 {
				n.Uptime = u.AsTime()
			}
			if d := t.GetDowntime(); d != nil && d.GetSeconds() > 0 {
				n.Downtime = d.AsTime()
			}
		}
		negotiated := remoteFamilies(p.GetState().GetRemoteCap())
		for _, af := range p.GetAfiSafis() {
			f, ok := familyFromAPI(af.GetConfig().GetFamily())
			if !ok {
				continue
			}
			// gobgp counts what it would advertise in every configured
			// family; a family the peer did not take (a ToR's IPv4-only
			// session) carries nothing.
			if n.established() && !negotiated[f] {
				continue
			}
			st := af.GetState()
			received, accepted, advertised := int(st.GetReceived()), int(st.GetAccepted()), int(st.GetAdvertised())
			gr := af.GetMpGracefulRestart().GetState()
			if gr.GetEnabled() && gr.GetReceived() {
				n.GR = true
				n.GRFamilies = append(n.GRFamilies, f)
				if n.established() && advertised > 0 {
					advertised-- // gobgp counts the End-of-RIB marker it would send
				}
			}
			n.Received += received
			n.Accepted += accepted
			n.Advertised += advertised
			if f == ipv6Unicast {
				n.Received6, n.Advertised6 = received, advertised
			}
		}
		out = append(out, n)
	})
	if err != nil {
		return nil, fmt.Errorf("list peers: %w", err)
	}
	return out, nil
}

// remoteFamilies returns the families a peer's OPEN offered: its
// multiprotocol capabilities, or IPv4 unicast alone without any (RFC 4760).
func remoteFamilies(caps []*anypb.Any) map[family]bool {
	out := map[family]bool{}
	mp := false
	for _, c := range caps {
		m, err := c.UnmarshalNew()
		if err != nil {
			continue
		}
		if v, ok := m.(*api.MultiProtocolCapability); ok {
			mp = true
			if f, ok := familyFromAPI(v.GetFamily()); ok {
				out[f] = true
			}
		}
	}
	if !mp {
		out[ipv4Unicast] = true
	}
	return out
}

// stop shuts gobgp down. With graceful restart on it first cuts the TCP
// sessions without a NOTIFICATION, as a crashed or restarting process
// would, so that peers keep this node's routes for the restart time; gobgp
// itself can only stop with a Cease notification, which makes peers drop
// them at once. Kernel routes are never touched here.
func (r *gobgpRouter) stop(ctx context.Context) error {
	var errs []error
	if !r.cfg.DisableGracefulRestart {
		// Sessions of each family run from their own local address.
		remotes := map[bool]map[netip.AddrPort]bool{false: {}, true: {}}
		for _, p := range r.configuredPeers() {
			port := p.Port
			if port == 0 {
				port = DefaultPort
			}
			remotes[p.Address.Is6()][netip.AddrPortFrom(p.Address, uint16(port))] = true
		}
		locals := map[bool]netip.Addr{false: r.cfg.ListenAddr, true: r.cfg.ListenAddr6}
		for _, v6 := range []bool{false, true} {
			if len(remotes[v6]) == 0 || !locals[v6].IsValid() {
				continue
			}
			if _, err := abortSessions(locals[v6], r.cfg.ListenPort, remotes[v6]); err != nil {
				errs = append(errs, fmt.Errorf("cut sessions for graceful restart (peers will drop routes): %w", err))
			}
		}
	}
	done := make(chan error, 1)
	go func() { done <- r.s.StopBgp(context.WithoutCancel(ctx), &api.StopBgpRequest{}) }()
	select {
	case err := <-done:
		if err != nil {
			errs = append(errs, fmt.Errorf("stop gobgp: %w", err))
		}
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("stop gobgp: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}
