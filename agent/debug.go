package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// statusCacheTTL bounds how often /debug/topology reads the status records
// from etcd, however many pages poll it.
const statusCacheTTL = 2 * time.Second

// statusReadTimeout bounds the read of the status records: the debug
// endpoint answers without them rather than hang on etcd.
const statusReadTimeout = time.Second

// debugServer serves the debug endpoint of one agent.
type debugServer struct {
	a   *Agent
	log *slog.Logger

	// mu guards the status cache.
	mu        sync.Mutex
	statusAt  time.Time
	status    map[string]api.NodeStatus
	statusErr string

	// matrixSem lets one /debug/matrix compute at a time.
	matrixSem chan struct{}
}

// statusRecords returns every node's published status, read from etcd at
// most every statusCacheTTL.
func (d *debugServer) statusRecords(ctx context.Context) (map[string]api.NodeStatus, string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.a.store == nil {
		return nil, ""
	}
	if time.Since(d.statusAt) < statusCacheTTL {
		return d.status, d.statusErr
	}
	rctx, cancel := context.WithTimeout(ctx, statusReadTimeout)
	defer cancel()
	raw, err := d.a.store.StatusRecords(rctx)
	if err != nil {
		// Not cached: the next request asks again (after an etcd outage
		// the agent's client may need a moment to reconnect).
		d.a.metrics.etcdError("status_read")
		return nil, "read status records: " + err.Error()
	}
	d.statusAt = time.Now()
	d.status, d.statusErr = decodeStatusRecords(raw)
	return d.status, d.statusErr
}

// decodeStatusRecords decodes what it can and names the rest.
func decodeStatusRecords(raw map[string][]byte) (map[string]api.NodeStatus, string) {
	out := make(map[string]api.NodeStatus, len(raw))
	var bad []string
	for node, b := range raw {
		var st api.NodeStatus
		if err := json.Unmarshal(b, &st); err != nil {
			bad = append(bad, node)
			continue
		}
		out[node] = st
	}
	if len(bad) == 0 {
		return out, ""
	}
	sort.Strings(bad)
	return out, "undecodable status records: " + strings.Join(bad, ", ")
}

// allPairsUpTo is the cluster size up to which the topology grades every
// pair of nodes; beyond it only this node's pairs, unless asked: the pairs
// grow as the square of the nodes (half a million at 1 000 nodes, 150 MB).
const allPairsUpTo = 64

// topology assembles this node's view. status holds the nodes' published
// status records (nil when unavailable); allPairs grades every pair of
// nodes whatever the cluster's size.
func (a *Agent) topology(status map[string]api.NodeStatus, allPairs bool) api.Topology {
	ready, reason := a.readiness()
	t := api.Topology{
		Node:      a.self,
		Backend:   a.cluster.Backend,
		Ready:     ready,
		Reason:    reason,
		Started:   a.started.UTC(),
		Now:       time.Now().UTC(),
		Nodes:     []api.TopologyNode{},
		Blocks:    []api.Block{},
		Endpoints: []api.Endpoint{},
		Policy:    a.policyDebug(),
	}
	if a.alloc != nil {
		t.IPAM = a.alloc.Stats()
	}
	if v := t.Policy; v != nil {
		if v.LastError != "" {
			t.Errors = append(t.Errors, api.ComponentError{Component: "policy", Error: v.LastError})
		}
		for _, bad := range v.BadPolicies {
			t.Errors = append(t.Errors, api.ComponentError{Component: "policy", Error: "invalid stored policy: " + bad})
		}
	}
	if a.pub != nil {
		o := a.pub.state()
		t.Offline = &o
		if o.LastError != "" {
			t.Errors = append(t.Errors, api.ComponentError{Component: "journal", Error: o.LastError})
		}
	}
	if at := a.readyAt.Load(); at > 0 {
		t.ReadyAfter = time.Unix(0, at).Sub(a.started).String()
	}
	a.viewMu.RLock()
	defer a.viewMu.RUnlock()
	snap := a.snap.Load()
	// What the kernel has now, not what the last sync saw: the links are
	// graded against it.
	kctx, cancel := context.WithTimeout(context.Background(), statusReadTimeout)
	defer cancel()
	if snap == nil {
		a.be.observe(kctx, store.Snapshot{}, &t)
		return t
	}
	links := a.be.observe(kctx, *snap, &t)
	t.StoreRev = snap.Rev
	t.StoreError = snap.Errors
	for _, b := range snap.Blocks {
		t.Blocks = append(t.Blocks, b)
	}
	sort.Slice(t.Blocks, func(i, j int) bool { return t.Blocks[i].CIDR.Addr().Less(t.Blocks[j].CIDR.Addr()) })
	t.Endpoints = localEndpoints(a.cfg.NodeName, *snap)
	t.Nodes = a.topologyNodes(*snap, links, status)
	t.Links = topologyLinks(t.Nodes, allPairs || len(t.Nodes) <= allPairsUpTo)
	return t
}

