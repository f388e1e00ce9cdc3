package vxlan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
)

// fakeDP is an in-memory Dataplane. Its state reads as sorted text lines.
type fakeDP struct {
	mu       sync.Mutex
	exists   bool
	st       State
	applies  int            // Apply calls, failed ones included
	links    int            // link creations
	fail     map[string]int // op string → failures left
	linkFail error          // returned by EnsureLink when set
	log      []string       // successful ops, in order
}

func newFake() *fakeDP {
	return &fakeDP{st: State{Neighs: map[netip.Addr]Neigh{}, FDB: map[FDBKey]FDBEntry{}, Routes: map[netip.Prefix]Route{}}}
}

func (f *fakeDP) EnsureLink(_ context.Context, spec LinkSpec, addr, addr6 netip.Prefix) (Devices, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.linkFail != nil {
		return Devices{}, f.linkFail
	}
	if !f.exists || spec.Incompat(f.st.Link) != "" {
		// A new device starts empty; the kernel drops what hung on the old one.
		f.links++
		f.exists = true
		f.st.Neighs = map[netip.Addr]Neigh{}
		f.st.FDB = map[FDBKey]FDBEntry{}
		for k, r := range f.st.Routes {
			if !r.Direct {
				delete(f.st.Routes, k)
			}
		}
	}
	f.st.Link = spec
	f.st.Addr = addr
	return Devices{Overlay: 10, Underlay: spec.UnderlayIndex}, nil
}

func (f *fakeDP) Observe(context.Context, Devices) (State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.Clone(), nil
}

func (f *fakeDP) Apply(_ context.Context, _ Devices, op Op) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies++
	if f.fail[op.String()] > 0 {
		f.fail[op.String()]--
		return errors.New("injected failure")
	}
	switch {
	case op.Neigh != nil && op.Kind == OpSet:
		f.st.Neighs[op.Neigh.IP] = *op.Neigh
	case op.Neigh != nil:
		delete(f.st.Neighs, op.Neigh.IP)
	case op.FDB != nil && op.Kind == OpSet:
		// Like the kernel: one destination per unicast MAC, replaced.
		for k := range f.st.FDB {
			if k.MAC == op.FDB.Key().MAC {
				delete(f.st.FDB, k)
			}
		}
		f.st.FDB[op.FDB.Key()] = *op.FDB
	case op.FDB != nil:
		delete(f.st.FDB, op.FDB.Key())
	case op.Route != nil && op.Kind == OpSet:
		f.st.Routes[op.Route.Dst] = *op.Route
	case op.Route != nil:
		delete(f.st.Routes, op.Route.Dst)
	}
	f.log = append(f.log, op.String())
	return nil
}

func (f *fakeDP) lines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.Lines()
}

