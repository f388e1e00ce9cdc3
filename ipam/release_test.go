package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/skeinnet/skein/api"
)

const testGrace = 10 * time.Minute

// graceEnv is node-a on the small pool with a release grace, its home block
// (10.0.0.12/30) full and one address in its second block (10.0.0.0/30).
func graceEnv(t *testing.T) (*testEnv, *Allocator) {
	t.Helper()
	e := newEnv(t)
	cfg := e.config()
	cfg.ReleaseGrace = testGrace
	a := e.newAlloc(cfg)
	for i := range 4 {
		mustAllocate(t, a, owner(fmt.Sprint("c", i)), "")
	}
	if d := cmp.Diff(pfxs("10.0.0.12/30", "10.0.0.0/30"), a.Blocks(), cmpOpts); d != "" {
		t.Fatalf("Blocks() (-want +got):\n%s", d)
	}
	return e, a
}

func releaseEmpty(t *testing.T, a *Allocator) []netip.Prefix {
	t.Helper()
	got, err := a.ReleaseEmptyBlocks(context.Background())
	if err != nil {
		t.Fatalf("ReleaseEmptyBlocks() = %v", err)
	}
	return got
}

func TestReleaseAfterGrace(t *testing.T) {
	t.Parallel()
	e, a := graceEnv(t)
	if got := releaseEmpty(t, a); len(got) != 0 {
		t.Fatalf("released %v while both blocks are used", got)
	}
	freedAt := e.clock.Now()
	mustRelease(t, a, owner("c3"))
	emptyAt := freedAt.Add(DefaultCooldown)

	steps := []struct {
		name  string
		at    time.Time
		empty []api.EmptyBlock
		want  []netip.Prefix
	}{
		{"cooling", emptyAt.Add(-time.Second), nil, nil},
		{"empty, in grace", emptyAt, []api.EmptyBlock{{CIDR: pfx("10.0.0.0/30"), Since: emptyAt, ReleaseAt: emptyAt.Add(testGrace)}}, nil},
		{"grace nearly over", emptyAt.Add(testGrace - time.Second), []api.EmptyBlock{{CIDR: pfx("10.0.0.0/30"), Since: emptyAt, ReleaseAt: emptyAt.Add(testGrace)}}, nil},
		{"grace over", emptyAt.Add(testGrace), []api.EmptyBlock{{CIDR: pfx("10.0.0.0/30"), Since: emptyAt, ReleaseAt: emptyAt.Add(testGrace)}}, pfxs("10.0.0.0/30")},
	}
	for _, s := range steps {
		e.clock.Advance(s.at.Sub(e.clock.Now()))
		if d := cmp.Diff(s.empty, a.EmptyBlocks(testGrace), cmpOpts, cmpopts.EquateEmpty()); d != "" {
			t.Errorf("%s: EmptyBlocks() (-want +got):\n%s", s.name, d)
		}
		if d := cmp.Diff(s.want, releaseEmpty(t, a), cmpOpts, cmpopts.EquateEmpty()); d != "" {
			t.Errorf("%s: released (-want +got):\n%s", s.name, d)
		}
	}
	if d := cmp.Diff(pfxs("10.0.0.12/30"), a.Blocks(), cmpOpts); d != "" {
		t.Errorf("Blocks() (-want +got):\n%s", d)
	}
	if d := cmp.Diff(pfxs("10.0.0.12/30"), e.store.owned("node-a"), cmpOpts); d != "" {
		t.Errorf("store gives node-a (-want +got):\n%s", d)
	}
	// Another node can claim the block now.
	if ok, err := e.store.ClaimBlock(context.Background(), pfx("10.0.0.0/30"), "node-b"); !ok || err != nil {
		t.Errorf("node-b's claim of the released block = %t, %v", ok, err)
	}
	// Saved: a restart does not bring the released block back.
	c := e.newAlloc(e.config())
	if d := cmp.Diff(pfxs("10.0.0.12/30"), c.Blocks(), cmpOpts); d != "" {
		t.Errorf("Blocks() after restart (-want +got):\n%s", d)
	}
}

// TestGraceRestartsOnUse: an allocation in an empty block ends its grace; the
// next one runs from when that address is free again.
func TestGraceRestartsOnUse(t *testing.T) {
	t.Parallel()
	e, a := graceEnv(t)
	mustRelease(t, a, owner("c3"))
	e.clock.Advance(DefaultCooldown + testGrace - time.Minute)
	mustRelease(t, a, owner("c0")) // a home address cools, so the next lands in 10.0.0.0/30
	if ip := mustAllocate(t, a, owner("late"), ""); !pfx("10.0.0.0/30").Contains(ip) {
		t.Fatalf("Allocate(late) = %s, want it in 10.0.0.0/30", ip)
	}
	e.clock.Advance(time.Hour)
	if got := releaseEmpty(t, a); len(got) != 0 {
		t.Errorf("released %v, a block in use", got)
	}
	mustRelease(t, a, owner("late"))
	emptyAt := e.clock.Now().Add(DefaultCooldown)
	e.clock.Advance(DefaultCooldown + testGrace - time.Second)
	if got := releaseEmpty(t, a); len(got) != 0 {
		t.Errorf("released %v before the grace since its last use", got)
	}
	if got := a.EmptyBlocks(testGrace); len(got) != 1 || got[0].Since != emptyAt {
		t.Errorf("EmptyBlocks() = %+v, want 10.0.0.0/30 empty since %s", got, emptyAt)
	}
	e.clock.Advance(time.Second)
	if d := cmp.Diff(pfxs("10.0.0.0/30"), releaseEmpty(t, a), cmpOpts, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("released (-want +got):\n%s", d)
	}
}