// topologyLinks grades every pair of nodes: this node's side as its kernel
// has it, every other side as that node last reported.
func topologyLinks(nodes []api.TopologyNode, allPairs bool) []api.PairLink {
	side := func(n, other api.TopologyNode) api.LinkSide {
		s := api.LinkSide{Node: n.Name, AgentUp: n.Alive}
		if n.Self {
			l := other.Link
			s.Observed = &l
		} else if n.Status != nil {
			s.Reported = n.Status.Links[other.Name]
		}
		return s
	}
	out := []api.PairLink{}
	for i, a := range nodes {
		for _, b := range nodes[i+1:] {
			if !allPairs && !a.Self && !b.Self {
				continue
			}
			out = append(out, api.GradeLink(side(a, b), side(b, a)))
		}
	}
	return out
}

// topologyNodes lists every node with its blocks, endpoint count, liveness,
// published status and this node's link to it.
func (a *Agent) topologyNodes(snap store.Snapshot, links map[string]api.Link, status map[string]api.NodeStatus) []api.TopologyNode {
	blocksOf := map[string][]string{}
	for _, b := range snap.Blocks {
		blocksOf[b.Node] = append(blocksOf[b.Node], b.CIDR.String())
	}
	endpointsOf := map[string]int{}
	for _, ep := range snap.Endpoints {
		endpointsOf[ep.Node]++
	}
	nodes := snap.Nodes
	if _, ok := nodes[a.cfg.NodeName]; !ok && a.self.Name != "" {
		// Just deleted and not yet re-registered: still show ourselves.
		nodes = maps.Clone(nodes)
		nodes[a.cfg.NodeName] = a.self
	}
	out := make([]api.TopologyNode, 0, len(nodes))
	for name, n := range nodes {
		bl := blocksOf[name]
		sort.Strings(bl)
		tn := api.TopologyNode{
			Node:      n,
			Self:      name == a.cfg.NodeName,
			Alive:     snap.Alive[name],
			Blocks:    bl,
			Endpoints: endpointsOf[name],
			Link:      links[name],
		}
		if tn.Self {
			tn.Alive = true // we are answering
			tn.Link = api.Link{}
		}
		tn.Agent = api.AgentState(tn.Alive)
		if tn.Blocks == nil {
			tn.Blocks = []string{}
		}
		if st, ok := status[name]; ok {
			tn.Status = &st
		}
		out = append(out, tn)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// linkStates keeps the state of each link to another node.
func linkStates(self string, links map[string]api.Link) map[string]string {
	out := make(map[string]string, len(links))
	for name, l := range links {
		if name != self && l.State != "" {
			out[name] = l.State
		}
	}
	return out
}

// isLoopbackAddr reports whether a listen address only accepts connections
// from this host.
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (a *Agent) debugHandler() http.Handler {
	d := &debugServer{a: a, log: a.log.With("component", "debug"), matrixSem: make(chan struct{}, 1)}
	a.metrics.registerAgent(a)
	loopback := isLoopbackAddr(a.cfg.DebugAddr)
	if !loopback {
		d.log.Warn("debug endpoint is not on loopback: anyone who reaches it reads the topology and metrics; pprof is off",
			"addr", a.cfg.DebugAddr)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(indexHTML(loopback))) // client gone: nothing to do
	})
	mux.HandleFunc("GET /ui", serveUI)
	mux.HandleFunc("GET /debug/topology", func(w http.ResponseWriter, r *http.Request) {
		status, statusErr := d.statusRecords(r.Context())
		t := a.topology(status, r.URL.Query().Get("links") == "all")
		t.StatusError = statusErr
		writeJSON(w, http.StatusOK, t)
	})
	mux.HandleFunc("GET /debug/vxlan", func(w http.ResponseWriter, r *http.Request) { a.be.serveDebug(api.BackendVXLAN, w, r) })
	mux.HandleFunc("GET /debug/bgp", func(w http.ResponseWriter, r *http.Request) { a.be.serveDebug(api.BackendBGP, w, r) })
	mux.HandleFunc("GET /debug/wireguard", func(w http.ResponseWriter, r *http.Request) { a.be.serveDebug(debugWireGuard, w, r) })
	mux.HandleFunc("GET /debug/policy", func(w http.ResponseWriter, _ *http.Request) {
		writeHook(w, a.policyDebug(), "policy enforcement is not running on this node")
	})
	mux.HandleFunc("GET /debug/ipam", a.alloc.ServeHTTPDebug)
	mux.HandleFunc("GET /debug/drops", a.drops.serve)
	mux.HandleFunc("GET /debug/endpoints", d.serveEndpoints)
	mux.HandleFunc("GET /debug/matrix", d.serveMatrix)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n")) // client gone: nothing to do
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, reason := a.readiness()
		code := http.StatusOK
		if !ok {
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]any{"ready": ok, "reason": reason}) // client gone: nothing to do
	})
	mux.Handle("GET /metrics", a.metrics.handler())
	if loopback {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return guardDebug(mux, a.cfg.DebugAddr, d.log)
}

