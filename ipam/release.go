package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/skeinnet/skein/api"
)

// Bounds of the interval at which RunBlockRelease looks for empty blocks.
const (
	minReleaseEvery = time.Second
	maxReleaseEvery = time.Minute
)

// ReleaseEvery returns how often RunBlockRelease should look for blocks to
// release with a grace of grace: a tenth of it, so a block goes back at most
// 10 % late, between a second and a minute. Each look costs O(addresses of
// the node) in memory and no store call unless a block is due.
func ReleaseEvery(grace time.Duration) time.Duration {
	return min(max(grace/10, minReleaseEvery), maxReleaseEvery)
}

// RunBlockRelease calls ReleaseEmptyBlocks every interval until ctx is
// done. A failed release is logged and tried again at the next tick; the
// block is not used meanwhile.
func (a *Allocator) RunBlockRelease(ctx context.Context, every time.Duration) error {
	if every <= 0 {
		return fmt.Errorf("ipam: block release interval %s is not positive", every)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := a.ReleaseEmptyBlocks(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("block release failed, retried later", "err", err)
		}
	}
}

// ReleaseEmptyBlocks returns to the pool every block other than the home
// block that has held no allocation and no cooling address for at least
// Config.ReleaseGrace, and returns them. A block whose release is under way
// is never used for an allocation: it is marked under a.mu before the store
// is asked, and the store deletes the block only if it still names this node.
// A block the store call fails for stays marked (the delete may have gone
// through) and is tried again at the next call; its error is joined.
func (a *Allocator) ReleaseEmptyBlocks(ctx context.Context) ([]netip.Prefix, error) {
	a.releaseMu.Lock()
	defer a.releaseMu.Unlock()

	a.mu.Lock()
	now := a.now()
	var due []netip.Prefix
	for _, e := range a.emptyBlocksLocked(now) {
		if a.releasing[e.CIDR] || (!e.Home && !now.Before(e.Since.Add(a.grace))) {
			a.releasing[e.CIDR] = true
			due = append(due, e.CIDR)
		}
	}
	a.mu.Unlock()

	var released []netip.Prefix
	var errs []error
	for _, b := range due {
		// Outside a.mu: only this loop waits for the store.
		if err := a.releaseBlock(ctx, b); err != nil {
			errs = append(errs, fmt.Errorf("release block %s: %w", b, err))
			continue
		}
		released = append(released, b)
	}
	if len(released) == 0 {
		return nil, errors.Join(errs...)
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	for _, b := range released {
		a.forgetBlockLocked(b)
		a.log.Info("block released", "prefix", b, "count", len(a.blocks))
	}
	// A block released in the store but still in the file (the save
	// failed) is harmless: the next start re-claims it, empty, or drops it.
	if err := a.saveLocked(); err != nil {
		errs = append(errs, err)
	}
	return released, errors.Join(errs...)
}

// forgetBlockLocked drops block b, which holds no allocation, from the
// node's blocks. a.mu must be held.
func (a *Allocator) forgetBlockLocked(b netip.Prefix) {
	a.blocks = slices.DeleteFunc(a.blocks, func(p netip.Prefix) bool { return p == b })
	for ip := range a.cooling {
		if b.Contains(ip) {
			delete(a.cooling, ip)
		}
	}
	delete(a.quietAt, b)
	delete(a.releasing, b)
}

// EmptyBlocks returns the node's blocks that hold no allocation and no
// cooling address, home block first, with when they became empty and when
// they go back to the pool (never for the home block, nor when grace is
// negative: the agent's way of saying release is off).
func (a *Allocator) EmptyBlocks(grace time.Duration) []api.EmptyBlock {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.emptyBlocksLocked(a.now())
	for i := range out {
		if !out[i].Home && grace >= 0 {
			out[i].ReleaseAt = out[i].Since.Add(grace)
		}
	}
	return out
}

// emptyBlocksLocked returns the node's blocks that hold no allocation and no
// address cooling at now, in the order of a.blocks. It looks at every
// allocation rather than trusting counters, so no path that frees or takes
// an address can leave a block wrongly empty. a.mu must be held.
func (a *Allocator) emptyBlocksLocked(now time.Time) []api.EmptyBlock {
	busy := make(map[netip.Prefix]bool, len(a.blocks))
	for _, al := range a.allocs {
		busy[al.Block] = true
	}
	for ip, until := range a.cooling {
		if until.After(now) {
			if b, ok := a.containingLocked(ip); ok {
				busy[b] = true
			}
		}
	}
	var out []api.EmptyBlock
	for _, b := range a.blocks {
		if busy[b] {
			continue
		}
		since, ok := a.quietAt[b]
		if !ok || since.After(now) {
			since = now // not expected: every block gets a time when added
			a.quietAt[b] = since
		}
		out = append(out, api.EmptyBlock{CIDR: b, Since: since, Home: b == a.home})
	}
	return out
}

// loadQuietLocked sets when each block went quiet from the cooling
// addresses of the state file: blocks without any count from now, as the
// file does not say when their last address was freed. a.mu must be held.
func (a *Allocator) loadQuietLocked(now time.Time) {
	for _, b := range a.blocks {
		a.quietAt[b] = now
	}
	for ip, until := range a.cooling {
		if b, ok := a.containingLocked(ip); ok && until.After(a.quietAt[b]) {
			a.quietAt[b] = until
		}
	}
}
