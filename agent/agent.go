package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/ipam"
	"github.com/skeinnet/skein/store"
	"github.com/skeinnet/skein/vxlan"
)

// Agent is one running skeind. Build it with Run.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	ul    underlay
	store *store.Client
	alloc *ipam.Dual
	// be is the VXLAN or BGP backend, set before anything runs.
	be      backend
	pol     *enforcer
	self    api.Node
	cluster api.Cluster
	id      identity
	metrics *metrics
	// drops is the denied-flow log (agent/drops.go).
	drops   *dropLog
	started time.Time
	// pub replays endpoint changes made while etcd was unreachable.
	pub *publisher

	// snap is the agent's view of the cluster: the store's own copy, which
	// its watch moves in place under viewMu (store.WatchView). Readers hold
	// viewMu.RLock (readView) while they use it.
	viewMu  sync.RWMutex
	snap    atomic.Pointer[store.Snapshot]
	serving atomic.Bool
	// reregistering is set while a re-registration of the node record runs.
	reregistering atomic.Bool
	readyOnce     sync.Once
	readyAt       atomic.Int64 // unix nanos of the first time every readiness condition held
	statusCh      chan api.NodeStatus
	statusKick    chan struct{} // requestStatus → statusLoop
	// takenOver is set once the node record names another identity: the
	// agent then refuses every request and exits with fatal's error.
	takenOver atomic.Bool
	fatal     chan error
	// wg is be when the cluster encrypts with WireGuard: its public key
	// goes into the node record.
	wg *wgBackend
}

// Run starts the agent and blocks until ctx is done. A clean shutdown leaves
// the dataplane in place so containers keep their connectivity across restarts.
func Run(ctx context.Context, cfg Config) error {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	a := &Agent{cfg: cfg, log: cfg.Log.With("node", cfg.NodeName), started: time.Now(), statusCh: make(chan api.NodeStatus, 1), statusKick: make(chan struct{}, 1), fatal: make(chan error, 1)}
	return a.run(ctx)
}

