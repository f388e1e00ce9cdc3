package agent

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
	"github.com/skeinnet/skein/vxlan"
)

// vxlanBackend is the overlay: a planner that turns node and block changes
// into per-peer FDB, neighbour and route changes, and the reconciler that
// puts them in the kernel.
type vxlanBackend struct {
	self     string
	underlay onLink
	cfg      vxlan.Config
	log      *slog.Logger
	rec      *vxlan.Reconciler
	// view reads the agent's view of the cluster (for status).
	view func(func(store.Snapshot))

	// plan and blocksOf (blocks by node) belong to the watch goroutine.
	plan     *vxlan.Planner
	blocksOf map[string][]netip.Prefix

	// mu guards the links graded as of upSyncs: the status loop asks every
	// second and grading every peer costs O(cluster).
	mu      sync.Mutex
	upSyncs int
	upCount int
	upLinks map[string]string
	// direct counts the peers reached by direct routes alone (no FDB
	// entry), programmed as of upSyncs.
	direct int
}

func newVXLANBackend(self string, underlay onLink, cfg vxlan.Config, rec *vxlan.Reconciler, view func(func(store.Snapshot)), log *slog.Logger) *vxlanBackend {
	return &vxlanBackend{self: self, underlay: underlay, cfg: cfg, rec: rec, view: view, log: log}
}

func (b *vxlanBackend) reset(s store.Snapshot) {
	b.blocksOf = map[string][]netip.Prefix{}
	for cidr, bl := range s.Blocks {
		b.blocksOf[bl.Node] = append(b.blocksOf[bl.Node], cidr)
	}
	b.plan = vxlan.NewPlanner(b.cfg, vxlanPeers(b.self, b.underlay, s))
	b.rec.Set(b.plan.State())
}

// update replans the peers whose record or blocks d changed, and hands the
// reconciler just those changes.
func (b *vxlanBackend) update(s store.Snapshot, d store.Delta) {
	touched := map[string]bool{}
	for _, c := range d.Nodes {
		touched[c.Key] = true
	}
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
	for name := range touched {
		if len(b.blocksOf[name]) == 0 {
			delete(b.blocksOf, name)
		}
		var ch vxlan.Changes
		n, known := s.Nodes[name]
		p, ok := vxlanPeerOf(b.self, name, b.underlay, n, b.blocksOf[name])
		if known && ok {
			if otherFamily(b.cfg.UnderlayIP, p.UnderlayIP) {
				b.log.Warn("peer not reachable over the overlay", "peer", name, "reason", familyMismatch(b.cfg.UnderlayIP, p.UnderlayIP))
			}
			ch = b.plan.SetPeer(p)
		} else {
			ok = false
			ch = b.plan.DeletePeer(name)
		}
		if ch.Len() > 0 {
			verb := "peer programmed"
			if !ok {
				verb = "peer removed"
			}
			b.log.Info(verb, "peer", name, "count", ch.Len())
		}
		b.rec.Update(ch)
	}
}

func (b *vxlanBackend) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return b.rec.Run(gctx) })
	// Foreign changes to the overlay's routes, neighbours, FDB entries and
	// device become immediate repairs.
	g.Go(func() error {
		return rewatch(gctx, b.log, "kernel", func(ctx context.Context) error {
			return vxlan.WatchKernel(ctx, nil, api.VXLANDevice, func(ev vxlan.Event) { b.rec.KernelEvent(ev) })
		}, b.rec.Trigger)
	})
	return g.Wait()
}

func (b *vxlanBackend) notReady() string {
	if b.rec.Stats().Syncs == 0 {
		return "dataplane not synced yet"
	}
	return ""
}

func (b *vxlanBackend) status(st *api.NodeStatus) {
	d := b.rec.Stats()
	st.LastSync, st.LastError = d.LastSync, d.LastError
	b.mu.Lock()
	defer b.mu.Unlock()
	if d.Syncs != b.upSyncs || d.Syncs == 0 {
		b.upCount, b.upLinks, b.direct = 0, nil, 0
		b.view(func(s store.Snapshot) {
			var links map[string]api.Link
			links, b.direct = b.gradeLinksDirect(s, b.rec.Debug())
			b.upLinks = linkStates(b.self, links)
		})
		for _, l := range b.upLinks {
			if l == api.LinkUp {
				b.upCount++
			}
		}
		b.upSyncs = d.Syncs
	}
	// One FDB entry per peer reached through the tunnel, whatever its
	// families (a dual-stack peer has two neighbours), plus the peers
	// reached by direct routes alone.
	st.Peers = d.FDB + b.direct
	st.PeersUp, st.Links = b.upCount, b.upLinks
}

func (b *vxlanBackend) observe(ctx context.Context, s store.Snapshot, t *api.Topology) map[string]api.Link {
	// What the kernel has now, not what the last sync saw: the links are
	// graded against it.
	d := b.rec.DebugKernel(ctx)
	t.Dataplane = &d
	if d.LastError != "" {
		t.Errors = append(t.Errors, api.ComponentError{Component: "vxlan", Error: d.LastError})
	}
	return b.gradeLinks(s, d)
}

