package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/ipam"
	"github.com/skeinnet/skein/store"
	"github.com/skeinnet/skein/vxlan"
)

// memDP is an in-memory vxlan.Dataplane; ops whose string contains failing
// fail.
type memDP struct {
	mu      sync.Mutex
	st      vxlan.State
	failing string
}

func newMemDP() *memDP {
	return &memDP{st: vxlan.State{Neighs: map[netip.Addr]vxlan.Neigh{}, FDB: map[vxlan.FDBKey]vxlan.FDBEntry{}, Routes: map[netip.Prefix]vxlan.Route{}}}
}

func (m *memDP) EnsureLink(_ context.Context, spec vxlan.LinkSpec, addr, addr6 netip.Prefix) (vxlan.Devices, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st.Link, m.st.Addr, m.st.Addr6 = spec, addr, addr6
	return vxlan.Devices{Overlay: 10, Underlay: spec.UnderlayIndex}, nil
}

func (m *memDP) Observe(context.Context, vxlan.Devices) (vxlan.State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.Clone(), nil
}

func (m *memDP) Apply(_ context.Context, _ vxlan.Devices, op vxlan.Op) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failing != "" && strings.Contains(op.String(), m.failing) {
		return errors.New("injected failure")
	}
	set := op.Kind == vxlan.OpSet
	switch {
	case op.Neigh != nil && set:
		m.st.Neighs[op.Neigh.IP] = *op.Neigh
	case op.Neigh != nil:
		delete(m.st.Neighs, op.Neigh.IP)
	case op.FDB != nil && set:
		m.st.FDB[op.FDB.Key()] = *op.FDB
	case op.FDB != nil:
		delete(m.st.FDB, op.FDB.Key())
	case op.Route != nil && set:
		m.st.Routes[op.Route.Dst] = *op.Route
	case op.Route != nil:
		delete(m.st.Routes, op.Route.Dst)
	}
	return nil
}

// forget drops every kernel entry whose line contains s, as drift would.
func (m *memDP) forget(s string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, n := range m.st.Neighs {
		if strings.Contains(n.String(), s) {
			delete(m.st.Neighs, k)
		}
	}
	for k, e := range m.st.FDB {
		if strings.Contains(e.String(), s) {
			delete(m.st.FDB, k)
		}
	}
	for k, r := range m.st.Routes {
		if strings.Contains(r.String(), s) {
			delete(m.st.Routes, k)
		}
	}
}

type debugFixture struct {
	a   *Agent
	dp  *memDP
	srv *httptest.Server
	log *syncBuffer
	vx  *vxlan.Reconciler
}

var (
	blockN2  = netip.MustParsePrefix("10.244.1.0/26")
	blockN2b = netip.MustParsePrefix("10.244.1.64/26")
	blockN3  = netip.MustParsePrefix("10.244.2.0/26")
)