func (a *Agent) run(ctx context.Context) error {
	if err := os.MkdirAll(a.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	id, created, err := loadIdentity(a.cfg.StateDir)
	if err != nil {
		return err
	}
	a.id = id
	if created {
		a.log.Info("node identity created", "identity", fingerprint(id.Hash), "path", id.Path)
	}
	ul, err := findUnderlay(a.cfg.Iface, a.cfg.UnderlayIP, a.cfg.UnderlayIP6)
	if err != nil {
		return fmt.Errorf("node %s: %w", a.cfg.NodeName, err)
	}
	a.ul = ul
	a.log.Info("underlay found", "ifname", ul.Iface, "ip", ul.IP, "ip6", ul.IP6, "mtu", ul.MTU)

	etcdCfg := a.cfg.Etcd
	if a.cfg.EmbeddedEtcd {
		e, err := store.StartEmbedded(ctx, store.EmbeddedConfig{
			Dir:          filepath.Join(a.cfg.StateDir, "etcd"),
			ClientURLs:   etcdCfg.Endpoints,
			CertFile:     a.cfg.EmbeddedTLS.CertFile,
			KeyFile:      a.cfg.EmbeddedTLS.KeyFile,
			ClientCAFile: a.cfg.EmbeddedTLS.ClientCAFile,
			Log:          a.log,
		})
		if err != nil {
			return fmt.Errorf("embedded etcd: %w", err)
		}
		defer e.Close()
		etcdCfg.Endpoints = e.Endpoints()
		a.log.Info("embedded etcd started", "endpoints", etcdCfg.Endpoints)
	}
	etcdCfg.Log = a.log
	if a.store, err = connectStore(ctx, etcdCfg, a.log); err != nil {
		return err
	}
	defer a.store.Close()

	if a.cluster, err = waitCluster(ctx, a.store, a.log); err != nil {
		return err
	}
	if err := checkV6Only(a.cfg.NodeName, a.cluster, ul, a.cfg.DockerPluginSocket); err != nil {
		return err
	}
	// Before any block is claimed: a node that cannot carry IPv6 joins
	// nothing of a dual-stack cluster.
	if api.DualStack(a.cluster.Pools) {
		if ul.IP6.IsValid() {
			if err := keepRouterAdvertisements(a.cfg.NodeName, ul.Iface); err != nil {
				return err
			}
		}
		if err := enableForwarding6(a.cfg.NodeName); err != nil {
			return err
		}
	}
	if a.cluster.Backend == api.BackendVXLAN && a.cluster.Encryption == "" {
		if err := a.checkVXLANFamily(ctx); err != nil {
			return err
		}
	}
	// Before ipam.New: it adopts the blocks the name holds in etcd.
	if err := a.claimNode(ctx); err != nil {
		return err
	}
	a.alloc, err = ipam.NewDual(ctx, ipam.Config{
		Node:     a.cfg.NodeName,
		Pools:    a.cluster.Pools,
		Store:    a.store,
		StateDir: a.cfg.StateDir,
		Cooldown: a.cfg.Cooldown,
		Log:      a.cfg.Log,
		// RunBlockRelease below acts on it; 0 there means never.
		ReleaseGrace: a.cfg.BlockReleaseGrace,
	})
	if err != nil {
		return fmt.Errorf("ipam: %w", err)
	}
	a.self = api.Node{
		Name:        a.cfg.NodeName,
		UnderlayIP:  ul.IP,
		UnderlayIP6: ul.IP6,
		Labels:      a.cfg.Labels,
		DebugAddr:   a.cfg.DebugAddr,
		Version:     a.cfg.Version,
	}
	switch a.cluster.Backend {
	case api.BackendVXLAN:
		a.self.MTU = ul.MTU - api.VXLANOverhead
		if ul.IP.Is6() {
			a.self.MTU = ul.MTU - api.VXLANOverhead6
		}
		a.self.VTEPMAC = vtepMAC(a.cfg.NodeName)
		a.self.VTEPIP = a.alloc.VTEPAddr()
		a.self.VTEPIP6 = a.alloc.VTEPAddr6()
		if a.cluster.Encryption == api.EncryptionWireGuard {
			// WireGuard replaces the overlay (agent/backend_wireguard.go).
			a.self.MTU = ul.MTU - api.WireGuardOverhead
			wb, err := a.newWireGuardBackend()
			if err != nil {
				return fmt.Errorf("node %s: encryption wireguard: %w", a.cfg.NodeName, err)
			}
			a.be, a.wg = wb, wb
			break
		}
		rec, err := vxlan.NewReconciler(vxlan.ReconcilerConfig{
			Dataplane: vxlan.NewNetlinkDataplane(nil, a.log),
			Resync:    a.cfg.Resync,
			Log:       a.log,
		})
		if err != nil {
			return fmt.Errorf("vxlan: %w", err)
		}
		a.be = newVXLANBackend(a.cfg.NodeName, onLink{ul.Network, ul.Network6}, a.vxlanConfig(), rec, a.readView, a.log)
	case api.BackendBGP:
		if !ul.IP.Is4() {
			// The router id is IPv4, and IPv4 blocks need IPv4 next hops.
			return fmt.Errorf("node %s: backend bgp needs an IPv4 underlay address (sessions, router id and IPv4 next hops); %s has only %s", a.cfg.NodeName, ul.Iface, ul.IP)
		}
		if api.DualStack(a.cluster.Pools) && !ul.IP6.IsValid() {
			// Fail closed: the speaker advertises no IPv6 block and
			// installs no IPv6 route (its status says so too).
			a.log.Warn("no IPv6 underlay address: IPv6 blocks are not advertised and no IPv6 route is installed", "ifname", ul.Iface)
		}
		a.self.MTU = ul.MTU // routed: no encapsulation
		a.self.RouterID = ul.IP
		a.self.ASN = a.cluster.BGP.ASN
		sp, err := newSpeaker(ul, a.cluster, a.self, a.log)
		if err != nil {
			return fmt.Errorf("bgp: %w", err)
		}
		a.be = newBGPBackend(a.cfg.NodeName, a.cluster, ul.IP, ul.IP6, sp, a.alloc.Blocks, a.readView, a.log)
	default:
		return fmt.Errorf("cluster backend %q is not supported by this agent", a.cluster.Backend)
	}
	mtu := a.self.MTU
	if err := a.putNode(ctx); err != nil {
		return err
	}
	if err := enableForwarding(); err != nil {
		return err
	}
	a.metrics = newMetrics()
	a.startDrops()

	if a.pol, err = newEnforcer(a.cfg.NodeName, a); err != nil {
		return err
	}
	if a.cluster.Backend == api.BackendVXLAN && a.wg == nil {
		a.pol.vxlanPort = uint16(a.cluster.VXLAN.Port)
	}

	sockLn, err := listenSocket(a.cfg.SocketPath, a.log.With("component", "socket"))
	if err != nil {
		return err
	}
	var debugLn net.Listener
	if a.cfg.DebugAddr != "off" {
		if debugLn, err = net.Listen("tcp", a.cfg.DebugAddr); err != nil {
			sockLn.Close()
			return fmt.Errorf("debug endpoint %s: %w", a.cfg.DebugAddr, err)
		}
		a.log.Info("debug endpoint listening", "addr", debugLn.Addr().String())
	}

	// A journal left by a previous run is replayed as soon as the
	// publisher runs.
	jr, err := openJournal(a.cfg.StateDir, a.cfg.NodeName)
	if err != nil {
		sockLn.Close()
		if debugLn != nil {
			debugLn.Close()
		}
		return err
	}
	health := &etcdHealth{}
	forget := func(o api.Owner) { a.pol.released(o) }
	cni := &cniServer{
		node:       a.cfg.NodeName,
		mtu:        mtu,
		alloc:      a.alloc,
		store:      a.store,
		ready:      a.readiness,
		log:        a.log.With("component", "cni"),
		onChange:   a.requestStatus,
		enforce:    func(ctx context.Context, ep api.Endpoint) error { return a.pol.committed(ctx, ep) },
		forget:     forget,
		endpointOf: a.localEndpoint,
		kubePod:    a.store.GetKubePod,
		namespaceKnown: func(name string) (known bool) {
			a.readView(func(s store.Snapshot) { _, known = s.Namespaces[name] })
			return known
		},
		health:    health,
		journal:   jr,
		published: map[api.Owner]bool{},
	}
	a.pub = &publisher{
		j:      jr,
		store:  a.store,
		health: health,
		probe: func(ctx context.Context) error {
			_, err := a.store.GetCluster(ctx)
			return err
		},
		published: func(ep api.Endpoint) {
			cni.markPublished(api.Owner{ContainerID: ep.ContainerID, IfName: ep.IfName}, true)
		},
		release: releaseAfterUnpublish(a.alloc, forget, a.log.With("component", "journal")),
		changed: a.requestStatus,
		log:     a.log.With("component", "journal"),
		kick:    make(chan struct{}, 1),
	}
	cni.pub = a.pub
	docker, err := a.newDockerPlugin(cni)
	if err != nil {
		sockLn.Close()
		if debugLn != nil {
			debugLn.Close()
		}
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return a.store.HeartbeatIdentity(gctx, a.cfg.NodeName, a.id.Hash, 30*time.Second, a.statusCh)
	})
	g.Go(func() error {
		select {
		case err := <-a.fatal:
			return err
		case <-gctx.Done():
			return nil
		}
	})
	g.Go(func() error { return a.store.WatchView(gctx, &a.viewMu, a.onDelta) })
	g.Go(func() error { return a.be.run(gctx) })
	g.Go(func() error { return a.watchTable(gctx) })
	g.Go(func() error { return a.pol.rec.Run(gctx) })
	g.Go(func() error { return a.pol.run(gctx) })
	g.Go(func() error { return a.pub.Run(gctx) })
	g.Go(func() error { return a.drops.run(gctx) })
	g.Go(func() error {
		return serve(gctx, sockLn, a.metrics.instrument(a.refuseWhenTakenOver(cni.handler())), func() { a.serving.Store(true) })
	})
	if debugLn != nil {
		g.Go(func() error { return serve(gctx, debugLn, a.debugHandler(), nil) })
	}
	if docker != nil {
		g.Go(func() error { return docker.run(gctx, a.log) })
	}
	if grace := a.cfg.BlockReleaseGrace; grace > 0 {
		g.Go(func() error { return a.alloc.RunBlockRelease(gctx, ipam.ReleaseEvery(grace)) })
	}
	g.Go(func() error { return a.statusLoop(gctx) })
	g.Go(func() error { return a.readyLoop(gctx) })
	err = g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil
	}
	a.log.Info("agent stopped; dataplane left in place")
	return err
}

