package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/skeinnet/skein/api"
)

// reconcileLocked aligns the blocks loaded from the state file with the
// store: blocks the store says are ours are adopted; listed blocks the store
// does not show as ours are re-claimed, or dropped with their allocations if
// another node got them. It then makes sure the node holds a block. a.mu must
// be held.
func (a *Allocator) reconcileLocked(ctx context.Context, home netip.Prefix) error {
	all, err := a.listBlocks(ctx)
	if err != nil {
		return fmt.Errorf("list blocks: %w", err)
	}
	ours := make(map[netip.Prefix]bool)
	holder := make(map[netip.Prefix]string)
	for _, b := range all {
		holder[b.CIDR] = b.Node
		if b.Node == a.node {
			ours[b.CIDR] = true
		}
	}

	var keep []netip.Prefix
	for _, b := range a.blocks {
		if ours[b] {
			keep = append(keep, b)
			continue
		}
		ok, err := a.claimBlock(ctx, b)
		if err != nil {
			return fmt.Errorf("re-claim block %s: %w", b, err)
		}
		if ok {
			a.log.Warn("block missing from store, re-claimed", "prefix", b)
			keep = append(keep, b)
			continue
		}
		a.dropBlockLocked(b, holder[b])
	}
	for _, b := range all {
		if b.Node == a.node && !slices.Contains(keep, b.CIDR) {
			keep = append(keep, b.CIDR)
			a.log.Info("block adopted from store", "prefix", b.CIDR)
		}
	}
	for _, b := range keep {
		if !a.inPoolsLocked(b) {
			a.log.Warn("block outside every pool, kept while it holds addresses", "prefix", b)
		}
	}

	a.blocks = nil
	switch {
	case slices.Contains(keep, home):
		a.home = home
	case len(keep) > 0:
		slices.SortFunc(keep, comparePrefixes)
		a.home = keep[0]
		if home.IsValid() {
			a.log.Warn("home block changed, the VTEP address moves", "prefix", a.home, "old", home)
		}
	default:
		a.home = netip.Prefix{}
	}
	for _, b := range keep {
		a.addBlockLocked(b)
	}
	if len(a.blocks) == 0 {
		if _, err := a.claimLocked(ctx); err != nil {
			return fmt.Errorf("claim home block: %w", err)
		}
	}
	return nil
}

// dropBlockLocked forgets block b, which another node now owns, with the
// allocations and cooldowns inside it. a.mu must be held.
func (a *Allocator) dropBlockLocked(b netip.Prefix, peer string) {
	var lost []string
	for ip, al := range a.allocs {
		if b.Contains(ip) {
			lost = append(lost, fmt.Sprintf("%s %s %s", al.IP, al.Owner, al.Pod))
			delete(a.allocs, ip)
			delete(a.owners, al.Owner)
		}
	}
	for ip := range a.cooling {
		if b.Contains(ip) {
			delete(a.cooling, ip)
		}
	}
	delete(a.quietAt, b)
	if len(lost) == 0 {
		a.log.Warn("block lost to another node", "prefix", b, "peer", peer)
		return
	}
	slices.Sort(lost)
	// These containers keep addresses another node may now hand out: an
	// operator has to restart them.
	a.log.Error("block lost to another node, its allocations are dropped",
		"prefix", b, "peer", peer, "count", len(lost), "allocations", lost)
}

// addBlockLocked adds b to the node's blocks, keeping the home block first and
// the others sorted; the first block ever added becomes the home block. a.mu
// must be held.
func (a *Allocator) addBlockLocked(b netip.Prefix) {
	if !a.home.IsValid() {
		a.home = b
	}
	if slices.Contains(a.blocks, b) {
		return
	}
	a.quietAt[b] = a.now()
	a.blocks = append(a.blocks, b)
	slices.SortFunc(a.blocks, func(x, y netip.Prefix) int {
		switch {
		case x == a.home && y != a.home:
			return -1
		case y == a.home && x != a.home:
			return 1
		}
		return comparePrefixes(x, y)
	})
}

func comparePrefixes(x, y netip.Prefix) int {
	if c := x.Addr().Compare(y.Addr()); c != 0 {
		return c
	}
	return x.Bits() - y.Bits()
}

// inPoolsLocked reports whether b lies inside one of the pools.
func (a *Allocator) inPoolsLocked(b netip.Prefix) bool {
	for _, p := range a.pools {
		if b.Bits() >= p.CIDR.Bits() && p.CIDR.Contains(b.Addr()) {
			return true
		}
	}
	return false
}

// errNoFreeBlock means every block of every pool is claimed; the caller
// turns it into an ErrExhausted that describes the node's blocks.
var errNoFreeBlock = errors.New("no free block in any pool")

