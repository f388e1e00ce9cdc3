package main

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/skeinnet/skein/api"
)

// fakeAgent is a test double standing in for skeind: it speaks the wire
// protocol of api/wire.go on a unix socket, with a tiny in-memory allocator.
// skeind has its own tests; end-to-end tests with the real agent live in e2e.
type fakeAgent struct {
	socket string
	ln     *net.UnixListener
	srv    *http.Server

	mu sync.Mutex
	// pool is IPv4, or IPv6 for an IPv6-only agent (no IPv4 address,
	// gateway or pool6).
	pool netip.Prefix
	// pool6, when set, makes the agent dual-stack: each attachment also
	// gets the address of pool6 whose last byte is its IPv4 address's.
	pool6  netip.Prefix
	mtu    int
	ready  bool
	leases map[api.Owner]*fakeLease
	calls  []string // paths, in order
	// failCommit, when set, is the error every commit answers with.
	failCommit *api.AgentError
	// hangCommit makes commits never answer (until the client gives up).
	hangCommit bool
	commits    []api.CommitRequest
}

type fakeLease struct {
	ips       []netip.Addr
	published bool
}

// newFakeAgent serves on dir/agent.sock until the test ends.
func newFakeAgent(t *testing.T, dir string) *fakeAgent {
	t.Helper()
	a := &fakeAgent{
		socket: filepath.Join(dir, "agent.sock"),
		pool:   netip.MustParsePrefix("198.18.0.0/24"),
		mtu:    1450,
		ready:  true,
		leases: map[api.Owner]*fakeLease{},
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: a.socket, Net: "unix"})
	if err != nil {
		t.Fatalf("listen %s: %v", a.socket, err)
	}
	a.ln = ln
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+api.PathAllocate, a.allocate)
	mux.HandleFunc("POST "+api.PathCommit, a.commit)
	mux.HandleFunc("POST "+api.PathRelease, a.release)
	mux.HandleFunc("POST "+api.PathCheck, a.check)
	mux.HandleFunc("POST "+api.PathGC, a.gc)
	mux.HandleFunc("GET "+api.PathStatus, a.status)
	a.srv = &http.Server{Handler: mux}
	go func() {
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("fake agent: %v", err)
		}
	}()
	t.Cleanup(a.stop)
	return a
}

// stopKeepSocket shuts the agent down but leaves the socket file, so clients
// get "connection refused" rather than "no such file".
func (a *fakeAgent) stopKeepSocket() {
	a.ln.SetUnlinkOnClose(false)
	a.stop()
}

// stop shuts the agent down and removes the socket.
func (a *fakeAgent) stop() {
	_ = a.srv.Close() // test double; a close error changes nothing
}

func (a *fakeAgent) record(path string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, path)
}

// Calls returns the paths called so far.
func (a *fakeAgent) Calls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.calls)
}

// Held returns the addresses o holds, nil when none.
func (a *fakeAgent) Held(o api.Owner) []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	if l := a.leases[o]; l != nil {
		return slices.Clone(l.ips)
	}
	return nil
}

// Commits returns the commit requests received.
func (a *fakeAgent) Commits() []api.CommitRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.commits)
}

func (a *fakeAgent) setFailCommit(e *api.AgentError) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failCommit = e
}

func (a *fakeAgent) setHangCommit(h bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.hangCommit = h
}

func (a *fakeAgent) setReady(r bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ready = r
}

func decodeReq(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, api.AgentError{Code: 6, Message: "decode request", Details: err.Error()})
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client sees a short body
}

