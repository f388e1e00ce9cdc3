package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/ipam"
)

// memBlocks is an in-memory ipam.BlockStore with etcd's create-if-absent rule.
type memBlocks struct {
	mu     sync.Mutex
	owners map[netip.Prefix]string
}

func (m *memBlocks) ListBlocks(context.Context) ([]api.Block, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []api.Block
	for p, n := range m.owners {
		out = append(out, api.Block{CIDR: p, Node: n})
	}
	return out, nil
}

func (m *memBlocks) ClaimBlock(_ context.Context, p netip.Prefix, node string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if o, ok := m.owners[p]; ok {
		return o == node, nil
	}
	m.owners[p] = node
	return true, nil
}

func (m *memBlocks) ReleaseBlock(_ context.Context, p netip.Prefix, node string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.owners[p] == node {
		delete(m.owners, p)
	}
	return nil
}

// memEndpoints is an in-memory endpointStore; fail makes every call fail.
type memEndpoints struct {
	mu   sync.Mutex
	eps  map[api.Owner]api.Endpoint
	nss  map[string]api.Namespace
	fail error
	// ensures counts EnsureNamespace calls (etcd writes in the agent).
	ensures int
}

func (m *memEndpoints) PutEndpoint(_ context.Context, ep api.Endpoint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.eps[api.Owner{ContainerID: ep.ContainerID, IfName: ep.IfName}] = ep
	return nil
}

func (m *memEndpoints) DeleteEndpoint(_ context.Context, _ string, o api.Owner) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	delete(m.eps, o)
	return nil
}

func (m *memEndpoints) get(o api.Owner) (api.Endpoint, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ep, ok := m.eps[o]
	return ep, ok
}

func (m *memEndpoints) failure() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fail
}

func (m *memEndpoints) setFail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = err
}

func (m *memEndpoints) EnsureNamespace(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ensures++
	if m.fail != nil {
		return m.fail
	}
	if _, ok := m.nss[name]; !ok {
		m.nss[name] = api.Namespace{Name: name}
	}
	return nil
}

// testNet is the CNI network most tests call with.
const testNet = "net-a"

type fixture struct {
	srv   *httptest.Server
	eps   *memEndpoints
	alloc *ipam.Dual
	cni   *cniServer
	dir   string
	now   time.Time
	nowM  sync.Mutex
}

// newFixture serves the CNI API over a real ipam.Allocator whose pool has
// room for exactly three pods (a /30 block less its reserved first address).
func newFixture(t *testing.T) *fixture {
	return newFixtureWith(t, "10.9.0.0/30", "")
}

