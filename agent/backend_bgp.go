package agent

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/bgp"
	"github.com/skeinnet/skein/store"
)

// bgpBackend is the routed underlay: the embedded speaker advertises this
// node's blocks and keeps sessions with the peers bgpPeers plans.
type bgpBackend struct {
	self    string
	cl      api.Cluster
	nextHop netip.Addr
	// nextHop6 is the next hop of this node's IPv6 blocks, its UnderlayIP6;
	// without it the speaker advertises and installs no IPv6 route.
	nextHop6 netip.Addr
	log      *slog.Logger
	speaker  *bgp.Speaker
	// blocks are this node's blocks, from its allocator (not the store: a
	// block is advertised from the moment the node holds it).
	blocks func() []netip.Prefix
	// view reads the agent's view of the cluster (for status).
	view    func(func(store.Snapshot))
	running atomic.Bool

	// peers and lastErr belong to the watch goroutine.
	peers   *bgpPeers
	lastErr string
}

func newBGPBackend(self string, cl api.Cluster, nextHop, nextHop6 netip.Addr, speaker *bgp.Speaker, blocks func() []netip.Prefix, view func(func(store.Snapshot)), log *slog.Logger) *bgpBackend {
	return &bgpBackend{self: self, cl: cl, nextHop: nextHop, nextHop6: nextHop6, speaker: speaker, blocks: blocks, view: view, log: log}
}

func (b *bgpBackend) reset(s store.Snapshot) {
	b.peers = newBGPPeers(b.self, b.cl, s)
	b.push()
}

// update replans the sessions of the nodes d changed; block changes only
// matter for this node's own (advertised) blocks, which push re-reads.
func (b *bgpBackend) update(s store.Snapshot, d store.Delta) {
	changed := b.peers.update(s, d)
	for _, c := range d.Blocks {
		if (c.Old != nil && c.Old.Node == b.self) || (c.New != nil && c.New.Node == b.self) {
			changed = true
		}
	}
	if changed {
		b.push()
	}
}

// push hands the speaker its desired state.
func (b *bgpBackend) push() {
	plan := b.peers.plan()
	blocks := b.blocks()
	errs := b.peers.errs
	if err := b.speaker.Set(bgp.Desired{Peers: plan.peers, Advertised: blocks, NextHop: b.nextHop, NextHop6: b.nextHop6, Local: blocks}); err != nil {
		errs = append(errs[:len(errs):len(errs)], err.Error())
	}
	msg := strings.Join(errs, "; ")
	if msg != b.lastErr {
		b.lastErr = msg
		if msg != "" {
			b.log.Warn("bgp desired state not all usable", "err", msg)
		}
	}
}

func (b *bgpBackend) run(ctx context.Context) error {
	b.running.Store(true)
	return b.speaker.Run(ctx)
}

func (b *bgpBackend) notReady() string {
	if !b.running.Load() {
		return "bgp speaker not started yet"
	}
	return ""
}

func (b *bgpBackend) status(st *api.NodeStatus) {
	d := b.speaker.Debug()
	st.LastSync, st.LastError = d.LastSync, d.LastError
	for _, n := range d.Neighbors {
		st.BGP = append(st.BGP, n.Neighbor())
		if n.Up() {
			st.PeersUp++
		}
	}
	st.Peers = len(d.Neighbors)
	b.view(func(s store.Snapshot) {
		st.Links = linkStates(b.self, bgpLinks(s, &d))
	})
}

func (b *bgpBackend) observe(_ context.Context, s store.Snapshot, t *api.Topology) map[string]api.Link {
	d := b.speaker.Debug()
	t.BGP = &d
	if d.LastError != "" {
		t.Errors = append(t.Errors, api.ComponentError{Component: "bgp", Error: d.LastError})
	}
	return bgpLinks(s, &d)
}

func (b *bgpBackend) links(s store.Snapshot) map[string]api.Link {
	d := b.speaker.Debug()
	return bgpLinks(s, &d)
}

func (b *bgpBackend) collect(ch chan<- prometheus.Metric) {
	v := b.speaker.Debug()
	syncMetrics(ch, "bgp", v.Syncs, v.Failures, v.LastSync, v.LastDuration)
	byState := map[string]int{}
	for _, n := range v.Neighbors {
		state := strings.ToLower(n.State)
		if state == "" {
			state = "unknown"
		}
		byState[state]++
		up := 0.0
		if n.Up() {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descBGPSessionUp, prometheus.GaugeValue, up, n.Address.String(), n.Name)
	}
	for state, count := range byState {
		ch <- prometheus.MustNewConstMetric(descBGPSessions, prometheus.GaugeValue, float64(count), state)
	}
}

// drifts: the speaker owns its routes by protocol number and re-syncs them
// on every table change; it counts no repairs of its own.
func (b *bgpBackend) drifts() map[string]int { return nil }

func (b *bgpBackend) serveDebug(kind api.Backend, w http.ResponseWriter, r *http.Request) {
	if kind != api.BackendBGP {
		notThisBackend(w, kind)
		return
	}
	b.speaker.ServeHTTPDebug(w, r)
}

// bgpLinks maps each node to this node's session with it: by node name,
// else by underlay address.
func bgpLinks(snap store.Snapshot, v *api.BGPStatus) map[string]api.Link {
	if v == nil {
		return nil
	}
	byIP := map[string]string{}
	for name, n := range snap.Nodes {
		if n.UnderlayIP.IsValid() {
			byIP[n.UnderlayIP.String()] = name
		}
	}
	links := map[string]api.Link{}
	for name := range snap.Nodes {
		links[name] = api.Link{Kind: string(api.BackendBGP), State: api.LinkNone, Detail: "no session"}
	}
	for _, s := range v.Neighbors {
		node := s.Name
		if _, known := snap.Nodes[node]; !known {
			node = byIP[s.Address.String()]
		}
		if node == "" {
			continue // an external peer
		}
		l := api.Link{Kind: string(api.BackendBGP), State: api.LinkDown, Detail: s.State}
		if s.Up() {
			l.State = api.LinkUp
		}
		links[node] = l
	}
	return links
}
