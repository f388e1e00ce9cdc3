package ipam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/skeinnet/skein/api"
)

var cmpOpts = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

// The small test pool: 10.0.0.0/28 in four /30 blocks of three pod addresses.
// node-a searches from 10.0.0.12/30, then .0, .4, .8.
var smallPool = []api.Pool{pool("10.0.0.0/28", 30)}

type testEnv struct {
	t     *testing.T
	store *fakeStore
	clock *fakeClock
	dir   string
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	return &testEnv{t: t, store: newFakeStore(), clock: newFakeClock(), dir: t.TempDir()}
}

// config returns a config for node-a on the small pool.
func (e *testEnv) config() Config {
	return Config{
		Node:     "node-a",
		Pools:    smallPool,
		Store:    e.store,
		StateDir: e.dir,
		Now:      e.clock.Now,
		Log:      slog.New(slog.NewTextHandler(e.t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func (e *testEnv) newAlloc(cfg Config) *Allocator {
	e.t.Helper()
	a, err := New(context.Background(), cfg)
	if err != nil {
		e.t.Fatalf("New() = %v", err)
	}
	return a
}

func owner(id string) api.Owner { return api.Owner{ContainerID: id, IfName: "eth0"} }

// testNet is the CNI network most tests allocate in.
const testNet = "net-a"

func mustAllocate(t *testing.T, a *Allocator, o api.Owner, pod string) netip.Addr {
	t.Helper()
	ip, existing, err := a.Allocate(context.Background(), testNet, o, pod)
	if err != nil {
		t.Fatalf("Allocate(%s) = %v", o, err)
	}
	if existing {
		t.Fatalf("Allocate(%s) existing = true, want a new allocation", o)
	}
	return ip
}

func mustRelease(t *testing.T, a *Allocator, o api.Owner) []netip.Addr {
	t.Helper()
	ips, err := a.Release(context.Background(), testNet, o)
	if err != nil {
		t.Fatalf("Release(%s) = %v", o, err)
	}
	return ips
}

func TestNewClaimsHomeBlock(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.newAlloc(e.config())
	if got, want := a.HomeBlock(), pfx("10.0.0.12/30"); got != want {
		t.Errorf("HomeBlock() = %s, want %s", got, want)
	}
	if got, want := a.VTEPAddr(), addr("10.0.0.12"); got != want {
		t.Errorf("VTEPAddr() = %s, want %s", got, want)
	}
	if d := cmp.Diff(pfxs("10.0.0.12/30"), e.store.owned("node-a"), cmpOpts); d != "" {
		t.Errorf("store blocks (-want +got):\n%s", d)
	}
	if d := cmp.Diff(Stats{Blocks: 1, Capacity: 3, Free: 3}, a.Stats()); d != "" {
		t.Errorf("Stats() (-want +got):\n%s", d)
	}
	for _, n := range []string{StateName + ".0", StateName + ".1"} {
		fi, err := os.Stat(filepath.Join(e.dir, n))
		if err != nil {
			t.Fatalf("state file: %v", err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("state file %s mode %v, want 0600", n, fi.Mode().Perm())
		}
	}
}

func TestAllocateRelease(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.newAlloc(e.config())
	ctx := context.Background()

	if got := mustAllocate(t, a, owner("c1"), "ns/p1"); got != addr("10.0.0.13") {
		t.Errorf("first address = %s, want 10.0.0.13 (first of block reserved for the VTEP)", got)
	}
	ip, existing, err := a.Allocate(ctx, testNet, owner("c1"), "ns/p1")
	if err != nil || !existing || ip != addr("10.0.0.13") {
		t.Errorf("repeated Allocate(c1) = %s, %t, %v; want 10.0.0.13, true, nil", ip, existing, err)
	}
	// Same container, other interface: another attachment.
	if got := mustAllocate(t, a, api.Owner{ContainerID: "c1", IfName: "net1"}, "ns/p1"); got != addr("10.0.0.14") {
		t.Errorf("c1/net1 = %s, want 10.0.0.14", got)
	}
	if d := cmp.Diff([]netip.Addr{addr("10.0.0.13")}, a.Lookup(owner("c1")), cmpOpts); d != "" {
		t.Errorf("Lookup(c1) (-want +got):\n%s", d)
	}
	want := []Allocation{
		{IP: addr("10.0.0.13"), Owner: owner("c1"), Network: testNet, Pod: "ns/p1", Block: pfx("10.0.0.12/30"), Created: e.clock.Now()},
		{IP: addr("10.0.0.14"), Owner: api.Owner{ContainerID: "c1", IfName: "net1"}, Network: testNet, Pod: "ns/p1", Block: pfx("10.0.0.12/30"), Created: e.clock.Now()},
	}
	if d := cmp.Diff(want, a.Allocations(), cmpOpts); d != "" {
		t.Errorf("Allocations() (-want +got):\n%s", d)
	}

	if d := cmp.Diff([]netip.Addr{addr("10.0.0.13")}, mustRelease(t, a, owner("c1")), cmpOpts); d != "" {
		t.Errorf("Release(c1) (-want +got):\n%s", d)
	}
	if got := a.Lookup(owner("c1")); got != nil {
		t.Errorf("Lookup(c1) after release = %v, want nil", got)
	}
	if _, err := a.Get(owner("c1")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(c1) after release = %v, want ErrNotFound", err)
	}
	if got := mustRelease(t, a, owner("c1")); len(got) != 0 {
		t.Errorf("second Release(c1) = %v, want nothing", got)
	}
	if got := mustRelease(t, a, owner("never")); len(got) != 0 {
		t.Errorf("Release(never) = %v, want nothing", got)
	}
	if _, _, err := a.Allocate(ctx, testNet, api.Owner{ContainerID: "c9"}, ""); err == nil {
		t.Error("Allocate() with empty ifname succeeded")
	}
	if d := cmp.Diff(Stats{Blocks: 1, Capacity: 3, Used: 1, Free: 1, Cooling: 1}, a.Stats()); d != "" {
		t.Errorf("Stats() (-want +got):\n%s", d)
	}
}

func TestAllocateFillsInPod(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.newAlloc(e.config())
	ip := mustAllocate(t, a, owner("c1"), "")
	got, existing, err := a.Allocate(context.Background(), testNet, owner("c1"), "ns/late")
	if err != nil || !existing || got != ip {
		t.Fatalf("Allocate(c1) again = %s, %t, %v", got, existing, err)
	}
	al, err := a.Get(owner("c1"))
	if err != nil || al.Pod != "ns/late" {
		t.Errorf("Get(c1) = %+v, %v; want pod ns/late", al, err)
	}
}

func TestStaleRelease(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.newAlloc(e.config())
	ipA := mustAllocate(t, a, owner("A"), "ns/a")
	mustRelease(t, a, owner("A"))
	e.clock.Advance(DefaultCooldown)
	ipB := mustAllocate(t, a, owner("B"), "ns/b")
	if ipB != ipA {
		t.Fatalf("B got %s, want A's old %s after the cooldown", ipB, ipA)
	}
	// A's DEL arrives again (runtime retry): it must not free B's address.
	if got := mustRelease(t, a, owner("A")); len(got) != 0 {
		t.Errorf("stale Release(A) = %v, want nothing", got)
	}
	if d := cmp.Diff([]netip.Addr{ipA}, a.Lookup(owner("B")), cmpOpts); d != "" {
		t.Errorf("Lookup(B) (-want +got):\n%s", d)
	}
	if got := a.Stats().Used; got != 1 {
		t.Errorf("Used = %d, want 1", got)
	}
}

func TestCooldown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.Pools = []api.Pool{pool("10.0.0.0/30", 30)} // one block, three addresses
	a := e.newAlloc(cfg)
	for _, id := range []string{"A", "B", "C"} {
		mustAllocate(t, a, owner(id), "")
	}
	mustRelease(t, a, owner("B")) // frees 10.0.0.2 at t0
	e.clock.Advance(10 * time.Second)
	mustRelease(t, a, owner("A")) // frees 10.0.0.1 at t0+10s

	e.clock.Advance(DefaultCooldown - 10*time.Second - time.Nanosecond)
	_, _, err := a.Allocate(context.Background(), testNet, owner("D"), "")
	if !errors.Is(err, ErrExhausted) {
		t.Fatalf("Allocate(D) during cooldown = %v, want ErrExhausted", err)
	}
	if !strings.Contains(err.Error(), "2 addresses cooling down") {
		t.Errorf("error %q does not mention the 2 cooling addresses", err)
	}
	e.clock.Advance(time.Nanosecond) // B's address is free now, A's not yet
	if got := mustAllocate(t, a, owner("D"), ""); got != addr("10.0.0.2") {
		t.Errorf("Allocate(D) = %s, want 10.0.0.2 (10.0.0.1 still cooling)", got)
	}
	e.clock.Advance(10 * time.Second)
	if got := mustAllocate(t, a, owner("E"), ""); got != addr("10.0.0.1") {
		t.Errorf("Allocate(E) = %s, want 10.0.0.1", got)
	}
}

func TestCooldownDisabled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.Cooldown = -1
	a := e.newAlloc(cfg)
	ip := mustAllocate(t, a, owner("A"), "")
	mustRelease(t, a, owner("A"))
	if got := mustAllocate(t, a, owner("B"), ""); got != ip {
		t.Errorf("Allocate(B) = %s, want the just released %s", got, ip)
	}
}

func TestSecondBlockWhenFull(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.newAlloc(e.config())
	var got []netip.Addr
	for i := range 5 {
		got = append(got, mustAllocate(t, a, owner(fmt.Sprint("c", i)), ""))
	}
	want := []netip.Addr{addr("10.0.0.13"), addr("10.0.0.14"), addr("10.0.0.15"), addr("10.0.0.1"), addr("10.0.0.2")}
	if d := cmp.Diff(want, got, cmpOpts); d != "" {
		t.Errorf("addresses (-want +got):\n%s", d)
	}
	// Home first even though it is not the lowest.
	if d := cmp.Diff(pfxs("10.0.0.12/30", "10.0.0.0/30"), a.Blocks(), cmpOpts); d != "" {
		t.Errorf("Blocks() (-want +got):\n%s", d)
	}
	if got := a.VTEPAddr(); got != addr("10.0.0.12") {
		t.Errorf("VTEPAddr() = %s, want 10.0.0.12", got)
	}
	if d := cmp.Diff(pfxs("10.0.0.0/30", "10.0.0.12/30"), e.store.owned("node-a"), cmpOpts); d != "" {
		t.Errorf("store blocks (-want +got):\n%s", d)
	}
	// A freed home address is reused before the second block's free one.
	mustRelease(t, a, owner("c1"))
	e.clock.Advance(DefaultCooldown)
	if got := mustAllocate(t, a, owner("c9"), ""); got != addr("10.0.0.14") {
		t.Errorf("Allocate(c9) = %s, want 10.0.0.14", got)
	}
}

func TestSecondBlockSkipsOtherNodes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.store.set(pfx("10.0.0.0/30"), "node-b")
	a := e.newAlloc(e.config())
	for i := range 4 {
		mustAllocate(t, a, owner(fmt.Sprint("c", i)), "")
	}
	if d := cmp.Diff(pfxs("10.0.0.12/30", "10.0.0.4/30"), a.Blocks(), cmpOpts); d != "" {
		t.Errorf("Blocks() (-want +got):\n%s", d)
	}
}

func TestExhausted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, b := range []string{"10.0.0.0/30", "10.0.0.4/30"} {
		e.store.set(pfx(b), "node-b")
	}
	a := e.newAlloc(e.config())
	for i := range 6 {
		mustAllocate(t, a, owner(fmt.Sprint("c", i)), "")
	}
	_, _, err := a.Allocate(context.Background(), testNet, owner("c6"), "")
	if !errors.Is(err, ErrExhausted) {
		t.Fatalf("Allocate() = %v, want ErrExhausted", err)
	}
	t.Logf("exhausted: %v", err)
	const want = "ipam: pool exhausted: pool 10.0.0.0/28: all 4 blocks claimed, node node-a's 2 blocks full"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("Allocate() error = %q, want it to contain %q", err, want)
	}
	if got := a.Lookup(owner("c6")); got != nil {
		t.Errorf("failed owner holds %v", got)
	}

	mustRelease(t, a, owner("c0"))
	_, _, err = a.Allocate(context.Background(), testNet, owner("c6"), "")
	if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "(1 address cooling down, the first free again in 30s)") {
		t.Errorf("Allocate() with one address cooling = %v", err)
	}
}