// newDebugFixture builds an agent of node n1 with a real allocator, a VXLAN
// reconciler over memDP and a cluster snapshot of three nodes: n2 with a
// VTEP and two blocks, n3 registered without a VTEP and dead. Nothing talks
// to etcd (no store: status records are absent).
func newDebugFixture(t *testing.T, debugAddr string) *debugFixture {
	t.Helper()
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(io.MultiWriter(&buf, t.Output()), nil))
	alloc, err := ipam.NewDual(t.Context(), ipam.Config{
		Node:     "n1",
		Pools:    []api.Pool{{CIDR: netip.MustParsePrefix("10.244.0.0/16"), BlockSize: 26}},
		Store:    &memBlocks{owners: map[netip.Prefix]string{blockN2: "n2", blockN2b: "n2", blockN3: "n3"}},
		StateDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	dp := newMemDP()
	vx, err := vxlan.NewReconciler(vxlan.ReconcilerConfig{Dataplane: dp, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{
		cfg:     Config{NodeName: "n1", DebugAddr: debugAddr, Version: "v-test"},
		log:     log,
		ul:      underlay{Iface: "eth0", Index: 2, MTU: 1500, IP: netip.MustParseAddr("10.0.0.1"), Network: netip.MustParsePrefix("10.0.0.0/24")},
		alloc:   alloc,
		cluster: api.Cluster{Backend: api.BackendVXLAN, VXLAN: api.VXLANConfig{VNI: 4096, Port: 4789}},
		metrics: newMetrics(),
		started: time.Now().Add(-time.Minute),
	}
	a.self = api.Node{Name: "n1", UnderlayIP: a.ul.IP, VTEPMAC: vtepMAC("n1"), VTEPIP: alloc.VTEPAddr(), MTU: 1450, Version: "v-test"}
	a.be = newVXLANBackend("n1", onLink{a.ul.Network}, a.vxlanConfig(), vx, a.readView, log)
	snap := store.Snapshot{
		Rev: 42,
		Nodes: map[string]api.Node{
			"n1": a.self,
			"n2": {Name: "n2", UnderlayIP: netip.MustParseAddr("10.0.0.2"), VTEPMAC: vtepMAC("n2"), VTEPIP: blockN2.Addr(), MTU: 1450},
			"n3": {Name: "n3", UnderlayIP: netip.MustParseAddr("10.0.0.3")},
		},
		Blocks: map[netip.Prefix]api.Block{
			alloc.V4().HomeBlock(): {CIDR: alloc.V4().HomeBlock(), Node: "n1"},
			blockN2:                {CIDR: blockN2, Node: "n2"},
			blockN2b:               {CIDR: blockN2b, Node: "n2"},
			blockN3:                {CIDR: blockN3, Node: "n3"},
		},
		Endpoints: map[string]api.Endpoint{
			"n1/c1/eth0": {Namespace: "x", Name: "a", Node: "n1", ContainerID: "c1", IfName: "eth0", IPs: []netip.Addr{alloc.V4().HomeBlock().Addr().Next().Next()}},
			"n2/c2/eth0": {Namespace: "x", Name: "b", Node: "n2", ContainerID: "c2", IfName: "eth0", IPs: []netip.Addr{blockN2.Addr().Next().Next()}},
			"n2/c3/eth0": {Namespace: "x", Name: "c", Node: "n2", ContainerID: "c3", IfName: "eth0", IPs: []netip.Addr{blockN2.Addr().Next().Next().Next()}},
		},
		Alive:  map[string]bool{"n1": true, "n2": true},
		Errors: []string{"/skein/nodes/bad: json: cannot unmarshal array"},
	}
	a.snap.Store(&snap)
	f := &debugFixture{a: a, vx: vx, dp: dp, log: &buf}
	f.sync(t)
	a.serving.Store(true)
	f.srv = httptest.NewServer(a.debugHandler())
	t.Cleanup(f.srv.Close)
	return f
}

// sync hands the reconciler the plan for the snapshot and syncs once.
func (f *debugFixture) sync(t *testing.T) {
	t.Helper()
	a := f.a
	f.vx.Set(vxlan.Plan(a.vxlanConfig(), vxlanPeers("n1", onLink{a.ul.Network}, *a.snap.Load())))
	_ = f.vx.Sync(t.Context()) // failures are what some tests look at
}

func (f *debugFixture) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(f.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func (f *debugFixture) topology(t *testing.T) api.Topology {
	t.Helper()
	resp, body := f.get(t, "/debug/topology")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/debug/topology: %s\n%s", resp.Status, body)
	}
	var top api.Topology
	if err := json.Unmarshal([]byte(body), &top); err != nil {
		t.Fatalf("/debug/topology is not a api.Topology: %v\n%s", err, body)
	}
	return top
}

// nodeSummary is what the tests compare of each api.TopologyNode.
type nodeSummary struct {
	Name      string
	Self      bool
	Alive     bool
	Blocks    int
	Endpoints int
	Link      string
}

func summarize(top api.Topology) []nodeSummary {
	var out []nodeSummary
	for _, n := range top.Nodes {
		out = append(out, nodeSummary{n.Name, n.Self, n.Alive, len(n.Blocks), n.Endpoints, n.Link.State})
	}
	return out
}

func TestDebugTopology(t *testing.T) {
	f := newDebugFixture(t, "127.0.0.1:0")
	top := f.topology(t)
	want := []nodeSummary{
		{Name: "n1", Self: true, Alive: true, Blocks: 1, Endpoints: 1},
		{Name: "n2", Alive: true, Blocks: 2, Endpoints: 2, Link: api.LinkUp},
		{Name: "n3", Blocks: 1, Link: api.LinkNone},
	}
	if d := cmp.Diff(want, summarize(top)); d != "" {
		t.Errorf("nodes (-want +got):\n%s", d)
	}
	if !top.Ready || top.Node.Name != "n1" || top.Backend != api.BackendVXLAN || top.StoreRev != 42 || top.Now.IsZero() {
		t.Errorf("header: ready %v node %q backend %q rev %d now %v", top.Ready, top.Node.Name, top.Backend, top.StoreRev, top.Now)
	}
	if len(top.Blocks) != 4 || len(top.Endpoints) != 1 || top.Endpoints[0].Name != "a" {
		t.Errorf("blocks %v, local endpoints %v", top.Blocks, top.Endpoints)
	}
	if top.Dataplane == nil || top.Dataplane.Syncs != 1 || top.Dataplane.FDB != 1 || top.Dataplane.Routes != 2 {
		t.Errorf("dataplane %+v, want one sync of 1 FDB entry and 2 routes", top.Dataplane)
	}
	if len(top.StoreError) != 1 || len(top.Errors) != 0 || top.StatusError != "" {
		t.Errorf("store errors %v, errors %v, status error %q", top.StoreError, top.Errors, top.StatusError)
	}
	if n2 := top.Nodes[1]; !strings.Contains(n2.Link.Detail, "4 entries programmed") || n2.UnderlayIP.String() != "10.0.0.2" {
		t.Errorf("n2: %+v", n2)
	}

	// Drift: n2's FDB entry disappears and cannot be put back.
	f.dp.forget("dst 10.0.0.2")
	f.dp.mu.Lock()
	f.dp.failing = "fdb"
	f.dp.mu.Unlock()
	f.sync(t)
	top = f.topology(t)
	n2 := top.Nodes[1]
	if n2.Link.State != api.LinkPartial || !strings.Contains(n2.Link.Detail, "missing: fdb") {
		t.Errorf("n2 link after losing its FDB entry: %+v, want partial naming the fdb entry", n2.Link)
	}
	if len(top.Errors) != 1 || top.Errors[0].Component != "vxlan" || !strings.Contains(top.Errors[0].Error, "injected failure") {
		t.Errorf("errors: %+v, want the vxlan failure", top.Errors)
	}

	// Everything of n2 gone from the kernel: down.
	f.dp.forget("")
	f.dp.mu.Lock()
	f.dp.failing = " " // every op fails
	f.dp.mu.Unlock()
	f.sync(t)
	if l := f.topology(t).Nodes[1].Link; l.State != api.LinkDown || !strings.Contains(l.Detail, "injected failure") {
		t.Errorf("n2 link with nothing programmed: %+v", l)
	}
}

func TestDebugTopologyBeforeSync(t *testing.T) {
	vx, err := vxlan.NewReconciler(vxlan.ReconcilerConfig{Dataplane: newMemDP()})
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{cfg: Config{NodeName: "n1"}, log: slog.New(slog.DiscardHandler), metrics: newMetrics()}
	a.be = newVXLANBackend("n1", nil, vxlan.Config{}, vx, a.readView, a.log)
	top := a.topology(nil, false)
	if top.Ready || top.Reason == "" || len(top.Nodes) != 0 || top.Nodes == nil {
		t.Errorf("topology before anything loaded: ready %v reason %q nodes %#v", top.Ready, top.Reason, top.Nodes)
	}
	snap := store.Snapshot{Nodes: map[string]api.Node{"n2": {Name: "n2", UnderlayIP: netip.MustParseAddr("10.0.0.2"), VTEPMAC: vtepMAC("n2"), VTEPIP: blockN2.Addr()}}}
	a.snap.Store(&snap)
	a.ul = underlay{IP: netip.MustParseAddr("10.0.0.1")}
	top = a.topology(nil, false)
	if len(top.Nodes) != 1 || top.Nodes[0].Link.State != api.LinkPending {
		t.Errorf("peer before the first sync: %+v, want pending", top.Nodes)
	}
}

// metricValue returns the value of the sample whose line starts with series
// in a Prometheus text exposition.
func metricValue(t *testing.T, body, series string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		t.Errorf("metric %s missing", series)
		return ""
	}
	return m[1]
}

func TestDebugMetrics(t *testing.T) {
	f := newDebugFixture(t, "127.0.0.1:0")
	// One CNI call through the instrumented handler.
	cni := httptest.NewServer(f.a.metrics.instrument(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusConflict)
	})))
	defer cni.Close()
	resp, err := http.Post(cni.URL+api.PathAllocate, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	f.a.metrics.etcdError("status_read")

	resp, body := f.get(t, "/metrics")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	for series, want := range map[string]string{
		`skein_cni_request_duration_seconds_count{result="error_409",verb="allocate"}`: "1",
		`skein_reconcile_syncs_total{component="vxlan"}`:                               "1",
		`skein_reconcile_errors_total{component="vxlan"}`:                              "0",
		`skein_dataplane_objects{component="vxlan",kind="route"}`:                      "2",
		`skein_peers{state="up"}`:                                                      "1",
		`skein_peers{state="none"}`:                                                    "1",
		`skein_nodes{alive="true"}`:                                                    "2",
		`skein_nodes{alive="false"}`:                                                   "1",
		`skein_ipam_blocks`:                                                            "1",
		`skein_ipam_addresses_used`:                                                    "0",
		`skein_ipam_addresses_free`:                                                    "63",
		`skein_endpoints`:                                                              "0",
		`skein_watch_resyncs`:                                                          "0",
		`skein_ready`:                                                                  "1",
		`skein_store_undecodable_keys`:                                                 "1",
		`skein_etcd_errors_total{op="status_read"}`:                                    "1",
	} {
		if got := metricValue(t, body, series); got != "" && got != want {
			t.Errorf("%s = %s, want %s", series, got, want)
		}
	}
	if !strings.Contains(body, "skein_reconcile_last_sync_timestamp_seconds{component=\"vxlan\"}") {
		t.Errorf("no last sync timestamp for vxlan")
	}
}

