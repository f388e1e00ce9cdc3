package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
	"github.com/skeinnet/skein/wireguard"
)

// debugWireGuard is the /debug path kind of the WireGuard tunnel.
const debugWireGuard api.Backend = "wireguard"

// handshakeStale is when a peer's last handshake is too old for its
// session to carry traffic (WireGuard's Reject-After-Time, 180 s) plus one
// keepalive's slack.
const handshakeStale = 180*time.Second + wireguard.KeepaliveInterval

var (
	descWGHandshakeAge = prometheus.NewDesc("skein_wireguard_handshake_age_seconds",
		"Seconds since the last WireGuard handshake with a peer (absent before the first).", []string{"peer"}, nil)
	descWGRx = prometheus.NewDesc("skein_wireguard_received_bytes_total",
		"Bytes received from a WireGuard peer.", []string{"peer"}, nil)
	descWGTx = prometheus.NewDesc("skein_wireguard_sent_bytes_total",
		"Bytes sent to a WireGuard peer.", []string{"peer"}, nil)
	descWGBlocked = prometheus.NewDesc("skein_wireguard_blocked_nodes",
		"Nodes whose blocks are unreachable from here because they published no usable key (fail closed).", nil, nil)
)

// wgBackend is the VXLAN backend's replacement with encryption on: every
// other node is a WireGuard peer and its blocks are routed through the
// device; a node without a usable key gets unreachable routes.
type wgBackend struct {
	self    string
	port    int
	keyPath string
	rec     *wireguard.Reconciler
	log     *slog.Logger
	view    func(func(store.Snapshot))
	// publish rewrites this node's record (after a key rotation).
	publish func(context.Context) error
	// done deletes a rotate-key request the agent acted on.
	done func(ctx context.Context, node, id string) error

	// blocksOf and planner belong to the watch goroutine.
	blocksOf map[string][]netip.Prefix
	planner  *wireguard.Planner

	// statsMu guards the last read of the device's peers.
	statsMu      sync.Mutex
	stats        []wireguard.PeerStats
	statsAt      time.Time
	statsSyncs   int
	statsPending bool // a peer had no handshake at the last read

	mu      sync.Mutex
	pub     string // public key, base64
	rotated string // ID of the last request acted on
	pending *api.RotateKeyRequest
	kick    chan struct{}
}

// newWireGuardBackend loads (or makes) the node's key and its WireGuard
// device. An error leaves no device behind and names why: the agent
// refuses to start rather than run half encrypted.
func (a *Agent) newWireGuardBackend() (*wgBackend, error) {
	log := a.log.With("component", "wireguard")
	path := filepath.Join(a.cfg.StateDir, api.WireGuardKeyFile)
	priv, created, err := wireguard.LoadKey(path)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("wireguard key created", "path", path)
	}
	dev, err := wireguard.Open(wireguard.Config{
		Name:  api.WireGuardDevice,
		MTU:   a.self.MTU,
		Addr:  a.self.VTEPIP,
		Addr6: a.self.VTEPIP6,
		Log:   log,
	})
	if err != nil {
		return nil, err
	}
	if err := dev.SetKey(priv, a.cluster.WireGuard.Port); err != nil {
		_ = dev.Close(false)
		return nil, err
	}
	// Every pool, of both families: fail closed for IPv6 as for IPv4.
	var pools []netip.Prefix
	for _, p := range a.cluster.Pools {
		pools = append(pools, p.CIDR)
	}
	b := &wgBackend{
		self:    a.cfg.NodeName,
		port:    a.cluster.WireGuard.Port,
		keyPath: path,
		rec:     wireguard.NewReconciler(dev, pools, []netip.Addr{a.self.VTEPIP, a.self.VTEPIP6}, a.cfg.Resync, log),
		log:     log,
		view:    a.readView,
		publish: a.putNode,
		done:    a.store.DeleteRotateKey,
		pub:     priv.PublicKey().String(),
		kick:    make(chan struct{}, 1),
	}
	log.Info("wireguard up", "device", dev.Name(), "kind", dev.Kind(), "port", b.port, "public_key", b.pub)
	return b, nil
}

// publicKey is the key the node record publishes.
func (b *wgBackend) publicKey() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pub
}