func TestExhaustedAtStart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, b := range poolBlocks(smallPool[0]) {
		e.store.set(b, "node-b")
	}
	_, err := New(context.Background(), e.config())
	if !errors.Is(err, ErrExhausted) {
		t.Fatalf("New() = %v, want ErrExhausted", err)
	}
	if !strings.Contains(err.Error(), "pool 10.0.0.0/28: all 4 blocks claimed") {
		t.Errorf("New() error %q does not name the pool", err)
	}
}

func TestExhaustedMultiplePools(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.Pools = []api.Pool{pool("10.0.0.0/30", 30), pool("10.1.0.0/30", 30)}
	a := e.newAlloc(cfg)
	for i := range 6 {
		mustAllocate(t, a, owner(fmt.Sprint("c", i)), "")
	}
	_, _, err := a.Allocate(context.Background(), testNet, owner("c6"), "")
	const want = "pool 10.0.0.0/30: all 1 block claimed, pool 10.1.0.0/30: all 1 block claimed, node node-a's 2 blocks full"
	if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), want) {
		t.Errorf("Allocate() = %v, want ErrExhausted containing %q", err, want)
	}
}

func TestMaxBlocks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.MaxBlocks = 1
	a := e.newAlloc(cfg)
	for i := range 3 {
		mustAllocate(t, a, owner(fmt.Sprint("c", i)), "")
	}
	_, _, err := a.Allocate(context.Background(), testNet, owner("c3"), "")
	if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "node node-a holds its maximum of 1 block, all full") {
		t.Errorf("Allocate() = %v, want ErrExhausted at the block limit", err)
	}
	if got := len(e.store.owned("node-a")); got != 1 {
		t.Errorf("node owns %d blocks, want 1", got)
	}
}