// newFixtureWith serves the CNI API over a real ipam.Dual on pool (comma
// separated; IPv4 pools of /30 blocks, IPv6 of /126), with its state (and journal) in dir (a fresh one when empty).
func newFixtureWith(t testing.TB, pool, dir string) *fixture {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	f := &fixture{eps: &memEndpoints{eps: map[api.Owner]api.Endpoint{}, nss: map[string]api.Namespace{}}, now: time.Unix(1000, 0), dir: dir}
	var pools []api.Pool
	for _, p := range strings.Split(pool, ",") {
		bs := 30
		if strings.Contains(p, ":") {
			bs = 126
		}
		pools = append(pools, api.Pool{CIDR: netip.MustParsePrefix(p), BlockSize: bs})
	}
	alloc, err := ipam.NewDual(context.Background(), ipam.Config{
		Node:     "n1",
		Pools:    pools,
		Store:    &memBlocks{owners: map[netip.Prefix]string{}},
		StateDir: dir,
		Cooldown: time.Minute,
		Now: func() time.Time {
			f.nowM.Lock()
			defer f.nowM.Unlock()
			return f.now
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	jr, err := openJournal(dir, "n1")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	health := &etcdHealth{}
	s := &cniServer{
		node: "n1", mtu: 1450, alloc: alloc, store: f.eps,
		ready:      func() (bool, string) { return true, "" },
		log:        log,
		onChange:   func() {},
		enforce:    func(context.Context, api.Endpoint) error { return nil },
		forget:     func(api.Owner) {},
		endpointOf: func(o api.Owner) (api.Endpoint, bool) { return f.eps.get(o) },
		health:     health,
		journal:    jr,
		published:  map[api.Owner]bool{},
	}
	// The publisher is driven by the tests (drain), not by its Run loop.
	s.pub = &publisher{
		j: jr, store: f.eps, health: health,
		probe: func(context.Context) error { return f.eps.failure() },
		published: func(ep api.Endpoint) {
			s.markPublished(api.Owner{ContainerID: ep.ContainerID, IfName: ep.IfName}, true)
		},
		release: releaseAfterUnpublish(alloc, s.forget, log),
		// Like the agent's status, which reads the journal: called under
		// the journal's lock it would deadlock.
		changed: func() { _ = jr.stats() },
		log:     log,
		kick:    make(chan struct{}, 1),
	}
	f.alloc, f.cni = alloc, s
	f.srv = httptest.NewServer(s.handler())
	t.Cleanup(f.srv.Close)
	return f
}

// call POSTs req and decodes a success into resp or an error into AgentError.
func (f *fixture) call(t *testing.T, path string, req, resp any) (int, api.AgentError) {
	t.Helper()
	b, _ := json.Marshal(req)
	r, err := http.Post(f.srv.URL+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var ae api.AgentError
	if r.StatusCode >= 300 {
		if err := json.NewDecoder(r.Body).Decode(&ae); err != nil {
			t.Fatalf("%s: error body is not an AgentError: %v", path, err)
		}
		return r.StatusCode, ae
	}
	if resp != nil {
		if err := json.NewDecoder(r.Body).Decode(resp); err != nil {
			t.Fatal(err)
		}
	}
	return r.StatusCode, ae
}

func owner(id string) api.Owner { return api.Owner{ContainerID: id, IfName: "eth0"} }

func TestCNILifecycle(t *testing.T) {
	f := newFixture(t)
	var ar api.AllocateResponse
	if code, ae := f.call(t, api.PathAllocate, api.AllocateRequest{Network: testNet, Owner: owner("a"), Pod: api.PodInfo{Namespace: "x", Name: "pa"}}, &ar); code != 200 {
		t.Fatalf("allocate: %d %+v", code, ae)
	}
	if len(ar.IPs) != 1 || ar.IPs[0] != netip.MustParsePrefix("10.9.0.1/32") || ar.MTU != 1450 || ar.Gateway.String() != api.GatewayIP || ar.Existing {
		t.Fatalf("allocate response %+v", ar)
	}
	// Asking again (a retried ADD) returns the same address.
	var again api.AllocateResponse
	f.call(t, api.PathAllocate, api.AllocateRequest{Network: testNet, Owner: owner("a")}, &again)
	if !again.Existing || again.IPs[0] != ar.IPs[0] {
		t.Errorf("second allocate for the same owner: %+v, want existing %v", again, ar.IPs[0])
	}
	ip := ar.IPs[0].Addr()
	// A commit naming an address the owner does not hold is refused.
	if code, _ := f.call(t, api.PathCommit, api.CommitRequest{Network: testNet, Owner: owner("a"), IPs: []netip.Addr{netip.MustParseAddr("10.9.0.2")}}, nil); code != http.StatusConflict {
		t.Errorf("commit of a foreign address: status %d, want 409", code)
	}
	if code, ae := f.call(t, api.PathCommit, api.CommitRequest{Network: testNet, Owner: owner("a"), IPs: []netip.Addr{ip}, HostIface: "skx", Pod: api.PodInfo{Namespace: "x", Name: "pa", Labels: map[string]string{"app": "web"}}}, nil); code != 200 {
		t.Fatalf("commit: %d %+v", code, ae)
	}
	ep, ok := f.eps.eps[owner("a")]
	if !ok || ep.Namespace != "x" || ep.Name != "pa" || ep.Labels["app"] != "web" || ep.Node != "n1" || ep.IPs[0] != ip {
		t.Errorf("published endpoint %+v", ep)
	}
	if _, ok := f.eps.nss["x"]; !ok {
		t.Errorf("namespace x not created on first pod")
	}
	var cr api.CheckResponse
	if code, _ := f.call(t, api.PathCheck, api.ReleaseRequest{Network: testNet, Owner: owner("a")}, &cr); code != 200 || !cr.Published || cr.IPs[0] != ip {
		t.Errorf("check: %d %+v", code, cr)
	}
	var rr api.ReleaseResponse
	if code, ae := f.call(t, api.PathRelease, api.ReleaseRequest{Network: testNet, Owner: owner("a")}, &rr); code != 200 || len(rr.Released) != 1 {
		t.Fatalf("release: %d %+v %+v", code, ae, rr)
	}
	if _, ok := f.eps.eps[owner("a")]; ok {
		t.Error("endpoint still published after release")
	}
	if code, _ := f.call(t, api.PathCheck, api.ReleaseRequest{Network: testNet, Owner: owner("a")}, nil); code != http.StatusNotFound {
		t.Errorf("check after release: %d, want 404", code)
	}
	// Releasing again (a repeated DEL) succeeds and frees nothing.
	rr = api.ReleaseResponse{}
	if code, _ := f.call(t, api.PathRelease, api.ReleaseRequest{Network: testNet, Owner: owner("a")}, &rr); code != 200 || len(rr.Released) != 0 {
		t.Errorf("second release: %d %+v", code, rr)
	}
}

func TestCNIExhaustion(t *testing.T) {
	f := newFixture(t)
	for _, id := range []string{"a", "b", "c"} {
		if code, ae := f.call(t, api.PathAllocate, api.AllocateRequest{Network: testNet, Owner: owner(id)}, nil); code != 200 {
			t.Fatalf("allocate %s: %d %+v", id, code, ae)
		}
	}
	code, ae := f.call(t, api.PathAllocate, api.AllocateRequest{Network: testNet, Owner: owner("d")}, nil)
	if code == 200 || ae.Code != codePoolExhausted {
		t.Errorf("allocate beyond the pool: %d %+v, want code %d", code, ae, codePoolExhausted)
	}
	// With an address cooling down, retrying later helps: code 11.
	f.call(t, api.PathRelease, api.ReleaseRequest{Network: testNet, Owner: owner("a")}, nil)
	code, ae = f.call(t, api.PathAllocate, api.AllocateRequest{Network: testNet, Owner: owner("d")}, nil)
	if code == 200 || ae.Code != codeTryAgainLater {
		t.Errorf("allocate while an address cools: %d %+v, want code 11", code, ae)
	}
	f.nowM.Lock()
	f.now = f.now.Add(2 * time.Minute)
	f.nowM.Unlock()
	var ar api.AllocateResponse
	if code, ae := f.call(t, api.PathAllocate, api.AllocateRequest{Network: testNet, Owner: owner("d")}, &ar); code != 200 {
		t.Errorf("allocate after the cooldown: %d %+v", code, ae)
	}
}

func TestCNIStoreDown(t *testing.T) {
	f := newFixture(t)
	var ar api.AllocateResponse
	f.call(t, api.PathAllocate, api.AllocateRequest{Network: testNet, Owner: owner("a")}, &ar)
	f.eps.setFail(errors.New("etcdserver: permission denied")) // a refusal, not an outage
	code, ae := f.call(t, api.PathCommit, api.CommitRequest{Network: testNet, Owner: owner("a"), IPs: []netip.Addr{ar.IPs[0].Addr()}}, nil)
	if code == 200 || ae.Code != codeTryAgainLater {
		t.Errorf("commit with etcd down: %d %+v, want code 11", code, ae)
	}
	// Release must not free the address while the endpoint may still be published.
	code, ae = f.call(t, api.PathRelease, api.ReleaseRequest{Network: testNet, Owner: owner("a")}, nil)
	if code == 200 || ae.Code != codeTryAgainLater {
		t.Errorf("release with etcd down: %d %+v, want code 11", code, ae)
	}
	if code, _ := f.call(t, api.PathCheck, api.ReleaseRequest{Network: testNet, Owner: owner("a")}, nil); code != 200 {
		t.Errorf("address freed although the endpoint could not be unpublished")
	}
}

func TestCNIGC(t *testing.T) {
	f := newFixture(t)
	for _, id := range []string{"keep", "stale"} {
		var ar api.AllocateResponse
		f.call(t, api.PathAllocate, api.AllocateRequest{Network: testNet, Owner: owner(id)}, &ar)
		f.call(t, api.PathCommit, api.CommitRequest{Network: testNet, Owner: owner(id), IPs: []netip.Addr{ar.IPs[0].Addr()}}, nil)
	}
	var gr api.GCResponse
	if code, ae := f.call(t, api.PathGC, api.GCRequest{Network: testNet, Valid: []api.Owner{owner("keep")}}, &gr); code != 200 {
		t.Fatalf("gc: %d %+v", code, ae)
	}
	if len(gr.Freed) != 1 || gr.Freed[0] != owner("stale") {
		t.Errorf("gc freed %v, want only stale/eth0", gr.Freed)
	}
	if _, ok := f.eps.eps[owner("stale")]; ok {
		t.Error("stale endpoint still published after gc")
	}
	if _, ok := f.eps.eps[owner("keep")]; !ok {
		t.Error("valid endpoint removed by gc")
	}
}

func TestCNIBadRequest(t *testing.T) {
	f := newFixture(t)
	// A pod name or namespace that cannot be used is the runtime's config
	// (7), not "try again later" (11): runtimes retry 11 forever.
	var ar api.AllocateResponse
	if code, ae := f.call(t, api.PathAllocate, api.AllocateRequest{Network: testNet, Owner: owner("bad")}, &ar); code != 200 {
		t.Fatalf("allocate: %d %+v", code, ae)
	}
	for _, tc := range []struct {
		pod   api.PodInfo
		field string
	}{
		{api.PodInfo{Namespace: "a/b", Name: "web"}, "pod.namespace (K8S_POD_NAMESPACE)"},
		{api.PodInfo{Namespace: "a", Name: "web/0"}, "pod.name (K8S_POD_NAME)"},
		{api.PodInfo{Namespace: "a", Name: "web\n0"}, "pod.name (K8S_POD_NAME)"},
	} {
		code, ae := f.call(t, api.PathCommit, api.CommitRequest{Network: testNet, Owner: owner("bad"), IPs: []netip.Addr{ar.IPs[0].Addr()}, Pod: tc.pod}, nil)
		if code != http.StatusBadRequest || ae.Code != codeInvalidConfig || !strings.Contains(ae.Details, tc.field) {
			t.Errorf("commit of pod %+v: %d %+v, want 400, code 7 naming %s", tc.pod, code, ae, tc.field)
		}
	}
	if _, ok := f.eps.eps[owner("bad")]; ok {
		t.Error("endpoint with a bad pod name published")
	}
	code, ae := f.call(t, api.PathAllocate, api.AllocateRequest{}, nil)
	if code != http.StatusBadRequest || ae.Code != codeInvalidConfig {
		t.Errorf("allocate without owner: %d %+v", code, ae)
	}
	r, err := http.Post(f.srv.URL+api.PathAllocate, "application/json", bytes.NewReader([]byte("{not json")))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusBadRequest {
		t.Errorf("malformed body: status %d", r.StatusCode)
	}
}

// addEndpoint runs allocate and commit for o in network and returns its address.
func (f *fixture) addEndpoint(t *testing.T, network string, o api.Owner) netip.Addr {
	t.Helper()
	var ar api.AllocateResponse
	if code, ae := f.call(t, api.PathAllocate, api.AllocateRequest{Network: network, Owner: o}, &ar); code != 200 {
		t.Fatalf("allocate %s in %s: %d %+v", o, network, code, ae)
	}
	ip := ar.IPs[0].Addr()
	if code, ae := f.call(t, api.PathCommit, api.CommitRequest{Network: network, Owner: o, IPs: []netip.Addr{ip}}, nil); code != 200 {
		t.Fatalf("commit %s in %s: %d %+v", o, network, code, ae)
	}
	return ip
}

// GC, DEL and CHECK from one network leave another network's attachments
// (address and endpoint record) alone.
func TestCNINetworksSeparate(t *testing.T) {
	f := newFixtureWith(t, "10.9.0.0/29", "")
	ipA := f.addEndpoint(t, "net-a", owner("a"))
	f.addEndpoint(t, "net-b", owner("b"))

	var gr api.GCResponse
	if code, ae := f.call(t, api.PathGC, api.GCRequest{Network: "net-b", Valid: []api.Owner{}}, &gr); code != 200 {
		t.Fatalf("gc net-b: %d %+v", code, ae)
	}
	if d := cmp.Diff([]api.Owner{owner("b")}, gr.Freed); d != "" {
		t.Errorf("gc of net-b freed (-want +got):\n%s", d)
	}
	if _, ok := f.eps.get(owner("a")); !ok {
		t.Error("gc of net-b unpublished net-a's endpoint")
	}
	if _, ok := f.eps.get(owner("b")); ok {
		t.Error("gc of net-b left its stale endpoint published")
	}
	var rr api.ReleaseResponse
	if code, ae := f.call(t, api.PathRelease, api.ReleaseRequest{Network: "net-b", Owner: owner("a")}, &rr); code != 200 || len(rr.Released) != 0 {
		t.Errorf("DEL from net-b of net-a's attachment: %d %+v %+v, want success freeing nothing", code, ae, rr)
	}
	if _, ok := f.eps.get(owner("a")); !ok {
		t.Error("DEL from net-b unpublished net-a's endpoint")
	}
	var cr api.CheckResponse
	if code, _ := f.call(t, api.PathCheck, api.ReleaseRequest{Network: "net-b", Owner: owner("a")}, &cr); code != 200 || cr.HeldBy != "net-a" || len(cr.IPs) != 0 {
		t.Errorf("CHECK from net-b of net-a's attachment: %d %+v, want heldBy net-a", code, cr)
	}
	if code, ae := f.call(t, api.PathAllocate, api.AllocateRequest{Network: "net-b", Owner: owner("a")}, nil); code != http.StatusConflict || ae.Code != codeInvalidConfig {
		t.Errorf("ADD from net-b of net-a's attachment: %d %+v, want 409 code 7", code, ae)
	}
	cr = api.CheckResponse{}
	if code, _ := f.call(t, api.PathCheck, api.ReleaseRequest{Network: "net-a", Owner: owner("a")}, &cr); code != 200 || len(cr.IPs) != 1 || cr.IPs[0] != ipA || !cr.Published {
		t.Errorf("CHECK from net-a: %d %+v, want %s published", code, cr, ipA)
	}
	if code, ae := f.call(t, api.PathGC, api.GCRequest{Valid: []api.Owner{}}, nil); code != http.StatusBadRequest || ae.Code != codeInvalidConfig {
		t.Errorf("gc without a network: %d %+v, want 400 code 7", code, ae)
	}
}

// While etcd is unreachable, ADD and DEL work from the node's own blocks and
// the journal; the address of a deleted endpoint stays held until its
// unpublish lands; the journal survives a restart and drains in order.
func TestCNIOffline(t *testing.T) {
	f := newFixtureWith(t, "10.9.0.0/29", "")
	f.addEndpoint(t, testNet, owner("a")) // online: claims the first block
	f.eps.setFail(fmt.Errorf("put x: %w", context.DeadlineExceeded))

	ipB := f.addEndpoint(t, testNet, owner("b"))
	ipC := f.addEndpoint(t, testNet, owner("c"))
	if ipB == ipC {
		t.Fatalf("two offline containers got one address %s", ipB)
	}
	if f.cni.health.reachable() {
		t.Error("etcd still counted reachable after a timed-out publish")
	}
	if got := f.cni.journal.stats().Unpublished; got != 2 {
		t.Errorf("journal holds %d entries, want 2", got)
	}
	// The first block is full: a fourth container needs a block, so etcd.
	code, ae := f.call(t, api.PathAllocate, api.AllocateRequest{Network: testNet, Owner: owner("d")}, nil)
	if code == 200 || ae.Code != codeTryAgainLater || !strings.Contains(ae.Message, "etcd is unreachable") {
		t.Errorf("allocate needing a new block offline: %d %+v, want code 11 naming etcd", code, ae)
	}
	// DEL offline: success, and the address stays held while etcd still names it.
	f.eps.setFail(nil) // the record of a is still in the "store"
	f.cni.health.observe(fmt.Errorf("x: %w", context.DeadlineExceeded), time.Now())
	if code, ae := f.call(t, api.PathRelease, api.ReleaseRequest{Network: testNet, Owner: owner("a")}, nil); code != 200 {
		t.Fatalf("offline DEL: %d %+v", code, ae)
	}
	if got := f.alloc.Lookup(owner("a")); len(got) != 1 {
		t.Fatalf("address of a freed before its unpublish landed: %v", got)
	}

	// Restart: a new agent on the same state dir finds the journal.
	g := newFixtureWith(t, "10.9.0.0/29", f.dir)
	g.eps = f.eps
	g.cni.store, g.cni.pub.store = f.eps, f.eps
	if got := g.cni.journal.stats().Unpublished; got != 3 {
		t.Fatalf("journal after restart holds %d entries, want 3", got)
	}
	if err := g.cni.pub.drain(context.Background()); err != nil {
		t.Fatalf("drain: %v", err)
	}
	for _, o := range []api.Owner{owner("b"), owner("c")} {
		if ep, ok := f.eps.get(o); !ok || ep.Network != testNet {
			t.Errorf("endpoint %s after drain: %+v %t, want published in %s", o, ep, ok, testNet)
		}
	}
	if _, ok := f.eps.get(owner("a")); ok {
		t.Error("endpoint a still published after its unpublish drained")
	}
	if got := g.alloc.Lookup(owner("a")); got != nil {
		t.Errorf("address of a still held after its unpublish landed: %v", got)
	}
	if !g.cni.journal.empty() || !g.cni.health.reachable() {
		t.Errorf("after drain: journal %+v, etcd %+v", g.cni.journal.stats(), g.cni.health.state())
	}
	// A drained journal is not replayed again.
	h := newFixtureWith(t, "10.9.0.0/29", f.dir)
	if !h.cni.journal.empty() {
		t.Errorf("journal after drain and restart: %+v", h.cni.journal.stats())
	}
}

// A new ADD of an attachment whose DEL waits in the journal keeps its
// address: the queued unpublish must not release it later.
func TestCNIOfflineReAddCancelsUnpublish(t *testing.T) {
	f := newFixtureWith(t, "10.9.0.0/29", "")
	ip := f.addEndpoint(t, testNet, owner("a"))
	f.cni.health.observe(fmt.Errorf("x: %w", context.DeadlineExceeded), time.Now())
	if code, ae := f.call(t, api.PathRelease, api.ReleaseRequest{Network: testNet, Owner: owner("a")}, nil); code != 200 {
		t.Fatalf("offline DEL: %d %+v", code, ae)
	}
	if again := f.addEndpoint(t, testNet, owner("a")); again != ip {
		t.Errorf("re-ADD got %s, want its held %s", again, ip)
	}
	if err := f.cni.pub.drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.alloc.Lookup(owner("a")); len(got) != 1 || got[0] != ip {
		t.Errorf("after drain a holds %v, want %s", got, ip)
	}
	if _, ok := f.eps.get(owner("a")); !ok {
		t.Error("re-added endpoint not published after drain")
	}
}

// A refusal by etcd (not an outage) is an error, never journaled.
func TestCNIRefusalNotJournaled(t *testing.T) {
	f := newFixture(t)
	var ar api.AllocateResponse
	f.call(t, api.PathAllocate, api.AllocateRequest{Network: testNet, Owner: owner("a")}, &ar)
	f.eps.setFail(errors.New("etcdserver: permission denied"))
	code, ae := f.call(t, api.PathCommit, api.CommitRequest{Network: testNet, Owner: owner("a"), IPs: []netip.Addr{ar.IPs[0].Addr()}}, nil)
	if code == 200 || ae.Code != codeTryAgainLater {
		t.Errorf("commit refused by etcd: %d %+v, want an error", code, ae)
	}
	if !f.cni.journal.empty() || !f.cni.health.reachable() {
		t.Errorf("refusal journaled (%+v) or counted as an outage (%+v)", f.cni.journal.stats(), f.cni.health.state())
	}
}

// TestCNINamespaceWrittenOncePerNamespace: an ADD writes the namespace record
// only when the agent's view lacks it, not once per pod: one etcd write less
// per ADD, and one fewer exposure to an etcd leader election.
func TestCNINamespaceWrittenOncePerNamespace(t *testing.T) {
	f := newFixture(t)
	f.cni.namespaceKnown = func(name string) bool {
		f.eps.mu.Lock()
		defer f.eps.mu.Unlock()
		_, ok := f.eps.nss[name]
		return ok
	}
	for _, id := range []string{"a", "b", "c"} {
		var ar api.AllocateResponse
		if code, ae := f.call(t, api.PathAllocate, api.AllocateRequest{Network: testNet, Owner: owner(id), Pod: api.PodInfo{Namespace: "x", Name: id}}, &ar); code != 200 {
			t.Fatalf("allocate %s: %d %+v", id, code, ae)
		}
		if code, ae := f.call(t, api.PathCommit, api.CommitRequest{Network: testNet, Owner: owner(id), Pod: api.PodInfo{Namespace: "x", Name: id}, IPs: []netip.Addr{ar.IPs[0].Addr()}}, nil); code != 200 {
			t.Fatalf("commit %s: %d %+v", id, code, ae)
		}
	}
	f.eps.mu.Lock()
	defer f.eps.mu.Unlock()
	if _, ok := f.eps.nss["x"]; !ok || f.eps.ensures != 1 {
		t.Errorf("namespace x written %d times (present %v), want once", f.eps.ensures, ok)
	}
}

// TestCNIKubeLabelsAtAdd: a kubelet's ADD (K8S_POD_UID) publishes the
// endpoint with the labels and named ports skein-kube mirrored for that pod,
// so label-selecting policies cover it from its first packet; a record of
// another pod of the same name, or none, leaves what the runtime gave.
func TestCNIKubeLabelsAtAdd(t *testing.T) {
	f := newFixtureWith(t, "10.9.0.0/29", "")
	mirrored := map[string]api.KubePod{
		"shop/web-0": {UID: "uid-new", Labels: map[string]string{"app": "web", "tier": "front"}, Ports: []api.NamedPort{{Name: "http", Port: 8080, Protocol: api.ProtocolTCP}}},
		"shop/db-0":  {UID: "uid-old-db", Labels: map[string]string{"app": "db"}},
	}
	f.cni.kubePod = func(_ context.Context, ns, name string) (api.KubePod, bool, error) {
		p, ok := mirrored[ns+"/"+name]
		return p, ok, nil
	}
	for _, c := range []struct {
		id, name, uid string
		want          map[string]string
		wantPorts     int
	}{
		{"k1", "web-0", "uid-new", map[string]string{"app": "web", "tier": "front"}, 1},
		{"k2", "db-0", "uid-new-db", map[string]string{"from": "runtime"}, 0}, // the record is an earlier pod's
		{"k3", "cache-0", "uid-c", map[string]string{"from": "runtime"}, 0},   // nothing mirrored yet
		{"k4", "web-0", "", map[string]string{"from": "runtime"}, 0},          // not a kubelet: no UID
	} {
		pod := api.PodInfo{Namespace: "shop", Name: c.name, UID: c.uid, Labels: map[string]string{"from": "runtime"}}
		var ar api.AllocateResponse
		if code, ae := f.call(t, api.PathAllocate, api.AllocateRequest{Network: testNet, Owner: owner(c.id), Pod: pod}, &ar); code != 200 {
			t.Fatalf("%s: allocate: %d %+v", c.id, code, ae)
		}
		if code, ae := f.call(t, api.PathCommit, api.CommitRequest{Network: testNet, Owner: owner(c.id), IPs: []netip.Addr{ar.IPs[0].Addr()}, HostIface: "sk" + c.id, Pod: pod}, nil); code != 200 {
			t.Fatalf("%s: commit: %d %+v", c.id, code, ae)
		}
		ep := f.eps.eps[owner(c.id)]
		if !maps.Equal(ep.Labels, c.want) || len(ep.Ports) != c.wantPorts {
			t.Errorf("%s (%s uid %q): published labels %v ports %v, want %v and %d ports", c.id, c.name, c.uid, ep.Labels, ep.Ports, c.want, c.wantPorts)
		}
	}
}

// The release answers before the status update that follows it: a client
// reading the reply to its end (the plugin does) has it while the update
// still runs.
func TestReleaseAnswerBeforeStatusUpdate(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.addEndpoint(t, testNet, owner("a"))
	var blocking atomic.Bool
	unblock := make(chan struct{})
	defer close(unblock)
	f.cni.onChange = func() {
		if blocking.Load() {
			<-unblock
		}
	}
	blocking.Store(true)
	type reply struct {
		body []byte
		err  error
	}
	got := make(chan reply, 1)
	go func() {
		b, _ := json.Marshal(api.ReleaseRequest{Network: testNet, Owner: owner("a")})
		r, err := http.Post(f.srv.URL+api.PathRelease, "application/json", bytes.NewReader(b))
		if err != nil {
			got <- reply{err: err}
			return
		}
		defer r.Body.Close()
		body, err := io.ReadAll(r.Body)
		got <- reply{body, err}
	}()
	select {
	case r := <-got:
		var rr api.ReleaseResponse
		if r.err != nil || json.Unmarshal(r.body, &rr) != nil || len(rr.Released) != 1 {
			t.Errorf("release reply = %q, %v; want one released address", r.body, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("release reply not complete while the status update runs")
	}
}

// TestCNIDualStack: in a dual-stack cluster ADD gets an IPv4 and an IPv6
// address and both gateways; commit, CHECK and DEL cover both; when IPv6 is
// exhausted the ADD fails and holds no IPv4 address either.
func TestCNIDualStack(t *testing.T) {
	f := newFixtureWith(t, "10.9.0.0/24,fd00:9::/126", "")
	var ar api.AllocateResponse
	if code, ae := f.call(t, api.PathAllocate, api.AllocateRequest{Network: testNet, Owner: owner("a")}, &ar); code != 200 {
		t.Fatalf("allocate: %d %+v", code, ae)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.9.0.1/32"), netip.MustParsePrefix("fd00:9::1/128")}
	if !slices.Equal(ar.IPs, want) || ar.Gateway.String() != api.GatewayIP || ar.Gateway6.String() != api.GatewayIPv6 {
		t.Fatalf("allocate response %+v, want IPs %v and gateways %s, %s", ar, want, api.GatewayIP, api.GatewayIPv6)
	}
	ips := []netip.Addr{want[0].Addr(), want[1].Addr()}
	if code, ae := f.call(t, api.PathCommit, api.CommitRequest{Network: testNet, Owner: owner("a"), IPs: ips, HostIface: "skx"}, nil); code != 200 {
		t.Fatalf("commit: %d %+v", code, ae)
	}
	if ep := f.eps.eps[owner("a")]; !slices.Equal(ep.IPs, ips) {
		t.Errorf("published endpoint IPs %v, want %v", ep.IPs, ips)
	}
	var cr api.CheckResponse
	if code, _ := f.call(t, api.PathCheck, api.ReleaseRequest{Network: testNet, Owner: owner("a")}, &cr); code != 200 || !slices.Equal(cr.IPs, ips) {
		t.Errorf("check: %d %+v, want IPs %v", code, cr, ips)
	}
	for _, id := range []string{"b", "c"} {
		if code, ae := f.call(t, api.PathAllocate, api.AllocateRequest{Network: testNet, Owner: owner(id)}, nil); code != 200 {
			t.Fatalf("allocate %s: %d %+v", id, code, ae)
		}
	}
	// fd00:9::/126 holds 3 pod addresses: the fourth ADD gets nothing.
	code, ae := f.call(t, api.PathAllocate, api.AllocateRequest{Network: testNet, Owner: owner("d")}, nil)
	if code == 200 || ae.Code != codePoolExhausted {
		t.Errorf("allocate with IPv6 exhausted: %d %+v, want code %d", code, ae, codePoolExhausted)
	}
	if got := f.alloc.Lookup(owner("d")); len(got) != 0 {
		t.Errorf("failed ADD left %v held", got)
	}
	var rr api.ReleaseResponse
	if code, ae := f.call(t, api.PathRelease, api.ReleaseRequest{Network: testNet, Owner: owner("a")}, &rr); code != 200 || !slices.Equal(rr.Released, ips) {
		t.Fatalf("release: %d %+v %+v, want %v released", code, ae, rr, ips)
	}
}