func (b *wgBackend) reset(s store.Snapshot) {
	b.blocksOf = map[string][]netip.Prefix{}
	for cidr, bl := range s.Blocks {
		b.blocksOf[bl.Node] = append(b.blocksOf[bl.Node], cidr)
	}
	b.planner = wireguard.NewPlanner(b.self, b.port)
	for name, n := range s.Nodes {
		b.planner.Set(b.wgNode(name, n))
	}
	entries := b.planner.Entries()
	for name, e := range entries {
		b.warnRefused(name, e)
	}
	b.rec.Reset(entries)
	b.checkRotate(s)
}

// update re-plans the nodes the delta names (their records or blocks
// changed) and hands the reconciler the entries that changed: the cost of a
// change is that node's, not the cluster's.
func (b *wgBackend) update(s store.Snapshot, d store.Delta) {
	touched := map[string]bool{}
	for _, c := range d.Blocks {
		if c.Old != nil {
			b.blocksOf[c.Old.Node] = slices.DeleteFunc(b.blocksOf[c.Old.Node], func(p netip.Prefix) bool { return p == c.Old.CIDR })
			touched[c.Old.Node] = true
		}
		if c.New != nil {
			b.blocksOf[c.New.Node] = append(b.blocksOf[c.New.Node], c.New.CIDR)
			touched[c.New.Node] = true
		}
	}
	for _, c := range d.Nodes {
		touched[c.Key] = true
	}
	var changed []string
	for name := range touched {
		if n, ok := s.Nodes[name]; ok {
			changed = append(changed, b.planner.Set(b.wgNode(name, n))...)
		} else {
			changed = append(changed, b.planner.Delete(name)...)
		}
	}
	entries := b.planner.Changes(changed)
	for name, e := range entries {
		if e != nil {
			b.warnRefused(name, *e)
		}
	}
	b.rec.Update(entries)
	b.checkRotate(s)
}

func (b *wgBackend) wgNode(name string, n api.Node) wireguard.Node {
	return wireguard.Node{Name: name, Key: n.WireGuardKey, Underlay: n.UnderlayIP, Blocks: b.blocksOf[name]}
}

func (b *wgBackend) warnRefused(name string, e wireguard.Entry) {
	if e.Peer == nil && len(e.Blocks) > 0 {
		b.log.Warn("node gets no path (fail closed)", "peer", name, "reason", e.Refused)
	}
}

// checkRotate hands the rotation loop this node's pending request.
func (b *wgBackend) checkRotate(s store.Snapshot) {
	raw, ok := s.Other[api.RotateKeyKey(b.self)]
	if !ok {
		return
	}
	var r api.RotateKeyRequest
	if err := api.UnmarshalJSON(raw, &r); err != nil {
		b.log.Warn("undecodable rotate-key request ignored", "err", err)
		return
	}
	b.mu.Lock()
	if r.ID == b.rotated {
		b.mu.Unlock()
		return
	}
	b.pending = &r
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

func (b *wgBackend) run(ctx context.Context) error {
	defer func() {
		// The userspace device goes with the process; a kernel one stays
		// and keeps carrying traffic until the next agent takes it over.
		_ = b.rec.Device().Close(true)
	}()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return b.rec.Run(gctx) })
	g.Go(func() error { return b.rotateLoop(gctx) })
	return g.Wait()
}

// rotateLoop acts on rotate-key requests: a new key in the state dir, on
// the device, then in the node record, from which every peer takes it.
func (b *wgBackend) rotateLoop(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-b.kick:
		}
		b.mu.Lock()
		r := b.pending
		b.pending = nil
		b.mu.Unlock()
		if r == nil {
			continue
		}
		if err := b.rotate(ctx, *r); err != nil {
			b.log.Error("rotate wireguard key", "request", r.ID, "err", err)
			b.mu.Lock()
			if b.pending == nil {
				b.pending = r
			}
			b.mu.Unlock()
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(2 * time.Second):
			}
			select {
			case b.kick <- struct{}{}:
			default:
			}
		}
	}
}

