package ipam_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/ipam"
	"github.com/skeinnet/skein/store"
)

// TestRaceAgainstEtcd: 50 node allocators claim blocks from one real etcd
// at once. No block ever has two owners, no address is handed out twice, and
// what every allocator believes it holds is what etcd says; a node reports
// the pool exhausted only once its own blocks are full.
func TestRaceAgainstEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an embedded etcd; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e, err := store.StartEmbedded(ctx, store.EmbeddedConfig{Dir: filepath.Join(t.TempDir(), "etcd"), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// 32 blocks of /28 (15 usable addresses each) for 50 nodes wanting 20
	// addresses each: blocks run out, so nodes contend and some must fail
	// with ErrExhausted.
	pools := []api.Pool{{CIDR: netip.MustParsePrefix("10.77.0.0/23"), BlockSize: 28}}
	const nodes, perNode = 50, 20

	var wg sync.WaitGroup
	var mu sync.Mutex
	held := map[netip.Addr]string{}
	blocksOf := map[string][]netip.Prefix{}
	exhausted := 0
	errs := make(chan error, nodes)
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := fmt.Sprintf("node-%02d", i)
			cl, err := store.New(ctx, store.Config{Endpoints: e.Endpoints(), DialTimeout: loadedDial})
			if err != nil {
				errs <- err
				return
			}
			defer cl.Close()
			a, err := ipam.New(ctx, ipam.Config{Node: node, Pools: pools, Store: cl, StateDir: t.TempDir()})
			if err != nil {
				mu.Lock()
				exhausted++
				mu.Unlock()
				if !isExhausted(err) {
					errs <- fmt.Errorf("%s: new: %w", node, err)
				}
				return
			}
			got := 0
			for j := range perNode {
				ip, _, err := a.Allocate(ctx, "net-a", api.Owner{ContainerID: fmt.Sprintf("c%d", j), IfName: "eth0"}, "")
				if err != nil {
					if !isExhausted(err) {
						errs <- fmt.Errorf("%s: allocate: %w", node, err)
					}
					break
				}
				mu.Lock()
				if other, dup := held[ip]; dup {
					errs <- fmt.Errorf("address %s handed to %s and %s", ip, other, node)
				}
				held[ip] = node
				mu.Unlock()
				got++
			}
			// Exhaustion is only right when every block the node holds is full
			// (a /28 block has 15 usable addresses).
			if got < perNode && got != 15*len(a.Blocks()) {
				errs <- fmt.Errorf("%s: exhausted after %d addresses while holding %d blocks", node, got, len(a.Blocks()))
			}
			mu.Lock()
			blocksOf[node] = a.Blocks()
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	cl, err := store.New(ctx, store.Config{Endpoints: e.Endpoints(), DialTimeout: loadedDial})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	stored, err := cl.ListBlocks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	owner := map[netip.Prefix]string{}
	for _, b := range stored {
		owner[b.CIDR] = b.Node
	}
	if len(stored) != 32 {
		t.Errorf("etcd holds %d blocks, want all 32 claimed", len(stored))
	}
	seen := map[netip.Prefix]string{}
	for node, bl := range blocksOf {
		for _, b := range bl {
			if other, dup := seen[b]; dup {
				t.Errorf("block %s held by %s and %s", b, other, node)
			}
			seen[b] = node
			if owner[b] != node {
				t.Errorf("%s believes it holds %s; etcd says %q", node, b, owner[b])
			}
		}
	}
	t.Logf("%d addresses handed out, %d nodes found the pool exhausted at start", len(held), exhausted)
}

func isExhausted(err error) bool { return errors.Is(err, ipam.ErrExhausted) }

// loadedDial is the reachability deadline of the tests' etcd clients: fifty
// clients connecting at once under -race on a busy 2-core machine take longer
// than the default 5 s.
const loadedDial = 30 * time.Second