func TestRestartKeepsAddresses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.newAlloc(e.config())
	for i := range 5 {
		mustAllocate(t, a, owner(fmt.Sprint("c", i)), fmt.Sprint("ns/p", i))
	}
	mustRelease(t, a, owner("c0")) // 10.0.0.13 cools down across the restart
	wantAllocs := a.Allocations()
	wantBlocks := a.Blocks()

	e.clock.Advance(time.Second)
	b := e.newAlloc(e.config()) // same dir, same store: a restart
	if d := cmp.Diff(wantAllocs, b.Allocations(), cmpOpts); d != "" {
		t.Errorf("Allocations() after restart (-want +got):\n%s", d)
	}
	if d := cmp.Diff(wantBlocks, b.Blocks(), cmpOpts); d != "" {
		t.Errorf("Blocks() after restart (-want +got):\n%s", d)
	}
	if got := b.VTEPAddr(); got != addr("10.0.0.12") {
		t.Errorf("VTEPAddr() after restart = %s, want 10.0.0.12", got)
	}
	ip, existing, err := b.Allocate(context.Background(), testNet, owner("c3"), "ns/p3")
	if err != nil || !existing || ip != addr("10.0.0.1") {
		t.Errorf("Allocate(c3) after restart = %s, %t, %v; want 10.0.0.1, true", ip, existing, err)
	}
	if got := mustAllocate(t, b, owner("new"), ""); got != addr("10.0.0.3") {
		t.Errorf("Allocate(new) after restart = %s, want 10.0.0.3 (10.0.0.13 still cooling)", got)
	}
	if got := e.store.claims; got != 2 {
		t.Errorf("store saw %d claims, want 2 (a restart claims nothing)", got)
	}
}

