package bgp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/skeinnet/skein/internal/reconcile"
)

// stopTimeout bounds the shutdown of gobgp when Run ends.
const stopTimeout = 10 * time.Second

// restartDelay is how long a speaker that restarts with routes in the
// kernel waits before it listens and connects. A gobgp peer sits in Idle for
// a fixed 5 s after a session dropped and closes connections meanwhile; a
// restarted speaker that connects at once is refused, goes Idle for 5 s
// itself, and the two can keep missing each other for many rounds. Worse, a
// peer keeping this node's routes (graceful-restart helper) drops them at
// its first failed reconnection. Waiting out the peer's idle hold avoids
// both: the peer connects, or accepts the first connection.
const restartDelay = 6 * time.Second

// Speaker is an embedded BGP speaker: it advertises this node's blocks,
// keeps sessions with the desired peers and installs the best learned
// paths as kernel routes. Build it with New, give it state with the Set
// methods (before or while Run runs) and call Run once.
type Speaker struct {
	cfg       Config
	log       *slog.Logger
	gl        *gobgpLogger
	routes    *routeSyncer
	cfgLoop   reconcile.Loop // peers and advertisements → gobgp
	routeLoop reconcile.Loop // best paths → kernel
	ran       atomic.Bool
	// restartDelay is restartDelay; tests shorten it.
	restartDelay time.Duration

	mu       sync.Mutex
	peers    []Peer // desired, valid, in Set's order
	peersSet bool
	// noSession are desired IPv6 peers this node cannot open a session
	// with (no ListenAddr6), and peersErr says so.
	noSession  []Peer
	peersErr   error
	advertised map[netip.Prefix]netip.Addr // nil until the first Set
	nextHop6   netip.Addr                  // this node's IPv6 underlay address, if any
	advErr     error                       // prefixes Set could not advertise, and why
	local      []netip.Prefix
	router     *gobgpRouter // non-nil while Run runs
	runStart   time.Time
	syncing    bool // keeping routes of an earlier run until peers re-sync
	waitLogged bool
	states     map[netip.Addr]string          // last session state seen, by address
	eor        map[netip.Addr]map[family]bool // End-of-RIB markers peers sent during this run, by family
	rejected   []Rejection
	rejectSeen map[Rejection]bool // rejections already logged
	lastSync   time.Time
	lastDur    time.Duration
	cfgErr     error
	routeErr   error
	syncs      int
	failures   int
}

// New validates cfg and returns a Speaker.
func New(cfg Config) (*Speaker, error) {
	cfg = cfg.Defaulted()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Log.With("component", "bgp")
	dp := cfg.Dataplane
	if dp == nil {
		var err error
		if dp, err = defaultDataplane(cfg, log); err != nil {
			return nil, fmt.Errorf("bgp dataplane: %w", err)
		}
	}
	s := &Speaker{
		cfg:          cfg,
		log:          log,
		gl:           newGobgpLogger(cfg.Log),
		routes:       newRouteSyncer(dp, log),
		states:       map[netip.Addr]string{},
		eor:          map[netip.Addr]map[family]bool{},
		rejectSeen:   map[Rejection]bool{},
		restartDelay: restartDelay,
	}
	s.cfgLoop = reconcile.Loop{Name: "bgp-config", Sync: s.syncConfig, Log: log, MinBackoff: time.Second}
	s.routeLoop = reconcile.Loop{Name: "bgp-routes", Sync: s.syncRoutes, Log: log}
	return s, nil
}

// Desired is everything the agent wants of the speaker.
type Desired struct {
	// Peers are the neighbours to keep sessions with. Invalid peers and
	// duplicates (by name or address; the first wins) are left out and
	// reported by Set; a peer with the speaker's own address is ignored, so
	// the full node list may be passed.
	Peers []Peer
	// Advertised are the prefixes this node originates: IPv4 ones with next
	// hop NextHop (the node's underlay IP; RouterID when invalid), IPv6 ones
	// with next hop NextHop6 (the node's IPv6 underlay address). Without
	// NextHop6 no IPv6 prefix is advertised and none learned is installed:
	// Set reports it and Debug shows it (fail closed).
	Advertised []netip.Prefix
	NextHop    netip.Addr
	NextHop6   netip.Addr
	// Local are this node's own blocks: learned paths overlapping one of
	// them are never installed (and logged once).
	Local []netip.Prefix
}

