package ipam_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/ipam"
	"github.com/skeinnet/skein/store"
)

// startEtcd starts an embedded etcd for one test and returns a client.
func startEtcd(t *testing.T, ctx context.Context) (*store.Embedded, *store.Client) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts an embedded etcd; skipped with -short")
	}
	e, err := store.StartEmbedded(ctx, store.EmbeddedConfig{Dir: filepath.Join(t.TempDir(), "etcd"), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cl, err := store.New(ctx, store.Config{Endpoints: e.Endpoints(), DialTimeout: loadedDial})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return e, cl
}

// settableClock is a clock a test moves by hand.
type settableClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *settableClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *settableClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func blockOwners(t *testing.T, ctx context.Context, cl *store.Client) map[netip.Prefix]string {
	t.Helper()
	bl, err := cl.ListBlocks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Prefix]string{}
	for _, b := range bl {
		out[b.CIDR] = b.Node
	}
	return out
}

// TestEmptyBlockBackToPoolEtcd: against a real etcd, a node returns an empty
// block after the grace and another node then claims it; the node's home
// block and a block with an address still cooling down stay with the node.
func TestEmptyBlockBackToPoolEtcd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, cl := startEtcd(t, ctx)
	const cooldown, grace = 5 * time.Minute, time.Minute
	clock := &settableClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	// Four /30 blocks of three pod addresses.
	pools := []api.Pool{{CIDR: netip.MustParsePrefix("10.78.0.0/28"), BlockSize: 30}}
	newNode := func(name string) *ipam.Allocator {
		t.Helper()
		a, err := ipam.New(ctx, ipam.Config{
			Node: name, Pools: pools, Store: cl, StateDir: t.TempDir(),
			Cooldown: cooldown, ReleaseGrace: grace, Now: clock.Now,
		})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return a
	}
	alloc := func(a *ipam.Allocator, id string) netip.Addr {
		t.Helper()
		ip, _, err := a.Allocate(ctx, "net-a", api.Owner{ContainerID: id, IfName: "eth0"}, "")
		if err != nil {
			t.Fatalf("allocate %s: %v", id, err)
		}
		return ip
	}
	release := func(a *ipam.Allocator, id string) {
		t.Helper()
		if _, err := a.Release(ctx, "net-a", api.Owner{ContainerID: id, IfName: "eth0"}); err != nil {
			t.Fatalf("release %s: %v", id, err)
		}
	}

	a := newNode("node-a")
	for i := range 7 { // home full, the second block full, one address in a third
		alloc(a, fmt.Sprint("a", i))
	}
	blocks := a.Blocks()
	if len(blocks) != 3 {
		t.Fatalf("node-a holds %v, want 3 blocks", blocks)
	}
	home, quiet, cooling := blocks[0], blocks[1], blocks[2]
	for _, al := range a.Allocations() {
		if al.Owner.ContainerID == "a6" && al.Block != cooling {
			// Blocks after the home one are in address order, not claim order.
			quiet, cooling = cooling, quiet
		}
	}
	b := newNode("node-b") // takes the last free block
	for i := range 3 {
		alloc(b, fmt.Sprint("b", i))
	}

	release(a, "a0") // home: never released
	for _, id := range []string{"a3", "a4", "a5"} {
		release(a, id) // quiet block: empty at +5m
	}
	clock.Advance(4 * time.Minute)
	release(a, "a6") // cooling block: an address rests until +9m
	clock.Advance(2*time.Minute + time.Second)

	got, err := a.ReleaseEmptyBlocks(ctx)
	if err != nil {
		t.Fatalf("ReleaseEmptyBlocks() = %v", err)
	}
	if !slices.Equal(got, []netip.Prefix{quiet}) {
		t.Errorf("released %v, want only %s (empty for longer than the grace)", got, quiet)
	}
	owners := blockOwners(t, ctx, cl)
	if owners[home] != "node-a" || owners[cooling] != "node-a" {
		t.Errorf("etcd gives home %s to %q and cooling %s to %q, want both kept by node-a", home, owners[home], cooling, owners[cooling])
	}
	if _, ok := owners[quiet]; ok {
		t.Errorf("etcd still holds %s for %q", quiet, owners[quiet])
	}

	// node-b is full: its next container gets the released block.
	ip := alloc(b, "b3")
	if !quiet.Contains(ip) {
		t.Errorf("node-b's next address %s is not in the released block %s", ip, quiet)
	}
	if owner := blockOwners(t, ctx, cl)[quiet]; owner != "node-b" {
		t.Errorf("etcd gives %s to %q, want node-b", quiet, owner)
	}

	// Once its address is done cooling and the grace is over, the other
	// block goes back too; the home block stays.
	clock.Advance(4 * time.Minute)
	if got, err := a.ReleaseEmptyBlocks(ctx); err != nil || !slices.Equal(got, []netip.Prefix{cooling}) {
		t.Errorf("ReleaseEmptyBlocks() = %v, %v; want %s", got, err, cooling)
	}
	if d := a.Blocks(); !slices.Equal(d, []netip.Prefix{home}) {
		t.Errorf("node-a holds %v, want only its home block", d)
	}
}