func TestRestartNeverSavedAllocationIsFree(t *testing.T) {
	t.Parallel()
	// An Allocate that failed to persist must not survive in memory either.
	e := newEnv(t)
	a := e.newAlloc(e.config())
	mustAllocate(t, a, owner("c0"), "")
	blockDir(t, e.dir)
	if _, _, err := a.Allocate(context.Background(), testNet, owner("c1"), ""); err == nil {
		t.Fatal("Allocate() with an unwritable state dir succeeded")
	}
	if got := a.Lookup(owner("c1")); got != nil {
		t.Errorf("Lookup(c1) after a failed save = %v, want nil", got)
	}
	if _, err := a.Release(context.Background(), testNet, owner("c0")); err == nil {
		t.Error("Release() with an unwritable state dir succeeded")
	}
	if got := a.Lookup(owner("c0")); len(got) != 1 {
		t.Errorf("Lookup(c0) after a failed release = %v, want its address kept", got)
	}
	if got := a.Stats(); got.Used != 1 || got.Cooling != 0 {
		t.Errorf("Stats() after failed release = %+v, want 1 used, 0 cooling", got)
	}
	unblockDir(t, e.dir)
	if got := mustAllocate(t, a, owner("c1"), ""); got != addr("10.0.0.14") {
		t.Errorf("Allocate(c1) after recovery = %s, want 10.0.0.14", got)
	}
	b := e.newAlloc(e.config())
	if got := len(b.Allocations()); got != 2 {
		t.Errorf("restart sees %d allocations, want 2", got)
	}
}