func (b *vxlanBackend) links(s store.Snapshot) map[string]api.Link {
	return b.gradeLinks(s, b.rec.Debug())
}

func (b *vxlanBackend) collect(ch chan<- prometheus.Metric) {
	d := b.rec.Stats() // counters only: a scrape costs the same at any cluster size
	syncMetrics(ch, "vxlan", d.Syncs, d.Failures, d.LastSync, d.LastDuration)
	ch <- prometheus.MustNewConstMetric(descLastOps, prometheus.GaugeValue, float64(d.LastOps), "vxlan")
	for kind, n := range map[string]int{"route": d.Routes, "neigh": d.Neighs, "fdb": d.FDB} {
		ch <- prometheus.MustNewConstMetric(descObjects, prometheus.GaugeValue, float64(n), "vxlan", kind)
	}
}

func (b *vxlanBackend) drifts() map[string]int { return b.rec.Drifts() }

func (b *vxlanBackend) serveDebug(kind api.Backend, w http.ResponseWriter, r *http.Request) {
	if kind != api.BackendVXLAN {
		notThisBackend(w, kind)
		return
	}
	b.rec.ServeHTTPDebug(w, r)
}

// gradeLinks compares, per peer, the entries the planner wants for it with
// the entries dp says the kernel has.
func (b *vxlanBackend) gradeLinks(snap store.Snapshot, dp vxlan.DebugState) map[string]api.Link {
	links, _ := b.gradeLinksDirect(snap, dp)
	return links
}

// gradeLinksDirect is gradeLinks, and counts the peers reached by direct
// routes alone (no FDB entry wanted) that have something programmed.
func (b *vxlanBackend) gradeLinksDirect(snap store.Snapshot, dp vxlan.DebugState) (map[string]api.Link, int) {
	actual := make(map[string]bool, len(dp.Actual))
	for _, l := range dp.Actual {
		actual[l] = true
	}
	peers := vxlanPeers(b.self, b.underlay, snap)
	direct := 0
	links := make(map[string]api.Link, len(snap.Nodes))
	for name := range snap.Nodes {
		if name != b.self {
			links[name] = api.Link{Kind: string(api.BackendVXLAN), State: api.LinkNone, Detail: "no VTEP registered yet"}
		}
	}
	for _, p := range peers {
		if otherFamily(b.cfg.UnderlayIP, p.UnderlayIP) {
			links[p.Node] = api.Link{Kind: string(api.BackendVXLAN), State: api.LinkDown, Detail: familyMismatch(b.cfg.UnderlayIP, p.UnderlayIP)}
			continue
		}
		want := vxlan.Plan(b.cfg, []vxlan.Peer{p})
		l := vxlanLink(want, actual, dp)
		links[p.Node] = l
		if len(want.FDB) == 0 && len(want.Routes) > 0 && (l.State == api.LinkUp || l.State == api.LinkPartial) {
			direct++
		}
	}
	return links, direct
}

// vxlanLink grades one peer's wanted entries against the kernel's.
func vxlanLink(want vxlan.State, actual map[string]bool, dp vxlan.DebugState) api.Link {
	l := api.Link{Kind: string(api.BackendVXLAN)}
	if isDirect(want) {
		// Graded by its routes alone: a direct peer has no FDB or
		// neighbour entries.
		l.Kind = api.LinkKindDirect
	}
	var lines []string
	for _, n := range want.Neighs {
		lines = append(lines, n.String())
	}
	for _, e := range want.FDB {
		lines = append(lines, e.String())
	}
	for _, r := range want.Routes {
		lines = append(lines, r.String())
	}
	var missing []string
	for _, line := range lines {
		if !actual[line] {
			missing = append(missing, line)
		}
	}
	slices.Sort(missing)
	switch {
	case dp.Syncs == 0:
		l.State, l.Detail = api.LinkPending, "dataplane not synced yet"
	case len(missing) == 0:
		l.State = api.LinkUp
		l.Detail = strconv.Itoa(len(lines)) + " entries programmed"
	case len(missing) < len(lines):
		l.State = api.LinkPartial
		l.Detail = "missing: " + strings.Join(missing, "; ")
	default:
		l.State = api.LinkDown
		l.Detail = "nothing programmed"
		if dp.LastError != "" {
			l.Detail += ": " + dp.LastError
		}
	}
	return l
}

// isDirect reports whether a peer's plan routes it directly on the underlay.
func isDirect(want vxlan.State) bool {
	for _, r := range want.Routes {
		if r.Direct {
			return true
		}
	}
	return false
}

// otherFamily reports whether two valid addresses differ in family.
func otherFamily(a, b netip.Addr) bool { return a.IsValid() && b.IsValid() && a.Is4() != b.Is4() }

// familyMismatch says why a peer whose underlay address is of another
// family than this node's gets no tunnel.
func familyMismatch(local, peer netip.Addr) string {
	return "underlay family mismatch: this node tunnels over " + familyName(local) + " (" + local.String() + "), the peer's underlay address is " +
		familyName(peer) + " (" + peer.String() + "); a VXLAN device carries one underlay family, so its blocks are unreachable from here"
}