// Set makes d the speaker's desired state. Sessions are added, removed and
// re-created (when a peer's address-independent settings change) and
// prefixes advertised or withdrawn in the background; it never blocks on
// the network. Peers are configured only once Set was called, so that a
// restarted node never sends End-of-RIB before its own blocks (which would
// make its peers drop them). The error lists the peers left out.
func (s *Speaker) Set(d Desired) error {
	s.setLocal(d.Local)
	advErr := s.setAdvertised(d.Advertised, d.NextHop, d.NextHop6)
	return errors.Join(advErr, s.setPeers(d.Peers))
}

func (s *Speaker) setPeers(peers []Peer) error {
	ok, err := ValidatePeers(peers)
	ok = slices.DeleteFunc(ok, s.isSelf)
	// An IPv6 session needs this node's IPv6 address as its source: without
	// one the peer stays listed, with the reason, rather than skipped.
	var noSession []Peer
	if !s.cfg.ListenAddr6.IsValid() {
		ok = slices.DeleteFunc(ok, func(p Peer) bool {
			if p.Address.Is6() {
				noSession = append(noSession, p)
				return true
			}
			return false
		})
	}
	var perr error
	if len(noSession) > 0 {
		names := make([]string, len(noSession))
		for i, p := range noSession {
			names[i] = p.Name + " (" + p.Address.String() + ")"
		}
		perr = fmt.Errorf("no session with IPv6 peer(s) %s: %s", strings.Join(names, ", "), errNoIPv6)
	}
	s.mu.Lock()
	s.peers, s.peersSet, s.noSession = ok, true, noSession
	changed := fmt.Sprint(perr) != fmt.Sprint(s.peersErr)
	s.peersErr = perr
	s.mu.Unlock()
	if changed && perr != nil {
		s.log.Warn("IPv6 peers without a session", "err", perr)
	}
	s.cfgLoop.Trigger()
	if err = errors.Join(err, perr); err != nil {
		return fmt.Errorf("bgp peers: %w", err)
	}
	return nil
}

// isSelf reports whether p is this speaker: one of its addresses and its
// port (so that the full node list may be passed to Set).
func (s *Speaker) isSelf(p Peer) bool {
	port := cmp.Or(p.Port, DefaultPort)
	return (p.Address == s.cfg.ListenAddr || p.Address == s.cfg.RouterID || p.Address == s.cfg.ListenAddr6) &&
		(s.cfg.ListenPort <= 0 || port == s.cfg.ListenPort)
}

func (s *Speaker) setAdvertised(prefixes []netip.Prefix, nextHop, nextHop6 netip.Addr) error {
	if !nextHop.IsValid() {
		nextHop = s.cfg.RouterID
	}
	if nextHop6.IsValid() && !usableNextHop(nextHop6, true) {
		s.log.Warn("ignoring an unusable IPv6 next hop", "gw", nextHop6)
		nextHop6 = netip.Addr{}
	}
	adv := make(map[netip.Prefix]netip.Addr, len(prefixes))
	var without6 []string
	for _, p := range prefixes {
		switch {
		case !p.IsValid() || p.Addr().Is4In6():
			s.log.Warn("not advertising an invalid prefix", "prefix", p)
		case p.Addr().Is4():
			adv[p.Masked()] = nextHop
		case nextHop6.IsValid():
			adv[p.Masked()] = nextHop6
		default:
			without6 = append(without6, p.Masked().String())
		}
	}
	var err error
	if len(without6) > 0 {
		err = fmt.Errorf("not advertising IPv6 blocks %s: %s", strings.Join(without6, ", "), errNoIPv6)
	}
	s.mu.Lock()
	nh6Changed := nextHop6 != s.nextHop6
	s.advertised, s.nextHop6 = adv, nextHop6
	changed := fmt.Sprint(err) != fmt.Sprint(s.advErr)
	s.advErr = err
	s.mu.Unlock()
	if changed && err != nil {
		s.log.Warn("IPv6 blocks not advertised", "err", err)
	}
	s.cfgLoop.Trigger()
	if nh6Changed {
		s.routeLoop.Trigger() // whether IPv6 routes may be installed follows nextHop6
	}
	return err
}

// errNoIPv6 is why a node without an IPv6 underlay address neither
// advertises its IPv6 blocks nor installs IPv6 routes: its blocks would have
// no next hop, and a gateway on the underlay would be unreachable from it.
const errNoIPv6 = "this node has no IPv6 underlay address (UnderlayIP6)"

func (s *Speaker) setLocal(prefixes []netip.Prefix) {
	local := make([]netip.Prefix, 0, len(prefixes))
	for _, p := range prefixes {
		if p.IsValid() {
			local = append(local, p.Masked())
		}
	}
	s.mu.Lock()
	s.local = local
	s.mu.Unlock()
	s.routeLoop.Trigger()
}