// ops returns and resets the Apply and link counters.
func (f *fakeDP) ops() (applies, links int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	applies, links = f.applies, f.links
	f.applies, f.links, f.log = 0, 0, nil
	return applies, links
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newReconciler(t *testing.T, dp Dataplane) *Reconciler {
	t.Helper()
	r, err := NewReconciler(ReconcilerConfig{Dataplane: dp, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// syncConverges runs Sync and checks the fake holds exactly want, and that a
// second Sync makes no operation.
func syncConverges(t *testing.T, r *Reconciler, f *fakeDP, want State) {
	t.Helper()
	if err := r.Sync(t.Context()); err != nil {
		t.Fatalf("Sync() = %v", err)
	}
	if d := gocmp.Diff(want.Lines(), f.lines()); d != "" {
		t.Fatalf("dataplane mismatch (-want +got):\n%s", d)
	}
	f.ops()
	if err := r.Sync(t.Context()); err != nil {
		t.Fatalf("second Sync() = %v", err)
	}
	if applies, links := f.ops(); applies != 0 || links != 0 {
		t.Fatalf("second Sync() made %d operations and %d links, want none", applies, links)
	}
}

func TestSyncConvergesFromEmpty(t *testing.T) {
	t.Parallel()
	f := newFake()
	r := newReconciler(t, f)
	want := Plan(selfCfg, []Peer{peerB, peerC})
	r.Set(want)
	if err := r.Sync(t.Context()); err != nil {
		t.Fatalf("Sync() = %v", err)
	}
	wantLog := []string{
		"set neigh 10.244.0.64 lladdr 02:00:00:00:00:0b permanent",
		"set neigh 10.244.0.128 lladdr 02:00:00:00:00:0c permanent",
		"set fdb 02:00:00:00:00:0b dst 192.0.2.2",
		"set fdb 02:00:00:00:00:0c dst 198.51.100.3",
		"set route 10.244.0.64/26 via 10.244.0.64 onlink",
		"set route 10.244.0.128/26 via 10.244.0.128 onlink",
		"set route 10.244.1.0/26 via 10.244.0.128 onlink",
	}
	if d := gocmp.Diff(wantLog, f.log); d != "" {
		t.Errorf("operations (-want +got):\n%s", d)
	}
	syncConverges(t, r, f, want)
	if d := r.Debug(); d.LastOps != 0 || d.Syncs != 3 || d.LastError != "" {
		t.Errorf("Debug() = %+v, want 3 syncs, the last with no op and no error", d)
	}
}

func TestSyncBeforeSetTouchesNothing(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.st.Routes[pfx("10.9.0.0/24")] = Route{Dst: pfx("10.9.0.0/24"), Gw: ip("10.9.0.1"), OnLink: true}
	r := newReconciler(t, f)
	if err := r.Sync(t.Context()); err != nil {
		t.Fatalf("Sync() = %v", err)
	}
	if applies, links := f.ops(); applies != 0 || links != 0 || len(f.st.Routes) != 1 {
		t.Errorf("Sync() before Set made %d operations and %d links, left %d routes; want 0, 0, 1", applies, links, len(f.st.Routes))
	}
}

func TestSyncRemovesStaleAtStart(t *testing.T) {
	t.Parallel()
	f := newFake()
	// What an earlier run left: the device, a dead peer and a wrong entry.
	old := Plan(selfCfg, []Peer{peerC, withBlock(peerB, pfx("10.244.9.0/26"))})
	f.exists = true
	f.st = old.Clone()
	f.st.Neighs[peerB.VTEPIP] = Neigh{IP: peerB.VTEPIP, MAC: mac("02:00:00:00:00:ee")}
	r := newReconciler(t, f)
	want := Plan(selfCfg, []Peer{peerB})
	r.Set(want)
	if err := r.Sync(t.Context()); err != nil {
		t.Fatalf("Sync() = %v", err)
	}
	// Sets first, then routes go before the neighbours they resolve through.
	wantLog := []string{
		"set neigh 10.244.0.64 lladdr 02:00:00:00:00:0b permanent",
		"del route 10.244.0.128/26 via 10.244.0.128 onlink",
		"del route 10.244.1.0/26 via 10.244.0.128 onlink",
		"del route 10.244.9.0/26 via 10.244.0.64 onlink",
		"del neigh 10.244.0.128 lladdr 02:00:00:00:00:0c permanent",
		"del fdb 02:00:00:00:00:0c dst 198.51.100.3",
	}
	if d := gocmp.Diff(wantLog, f.log); d != "" {
		t.Errorf("operations (-want +got):\n%s", d)
	}
	syncConverges(t, r, f, want)
}

func TestSetStoresCopy(t *testing.T) {
	t.Parallel()
	f := newFake()
	r := newReconciler(t, f)
	st := Plan(selfCfg, []Peer{peerB})
	r.Set(st)
	want := st.Clone()
	clear(st.Routes)
	for k, n := range st.Neighs {
		n.MAC[5] = 0xee
		st.Neighs[k] = n
	}
	syncConverges(t, r, f, want)
}

// TestSyncRandomWalk walks through desired states in random orders; every
// step must converge and be stable.
func TestSyncRandomWalk(t *testing.T) {
	t.Parallel()
	peerD := Peer{Node: "node-d", UnderlayIP: ip("192.0.2.4"), VTEPMAC: mac("02:00:00:00:00:0d"), VTEPIP: ip("172.31.0.4"),
		Blocks: []netip.Prefix{pfx("10.244.3.0/26")}, SameSubnet: true}
	movedB := peerB
	movedB.UnderlayIP = ip("192.0.2.22")
	direct := selfCfg
	direct.DirectRouting = true
	otherVNI := selfCfg
	otherVNI.VNI = 7
	otherVTEP := selfCfg
	otherVTEP.VTEPIP = ip("10.244.0.1")
	states := []State{
		Plan(selfCfg, nil),
		Plan(selfCfg, []Peer{peerB}),
		Plan(selfCfg, []Peer{peerB, peerC}),
		Plan(selfCfg, []Peer{peerA, peerB, peerC, peerD}),
		Plan(selfCfg, []Peer{withBlock(peerB, pfx("10.244.2.0/26")), peerD}),
		Plan(selfCfg, []Peer{movedB, peerC}),
		Plan(direct, []Peer{peerB, peerC, peerD}),
		Plan(direct, []Peer{movedB}),
		Plan(otherVNI, []Peer{peerB, peerC}),
		Plan(otherVTEP, []Peer{peerC, peerD}),
	}
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			rnd := rand.New(rand.NewPCG(seed, 0))
			f := newFake()
			r := newReconciler(t, f)
			for _, i := range rnd.Perm(len(states)) {
				r.Set(states[i])
				syncConverges(t, r, f, states[i])
			}
		})
	}
}

func TestSyncRetriesFailedOpAndAppliesTheRest(t *testing.T) {
	t.Parallel()
	f := newFake()
	bad := "set route 10.244.0.128/26 via 10.244.0.128 onlink"
	f.fail = map[string]int{bad: 1}
	r := newReconciler(t, f)
	want := Plan(selfCfg, []Peer{peerB, peerC})
	r.Set(want)

	err := r.Sync(t.Context())
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("Sync() = %v, want an error naming %q", err, bad)
	}
	wantLines := slices.DeleteFunc(want.Lines(), func(l string) bool { return l == strings.TrimPrefix(bad, "set ") })
	if d := gocmp.Diff(wantLines, f.lines()); d != "" {
		t.Errorf("after a failed op, dataplane mismatch (-want +got):\n%s", d)
	}
	d := r.Debug()
	if d.LastError == "" || d.Failures != 1 {
		t.Errorf("Debug() = %+v, want the last error and 1 failure", d)
	}
	if gd := gocmp.Diff(wantLines, d.Actual); gd != "" {
		t.Errorf("Debug().Actual mismatch (-want +got):\n%s", gd)
	}

	syncConverges(t, r, f, want)
	if d := r.Debug(); d.LastError != "" {
		t.Errorf("after recovery, Debug().LastError = %q, want none", d.LastError)
	}
}