// blockDir makes dir unusable for the state file (works as root too): it
// moves the directory away and puts a plain file in its place.
func blockDir(t *testing.T, dir string) {
	t.Helper()
	if err := os.Rename(dir, dir+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unblockDir(t, dir) })
}

func unblockDir(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(dir + ".away"); err != nil {
		return
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir+".away", dir); err != nil {
		t.Fatal(err)
	}
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestCorruptLegacyStateFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	path := filepath.Join(e.dir, StateFileName)
	const garbage = `{"version":1,"node":"node-a","blocks":["10.0.0.12/30"],"allocations":[{"ip":"10.0.0.13"`
	if err := os.WriteFile(path, []byte(garbage), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(context.Background(), e.config())
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("New() = %v, want an error naming %s", err, path)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != garbage {
		t.Errorf("state file changed after a failed start: %q, %v", b, err)
	}
	if e.store.claims != 0 {
		t.Errorf("store saw %d claims, want none", e.store.claims)
	}
}

func TestStateFileOfAnotherNode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.newAlloc(e.config())
	cfg := e.config()
	cfg.Node = "node-b"
	_, err := New(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), `written by node "node-a"`) {
		t.Errorf("New() = %v, want a node mismatch error", err)
	}
}

func TestNewConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{"no node", func(c *Config) { c.Node = "" }, "node name"},
		{"no pools", func(c *Config) { c.Pools = nil }, "at least one pool"},
		{"ipv6 block size", func(c *Config) { c.Pools = []api.Pool{pool("fd00::/64", 80)} }, "IPv6 block size /80 must be between /96 and /126"},
		{"mixed families", func(c *Config) { c.Pools = []api.Pool{pool("10.9.0.0/16", 26), pool("fd00::/64", 122)} }, "one allocator serves one address family"},
		{"overlap", func(c *Config) { c.Pools = []api.Pool{pool("10.0.0.0/16", 26), pool("10.0.1.0/24", 26)} }, "overlap"},
		{"no store", func(c *Config) { c.Store = nil }, "store is required"},
		{"no state dir", func(c *Config) { c.StateDir = "" }, "state dir is required"},
		{"negative max", func(c *Config) { c.MaxBlocks = -1 }, "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			cfg := e.config()
			tc.edit(&cfg)
			_, err := New(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New() = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestDefaultBlockSize(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.Pools = []api.Pool{{CIDR: pfx("10.244.0.0/16")}}
	a := e.newAlloc(cfg)
	if got := a.HomeBlock().Bits(); got != api.DefaultBlockSize {
		t.Errorf("home block %s, want a /%d", a.HomeBlock(), api.DefaultBlockSize)
	}
}

func TestStoreErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.store.setErr(errors.New("etcd down"))
	if _, err := New(context.Background(), e.config()); err == nil || !strings.Contains(err.Error(), "etcd down") {
		t.Errorf("New() = %v, want the store error", err)
	}
	e.store.setErr(nil)
	a := e.newAlloc(e.config())
	for i := range 3 {
		mustAllocate(t, a, owner(fmt.Sprint("c", i)), "")
	}
	e.store.setErr(errors.New("etcd down"))
	_, _, err := a.Allocate(context.Background(), testNet, owner("c3"), "")
	if err == nil || errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "etcd down") {
		t.Errorf("Allocate() needing a block with the store down = %v, want the store error", err)
	}
	// Addresses in own blocks need no store.
	mustRelease(t, a, owner("c0"))
	e.clock.Advance(DefaultCooldown)
	mustAllocate(t, a, owner("c3"), "")
}