// Run starts gobgp (listening only on ListenAddr, no gRPC API), keeps it
// at the desired state and the kernel at its best paths until ctx is done,
// then stops it. With graceful restart the sessions are cut as if the
// process had died, so peers keep this node's routes for RestartTime.
// Kernel routes are left in place in every case; the next Run keeps them
// until it has re-learned them. Run may be called once.
func (s *Speaker) Run(ctx context.Context) error {
	if s.ran.Swap(true) {
		return errors.New("bgp speaker: Run called twice")
	}
	s.mu.Lock()
	s.runStart, s.syncing = time.Now(), true
	s.mu.Unlock()
	if have, err := s.routes.dp.Routes(ctx); err == nil && len(have) > 0 {
		s.log.Info("restarting with routes in the kernel; waiting for peers to accept connections",
			"count", len(have), "dur", s.restartDelay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.restartDelay):
		}
	}
	r, err := startRouter(ctx, s.cfg, s.gl)
	if err != nil {
		return err
	}
	watchCtx, cancelWatch := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWatch()
	if err := r.watch(watchCtx, s.routeLoop.Trigger, s.endOfRIB, s.peerStateChanged); err != nil {
		return errors.Join(err, r.stop(ctx))
	}
	s.mu.Lock()
	s.router = r
	s.mu.Unlock()
	listen := "none"
	if s.cfg.ListenPort > 0 {
		listen = netip.AddrPortFrom(s.cfg.ListenAddr, uint16(s.cfg.ListenPort)).String()
	}
	if s.cfg.ListenPort > 0 && s.cfg.ListenAddr6.IsValid() {
		listen += " " + netip.AddrPortFrom(s.cfg.ListenAddr6, uint16(s.cfg.ListenPort)).String()
	}
	s.log.Info("bgp speaker started", "router_id", s.cfg.RouterID, "asn", s.cfg.ASN, "listen", listen,
		"graceful_restart", !s.cfg.DisableGracefulRestart, "route_reflector", s.cfg.RouteReflector != nil)

	staleTimer := time.AfterFunc(max(0, s.cfg.StaleRouteTime-time.Since(s.runStart)), s.routeLoop.Trigger)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.cfgLoop.Run(gctx) })
	g.Go(func() error { return s.routeLoop.Run(gctx) })
	err = g.Wait()
	staleTimer.Stop()
	cancelWatch()

	s.mu.Lock()
	s.router = nil
	s.mu.Unlock()
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	serr := r.stop(stopCtx)
	s.log.Info("bgp speaker stopped", "graceful_restart", !s.cfg.DisableGracefulRestart)
	return errors.Join(err, serr)
}

// syncConfig makes gobgp's advertisements and neighbours match the desired
// state.
func (s *Speaker) syncConfig(ctx context.Context) error {
	s.mu.Lock()
	r, advSet := s.router, s.advertised != nil
	adv := make(map[netip.Prefix]netip.Addr, len(s.advertised))
	for p, nh := range s.advertised {
		adv[p] = nh
	}
	want := make(map[netip.Addr]Peer, len(s.peers))
	for _, p := range s.peers {
		want[p.Address] = p
	}
	restarting := s.syncing && !s.cfg.DisableGracefulRestart
	logWait := !advSet && s.peersSet && !s.waitLogged
	if logWait {
		s.waitLogged = true
	}
	s.mu.Unlock()
	if r == nil {
		return nil
	}
	if !advSet {
		if logWait {
			s.log.Info("peers wait for the first Set")
		}
		return nil
	}
	err := errors.Join(s.syncPaths(ctx, r, adv), s.syncPeers(ctx, r, want, restarting))
	if restarting {
		err = errors.Join(err, s.rearmRestarting(ctx, r))
	}
	s.mu.Lock()
	s.cfgErr = err
	s.mu.Unlock()
	return err
}

func (s *Speaker) syncPaths(ctx context.Context, r *gobgpRouter, want map[netip.Prefix]netip.Addr) error {
	d := reconcile.Diff(want, r.advertisedPaths(), func(a, b netip.Addr) bool { return a == b })
	d.Sort(comparePrefix)
	var errs []error
	for _, it := range append(d.Add, d.Change...) {
		if err := r.addPath(ctx, it.Key, it.Value); err != nil {
			errs = append(errs, err)
			continue
		}
		s.log.Info("prefix advertised", "prefix", it.Key, "gw", it.Value)
	}
	for _, it := range d.Delete {
		if err := r.deletePath(ctx, it.Key); err != nil {
			errs = append(errs, err)
			continue
		}
		s.log.Info("prefix withdrawn", "prefix", it.Key)
	}
	return errors.Join(errs...)
}