func (a *fakeAgent) allocate(w http.ResponseWriter, r *http.Request) {
	a.record(api.PathAllocate)
	var req api.AllocateRequest
	if !decodeReq(w, r, &req) {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	resp := api.AllocateResponse{Gateway: netip.MustParseAddr(api.GatewayIP), MTU: a.mtu}
	if a.pool.Addr().Is6() {
		resp.Gateway, resp.Gateway6 = netip.Addr{}, netip.MustParseAddr(api.GatewayIPv6)
	}
	if l := a.leases[req.Owner]; l != nil {
		resp.Existing = true
		for _, ip := range l.ips {
			resp.IPs = append(resp.IPs, netip.PrefixFrom(ip, ip.BitLen()))
		}
		if len(l.ips) > 1 {
			resp.Gateway6 = netip.MustParseAddr(api.GatewayIPv6)
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	used := map[netip.Addr]bool{}
	for _, l := range a.leases {
		for _, ip := range l.ips {
			used[ip] = true
		}
	}
	for ip := a.pool.Addr().Next().Next(); a.pool.Contains(ip); ip = ip.Next() {
		if !used[ip] {
			l := &fakeLease{ips: []netip.Addr{ip}}
			resp.IPs = []netip.Prefix{netip.PrefixFrom(ip, ip.BitLen())}
			if a.pool6.IsValid() {
				b := a.pool6.Addr().As16()
				b[15] = ip.As4()[3]
				ip6 := netip.AddrFrom16(b)
				l.ips = append(l.ips, ip6)
				resp.IPs = append(resp.IPs, netip.PrefixFrom(ip6, 128))
				resp.Gateway6 = netip.MustParseAddr(api.GatewayIPv6)
			}
			a.leases[req.Owner] = l
			writeJSON(w, http.StatusOK, resp)
			return
		}
	}
	writeJSON(w, http.StatusServiceUnavailable, api.AgentError{Code: 11, Message: "pool exhausted"})
}

func (a *fakeAgent) commit(w http.ResponseWriter, r *http.Request) {
	a.record(api.PathCommit)
	var req api.CommitRequest
	if !decodeReq(w, r, &req) {
		return
	}
	a.mu.Lock()
	hang := a.hangCommit
	a.mu.Unlock()
	if hang {
		<-r.Context().Done()
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.commits = append(a.commits, req)
	if a.failCommit != nil {
		writeJSON(w, http.StatusServiceUnavailable, a.failCommit)
		return
	}
	l := a.leases[req.Owner]
	if l == nil {
		writeJSON(w, http.StatusNotFound, api.AgentError{Code: 3, Message: "owner holds no address", Details: req.Owner.String()})
		return
	}
	l.published = true
	writeJSON(w, http.StatusOK, api.CommitResponse{Endpoint: api.Endpoint{
		Namespace: req.Pod.Namespace, Name: req.Pod.Name, IPs: req.IPs,
		ContainerID: req.ContainerID, IfName: req.IfName, HostIface: req.HostIface,
	}})
}

func (a *fakeAgent) release(w http.ResponseWriter, r *http.Request) {
	a.record(api.PathRelease)
	var req api.ReleaseRequest
	if !decodeReq(w, r, &req) {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var resp api.ReleaseResponse
	if l := a.leases[req.Owner]; l != nil {
		resp.Released = l.ips
		delete(a.leases, req.Owner)
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *fakeAgent) check(w http.ResponseWriter, r *http.Request) {
	a.record(api.PathCheck)
	var req api.ReleaseRequest
	if !decodeReq(w, r, &req) {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	resp := api.CheckResponse{MTU: a.mtu, IPs: []netip.Addr{}}
	if l := a.leases[req.Owner]; l != nil {
		resp.IPs, resp.Published = l.ips, l.published
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *fakeAgent) gc(w http.ResponseWriter, r *http.Request) {
	a.record(api.PathGC)
	var req api.GCRequest
	if !decodeReq(w, r, &req) {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	resp := api.GCResponse{Freed: []api.Owner{}}
	for o := range a.leases {
		if !slices.Contains(req.Valid, o) {
			resp.Freed = append(resp.Freed, o)
			delete(a.leases, o)
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *fakeAgent) status(w http.ResponseWriter, _ *http.Request) {
	a.record(api.PathStatus)
	a.mu.Lock()
	defer a.mu.Unlock()
	st := api.AgentStatus{Node: "test-node", Ready: a.ready}
	if a.ready {
		st.Blocks = []string{a.pool.String()}
	} else {
		st.Reason = "no block claimed yet"
	}
	writeJSON(w, http.StatusOK, st)
}