func TestDebugUI(t *testing.T) {
	f := newDebugFixture(t, "127.0.0.1:0")
	resp, body := f.get(t, "/ui")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("/ui: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("/ui has no restrictive CSP: %q", resp.Header.Get("Content-Security-Policy"))
	}
	for _, path := range []string{`fetch("/debug/topology"`, `"/debug/endpoints?"`, `"/debug/matrix?"`, `"/debug/drops?since="`} {
		if !strings.Contains(body, path) {
			t.Errorf("/ui does not read %s", path)
		}
	}
	// Self-contained: no external scripts, styles, fonts or images.
	for _, re := range []string{`<script[^>]+src=`, `<link[^>]+href=`, `@import`, `url\(`, `https?://(?:[^w"]|w[^w])`} {
		if loc := regexp.MustCompile(re).FindStringIndex(body); loc != nil {
			t.Errorf("/ui refers to an external asset (%s): %q", re, body[loc[0]:min(loc[1]+40, len(body))])
		}
	}
	resp, body = f.get(t, "/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `href="/ui"`) {
		t.Errorf("index: %s %s", resp.Status, body)
	}
}

// TestDebugPprofOnlyOnLoopback: pprof is served on a loopback listener only,
// and a non-loopback listener is warned about.
func TestDebugPprofOnlyOnLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr      string
		wantPprof int
		wantWarn  bool
	}{
		{"127.0.0.1:9595", http.StatusOK, false},
		{"[::1]:0", http.StatusOK, false},
		{"localhost:9595", http.StatusOK, false},
		{"0.0.0.0:9595", http.StatusNotFound, true},
		{":9595", http.StatusNotFound, true},
		{"10.0.0.1:9595", http.StatusNotFound, true},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			f := newDebugFixture(t, tc.addr)
			resp, _ := f.get(t, "/debug/pprof/")
			if resp.StatusCode != tc.wantPprof {
				t.Errorf("/debug/pprof/ on %s: %s, want %d", tc.addr, resp.Status, tc.wantPprof)
			}
			warned := strings.Contains(f.log.String(), "debug endpoint is not on loopback")
			if warned != tc.wantWarn {
				t.Errorf("warning logged = %v, want %v:\n%s", warned, tc.wantWarn, f.log.String())
			}
			if resp, _ := f.get(t, "/metrics"); resp.StatusCode != http.StatusOK {
				t.Errorf("/metrics on %s: %s", tc.addr, resp.Status)
			}
		})
	}
}