func TestStaleThenRelease(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.newAlloc(e.config())
	for _, id := range []string{"c3", "c1", "c2", "c4"} {
		mustAllocate(t, a, owner(id), "")
	}
	stale, err := a.Stale(testNet, []api.Owner{owner("c2"), owner("gone")})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]api.Owner{owner("c1"), owner("c3"), owner("c4")}, allocOwners(stale)); d != "" {
		t.Errorf("Stale() (-want +got):\n%s", d)
	}
	if got := a.Stats(); got.Used != 4 {
		t.Errorf("Stats() after Stale = %+v, want all 4 still used (Stale frees nothing)", got)
	}
	for _, al := range stale {
		mustRelease(t, a, al.Owner)
	}
	if got := a.Lookup(owner("c2")); len(got) != 1 {
		t.Errorf("Lookup(c2) = %v, want its address kept", got)
	}
	if got := a.Stats(); got.Used != 1 || got.Cooling != 3 {
		t.Errorf("Stats() = %+v, want 1 used and 3 cooling", got)
	}
	if stale, err := a.Stale(testNet, []api.Owner{owner("c2")}); err != nil || len(stale) != 0 {
		t.Errorf("second Stale() = %v, %v; want nothing", stale, err)
	}
	if _, err := a.Stale("", nil); err == nil {
		t.Error("Stale() without a network succeeded")
	}
	b := e.newAlloc(e.config())
	if got := len(b.Allocations()); got != 1 {
		t.Errorf("restart after GC sees %d allocations, want 1", got)
	}
}

func allocOwners(als []Allocation) []api.Owner {
	var out []api.Owner
	for _, al := range als {
		out = append(out, al.Owner)
	}
	return out
}

// Two CNI networks share the node: what one network's GC, DEL, CHECK or ADD
// does never touches the other's attachments.
func TestNetworksAreSeparate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.newAlloc(e.config())
	ctx := context.Background()
	ipA, _, err := a.Allocate(ctx, "net-a", owner("ca"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Allocate(ctx, "net-b", owner("cb"), ""); err != nil {
		t.Fatal(err)
	}

	// GC of net-b with an empty valid list: only net-b's attachment is stale.
	stale, err := a.Stale("net-b", nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]api.Owner{owner("cb")}, allocOwners(stale)); d != "" {
		t.Errorf("Stale(net-b) (-want +got):\n%s", d)
	}

	// DEL and CHECK from net-b of net-a's attachment: nothing freed.
	if ips, err := a.Release(ctx, "net-b", owner("ca")); !errors.Is(err, ErrOtherNetwork) || ips != nil {
		t.Errorf("Release(net-b, ca) = %v, %v; want nothing and ErrOtherNetwork", ips, err)
	}
	if ips, err := a.Held("net-b", owner("ca")); !errors.Is(err, ErrOtherNetwork) || ips != nil {
		t.Errorf("Held(net-b, ca) = %v, %v; want ErrOtherNetwork", ips, err)
	}
	if _, _, err := a.Allocate(ctx, "net-b", owner("ca"), ""); !errors.Is(err, ErrOtherNetwork) {
		t.Errorf("Allocate(net-b, ca) = %v, want ErrOtherNetwork", err)
	}
	if got := a.Lookup(owner("ca")); len(got) != 1 || got[0] != ipA {
		t.Errorf("Lookup(ca) = %v, want [%s] kept", got, ipA)
	}
	if ips, err := a.Held("net-a", owner("ca")); err != nil || len(ips) != 1 || ips[0] != ipA {
		t.Errorf("Held(net-a, ca) = %v, %v; want [%s]", ips, err, ipA)
	}
	if ips, err := a.Release(ctx, "net-a", owner("ca")); err != nil || len(ips) != 1 {
		t.Errorf("Release(net-a, ca) = %v, %v; want its address", ips, err)
	}
}