// sessionEqual reports whether two peers need the same gobgp neighbour;
// names and descriptions are Skein's own.
func sessionEqual(a, b Peer) bool {
	return a.Address == b.Address && a.ASN == b.ASN && a.Port == b.Port &&
		a.RouteReflectorClient == b.RouteReflectorClient && a.Passive == b.Passive
}

func (s *Speaker) syncPeers(ctx context.Context, r *gobgpRouter, want map[netip.Addr]Peer, restarting bool) error {
	d := reconcile.Diff(want, r.configuredPeers(), sessionEqual)
	d.Sort(netip.Addr.Compare)
	var errs []error
	for _, it := range d.Delete {
		if err := r.deletePeer(ctx, it.Key); err != nil {
			errs = append(errs, err)
			continue
		}
		s.gl.forgetPeer(it.Key.String())
		s.mu.Lock()
		s.states[it.Key] = "Removed" // its last Idle event is not a "peer down"
		delete(s.eor, it.Key)
		s.mu.Unlock()
		s.log.Info("peer removed", "peer", it.Value.Name, "ip", it.Key)
	}
	for _, it := range d.Change {
		if err := r.deletePeer(ctx, it.Key); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := r.addPeer(ctx, it.Value, restarting); err != nil {
			errs = append(errs, err)
			continue
		}
		s.log.Info("peer changed", "peer", it.Value.Name, "ip", it.Key, "asn", it.Value.ASN)
	}
	for _, it := range d.Add {
		if err := r.addPeer(ctx, it.Value, restarting); err != nil {
			errs = append(errs, err)
			continue
		}
		s.log.Info("peer added", "peer", it.Value.Name, "ip", it.Key, "asn", it.Value.ASN,
			"rr_client", it.Value.RouteReflectorClient, "passive", it.Value.Passive)
	}
	return errors.Join(errs...)
}

// rearmRestarting re-adds, as restarting, the peers whose session is not up
// yet but which gobgp no longer treats as restarting. gobgp ends its
// restart deferral once the neighbours that are up have sent End-of-RIB,
// and then clears the restart flag of every neighbour, so a session that
// comes up later (the second of a node's two sessions with a ToR, over
// IPv4 and IPv6) would open without the Forwarding State bit, and its peer
// would drop this node's kept routes at once (RFC 4724) until it re-learns
// them: a brief blackhole on every restart. A peer that is not up yet has
// no session to lose.
func (s *Speaker) rearmRestarting(ctx context.Context, r *gobgpRouter) error {
	ns, err := r.neighbors(ctx)
	if err != nil {
		return err
	}
	configured := r.configuredPeers()
	var errs []error
	for _, n := range ns {
		p, ok := configured[n.Address]
		if !ok || n.LocalRestarting || (n.State != "Idle" && n.State != "Connect" && n.State != "Active") {
			continue
		}
		if err := r.deletePeer(ctx, n.Address); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := r.addPeer(ctx, p, true); err != nil {
			errs = append(errs, err)
			continue
		}
		s.log.Info("peer re-added as restarting: its session was not up when gobgp ended the restart deferral", "peer", p.Name, "ip", n.Address)
	}
	return errors.Join(errs...)
}

