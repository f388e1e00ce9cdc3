package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/skeinnet/skein/api"
)

// holdStore is a fakeStore whose calls can be held: while held, a call
// announces itself on entered and waits until resume is closed.
type holdStore struct {
	*fakeStore
	mu      sync.Mutex
	hold    map[string]chan struct{} // method → closed to let held calls go on
	entered chan string
	lists   int // ListBlocks calls
}

func newHoldStore() *holdStore {
	return &holdStore{fakeStore: newFakeStore(), hold: map[string]chan struct{}{}, entered: make(chan string, 64)}
}

// holdCalls makes calls of method wait until the returned func is called.
func (s *holdStore) holdCalls(method string) (resume func()) {
	c := make(chan struct{})
	s.mu.Lock()
	s.hold[method] = c
	s.mu.Unlock()
	return sync.OnceFunc(func() {
		s.mu.Lock()
		delete(s.hold, method)
		s.mu.Unlock()
		close(c)
	})
}

func (s *holdStore) wait(ctx context.Context, method string) error {
	s.mu.Lock()
	if method == "ListBlocks" {
		s.lists++
	}
	c := s.hold[method]
	s.mu.Unlock()
	if c == nil {
		return nil
	}
	s.entered <- method
	select {
	case <-c:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *holdStore) ListBlocks(ctx context.Context) ([]api.Block, error) {
	if err := s.wait(ctx, "ListBlocks"); err != nil {
		return nil, err
	}
	return s.fakeStore.ListBlocks(ctx)
}

func (s *holdStore) ClaimBlock(ctx context.Context, cidr netip.Prefix, node string) (bool, error) {
	if err := s.wait(ctx, "ClaimBlock"); err != nil {
		return false, err
	}
	return s.fakeStore.ClaimBlock(ctx, cidr, node)
}

func (s *holdStore) ReleaseBlock(ctx context.Context, cidr netip.Prefix, node string) error {
	if err := s.wait(ctx, "ReleaseBlock"); err != nil {
		return err
	}
	return s.fakeStore.ReleaseBlock(ctx, cidr, node)
}

func (s *holdStore) listCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lists
}

// awaitEntered waits until a held call of method has reached the store.
func (s *holdStore) awaitEntered(t *testing.T, method string) {
	t.Helper()
	select {
	case m := <-s.entered:
		if m != method {
			t.Fatalf("store call %s held, want %s", m, method)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s call reached the store", method)
	}
}

// prompt is how long a call that must not wait on the store may take; far
// above what it needs, far below the held store call.
const prompt = 5 * time.Second

// returnsPromptly runs f and fails the test unless it returns within prompt.
func returnsPromptly(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(prompt):
		t.Fatalf("%s waited on the held store call", what)
	}
}

// allocResult is what an Allocate running in the background returned.
type allocResult struct {
	ip  netip.Addr
	err error
}

func allocateAsync(a *Allocator, ctx context.Context, o api.Owner) <-chan allocResult {
	c := make(chan allocResult, 1)
	go func() {
		ip, _, err := a.Allocate(ctx, testNet, o, "")
		c <- allocResult{ip, err}
	}()
	return c
}

// TestNoWaitOnStoreDuringClaim: while a block claim hangs in the store,
// calls that need no new block answer at once, and Allocates that also need
// a block wait for that one claim instead of starting their own.
func TestNoWaitOnStoreDuringClaim(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newHoldStore()
	cfg := e.config()
	cfg.Store = s
	cfg.Cooldown = -1 // a released address is free at once
	a := e.newAlloc(cfg)
	for i := range 3 {
		mustAllocate(t, a, owner(fmt.Sprint("c", i)), "") // the home block is full
	}
	claimsBefore, listsBefore := s.fakeStore.claims, s.listCalls()
	waiting := waitHook(a)

	resume := s.holdCalls("ListBlocks")
	defer resume()
	first := allocateAsync(a, context.Background(), owner("new1"))
	s.awaitEntered(t, "ListBlocks")
	second := allocateAsync(a, context.Background(), owner("new2"))
	<-waiting
	ctx, cancel := context.WithCancel(context.Background())
	third := allocateAsync(a, ctx, owner("gives-up"))
	<-waiting

	returnsPromptly(t, "Lookup", func() {
		if got := a.Lookup(owner("c0")); len(got) != 1 {
			t.Errorf("Lookup(c0) = %v", got)
		}
	})
	returnsPromptly(t, "Stats", func() {
		if got := a.Stats(); got.Used != 3 || got.Blocks != 1 {
			t.Errorf("Stats() = %+v, want 3 used in 1 block", got)
		}
	})
	returnsPromptly(t, "Blocks, HomeBlock, VTEPAddr, Allocations, EmptyBlocks", func() {
		_, _, _, _, _ = a.Blocks(), a.HomeBlock(), a.VTEPAddr(), a.Allocations(), a.EmptyBlocks(0)
	})
	returnsPromptly(t, "ServeHTTPDebug", func() {
		a.ServeHTTPDebug(httptest.NewRecorder(), httptest.NewRequest("GET", "/debug/ipam", nil))
	})
	var freed netip.Addr
	returnsPromptly(t, "Release", func() { freed = mustRelease(t, a, owner("c1"))[0] })
	returnsPromptly(t, "Allocate into the home block", func() {
		if got := mustAllocate(t, a, owner("fits"), ""); got != freed {
			t.Errorf("Allocate(fits) = %s, want the freed %s", got, freed)
		}
	})
	returnsPromptly(t, "Allocate of an owner that holds an address", func() {
		if _, existing, err := a.Allocate(context.Background(), testNet, owner("c0"), ""); err != nil || !existing {
			t.Errorf("Allocate(c0) = %t, %v; want its address", existing, err)
		}
	})
	returnsPromptly(t, "Stale (what GC frees)", func() {
		if _, err := a.Stale(testNet, []api.Owner{owner("c0"), owner("c2"), owner("fits")}); err != nil {
			t.Errorf("Stale() = %v", err)
		}
	})
	returnsPromptly(t, "a waiter whose context ends", func() {
		cancel()
		if r := <-third; !errors.Is(r.err, context.Canceled) {
			t.Errorf("cancelled Allocate = %s, %v; want context.Canceled", r.ip, r.err)
		}
	})
	if got := s.listCalls() - listsBefore; got != 1 {
		t.Errorf("%d ListBlocks calls while one claim was held, want 1 (the others wait for it)", got)
	}

	resume()
	var got []netip.Addr
	for _, c := range []<-chan allocResult{first, second} {
		r := <-c
		if r.err != nil {
			t.Fatalf("Allocate after the claim = %v", r.err)
		}
		got = append(got, r.ip)
	}
	if got[0] == got[1] {
		t.Errorf("both waiters got %s", got[0])
	}
	if n := s.fakeStore.claims - claimsBefore; n != 1 {
		t.Errorf("%d block claims for two Allocates that fit in one new block, want 1", n)
	}
	if d := cmp.Diff(pfxs("10.0.0.12/30", "10.0.0.0/30"), a.Blocks(), cmpOpts); d != "" {
		t.Errorf("Blocks() (-want +got):\n%s", d)
	}
	for _, ip := range got {
		if !pfx("10.0.0.0/30").Contains(ip) {
			t.Errorf("waiter got %s, outside the new block", ip)
		}
	}
}