func TestDebugEndpoints(t *testing.T) {
	f := newDebugFixture(t, "127.0.0.1:0")
	for path, want := range map[string]int{
		"/healthz":      http.StatusOK,
		"/readyz":       http.StatusOK,
		"/debug/vxlan":  http.StatusOK,
		"/debug/ipam":   http.StatusOK,
		"/debug/bgp":    http.StatusNotFound, // no BGP speaker in a VXLAN cluster
		"/debug/policy": http.StatusNotFound, // hook not filled yet
	} {
		if resp, body := f.get(t, path); resp.StatusCode != want {
			t.Errorf("%s: %s, want %d\n%s", path, resp.Status, want, body)
		}
	}
	_, body := f.get(t, "/debug/ipam")
	var ipamState struct {
		Node   string         `json:"node"`
		Blocks []netip.Prefix `json:"blocks"`
	}
	if err := json.Unmarshal([]byte(body), &ipamState); err != nil || ipamState.Node != "n1" || len(ipamState.Blocks) != 1 {
		t.Errorf("/debug/ipam: %+v %v\n%s", ipamState, err, body)
	}
	f.a.serving.Store(false)
	resp, body := f.get(t, "/readyz")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "socket not serving") {
		t.Errorf("/readyz while not serving: %s %s", resp.Status, body)
	}
}