// checkOwnRecord reacts to this node's record in the view. Another identity
// took it over: the agent stops (true). It vanished (an admin's `node delete
// --force`): it is re-registered, one re-registration at a time.
func (a *Agent) checkOwnRecord() (stop bool) {
	var (
		rec          api.Node
		ok, anyNodes bool
	)
	a.readView(func(s store.Snapshot) {
		rec, ok = s.Nodes[a.cfg.NodeName]
		anyNodes = len(s.Nodes) > 0
	})
	if ok && rec.Identity != a.id.Hash {
		a.tookOver(rec)
		return true
	}
	if a.takenOver.Load() {
		return true
	}
	if ok || !anyNodes || !a.reregistering.CompareAndSwap(false, true) {
		return false
	}
	a.log.Warn("own node record missing from the store; re-registering")
	go func() {
		defer a.reregistering.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), storeCallTimeout)
		defer cancel()
		switch err := a.putNode(ctx); {
		case errors.Is(err, ErrNodeNameTaken):
			a.fail(err)
		case err != nil:
			a.log.Warn("re-register node", "err", err)
		}
	}()
	return false
}

// tookOver stops the agent once its node record names another identity:
// two agents fighting over one record would re-point the node's blocks at
// each other's host on every write.
func (a *Agent) tookOver(n api.Node) {
	if !a.takenOver.CompareAndSwap(false, true) {
		return
	}
	a.fail(fmt.Errorf("%w: node %q now carries identity %s (underlay IP %s), this agent is %s; stopped rather than fight over it",
		ErrNodeTakenOver, a.cfg.NodeName, fingerprint(n.Identity), n.UnderlayIP, fingerprint(a.id.Hash)))
}