func TestSyncEnsureLinkFails(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.linkFail = errors.New("no such device")
	r := newReconciler(t, f)
	r.Set(Plan(selfCfg, []Peer{peerB}))
	err := r.Sync(t.Context())
	if err == nil || !strings.Contains(err.Error(), "ensure link skein.vxlan: no such device") {
		t.Errorf("Sync() = %v, want the link error", err)
	}
	if applies, _ := f.ops(); applies != 0 {
		t.Errorf("Sync() made %d operations without a link, want 0", applies)
	}
}

// TestRunRetriesUntilConverged drives the Reconciler through its loop: an op
// failing three times is retried with backoff until the dataplane converges.
func TestRunRetriesUntilConverged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.fail = map[string]int{"set fdb 02:00:00:00:00:0b dst 192.0.2.2": 3}
		r := newReconciler(t, f)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()

		want := Plan(selfCfg, []Peer{peerB, peerC})
		r.Set(want)
		time.Sleep(time.Minute) // virtual: room for the backoff
		synctest.Wait()
		if d := gocmp.Diff(want.Lines(), f.lines()); d != "" {
			t.Errorf("dataplane mismatch (-want +got):\n%s", d)
		}
		if d := r.Debug(); d.Failures != 3 || d.LastError != "" {
			t.Errorf("Debug() = %+v, want 3 failures and no last error", d)
		}

		// A new desired state is applied promptly.
		want = Plan(selfCfg, []Peer{peerC})
		r.Set(want)
		synctest.Wait()
		if d := gocmp.Diff(want.Lines(), f.lines()); d != "" {
			t.Errorf("after Set, dataplane mismatch (-want +got):\n%s", d)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	})
}

func TestServeHTTPDebug(t *testing.T) {
	t.Parallel()
	f := newFake()
	r := newReconciler(t, f)
	want := Plan(selfCfg, []Peer{peerB})
	r.Set(want)
	if err := r.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	r.ServeHTTPDebug(rec, httptest.NewRequest("GET", "/debug/vxlan", nil))
	var got DebugState
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("decode %s: %v", rec.Body, err)
	}
	if got.LastSync.IsZero() || got.Routes != 1 || got.Neighs != 1 || got.FDB != 1 || got.LastOps != 3 {
		t.Errorf("debug state = %+v, want a sync time, 1 route, 1 neigh, 1 fdb, 3 ops", got)
	}
	if d := gocmp.Diff(want.Lines(), got.Desired); d != "" {
		t.Errorf("desired mismatch (-want +got):\n%s", d)
	}
	if d := gocmp.Diff(want.Lines(), got.Actual); d != "" {
		t.Errorf("actual mismatch (-want +got):\n%s", d)
	}
}