func TestBGPLinks(t *testing.T) {
	snap := store.Snapshot{Nodes: map[string]api.Node{
		"n1": {Name: "n1", UnderlayIP: netip.MustParseAddr("10.0.0.1")},
		"n2": {Name: "n2", UnderlayIP: netip.MustParseAddr("10.0.0.2")},
		"n3": {Name: "n3", UnderlayIP: netip.MustParseAddr("10.0.0.3")},
		"n4": {Name: "n4", UnderlayIP: netip.MustParseAddr("10.0.0.4")},
	}}
	st := &api.BGPStatus{Neighbors: []api.BGPSession{
		{Name: "n2", Address: netip.MustParseAddr("10.0.0.2"), State: "Established"},
		{Name: "bgppeer-x", Address: netip.MustParseAddr("10.0.0.3"), State: "Active"},
		{Name: "tor", Address: netip.MustParseAddr("192.0.2.1"), State: "Established"},
	}}
	got := bgpLinks(snap, st)
	want := map[string]api.Link{
		"n1": {Kind: "bgp", State: api.LinkNone, Detail: "no session"},
		"n2": {Kind: "bgp", State: api.LinkUp, Detail: "Established"},
		"n3": {Kind: "bgp", State: api.LinkDown, Detail: "Active"},
		"n4": {Kind: "bgp", State: api.LinkNone, Detail: "no session"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("bgpLinks (-want +got):\n%s", d)
	}
	if got := bgpLinks(snap, nil); got != nil {
		t.Errorf("bgpLinks without a BGP backend = %v, want nil", got)
	}
}

func TestDecodeStatusRecords(t *testing.T) {
	good, _ := json.Marshal(map[string]any{"node": "n1", "ready": true, "peersUp": 2, "peers": 3, "policySync": "2025-01-01T00:00:00Z"})
	got, errText := decodeStatusRecords(map[string][]byte{"n1": good, "n2": []byte("{"), "n0": []byte("[1]")})
	if errText != "undecodable status records: n0, n2" {
		t.Errorf("error text %q", errText)
	}
	st, ok := got["n1"]
	if !ok || !st.Ready || st.PeersUp != 2 || st.Peers != 3 || st.PolicySync.IsZero() || len(got) != 1 {
		t.Errorf("decoded %+v", got)
	}
}

func TestIsLoopbackAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9595": true, "127.1.2.3:1": true, "[::1]:9595": true, "localhost:0": true,
		"0.0.0.0:9595": false, ":9595": false, "[::]:9595": false, "10.0.0.1:9595": false, "off": false, "": false,
	} {
		if got := isLoopbackAddr(addr); got != want {
			t.Errorf("isLoopbackAddr(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestDebugHostAllowed(t *testing.T) {
	t.Parallel()
	local := netip.MustParseAddr("10.0.0.1")
	for _, tc := range []struct {
		host, listen string
		local        netip.Addr
		want         bool
	}{
		{"localhost", "127.0.0.1", local, true},
		{"localhost:9595", "127.0.0.1", local, true},
		{"LOCALHOST.:9595", "127.0.0.1", local, true},
		{"127.0.0.1", "127.0.0.1", local, true},
		{"127.0.0.1:9595", "0.0.0.0", local, true},
		{"[::1]:9595", "::1", local, true},
		{"::1", "127.0.0.1", local, true},
		{"10.0.0.1:9595", "0.0.0.0", local, true},    // the address the connection came in on
		{"10.0.0.1:9595", "10.0.0.1", local, true},   // the listen address
		{"node1.lan:9595", "node1.lan", local, true}, // configured by name
		{"10.0.0.2:9595", "0.0.0.0", local, false},   // some other address
		{"evil.example", "127.0.0.1", local, false},
		{"evil.example:9595", "0.0.0.0", local, false},
		{"localhost.evil.example", "127.0.0.1", local, false},
		{"127.0.0.1.evil.example", "127.0.0.1", local, false},
		{"", "127.0.0.1", local, false},
	} {
		if got := debugHostAllowed(tc.host, tc.listen, tc.local); got != tc.want {
			t.Errorf("debugHostAllowed(%q, listen %q, local %s) = %v, want %v", tc.host, tc.listen, tc.local, got, tc.want)
		}
	}
}

// TestDebugGuard: a request under a foreign Host name (DNS rebinding) is
// refused with 403 and a message, and anything but GET and HEAD with 405,
// pprof included.
func TestDebugGuard(t *testing.T) {
	f := newDebugFixture(t, "127.0.0.1:0")
	do := func(method, path, host string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, f.srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	for _, tc := range []struct {
		method, path, host string
		want               int
		wantBody           string
	}{
		{http.MethodGet, "/debug/topology", "", http.StatusOK, ""},
		{http.MethodGet, "/debug/topology", "localhost:9595", http.StatusOK, ""},
		{http.MethodHead, "/healthz", "", http.StatusOK, ""},
		{http.MethodGet, "/debug/topology", "rebind.evil.example:9595", http.StatusForbidden, "not allowed"},
		{http.MethodGet, "/metrics", "rebind.evil.example", http.StatusForbidden, "DNS rebinding"},
		{http.MethodPost, "/debug/topology", "", http.StatusMethodNotAllowed, "read-only"},
		{http.MethodPost, "/debug/pprof/profile", "", http.StatusMethodNotAllowed, "read-only"},
		{http.MethodPut, "/readyz", "", http.StatusMethodNotAllowed, "read-only"},
		{http.MethodDelete, "/", "", http.StatusMethodNotAllowed, "read-only"},
	} {
		resp, body := do(tc.method, tc.path, tc.host)
		if resp.StatusCode != tc.want || !strings.Contains(body, tc.wantBody) {
			t.Errorf("%s %s (Host %q): %s %q, want %d with %q", tc.method, tc.path, tc.host, resp.Status, body, tc.want, tc.wantBody)
		}
		if tc.want == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow %q, want \"GET, HEAD\"", tc.method, tc.path, resp.Header.Get("Allow"))
		}
	}
}

// TestTopologyLinksBounded: past allPairsUpTo nodes the topology grades
// only this node's pairs (n-1), unless every pair is asked for.
func TestTopologyLinksBounded(t *testing.T) {
	var nodes []api.TopologyNode
	for i := range allPairsUpTo + 6 {
		nodes = append(nodes, api.TopologyNode{Node: api.Node{Name: fmt.Sprintf("n%03d", i)}, Self: i == 3, Alive: true})
	}
	n := len(nodes)
	if got := len(topologyLinks(nodes, false)); got != n-1 {
		t.Errorf("this node's pairs: %d links, want %d", got, n-1)
	}
	for _, l := range topologyLinks(nodes, false) {
		if l.From != "n003" && l.To != "n003" {
			t.Errorf("pair %s-%s does not involve this node", l.From, l.To)
		}
	}
	if got := len(topologyLinks(nodes, true)); got != n*(n-1)/2 {
		t.Errorf("every pair: %d links, want %d", got, n*(n-1)/2)
	}
}