func (b *wgBackend) rotate(ctx context.Context, r api.RotateKeyRequest) error {
	b.mu.Lock()
	done := r.ID == b.rotated
	b.mu.Unlock()
	if !done {
		priv, err := wireguard.RotateKey(b.keyPath)
		if err != nil {
			return err
		}
		if err := b.rec.Device().SetKey(priv, b.port); err != nil {
			return err
		}
		b.statsMu.Lock()
		b.statsPending = true // the new key's handshakes should show at once
		b.statsMu.Unlock()
		b.mu.Lock()
		old := b.pub
		b.pub, b.rotated = priv.PublicKey().String(), r.ID
		b.mu.Unlock()
		b.log.Info("wireguard key rotated", "request", r.ID, "old_public_key", old, "public_key", priv.PublicKey().String())
	}
	cctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	if err := b.publish(cctx); err != nil {
		return fmt.Errorf("publish new public key: %w", err)
	}
	if err := b.done(cctx, b.self, r.ID); err != nil {
		return fmt.Errorf("clear rotate-key request: %w", err)
	}
	return nil
}

func (b *wgBackend) notReady() string {
	if b.rec.Stats().Syncs == 0 {
		return "dataplane not synced yet"
	}
	return ""
}

// deviceStatsMaxAge bounds how often status, /metrics and the debug pages
// read every peer from the device once every peer has a handshake: a
// session's handshake is renewed every two minutes and a link is graded
// down only after 205 s, so a few seconds' lag costs nothing, while a dump
// per status check would grow the idle agent's CPU with the cluster.
const deviceStatsMaxAge = 5 * time.Second

// deviceStats returns the device's peers, read again when the copy is older
// than deviceStatsMaxAge, a sync changed the device since, or a peer had no
// handshake yet (then its first one shows at the next status check).
func (b *wgBackend) deviceStats() []wireguard.PeerStats {
	syncs := b.rec.Stats().Syncs
	b.statsMu.Lock()
	defer b.statsMu.Unlock()
	if b.statsPending || time.Since(b.statsAt) >= deviceStatsMaxAge || syncs != b.statsSyncs {
		stats, err := b.rec.Device().Peers()
		if err != nil {
			b.log.Debug("read wireguard peers", "err", err)
		}
		b.stats, b.statsAt, b.statsSyncs = stats, time.Now(), syncs
		b.statsPending = err != nil || len(stats) < len(b.rec.Plan().Peers)
		for _, s := range stats {
			b.statsPending = b.statsPending || s.LastHandshake.IsZero()
		}
	}
	return b.stats
}

// peers reads the device's peers by node, with the refused nodes.
func (b *wgBackend) peers() []api.WireGuardPeer {
	p := b.rec.Plan()
	stats := b.deviceStats()
	byKey := make(map[wireguard.Key]wireguard.PeerStats, len(stats))
	for _, s := range stats {
		byKey[s.PublicKey] = s
	}
	out := make([]api.WireGuardPeer, 0, len(p.Peers)+len(p.Refused))
	for _, pe := range p.Peers {
		wp := api.WireGuardPeer{Node: pe.Node, PublicKey: pe.PublicKey.String(), Endpoint: pe.Endpoint.String()}
		if s, ok := byKey[pe.PublicKey]; ok {
			wp.LastHandshake, wp.RxBytes, wp.TxBytes = s.LastHandshake, s.RxBytes, s.TxBytes
		}
		out = append(out, wp)
	}
	for name, why := range p.Refused {
		out = append(out, api.WireGuardPeer{Node: name, Blocked: why})
	}
	slices.SortFunc(out, func(a, b api.WireGuardPeer) int {
		if a.Node < b.Node {
			return -1
		}
		if a.Node > b.Node {
			return 1
		}
		return 0
	})
	return out
}

func (b *wgBackend) status(st *api.NodeStatus) {
	d := b.rec.Stats()
	st.LastSync, st.LastError = d.LastSync, d.LastError
	b.mu.Lock()
	ws := &api.WireGuardStatus{Device: b.rec.Device().Kind(), PublicKey: b.pub, Port: b.port, Rotated: b.rotated}
	b.mu.Unlock()
	ws.Peers = b.peers()
	st.WireGuard = ws
	links := b.gradeLinks(ws.Peers, d)
	st.Links = linkStates(b.self, links)
	st.Peers, st.PeersUp = 0, 0
	for _, p := range ws.Peers {
		if p.Blocked == "" {
			st.Peers++
		}
	}
	for _, l := range links {
		if l.State == api.LinkUp {
			st.PeersUp++
		}
	}
}