func TestNewReconcilerNeedsDataplane(t *testing.T) {
	t.Parallel()
	if _, err := NewReconciler(ReconcilerConfig{}); err == nil {
		t.Error("NewReconciler() without Dataplane = nil error")
	}
}

// countingDP counts Observe calls: the incremental path must not dump.
type countingDP struct {
	*fakeDP
	observes int
}

func (c *countingDP) Observe(ctx context.Context, d Devices) (State, error) {
	c.observes++
	return c.fakeDP.Observe(ctx, d)
}

// TestUpdateRandomWalk drives a Reconciler with a Planner's changes through a
// random walk of peer changes: after every Update + Sync the fake kernel
// equals Plan from scratch, no Sync but the first observed the kernel, and
// the operations made are exactly the changes.
func TestUpdateRandomWalk(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cfg := Config{
		Node: "self", UnderlayIP: netip.MustParseAddr("192.0.2.100"), UnderlayIfIndex: 3,
		VTEPMAC: net.HardwareAddr{0x0e, 0, 0, 0, 0, 0x99}, VTEPIP: netip.MustParseAddr("10.245.0.0"),
	}
	f := &countingDP{fakeDP: newFake()}
	r := newReconciler(t, f)
	p := NewPlanner(cfg, nil)
	r.Set(p.State())
	if err := r.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	for step := range 500 {
		node := fmt.Sprintf("n%02d", rng.IntN(16))
		var c Changes
		if rng.IntN(4) == 0 {
			c = p.DeletePeer(node)
		} else {
			c = p.SetPeer(randomPeer(rng, node))
		}
		f.ops()
		r.Update(c)
		if err := r.Sync(t.Context()); err != nil {
			t.Fatalf("step %d: Sync() = %v", step, err)
		}
		if d := gocmp.Diff(p.State().Lines(), f.lines()); d != "" {
			t.Fatalf("step %d: kernel != planner (-planner +kernel):\n%s", step, d)
		}
		if applies, _ := f.ops(); applies > c.Len() {
			t.Fatalf("step %d: %d operations for %d changes", step, applies, c.Len())
		}
	}
	if f.observes != 1 {
		t.Errorf("Observe called %d times, want 1 (the first full sync only)", f.observes)
	}
	// Drift: something removes every route behind the reconciler's back.
	// Trigger (as a netlink event would) makes the next sync a full one.
	f.mu.Lock()
	clear(f.st.Routes)
	f.mu.Unlock()
	r.Trigger()
	if err := r.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d := gocmp.Diff(p.State().Lines(), f.lines()); d != "" {
		t.Fatalf("after Trigger: kernel != planner (-planner +kernel):\n%s", d)
	}
	if f.observes != 2 {
		t.Errorf("Observe called %d times after Trigger, want 2", f.observes)
	}
}

// TestUpdateFailureFallsBackToFullSync: a failed incremental op is retried by
// a full sync, which repairs whatever state it left.
func TestUpdateFailureFallsBackToFullSync(t *testing.T) {
	cfg := Config{Node: "self", UnderlayIP: netip.MustParseAddr("192.0.2.1"), VTEPMAC: net.HardwareAddr{2, 0, 0, 9, 9, 9}, VTEPIP: netip.MustParseAddr("10.0.0.0")}
	f := &countingDP{fakeDP: newFake()}
	r := newReconciler(t, f)
	p := NewPlanner(cfg, nil)
	r.Set(p.State())
	if err := r.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	peer := Peer{Node: "a", UnderlayIP: netip.MustParseAddr("192.0.2.2"), VTEPIP: netip.MustParseAddr("10.1.0.0"),
		VTEPMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, Blocks: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/26")}}
	c := p.SetPeer(peer)
	f.mu.Lock()
	f.fail = map[string]int{"set route 10.1.0.0/26 via 10.1.0.0 onlink": 1}
	f.mu.Unlock()
	r.Update(c)
	if err := r.Sync(t.Context()); err == nil {
		t.Fatal("Sync() = nil, want the injected failure")
	}
	if err := r.Sync(t.Context()); err != nil {
		t.Fatalf("retry Sync() = %v", err)
	}
	if d := gocmp.Diff(p.State().Lines(), f.lines()); d != "" {
		t.Fatalf("kernel != planner after retry (-planner +kernel):\n%s", d)
	}
	if f.observes != 2 {
		t.Errorf("Observe called %d times, want 2 (start, and the full retry)", f.observes)
	}
}