func TestHomeBlockKept(t *testing.T) {
	t.Parallel()
	e, a := graceEnv(t)
	for i := range 4 {
		mustRelease(t, a, owner(fmt.Sprint("c", i)))
	}
	emptyAt := e.clock.Now().Add(DefaultCooldown)
	e.clock.Advance(DefaultCooldown + 24*time.Hour)
	want := []api.EmptyBlock{
		{CIDR: pfx("10.0.0.12/30"), Since: emptyAt, Home: true},
		{CIDR: pfx("10.0.0.0/30"), Since: emptyAt, ReleaseAt: emptyAt.Add(testGrace)},
	}
	if d := cmp.Diff(want, a.EmptyBlocks(testGrace), cmpOpts); d != "" {
		t.Errorf("EmptyBlocks() (-want +got):\n%s", d)
	}
	if d := cmp.Diff(pfxs("10.0.0.0/30"), releaseEmpty(t, a), cmpOpts, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("released (-want +got):\n%s", d)
	}
	if got := releaseEmpty(t, a); len(got) != 0 {
		t.Errorf("released %v, the home block", got)
	}
	if d := cmp.Diff(pfxs("10.0.0.12/30"), e.store.owned("node-a"), cmpOpts); d != "" {
		t.Errorf("store gives node-a (-want +got):\n%s", d)
	}
	if a.VTEPAddr() != addr("10.0.0.12") {
		t.Errorf("VTEPAddr() = %s", a.VTEPAddr())
	}
}

// TestEmptySinceAfterRestart: a restart keeps the time a block went quiet
// when its addresses still cool down (the file has their end), and counts
// from the start otherwise.
func TestEmptySinceAfterRestart(t *testing.T) {
	t.Parallel()
	e, a := graceEnv(t)
	mustRelease(t, a, owner("c3"))
	emptyAt := e.clock.Now().Add(DefaultCooldown)
	cfg := e.config()
	cfg.ReleaseGrace = testGrace
	b := e.newAlloc(cfg)
	e.clock.Advance(DefaultCooldown)
	if got := b.EmptyBlocks(testGrace); len(got) != 1 || got[0].Since != emptyAt {
		t.Errorf("EmptyBlocks() after restart = %+v, want 10.0.0.0/30 since %s", got, emptyAt)
	}
	e.clock.Advance(time.Hour)
	started := e.clock.Now()
	c := e.newAlloc(cfg)
	if got := c.EmptyBlocks(testGrace); len(got) != 1 || got[0].Since != started {
		t.Errorf("EmptyBlocks() after a second restart = %+v, want since the start %s", got, started)
	}
	if got := releaseEmpty(t, c); len(got) != 0 {
		t.Errorf("released %v right after a start: the grace counts from the start", got)
	}
}

// TestNoAllocationFromReleasingBlock: while the store call that releases a
// block is in flight, an Allocate that finds no other free address claims a
// new block rather than use it, and Stats does not count its addresses.
func TestNoAllocationFromReleasingBlock(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newHoldStore()
	cfg := e.config()
	cfg.Store = s
	a := e.newAlloc(cfg) // grace 0: empty blocks go at once
	for i := range 4 {
		mustAllocate(t, a, owner(fmt.Sprint("c", i)), "")
	}
	mustRelease(t, a, owner("c3"))
	e.clock.Advance(DefaultCooldown)

	resume := s.holdCalls("ReleaseBlock")
	type result struct {
		got []netip.Prefix
		err error
	}
	released := make(chan result, 1)
	go func() {
		got, err := a.ReleaseEmptyBlocks(context.Background())
		released <- result{got, err}
	}()
	s.awaitEntered(t, "ReleaseBlock")
	if got := a.Stats(); got.Blocks != 2 || got.Capacity != 3 || got.Free != 0 {
		t.Errorf("Stats() = %+v, want 2 blocks of which the releasing one offers nothing", got)
	}
	var ip netip.Addr
	returnsPromptly(t, "Allocate while a block is released", func() { ip = mustAllocate(t, a, owner("new"), "") })
	if pfx("10.0.0.0/30").Contains(ip) {
		t.Fatalf("Allocate() = %s, from the block being released", ip)
	}
	resume()
	r := <-released
	if r.err != nil || !cmp.Equal(pfxs("10.0.0.0/30"), r.got, cmpOpts) {
		t.Errorf("ReleaseEmptyBlocks() = %v, %v; want 10.0.0.0/30", r.got, r.err)
	}
	for _, al := range a.Allocations() {
		if !inAny(a.Blocks(), al.IP) {
			t.Errorf("%s is outside the node's blocks %v", al.IP, a.Blocks())
		}
	}
	if d := cmp.Diff(a.Blocks(), s.owned("node-a"), cmpOpts, cmpopts.SortSlices(func(x, y netip.Prefix) bool { return comparePrefixes(x, y) < 0 })); d != "" {
		t.Errorf("store and node disagree (-node +store):\n%s", d)
	}
}