// guardDebug keeps the debug endpoint read-only and out of reach of web
// pages: a page in a browser on this host can point a name it controls at
// 127.0.0.1 (DNS rebinding) and read the answers, but it cannot make the
// browser send a Host header other than that name.
func guardDebug(h http.Handler, listenAddr string, log *slog.Logger) http.Handler {
	listenHost, _, err := net.SplitHostPort(listenAddr)
	if err != nil {
		listenHost = ""
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var local netip.Addr
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			if ap, err := netip.ParseAddrPort(la.String()); err == nil {
				local = ap.Addr().Unmap()
			}
		}
		if !debugHostAllowed(r.Host, listenHost, local) {
			log.Debug("debug request refused: host not allowed", "host", r.Host, "peer", r.RemoteAddr)
			http.Error(w, fmt.Sprintf("skeind debug endpoint: Host %q is not allowed; use localhost, 127.0.0.1, [::1] or the address it listens on (a guard against DNS rebinding)", r.Host), http.StatusForbidden)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "skeind debug endpoint is read-only: GET and HEAD only", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// debugHostAllowed reports whether a request's Host header (with or without
// port) names this endpoint: a loopback name or address, the host part of
// the listen address, or the address the connection came in on. A name a
// browser was sent to by someone else's DNS is none of these.
func debugHostAllowed(host, listenHost string, local netip.Addr) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" {
		return false
	}
	if host == "localhost" || (listenHost != "" && strings.EqualFold(host, listenHost)) {
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	return ip.IsLoopback() || (local.IsValid() && ip == local)
}

// writeHook writes a component's debug value, or 404 when it is not running.
func writeHook[T any](w http.ResponseWriter, v *T, absent string) {
	if v == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": absent})
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// indexHTML lists the endpoints.
func indexHTML(pprofOn bool) string {
	links := []string{"ui", "debug/topology", "debug/vxlan", "debug/bgp", "debug/policy", "debug/ipam", "debug/drops", "debug/endpoints", "debug/matrix?namespace=default", "metrics", "healthz", "readyz"}
	if pprofOn {
		links = append(links, "debug/pprof/")
	}
	var b strings.Builder
	b.WriteString("<!doctype html><title>skeind</title><h1>skeind</h1><ul>")
	for _, l := range links {
		b.WriteString(`<li><a href="/` + l + `">/` + l + "</a></li>")
	}
	b.WriteString("</ul>")
	return b.String()
}
