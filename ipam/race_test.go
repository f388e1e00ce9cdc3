package ipam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"testing"

	"github.com/skeinnet/skein/api"
)

// raceNode is one node's allocator and what it handed out.
type raceNode struct {
	name  string
	a     *Allocator
	err   error
	addrs []netip.Addr
}

// runNodes starts one allocator per node on a shared store, all at once, and
// has each allocate perNode addresses from workers goroutines at once.
func runNodes(t *testing.T, s *fakeStore, pools []api.Pool, nodes, workers, perNode int) []*raceNode {
	t.Helper()
	clock := newFakeClock()
	out := make([]*raceNode, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		rn := &raceNode{name: fmt.Sprintf("node-%d", i)}
		out[i] = rn
		wg.Go(func() {
			rn.a, rn.err = New(context.Background(), Config{
				Node: rn.name, Pools: pools, Store: s, StateDir: t.TempDir(), Now: clock.Now,
				Log: slog.New(slog.DiscardHandler),
			})
			if rn.err != nil {
				return
			}
			var mu sync.Mutex
			var inner sync.WaitGroup
			for w := range workers {
				inner.Go(func() {
					for k := range perNode / workers {
						ip, _, err := rn.a.Allocate(context.Background(), testNet, owner(fmt.Sprintf("%s-%d-%d", rn.name, w, k)), "")
						mu.Lock()
						if err != nil {
							rn.err = err
						} else {
							rn.addrs = append(rn.addrs, ip)
						}
						mu.Unlock()
					}
				})
			}
			inner.Wait()
		})
	}
	wg.Wait()
	return out
}

// checkDisjoint verifies that no block and no address is shared between
// nodes, that every address lies in its node's blocks and is not a block's
// reserved first address, and that the store agrees with each node's blocks.
func checkDisjoint(t *testing.T, s *fakeStore, nodes []*raceNode) {
	t.Helper()
	blockOwner := make(map[netip.Prefix]string)
	addrOwner := make(map[netip.Addr]string)
	for _, rn := range nodes {
		if rn.a == nil {
			continue
		}
		blocks := rn.a.Blocks()
		for _, b := range blocks {
			for ob, on := range blockOwner {
				if ob.Overlaps(b) {
					t.Errorf("block %s of %s overlaps block %s of %s", b, rn.name, ob, on)
				}
			}
			blockOwner[b] = rn.name
		}
		stored := s.owned(rn.name)
		if len(stored) != len(blocks) {
			t.Errorf("%s holds %v, the store gives it %v", rn.name, blocks, stored)
		}
		for _, b := range stored {
			if blockOwner[b] != rn.name {
				t.Errorf("store gives %s to %s, which does not hold it", b, rn.name)
			}
		}
		for _, al := range rn.a.Allocations() {
			if on, dup := addrOwner[al.IP]; dup {
				t.Errorf("%s handed out by %s and %s", al.IP, on, rn.name)
			}
			addrOwner[al.IP] = rn.name
			if !inAny(blocks, al.IP) {
				t.Errorf("%s of %s lies outside its blocks %v", al.IP, rn.name, blocks)
			}
			if al.IP == al.Block.Masked().Addr() {
				t.Errorf("%s of %s is a block's reserved first address", al.IP, rn.name)
			}
		}
	}
}

func TestManyNodesRace(t *testing.T) {
	t.Parallel()
	s := newFakeStore()
	// 256 blocks of 15 addresses; 50 nodes × 40 addresses need 150 of them.
	pools := []api.Pool{pool("10.0.0.0/20", 28)}
	nodes := runNodes(t, s, pools, 50, 4, 40)
	for _, rn := range nodes {
		if rn.err != nil {
			t.Errorf("%s: %v", rn.name, rn.err)
			continue
		}
		if len(rn.addrs) != 40 {
			t.Errorf("%s got %d addresses, want 40", rn.name, len(rn.addrs))
		}
		if got := len(rn.a.Blocks()); got != 3 {
			t.Errorf("%s holds %d blocks, want 3", rn.name, got)
		}
	}
	checkDisjoint(t, s, nodes)
}

func TestManyNodesRaceExhausted(t *testing.T) {
	t.Parallel()
	s := newFakeStore()
	// 16 blocks for 50 nodes that each want two: most must fail, and cleanly.
	pools := []api.Pool{pool("10.0.0.0/24", 28)}
	nodes := runNodes(t, s, pools, 50, 2, 20)
	started, full := 0, 0
	for _, rn := range nodes {
		if rn.a != nil {
			started++
		}
		if rn.err == nil {
			full++
			continue
		}
		if !errors.Is(rn.err, ErrExhausted) {
			t.Errorf("%s: %v, want ErrExhausted", rn.name, rn.err)
		}
	}
	// Every started node holds a block, every full one two.
	if started > 16 || full > 8 || started == 0 {
		t.Errorf("%d nodes started and %d got all their addresses on 16 blocks", started, full)
	}
	total := 0
	for _, rn := range nodes {
		total += len(s.owned(rn.name))
	}
	if total != 16 {
		t.Errorf("%d of 16 blocks claimed, want all", total)
	}
	checkDisjoint(t, s, nodes)
}
