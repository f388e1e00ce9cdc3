package agent

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"sort"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/ipam"
	"github.com/skeinnet/skein/vxlan"
)

// Topology is this node's view of the cluster, served at /debug/topology.
type Topology struct {
	Node       api.Node         `json:"node"`
	Backend    api.Backend      `json:"backend"`
	Ready      bool             `json:"ready"`
	Reason     string           `json:"reason,omitempty"`
	Started    time.Time        `json:"started"`
	ReadyAfter string           `json:"readyAfter,omitempty"`
	StoreRev   int64            `json:"storeRev"`
	Peers      []TopologyPeer   `json:"peers"`
	Blocks     []api.Block      `json:"blocks"`
	Endpoints  []api.Endpoint   `json:"endpoints"`
	IPAM       ipam.Stats       `json:"ipam"`
	Dataplane  vxlan.DebugState `json:"dataplane"`
	StoreError []string         `json:"storeErrors,omitempty"`
}

// TopologyPeer is another node as this one sees it.
type TopologyPeer struct {
	api.Node
	Alive  bool     `json:"alive"`
	Blocks []string `json:"blocks"`
}

func (a *Agent) topology() Topology {
	ready, reason := a.readiness()
	t := Topology{
		Node:      a.self,
		Backend:   a.cluster.Backend,
		Ready:     ready,
		Reason:    reason,
		Started:   a.started.UTC(),
		IPAM:      a.alloc.Stats(),
		Dataplane: a.vx.Debug(),
	}
	if at := a.readyAt.Load(); at > 0 {
		t.ReadyAfter = time.Unix(0, at).Sub(a.started).String()
	}
	snap := a.snap.Load()
	if snap == nil {
		return t
	}
	t.StoreRev = snap.Rev
	t.StoreError = snap.Errors
	blocksOf := map[string][]string{}
	for _, b := range snap.Blocks {
		t.Blocks = append(t.Blocks, b)
		blocksOf[b.Node] = append(blocksOf[b.Node], b.CIDR.String())
	}
	sort.Slice(t.Blocks, func(i, j int) bool { return t.Blocks[i].CIDR.Addr().Less(t.Blocks[j].CIDR.Addr()) })
	for name, n := range snap.Nodes {
		if name == a.cfg.NodeName {
			continue
		}
		bl := blocksOf[name]
		sort.Strings(bl)
		t.Peers = append(t.Peers, TopologyPeer{Node: n, Alive: snap.Alive[name], Blocks: bl})
	}
	sort.Slice(t.Peers, func(i, j int) bool { return t.Peers[i].Name < t.Peers[j].Name })
	t.Endpoints = localEndpoints(a.cfg.NodeName, *snap)
	return t
}

func (a *Agent) debugHandler() http.Handler {
	a.metrics.gauge("skein_endpoints", "Container attachments on this node.", func() float64 {
		return float64(len(a.alloc.Allocations()))
	})
	a.metrics.gauge("skein_ipam_blocks", "Address blocks this node holds.", func() float64 {
		return float64(a.alloc.Stats().Blocks)
	})
	a.metrics.gauge("skein_ipam_addresses_used", "Addresses allocated on this node.", func() float64 {
		return float64(a.alloc.Stats().Used)
	})
	a.metrics.gauge("skein_ipam_addresses_free", "Addresses free in this node's blocks.", func() float64 {
		return float64(a.alloc.Stats().Free)
	})
	a.metrics.gauge("skein_watch_resyncs", "Times the etcd watch had to reload everything.", func() float64 {
		return float64(a.store.Resyncs())
	})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/topology", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, a.topology()) })
	mux.HandleFunc("GET /debug/vxlan", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, a.vx.Debug()) })
	mux.HandleFunc("GET /debug/ipam", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"stats": a.alloc.Stats(), "blocks": a.alloc.Blocks(), "allocations": a.alloc.Allocations()})
	})
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
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