// TestFailedReleaseRetried: a block whose release failed is not used (the
// delete may have happened) and is released at the next call.
func TestFailedReleaseRetried(t *testing.T) {
	t.Parallel()
	e, a := graceEnv(t)
	mustRelease(t, a, owner("c3"))
	e.clock.Advance(DefaultCooldown + testGrace)
	e.store.setErr(errors.New("etcd down"))
	if got, err := a.ReleaseEmptyBlocks(context.Background()); err == nil || len(got) != 0 {
		t.Fatalf("ReleaseEmptyBlocks() = %v, %v; want the store error", got, err)
	}
	e.store.setErr(nil)
	mustRelease(t, a, owner("c0"))
	if ip := mustAllocate(t, a, owner("new"), ""); pfx("10.0.0.0/30").Contains(ip) {
		t.Errorf("Allocate() = %s, from a block whose release failed", ip)
	}
	if d := cmp.Diff(pfxs("10.0.0.0/30"), releaseEmpty(t, a), cmpOpts, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("retry released (-want +got):\n%s", d)
	}
}

// TestReleaseSkipsBlockTakenMeanwhile: a block the store gives to another
// node by the time of the release (an operator's `skein node delete` and a
// claim, say) is left to that node and forgotten here.
func TestReleaseSkipsBlockTakenMeanwhile(t *testing.T) {
	t.Parallel()
	e, a := graceEnv(t)
	mustRelease(t, a, owner("c3"))
	e.clock.Advance(DefaultCooldown + testGrace)
	e.store.set(pfx("10.0.0.0/30"), "node-b")
	releaseEmpty(t, a)
	if got := e.store.owned("node-b"); !cmp.Equal(pfxs("10.0.0.0/30"), got, cmpOpts) {
		t.Errorf("node-b holds %v in the store, want 10.0.0.0/30 kept", got)
	}
	if d := cmp.Diff(pfxs("10.0.0.12/30"), a.Blocks(), cmpOpts); d != "" {
		t.Errorf("Blocks() (-want +got):\n%s", d)
	}
}

func TestReleaseEvery(t *testing.T) {
	t.Parallel()
	for grace, want := range map[time.Duration]time.Duration{
		time.Second:      time.Second,
		30 * time.Second: 3 * time.Second,
		10 * time.Minute: time.Minute,
		24 * time.Hour:   time.Minute,
	} {
		if got := ReleaseEvery(grace); got != want {
			t.Errorf("ReleaseEvery(%s) = %s, want %s", grace, got, want)
		}
	}
}

func TestNegativeGraceRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.ReleaseGrace = -time.Second
	if _, err := New(context.Background(), cfg); err == nil {
		t.Error("New() with a negative grace succeeded")
	}
}

// TestRunBlockRelease: the loop returns an empty block within a tenth of the
// grace after the grace, and not before.
func TestRunBlockRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newFakeStore()
		a, err := New(t.Context(), Config{
			Node: "node-a", Pools: smallPool, Store: s, StateDir: t.TempDir(),
			Cooldown: -1, ReleaseGrace: time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 4 {
			mustAllocate(t, a, owner(fmt.Sprint("c", i)), "")
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- a.RunBlockRelease(ctx, ReleaseEvery(time.Minute)) }()
		mustRelease(t, a, owner("c3"))

		time.Sleep(time.Minute - time.Second)
		synctest.Wait()
		if got := len(s.owned("node-a")); got != 2 {
			t.Errorf("node-a holds %d blocks in the store before the grace is over, want 2", got)
		}
		time.Sleep(ReleaseEvery(time.Minute) + time.Second)
		synctest.Wait()
		if d := cmp.Diff(pfxs("10.0.0.12/30"), s.owned("node-a"), cmpOpts); d != "" {
			t.Errorf("store blocks after the grace (-want +got):\n%s", d)
		}
		if d := cmp.Diff(pfxs("10.0.0.12/30"), a.Blocks(), cmpOpts); d != "" {
			t.Errorf("Blocks() after the grace (-want +got):\n%s", d)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunBlockRelease() = %v", err)
		}
	})
}