// TestAbandonedClaimIsTakenOver: when the caller whose Allocate runs the
// claim gives up, a waiting Allocate claims in its place instead of failing
// with the other caller's error.
func TestAbandonedClaimIsTakenOver(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newHoldStore()
	cfg := e.config()
	cfg.Store = s
	a := e.newAlloc(cfg)
	for i := range 3 {
		mustAllocate(t, a, owner(fmt.Sprint("c", i)), "")
	}
	waiting := waitHook(a)
	resume := s.holdCalls("ListBlocks")
	ctx, cancel := context.WithCancel(context.Background())
	claimer := allocateAsync(a, ctx, owner("claimer"))
	s.awaitEntered(t, "ListBlocks")
	waiter := allocateAsync(a, context.Background(), owner("waiter"))
	<-waiting
	cancel()
	if r := <-claimer; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled claimer = %s, %v; want context.Canceled", r.ip, r.err)
	}
	s.awaitEntered(t, "ListBlocks") // the waiter's own claim
	resume()
	if r := <-waiter; r.err != nil || !pfx("10.0.0.0/30").Contains(r.ip) {
		t.Errorf("waiter = %s, %v; want an address of 10.0.0.0/30", r.ip, r.err)
	}
}

// TestFailedClaimReachesWaiters: a claim the store fails fails its waiters
// too, with the same error, rather than each trying the broken store again.
func TestFailedClaimReachesWaiters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newHoldStore()
	cfg := e.config()
	cfg.Store = s
	a := e.newAlloc(cfg)
	for i := range 3 {
		mustAllocate(t, a, owner(fmt.Sprint("c", i)), "")
	}
	waiting := waitHook(a)
	listsBefore := s.listCalls()
	resume := s.holdCalls("ListBlocks")
	claimer := allocateAsync(a, context.Background(), owner("claimer"))
	s.awaitEntered(t, "ListBlocks")
	waiter := allocateAsync(a, context.Background(), owner("waiter"))
	<-waiting
	s.setErr(errors.New("etcd down"))
	resume()
	for name, c := range map[string]<-chan allocResult{"claimer": claimer, "waiter": waiter} {
		if r := <-c; r.err == nil || !strings.Contains(r.err.Error(), "etcd down") {
			t.Errorf("%s = %s, %v; want the store's error", name, r.ip, r.err)
		}
	}
	if got := s.listCalls() - listsBefore; got != 1 {
		t.Errorf("%d ListBlocks calls, want 1", got)
	}
}

// waitHook returns a channel that receives whenever an Allocate starts
// waiting for the claim in flight. Call it before a is shared.
func waitHook(a *Allocator) <-chan struct{} {
	c := make(chan struct{}, 16)
	a.testHookWait = func() { c <- struct{}{} }
	return c
}

// TestSameOwnerDuringClaim: two ADDs of one owner that both need a new block
// (a runtime's retry while the first waits on etcd) get one address.
func TestSameOwnerDuringClaim(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newHoldStore()
	cfg := e.config()
	cfg.Store = s
	a := e.newAlloc(cfg)
	for i := range 3 {
		mustAllocate(t, a, owner(fmt.Sprint("c", i)), "")
	}
	waiting := waitHook(a)
	resume := s.holdCalls("ListBlocks")
	first := allocateAsync(a, context.Background(), owner("dup"))
	s.awaitEntered(t, "ListBlocks")
	retry := allocateAsync(a, context.Background(), owner("dup"))
	<-waiting
	resume()
	r1, r2 := <-first, <-retry
	if r1.err != nil || r2.err != nil || r1.ip != r2.ip {
		t.Errorf("Allocate(dup) twice = %s, %v and %s, %v; want one address", r1.ip, r1.err, r2.ip, r2.err)
	}
	if got := a.Stats().Used; got != 4 {
		t.Errorf("%d addresses used, want 4", got)
	}
}