// An allocation from a state file written before networks were recorded is
// never stale for any GC until a call naming it adopts it.
func TestLegacyAllocationAdopted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.newAlloc(e.config())
	ip := mustAllocate(t, a, owner("old"), "ns/old")
	// Rewrite the state as the version before networks wrote it: no
	// network, in the legacy whole file, no slots.
	_, st, _, _, err := openState(e.dir, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	for i := range st.Allocations {
		st.Allocations[i].Network = ""
	}
	writeLegacy(t, filepath.Join(e.dir, StateFileName), st)
	removeSlots(t, e.dir)
	b := e.newAlloc(e.config())
	if _, err := os.Stat(filepath.Join(e.dir, StateFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("legacy state file after New: %v, want it removed (the slots hold the state)", err)
	}
	for _, n := range []string{"net-a", "net-b"} {
		if stale, err := b.Stale(n, nil); err != nil || len(stale) != 0 {
			t.Errorf("Stale(%s, nothing valid) = %v, %v; want the legacy allocation left alone", n, stale, err)
		}
	}
	// A GC of net-b that lists it adopts it; net-a's GC then cannot free it.
	if _, err := b.Stale("net-b", []api.Owner{owner("old")}); err != nil {
		t.Fatal(err)
	}
	if stale, _ := b.Stale("net-a", nil); len(stale) != 0 {
		t.Errorf("Stale(net-a) after net-b adopted = %v, want nothing", stale)
	}
	c := e.newAlloc(e.config()) // the adoption is on disk
	if ips, err := c.Held("net-a", owner("old")); !errors.Is(err, ErrOtherNetwork) {
		t.Errorf("Held(net-a, old) after restart = %v, %v; want ErrOtherNetwork", ips, err)
	}
	if stale, _ := c.Stale("net-b", nil); len(stale) != 1 || stale[0].IP != ip {
		t.Errorf("Stale(net-b) = %v, want the adopted %s", stale, ip)
	}
}

func TestAllocateLocalNeverClaims(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.newAlloc(e.config())
	ctx := context.Background()
	for i := range 3 { // the home /30 has three pod addresses
		if _, _, err := a.AllocateLocal(ctx, testNet, owner(fmt.Sprint("c", i)), ""); err != nil {
			t.Fatalf("AllocateLocal(c%d) = %v", i, err)
		}
	}
	e.store.setErr(errors.New("etcd unreachable"))
	_, _, err := a.AllocateLocal(ctx, testNet, owner("c9"), "")
	if !errors.Is(err, ErrNeedsBlock) {
		t.Fatalf("AllocateLocal() on full blocks = %v, want ErrNeedsBlock", err)
	}
	if got := a.Stats().Blocks; got != 1 {
		t.Errorf("blocks after AllocateLocal = %d, want 1 (no claim)", got)
	}
}

func TestReleaseEmptyBlocks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.newAlloc(e.config())
	ctx := context.Background()
	for i := range 4 {
		mustAllocate(t, a, owner(fmt.Sprint("c", i)), "")
	}
	check := func(step string, want []netip.Prefix) {
		t.Helper()
		got, err := a.ReleaseEmptyBlocks(ctx)
		if err != nil {
			t.Fatalf("%s: ReleaseEmptyBlocks() = %v", step, err)
		}
		if d := cmp.Diff(want, got, cmpOpts, cmpopts.EquateEmpty()); d != "" {
			t.Errorf("%s: released (-want +got):\n%s", step, d)
		}
	}
	check("second block in use", nil)
	mustRelease(t, a, owner("c3"))
	check("second block cooling", nil)
	e.clock.Advance(DefaultCooldown)
	check("second block empty", pfxs("10.0.0.0/30"))
	if d := cmp.Diff(pfxs("10.0.0.12/30"), e.store.owned("node-a"), cmpOpts); d != "" {
		t.Errorf("store blocks (-want +got):\n%s", d)
	}
	if d := cmp.Diff(pfxs("10.0.0.12/30"), a.Blocks(), cmpOpts); d != "" {
		t.Errorf("Blocks() (-want +got):\n%s", d)
	}
	for i := range 3 {
		mustRelease(t, a, owner(fmt.Sprint("c", i)))
	}
	e.clock.Advance(DefaultCooldown)
	check("home block is never released", nil)

	// Saved: a restart does not bring the released block back.
	b := e.newAlloc(e.config())
	if d := cmp.Diff(pfxs("10.0.0.12/30"), b.Blocks(), cmpOpts); d != "" {
		t.Errorf("Blocks() after restart (-want +got):\n%s", d)
	}
}

func TestReleaseEmptyBlocksStoreError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.newAlloc(e.config())
	for i := range 4 {
		mustAllocate(t, a, owner(fmt.Sprint("c", i)), "")
	}
	mustRelease(t, a, owner("c3"))
	e.clock.Advance(DefaultCooldown)
	e.store.setErr(errors.New("etcd down"))
	got, err := a.ReleaseEmptyBlocks(context.Background())
	if err == nil || len(got) != 0 {
		t.Errorf("ReleaseEmptyBlocks() = %v, %v; want the store error and nothing released", got, err)
	}
	if got := len(a.Blocks()); got != 2 {
		t.Errorf("node holds %d blocks, want 2", got)
	}
}