// fail stops the agent with err; the first error wins.
func (a *Agent) fail(err error) {
	a.takenOver.Store(true)
	select {
	case a.fatal <- err:
	default:
	}
}

// refuseWhenTakenOver answers every socket request with "try again later"
// once the node record is another identity's: no ADD may hand out an
// address from blocks that are no longer this host's.
func (a *Agent) refuseWhenTakenOver(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.takenOver.Load() {
			writeErr(w, http.StatusServiceUnavailable, codeTryAgainLater, "node "+a.cfg.NodeName, ErrNodeTakenOver)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// localEndpoint returns this node's endpoint record for o as the watch last
// saw it.
func (a *Agent) localEndpoint(o api.Owner) (ep api.Endpoint, ok bool) {
	a.readView(func(s store.Snapshot) {
		ep, ok = s.Endpoints[a.cfg.NodeName+"/"+o.ContainerID+"/"+o.IfName]
	})
	return ep, ok
}

func (a *Agent) vxlanConfig() vxlan.Config {
	return vxlan.Config{
		Device:          api.VXLANDevice,
		VNI:             a.cluster.VXLAN.VNI,
		Port:            a.cluster.VXLAN.Port,
		UnderlayIP:      a.ul.IP,
		UnderlayIP6:     a.ul.IP6,
		UnderlayIfIndex: a.ul.Index,
		MTU:             a.self.MTU,
		VTEPMAC:         net.HardwareAddr(a.self.VTEPMAC),
		VTEPIP:          a.self.VTEPIP,
		VTEPIP6:         a.self.VTEPIP6,
		DirectRouting:   a.cluster.VXLAN.DirectRouting,
	}
}

// readiness reports whether the agent can serve a CNI ADD, and why not.
func (a *Agent) readiness() (bool, string) {
	switch {
	case a.takenOver.Load():
		return false, "node record taken over by another identity"
	case a.alloc == nil || len(a.alloc.Blocks()) == 0:
		return false, "no address block held"
	case a.snap.Load() == nil:
		return false, "cluster state not loaded yet"
	}
	if why := a.be.notReady(); why != "" {
		return false, why
	}
	switch {
	case a.pol != nil && a.pol.rec.Debug().Syncs == 0:
		return false, "policy not enforced yet"
	case !a.serving.Load():
		return false, "socket not serving yet"
	}
	return true, ""
}

// readyLoop logs the moment the agent first becomes ready, with the time it took.
func (a *Agent) readyLoop(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if ok, _ := a.readiness(); ok {
			a.readyAt.Store(time.Now().UnixNano())
			a.log.Info("agent ready", "dur", time.Since(a.started))
			a.publishStatus()
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func connectStore(ctx context.Context, cfg store.Config, log *slog.Logger) (*store.Client, error) {
	backoff := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		c, err := store.New(ctx, cfg)
		if err == nil {
			if attempt > 1 {
				log.Info("etcd reachable", "endpoints", cfg.Endpoints)
			}
			return c, nil
		}
		log.Warn("etcd unreachable; retrying", "endpoints", cfg.Endpoints, "err", err, "attempt", attempt, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to etcd %v: %w", cfg.Endpoints, err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// checkVXLANFamily refuses to join a VXLAN cluster whose other nodes have
// underlay addresses of the other family (vxlanFamilyConflict), before
// this node claims anything. A node that restarts with the family its
// record already has only warns: refusing it would take down a running
// node because another joined wrongly (the links of both name the pair).
func (a *Agent) checkVXLANFamily(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	nodes, err := a.store.ListNodes(cctx)
	if err != nil {
		return fmt.Errorf("node %s: list nodes to check their underlay family: %w", a.cfg.NodeName, err)
	}
	err = vxlanFamilyConflict(a.cfg.NodeName, a.ul.IP, nodes)
	if err == nil {
		return nil
	}
	for _, n := range nodes {
		if n.Name == a.cfg.NodeName && n.UnderlayIP.IsValid() && n.UnderlayIP.Is4() == a.ul.IP.Is4() {
			a.log.Warn("nodes of another underlay family are not reachable over the overlay", "err", err)
			return nil
		}
	}
	return err
}

func waitCluster(ctx context.Context, s *store.Client, log *slog.Logger) (api.Cluster, error) {
	backoff := 250 * time.Millisecond
	for logged := false; ; {
		cctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
		c, err := s.GetCluster(cctx)
		cancel()
		if err == nil {
			if err := c.Validate(); err != nil {
				return api.Cluster{}, fmt.Errorf("cluster config in etcd: %w", err)
			}
			return c, nil
		}
		if !logged || !errors.Is(err, store.ErrNotFound) {
			log.Warn("waiting for the cluster config (run `skein cluster init`)", "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return api.Cluster{}, fmt.Errorf("wait for cluster config: %w", ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// serve runs an HTTP server on ln until ctx is done.
func serve(ctx context.Context, ln net.Listener, h http.Handler, started func()) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if started != nil {
		started()
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx) // best effort: we are exiting anyway
		<-errc                 //nolint:errcheck // http.ErrServerClosed, after Shutdown
		return nil
	}
}