// claimLocked gets the node one more block and adds it. Only New calls it,
// before the allocator is shared; Allocate goes through awaitBlockLocked,
// which does not hold a.mu across the store. a.mu must be held.
func (a *Allocator) claimLocked(ctx context.Context) (netip.Prefix, error) {
	if err := a.maxBlocksLocked(); err != nil {
		return netip.Prefix{}, err
	}
	b, adopted, err := a.claim(ctx, a.blocks)
	if errors.Is(err, errNoFreeBlock) {
		return netip.Prefix{}, a.exhaustedLocked()
	}
	if err != nil {
		return netip.Prefix{}, err
	}
	a.addClaimedLocked(b, adopted)
	return b, nil
}

// maxBlocksLocked returns an ErrExhausted when the node may claim no more
// blocks. a.mu must be held.
func (a *Allocator) maxBlocksLocked() error {
	if a.maxBlocks > 0 && len(a.blocks) >= a.maxBlocks {
		return fmt.Errorf("%w: node %s holds its maximum of %s, all full%s",
			ErrExhausted, a.node, plural(len(a.blocks), "block"), a.coolingDetailLocked())
	}
	return nil
}

// addClaimedLocked adds a block claim returned. a.mu must be held.
func (a *Allocator) addClaimedLocked(b netip.Prefix, adopted bool) {
	a.addBlockLocked(b)
	if adopted {
		a.log.Info("block adopted from store", "prefix", b)
		return
	}
	a.log.Info("block claimed", "prefix", b, "count", len(a.blocks))
}

// claim finds the node one more block in the store; have are the blocks it
// holds already. A block the store already shows as the node's (say, from a
// claim whose answer was lost) is adopted first (adopted=true); otherwise
// free blocks are claimed in the node's spread order. It reads only fields
// fixed at New, so it runs without a.mu; the store's create-if-absent
// transaction is what keeps a block from having two owners.
func (a *Allocator) claim(ctx context.Context, have []netip.Prefix) (b netip.Prefix, adopted bool, err error) {
	lost := 0
	for round := 0; round < claimRounds; round++ {
		all, err := a.listBlocks(ctx)
		if err != nil {
			return netip.Prefix{}, false, fmt.Errorf("list blocks: %w", err)
		}
		for _, b := range all {
			if b.Node == a.node && !slices.Contains(have, b.CIDR) {
				return b.CIDR, true, nil
			}
		}
		taken := make([]netip.Prefix, 0, len(all))
		for _, b := range all {
			taken = append(taken, b.CIDR)
		}
		cands := candidateBlocks(a.pools, taken, a.node, claimCandidates)
		if len(cands) == 0 {
			return netip.Prefix{}, false, errNoFreeBlock
		}
		for _, b := range cands {
			ok, err := a.claimBlock(ctx, b)
			if err != nil {
				return netip.Prefix{}, false, fmt.Errorf("claim block %s: %w", b, err)
			}
			if ok {
				return b, false, nil
			}
			lost++
			a.log.Debug("block claim lost", "prefix", b)
		}
	}
	return netip.Prefix{}, false, fmt.Errorf("claim block: lost %d races for free blocks, try again", lost)
}

// exhaustedLocked describes why no block is left. a.mu must be held.
func (a *Allocator) exhaustedLocked() error {
	parts := make([]string, 0, len(a.pools)+1)
	for _, p := range a.pools {
		parts = append(parts, fmt.Sprintf("pool %s: all %s claimed", p.CIDR, plural(int(blockCount(p)), "block")))
	}
	parts = append(parts, fmt.Sprintf("node %s's %s full%s", a.node, plural(len(a.blocks), "block"), a.coolingDetailLocked()))
	return fmt.Errorf("%w: %s", ErrExhausted, strings.Join(parts, ", "))
}

// coolingDetailLocked says how many of the node's addresses are only resting,
// or nothing. a.mu must be held.
func (a *Allocator) coolingDetailLocked() string {
	now := a.now()
	first, n := nextCoolingEnd(a.blocks, a.cooling, now)
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%s cooling down, the first free again in %s)",
		plural(n, "address"), first.Sub(now).Round(time.Second))
}

func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", noun)
	}
	if strings.HasSuffix(noun, "s") {
		return fmt.Sprintf("%d %ses", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// listBlocks returns the cluster's claimed blocks of the allocator's family:
// one allocator serves one family, and the other family's blocks are
// another allocator's (see Dual).
func (a *Allocator) listBlocks(ctx context.Context) ([]api.Block, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	all, err := a.store.ListBlocks(ctx)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(b api.Block) bool { return b.CIDR.Addr().Is6() != a.v6 }), nil
}

func (a *Allocator) claimBlock(ctx context.Context, b netip.Prefix) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	return a.store.ClaimBlock(ctx, b, a.node)
}

func (a *Allocator) releaseBlock(ctx context.Context, b netip.Prefix) error {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	return a.store.ReleaseBlock(ctx, b, a.node)
}
