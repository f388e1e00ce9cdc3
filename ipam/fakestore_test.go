package ipam

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/skeinnet/skein/api"
)

// fakeStore is an in-memory BlockStore with the store's create-if-absent and
// delete-if-owner semantics.
type fakeStore struct {
	mu     sync.Mutex
	blocks map[netip.Prefix]string
	err    error // returned by every call when set
	claims int   // ClaimBlock calls
}

func newFakeStore() *fakeStore { return &fakeStore{blocks: make(map[netip.Prefix]string)} }

func (s *fakeStore) ListBlocks(_ context.Context) ([]api.Block, error) {
	defer runtime.Gosched() // let racing nodes act between a list and a claim
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	out := make([]api.Block, 0, len(s.blocks))
	for p, n := range s.blocks {
		out = append(out, api.Block{CIDR: p, Node: n})
	}
	slices.SortFunc(out, func(x, y api.Block) int { return comparePrefixes(x.CIDR, y.CIDR) })
	return out, nil
}

func (s *fakeStore) ClaimBlock(_ context.Context, cidr netip.Prefix, node string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return false, s.err
	}
	if cidr != cidr.Masked() || node == "" {
		return false, fmt.Errorf("fake store: bad claim %s by %q", cidr, node)
	}
	s.claims++
	if owner, ok := s.blocks[cidr]; ok {
		return owner == node, nil
	}
	s.blocks[cidr] = node
	return true, nil
}

func (s *fakeStore) ReleaseBlock(_ context.Context, cidr netip.Prefix, node string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if s.blocks[cidr] == node {
		delete(s.blocks, cidr)
	}
	return nil
}

// set gives cidr to node, or frees it when node is "".
func (s *fakeStore) set(cidr netip.Prefix, node string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if node == "" {
		delete(s.blocks, cidr)
		return
	}
	s.blocks[cidr] = node
}

// owned returns the blocks node owns, sorted.
func (s *fakeStore) owned(node string) []netip.Prefix {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []netip.Prefix
	for p, n := range s.blocks {
		if n == node {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, comparePrefixes)
	return out
}

func (s *fakeStore) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