// TestChurnAgainstEtcd: nodes allocate and release from many goroutines at
// once, so blocks are claimed and released back and forth under contention,
// while each node's releaser runs with no grace. No block ever has two
// owners, no address is held by two owners at once, and at the end every
// node's view of its blocks is what etcd says.
func TestChurnAgainstEtcd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e, _ := startEtcd(t, ctx)
	// 16 blocks of /28 (15 addresses); 4 nodes × 8 workers × 6 live
	// addresses need 13 of them at the peak.
	pools := []api.Pool{{CIDR: netip.MustParsePrefix("10.79.0.0/24"), BlockSize: 28}}
	const nodes, workers, live, rounds = 4, 8, 6, 4

	var mu sync.Mutex
	held := map[netip.Addr]string{} // address → owner, while held
	var errs []error
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	allocs := make([]*ipam.Allocator, nodes)
	var wg sync.WaitGroup
	for n := range nodes {
		wg.Go(func() {
			name := fmt.Sprintf("node-%d", n)
			cl, err := store.New(ctx, store.Config{Endpoints: e.Endpoints(), DialTimeout: loadedDial})
			if err != nil {
				fail(err)
				return
			}
			defer cl.Close()
			a, err := ipam.New(ctx, ipam.Config{Node: name, Pools: pools, Store: cl, StateDir: t.TempDir(), Cooldown: -1})
			if err != nil {
				fail(fmt.Errorf("%s: %w", name, err))
				return
			}
			allocs[n] = a
			rctx, stop := context.WithCancel(ctx)
			released := make(chan struct{})
			go func() {
				defer close(released)
				tick := time.NewTicker(time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-rctx.Done():
						return
					case <-tick.C:
					}
					if _, err := a.ReleaseEmptyBlocks(rctx); err != nil && rctx.Err() == nil {
						fail(fmt.Errorf("%s: release: %w", name, err))
					}
				}
			}()
			var inner sync.WaitGroup
			for w := range workers {
				inner.Go(func() {
					for r := range rounds {
						var mine []api.Owner
						for k := range live {
							o := api.Owner{ContainerID: fmt.Sprintf("%s-w%d-r%d-%d", name, w, r, k), IfName: "eth0"}
							ip, _, err := a.Allocate(ctx, "net-a", o, "")
							if err != nil {
								fail(fmt.Errorf("%s: allocate: %w", name, err))
								return
							}
							mu.Lock()
							if other, dup := held[ip]; dup {
								errs = append(errs, fmt.Errorf("%s handed to %s while %s holds it", ip, o, other))
							}
							held[ip] = o.ContainerID
							mu.Unlock()
							mine = append(mine, o)
						}
						for _, o := range mine {
							ips := a.Lookup(o)
							mu.Lock()
							for _, ip := range ips {
								delete(held, ip) // before the release: then it may be reused
							}
							mu.Unlock()
							if _, err := a.Release(ctx, "net-a", o); err != nil {
								fail(fmt.Errorf("%s: release %s: %w", name, o, err))
							}
						}
					}
				})
			}
			inner.Wait()
			stop()
			<-released
			if _, err := a.ReleaseEmptyBlocks(ctx); err != nil {
				fail(fmt.Errorf("%s: last release: %w", name, err))
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	cl, err := store.New(ctx, store.Config{Endpoints: e.Endpoints(), DialTimeout: loadedDial})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	owners := blockOwners(t, ctx, cl)
	seen := map[netip.Prefix]string{}
	for n, a := range allocs {
		if a == nil {
			continue
		}
		name := fmt.Sprintf("node-%d", n)
		for _, b := range a.Blocks() {
			if other, dup := seen[b]; dup {
				t.Errorf("block %s held by %s and %s", b, other, name)
			}
			seen[b] = name
			if owners[b] != name {
				t.Errorf("%s believes it holds %s; etcd says %q", name, b, owners[b])
			}
		}
	}
	for b, n := range owners {
		if seen[b] != n {
			t.Errorf("etcd gives %s to %s, which does not hold it", b, n)
		}
	}
	if len(owners) != nodes {
		t.Errorf("etcd holds %d blocks after all containers left, want %d home blocks", len(owners), nodes)
	}
}