func (b *wgBackend) observe(_ context.Context, _ store.Snapshot, t *api.Topology) map[string]api.Link {
	d := b.rec.Stats()
	if d.LastError != "" {
		t.Errors = append(t.Errors, api.ComponentError{Component: "wireguard", Error: d.LastError})
	}
	return b.gradeLinks(b.peers(), d)
}

func (b *wgBackend) links(store.Snapshot) map[string]api.Link {
	return b.gradeLinks(b.peers(), b.rec.Stats())
}

// gradeLinks grades the link to each node by its peer's last handshake.
func (b *wgBackend) gradeLinks(peers []api.WireGuardPeer, d wireguard.Stats) map[string]api.Link {
	now := time.Now()
	links := make(map[string]api.Link, len(peers))
	for _, p := range peers {
		l := api.Link{Kind: string(debugWireGuard)}
		age := now.Sub(p.LastHandshake)
		switch {
		case p.Blocked != "":
			l.State, l.Detail = api.LinkDown, "no path (fail closed): "+p.Blocked
		case d.Syncs == 0:
			l.State, l.Detail = api.LinkPending, "dataplane not synced yet"
		case p.LastHandshake.IsZero():
			l.State, l.Detail = api.LinkPending, "no handshake yet"
		case age > handshakeStale:
			l.State, l.Detail = api.LinkDown, "last handshake "+age.Round(time.Second).String()+" ago"
		default:
			l.State, l.Detail = api.LinkUp, "handshake "+age.Round(time.Second).String()+" ago"
		}
		links[p.Node] = l
	}
	return links
}

func (b *wgBackend) collect(ch chan<- prometheus.Metric) {
	d := b.rec.Stats()
	syncMetrics(ch, "wireguard", d.Syncs, d.Failures, d.LastSync, d.LastDuration)
	now := time.Now()
	blocked := 0
	for _, p := range b.peers() {
		if p.Blocked != "" {
			blocked++
			continue
		}
		if !p.LastHandshake.IsZero() {
			ch <- prometheus.MustNewConstMetric(descWGHandshakeAge, prometheus.GaugeValue, now.Sub(p.LastHandshake).Seconds(), p.Node)
		}
		ch <- prometheus.MustNewConstMetric(descWGRx, prometheus.CounterValue, float64(p.RxBytes), p.Node)
		ch <- prometheus.MustNewConstMetric(descWGTx, prometheus.CounterValue, float64(p.TxBytes), p.Node)
	}
	ch <- prometheus.MustNewConstMetric(descWGBlocked, prometheus.GaugeValue, float64(blocked))
}

func (b *wgBackend) drifts() map[string]int {
	return map[string]int{"route": b.rec.Stats().Repairs}
}

func (b *wgBackend) serveDebug(kind api.Backend, w http.ResponseWriter, _ *http.Request) {
	if kind != debugWireGuard {
		notThisBackend(w, kind)
		return
	}
	d := b.rec.Stats()
	p := b.rec.Plan()
	b.mu.Lock()
	ws := api.WireGuardStatus{Device: b.rec.Device().Kind(), PublicKey: b.pub, Port: b.port, Rotated: b.rotated}
	b.mu.Unlock()
	ws.Peers = b.peers()
	var tunnel, blocked []string
	for _, t := range p.Tunnel {
		tunnel = append(tunnel, t.String())
	}
	for _, bl := range p.Blocked {
		blocked = append(blocked, bl.Block.String()+" ("+bl.Node+": "+bl.Reason+")")
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"wireguard": ws, "tunnelRoutes": tunnel, "unreachableRoutes": blocked,
		"syncs": d.Syncs, "failures": d.Failures, "lastSync": d.LastSync, "lastError": d.LastError,
		"repairs": d.Repairs, "device": api.WireGuardDevice, "lastDurationMs": d.LastDuration.Milliseconds(),
	})
}