func TestParallelAllocateOneNode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.Pools = []api.Pool{pool("10.1.0.0/24", 28)} // 16 blocks of 15 addresses
	a := e.newAlloc(cfg)
	const n = 100
	got := make([]netip.Addr, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			o := owner(fmt.Sprint("c", i))
			ip, _, err := a.Allocate(context.Background(), testNet, o, "")
			if err == nil {
				// A repeated ADD for the same owner gets the same address.
				again, existing, err2 := a.Allocate(context.Background(), testNet, o, "")
				if err2 != nil || !existing || again != ip {
					err = fmt.Errorf("repeat gave %s, %t, %v", again, existing, err2)
				}
			}
			got[i], errs[i] = ip, err
		})
	}
	wg.Wait()
	seen := make(map[netip.Addr]int)
	for i, ip := range got {
		if errs[i] != nil {
			t.Fatalf("owner c%d: %v", i, errs[i])
		}
		if j, dup := seen[ip]; dup {
			t.Errorf("%s given to c%d and c%d", ip, j, i)
		}
		seen[ip] = i
	}
	if got := a.Stats(); got.Used != n || got.Blocks != 7 {
		t.Errorf("Stats() = %+v, want %d used in 7 blocks", got, n)
	}
	b := e.newAlloc(cfg)
	if d := cmp.Diff(a.Allocations(), b.Allocations(), cmpOpts); d != "" {
		t.Errorf("restart (-want +got):\n%s", d)
	}
}

func TestCorruptStateSlots(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, n := range []string{StateName + ".0", StateName + ".1"} {
		if err := os.WriteFile(filepath.Join(e.dir, n), []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err := New(context.Background(), e.config())
	if err == nil || !strings.Contains(err.Error(), filepath.Join(e.dir, StateName)) || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("New() = %v, want a corrupt-state error naming %s", err, filepath.Join(e.dir, StateName))
	}
	if e.store.claims != 0 {
		t.Errorf("store saw %d claims, want none", e.store.claims)
	}
}

// A crash while a change is written tears the older slot only: a restart
// keeps every allocation a call returned for.
func TestTornStateWriteKeepsAnsweredAllocations(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.newAlloc(e.config())
	ip1 := mustAllocate(t, a, owner("c1"), "")
	ip2 := mustAllocate(t, a, owner("c2"), "")
	// Crash while c3's allocation is written: the slot that write went to
	// holds only its first half, and c3 was never answered.
	mustAllocate(t, a, owner("c3"), "")
	torn := a.slots.Newest()
	b, err := os.ReadFile(torn)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(torn, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.newAlloc(e.config())
	for o, ip := range map[string]netip.Addr{"c1": ip1, "c2": ip2} {
		if got := r.Lookup(owner(o)); len(got) != 1 || got[0] != ip {
			t.Errorf("after a torn write, Lookup(%s) = %v, want [%s]", o, got, ip)
		}
	}
	if got := r.Lookup(owner("c3")); got != nil {
		t.Errorf("after a torn write, Lookup(c3) = %v, want nothing (never answered)", got)
	}
	if got := mustAllocate(t, r, owner("c4"), ""); got == ip1 || got == ip2 {
		t.Errorf("Allocate(c4) after the restart = %s, an address already held", got)
	}
}

func BenchmarkAllocateRelease(b *testing.B) {
	store := newFakeStore()
	a, err := New(context.Background(), Config{
		Node: "node-a", Pools: []api.Pool{pool("10.0.0.0/16", 26)}, Store: store,
		StateDir: b.TempDir(), Cooldown: -1,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	// A node with 40 pods: each change rewrites all of them.
	for i := range 40 {
		if _, _, err := a.Allocate(ctx, testNet, owner(fmt.Sprintf("p%d", i)), "ns/p"); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if _, _, err := a.Allocate(ctx, testNet, owner("c"), "ns/c"); err != nil {
			b.Fatal(err)
		}
		if _, err := a.Release(ctx, testNet, owner("c")); err != nil {
			b.Fatal(err)
		}
	}
}
