package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

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
	alloc *ipam.Allocator
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

// newFixtureWith serves the CNI API over a real ipam.Allocator on a pool of
// /30 blocks, with its state (and journal) in dir (a fresh one when empty).
func newFixtureWith(t *testing.T, pool, dir string) *fixture {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	f := &fixture{eps: &memEndpoints{eps: map[api.Owner]api.Endpoint{}, nss: map[string]api.Namespace{}}, now: time.Unix(1000, 0), dir: dir}
	alloc, err := ipam.New(context.Background(), ipam.Config{
		Node:     "n1",
		Pools:    []api.Pool{{CIDR: netip.MustParsePrefix(pool), BlockSize: 30}},
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
		probe:     func(context.Context) error { return f.eps.failure() },
		published: func(ep api.Endpoint) { s.markPublished(api.Owner{ContainerID: ep.ContainerID, IfName: ep.IfName}, true) },
		release:   releaseAfterUnpublish(alloc, s.forget, s.onChange, log),
		log:       log,
		kick:      make(chan struct{}, 1),
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