// syncRoutes makes the kernel's owned routes match the best paths.
func (s *Speaker) syncRoutes(ctx context.Context) error {
	began := time.Now()
	err := s.syncRoutesOnce(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastSync, s.lastDur, s.routeErr = time.Now(), time.Since(began), err
	s.syncs++
	if err != nil {
		s.failures++
	}
	return err
}

func (s *Speaker) syncRoutesOnce(ctx context.Context) error {
	s.mu.Lock()
	r, syncing, start := s.router, s.syncing, s.runStart
	local := slices.Clone(s.local)
	peers := slices.Clone(s.peers)
	configured := s.peersSet && s.advertised != nil
	self := []netip.Addr{s.cfg.RouterID, s.cfg.ListenAddr}
	noIPv6 := ""
	if s.nextHop6.IsValid() {
		self = append(self, s.nextHop6)
	} else {
		noIPv6 = errNoIPv6
	}
	s.mu.Unlock()
	if r == nil {
		return nil
	}
	// Whether the peers have re-sent their routes is decided before the
	// paths are listed: End-of-RIB follows a peer's routes, so paths listed
	// after it was seen include them.
	if syncing {
		reason := ""
		if time.Since(start) >= s.cfg.StaleRouteTime {
			reason = "timeout"
		} else if configured {
			ns, err := r.neighbors(ctx)
			if err != nil {
				return fmt.Errorf("sync bgp routes: %w", err)
			}
			s.mu.Lock()
			synced := allSynced(peers, ns, s.eor)
			s.mu.Unlock()
			if synced {
				reason = "all peers sent their routes"
			}
		}
		if reason != "" {
			syncing = false
			s.mu.Lock()
			s.syncing = false
			s.mu.Unlock()
			s.log.Info("initial sync done; removing stale routes", "reason", reason, "dur", time.Since(start))
		}
	}
	paths, err := r.bestPaths(ctx)
	if err != nil {
		return fmt.Errorf("sync bgp routes: %w", err)
	}
	plan := Plan(PlanInput{Paths: paths, Local: local, Import: s.cfg.Import, Self: self, NoIPv6: noIPv6})
	s.noteRejections(plan.Rejected)

	var keep func(Route) bool
	if syncing {
		keep = func(rt Route) bool { return !slices.ContainsFunc(local, rt.Dst.Overlaps) }
	}
	start = time.Now()
	ops, kept, err := s.routes.sync(ctx, plan.Routes, keep)
	if err != nil {
		err = fmt.Errorf("sync bgp routes: %w", err)
	}
	if ops > 0 {
		s.log.Info("routes synced", "op", ops, "count", len(plan.Routes), "kept", kept, "dur", time.Since(start))
	} else {
		s.log.Debug("routes synced", "op", 0, "count", len(plan.Routes), "kept", kept, "dur", time.Since(start))
	}
	return err
}

// allSynced reports whether every desired peer is established and has
// sent End-of-RIB (eor) for every family it negotiated graceful restart
// for: IPv4 and IPv6 routes come in separate markers, and the stale routes
// of one family must not go when only the other's were re-sent. gobgp's own
// End-of-RIB flag is not used: it is set without any marker when both ends
// restart.
func allSynced(peers []Peer, ns []neighbor, eor map[netip.Addr]map[family]bool) bool {
	for _, p := range peers {
		i := slices.IndexFunc(ns, func(n neighbor) bool { return n.Address == p.Address })
		if i < 0 || !ns[i].established() {
			return false
		}
		for _, f := range ns[i].GRFamilies {
			if !eor[p.Address][f] {
				return false
			}
		}
	}
	return true
}

// endOfRIB is called by gobgp for every End-of-RIB marker a peer sends.
func (s *Speaker) endOfRIB(peer netip.Addr, f family) {
	s.mu.Lock()
	if s.eor[peer] == nil {
		s.eor[peer] = map[family]bool{}
	}
	s.eor[peer][f] = true
	syncing := s.syncing
	s.mu.Unlock()
	s.routeLoop.Trigger()
	if syncing {
		s.cfgLoop.Trigger() // gobgp may have ended its restart deferral: see rearmRestarting
	}
}

// noteRejections logs each rejected path once, for as long as it stays
// rejected.
func (s *Speaker) noteRejections(rej []Rejection) {
	s.mu.Lock()
	seen := make(map[Rejection]bool, len(rej))
	var fresh []Rejection
	for _, r := range rej {
		seen[r] = true
		if !s.rejectSeen[r] {
			fresh = append(fresh, r)
		}
	}
	s.rejectSeen, s.rejected = seen, rej
	s.mu.Unlock()
	for _, r := range fresh {
		s.log.Warn("learned route not installed", "prefix", r.Prefix, "gw", r.NextHop, "ip", r.Peer, "reason", r.Reason)
	}
}

// peerStateChanged is called by gobgp on every session state change.
func (s *Speaker) peerStateChanged(addr netip.Addr, state string) {
	s.mu.Lock()
	prev := s.states[addr]
	s.states[addr] = state
	name := ""
	if i := slices.IndexFunc(s.peers, func(p Peer) bool { return p.Address == addr }); i >= 0 {
		name = s.peers[i].Name
	}
	syncing := s.syncing
	s.mu.Unlock()
	if syncing && state != prev {
		s.cfgLoop.Trigger() // see rearmRestarting
	}
	switch {
	case state == prev:
		return
	case state == "Established":
		s.log.Info("peer established", "peer", name, "ip", addr)
	case prev == "Established":
		args := []any{"peer", name, "ip", addr, "state", state}
		if e, ok := s.gl.lastPeerError(addr.String()); ok {
			args = append(args, "err", e.Text)
		}
		s.log.Info("peer down", args...)
	default:
		s.log.Debug("peer state changed", "peer", name, "ip", addr, "state", state)
	}
	s.routeLoop.Trigger()
}
