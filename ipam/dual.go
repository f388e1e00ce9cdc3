package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/skeinnet/skein/api"
)

// StateDirV6 is the IPv6 allocator's state directory inside StateDir; the
// IPv4 allocator keeps StateDir itself, so a node of an IPv4-only cluster
// is unchanged.
const StateDirV6 = "ipv6"

// Dual hands out one address per family to each attachment: an IPv4
// allocator when the cluster has IPv4 pools, an IPv6 one when it has IPv6
// pools (at least one of them). Each
// family has its own blocks, home block (its first address is the node's
// VTEP address of that family) and state (IPv6: in StateDir/ipv6). An attachment holds both
// addresses or none: when the IPv6 allocation fails, the IPv4 address it
// just got is released again.
type Dual struct {
	v4 *Allocator // nil: IPv6 only
	v6 *Allocator // nil: IPv4 only
}

// NewDual splits cfg.Pools by family and starts one Allocator per family
// present. Without IPv4 pools (an IPv6-only cluster) the IPv6 allocator
// still keeps its state in StateDir/ipv6, so a node's files do not depend
// on which families its cluster has.
func NewDual(ctx context.Context, cfg Config) (*Dual, error) {
	v4Pools, v6Pools := api.PoolsOf(cfg.Pools, false), api.PoolsOf(cfg.Pools, true)
	d := &Dual{}
	if len(v4Pools) > 0 || len(v6Pools) == 0 { // New reports "no pools"
		c4 := cfg
		c4.Pools = v4Pools
		v4, err := New(ctx, c4)
		if err != nil {
			return nil, err
		}
		d.v4 = v4
	}
	if len(v6Pools) > 0 {
		var err error
		c6 := cfg
		c6.Pools, c6.StateDir = v6Pools, filepath.Join(cfg.StateDir, StateDirV6)
		if d.v6, err = New(ctx, c6); err != nil {
			return nil, fmt.Errorf("ipv6: %w", err)
		}
	}
	return d, nil
}

// DualOf wraps an IPv4 allocator alone (tests, and callers that built one).
func DualOf(v4 *Allocator) *Dual { return &Dual{v4: v4} }

// V4 returns the IPv4 allocator, or nil in an IPv6-only cluster.
func (d *Dual) V4() *Allocator { return d.v4 }

// V6 returns the IPv6 allocator, or nil in an IPv4-only cluster.
func (d *Dual) V6() *Allocator { return d.v6 }

func (d *Dual) families() []*Allocator {
	switch {
	case d.v4 == nil:
		return []*Allocator{d.v6}
	case d.v6 == nil:
		return []*Allocator{d.v4}
	}
	return []*Allocator{d.v4, d.v6}
}

// Allocate gives network's attachment o one address per family (IPv4
// first). existing is true when it already held all of them. On an IPv6
// failure the IPv4 address is released again unless o held it before, so
// no attachment is left with one family.
func (d *Dual) Allocate(ctx context.Context, network string, o api.Owner, pod string) ([]netip.Addr, bool, error) {
	return d.allocate(ctx, network, o, pod, true)
}

// AllocateLocal is Allocate without claiming blocks (see Allocator.AllocateLocal).
func (d *Dual) AllocateLocal(ctx context.Context, network string, o api.Owner, pod string) ([]netip.Addr, bool, error) {
	return d.allocate(ctx, network, o, pod, false)
}

func (d *Dual) allocate(ctx context.Context, network string, o api.Owner, pod string, mayClaim bool) ([]netip.Addr, bool, error) {
	if d.v4 == nil {
		ip6, ex6, err := d.v6.allocate(ctx, network, o, pod, mayClaim)
		if err != nil {
			return nil, false, fmt.Errorf("ipv6: %w", err)
		}
		return []netip.Addr{ip6}, ex6, nil
	}
	ip4, ex4, err := d.v4.allocate(ctx, network, o, pod, mayClaim)
	if err != nil {
		return nil, false, err
	}
	if d.v6 == nil {
		return []netip.Addr{ip4}, ex4, nil
	}
	ip6, ex6, err := d.v6.allocate(ctx, network, o, pod, mayClaim)
	if err != nil {
		if !ex4 {
			if rerr := d.v4.undo(network, o); rerr != nil {
				err = errors.Join(err, fmt.Errorf("undo the IPv4 allocation %s: %w", ip4, rerr))
			}
		}
		return nil, false, fmt.Errorf("ipv6: %w", err)
	}
	return []netip.Addr{ip4, ip6}, ex4 && ex6, nil
}

// Release frees every address of network's attachment o, IPv6 first: when
// it fails, the IPv4 address stays held and a repeated DEL frees both.
func (d *Dual) Release(ctx context.Context, network string, o api.Owner) ([]netip.Addr, error) {
	var freed []netip.Addr
	for _, a := range slices.Backward(d.families()) {
		ips, err := a.Release(ctx, network, o)
		if err != nil {
			return freed, err
		}
		freed = append(ips, freed...)
	}
	return freed, nil
}

// Held returns the addresses network's attachment o holds, IPv4 first.
func (d *Dual) Held(network string, o api.Owner) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, a := range d.families() {
		ips, err := a.Held(network, o)
		if err != nil {
			return nil, err
		}
		out = append(out, ips...)
	}
	return out, nil
}

// Lookup returns the addresses o holds, IPv4 first.
func (d *Dual) Lookup(o api.Owner) []netip.Addr {
	var out []netip.Addr
	for _, a := range d.families() {
		out = append(out, a.Lookup(o)...)
	}
	return out
}

// Get returns o's IPv4 allocation (its IPv6 one, if it holds only that),
// or an error wrapping ErrNotFound.
func (d *Dual) Get(o api.Owner) (Allocation, error) {
	if d.v4 == nil {
		return d.v6.Get(o)
	}
	al, err := d.v4.Get(o)
	if errors.Is(err, ErrNotFound) && d.v6 != nil {
		return d.v6.Get(o)
	}
	return al, err
}

// Stale returns network's stale allocations, one per owner (the IPv4 one
// where the owner holds both): the caller Releases each owner, which frees
// every family.
func (d *Dual) Stale(network string, valid []api.Owner) ([]Allocation, error) {
	var out []Allocation
	seen := map[api.Owner]bool{}
	for _, a := range d.families() {
		st, err := a.Stale(network, valid)
		if err != nil {
			return nil, err
		}
		for _, al := range st {
			if !seen[al.Owner] {
				seen[al.Owner] = true
				out = append(out, al)
			}
		}
	}
	slices.SortFunc(out, func(x, y Allocation) int { return compareOwners(x.Owner, y.Owner) })
	return out, nil
}

// Allocations returns every allocation of both families, sorted by IP.
func (d *Dual) Allocations() []Allocation {
	var out []Allocation
	for _, a := range d.families() {
		out = append(out, a.Allocations()...)
	}
	return out
}

// Blocks returns the node's blocks: IPv4 (home first), then IPv6 (home first).
func (d *Dual) Blocks() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range d.families() {
		out = append(out, a.Blocks()...)
	}
	return out
}

// VTEPAddr returns the node's IPv4 VTEP address, or the zero Addr in an
// IPv6-only cluster.
func (d *Dual) VTEPAddr() netip.Addr {
	if d.v4 == nil {
		return netip.Addr{}
	}
	return d.v4.VTEPAddr()
}

// VTEPAddr6 returns the node's IPv6 VTEP address, or the zero Addr.
func (d *Dual) VTEPAddr6() netip.Addr {
	if d.v6 == nil {
		return netip.Addr{}
	}
	return d.v6.VTEPAddr()
}

// Stats sums both families.
func (d *Dual) Stats() Stats {
	var s Stats
	for _, a := range d.families() {
		f := a.Stats()
		s.Blocks += f.Blocks
		s.Capacity += f.Capacity
		s.Used += f.Used
		s.Free += f.Free
		s.Cooling += f.Cooling
	}
	return s
}

// EmptyBlocks returns both families' empty blocks (see Allocator.EmptyBlocks).
func (d *Dual) EmptyBlocks(grace time.Duration) []api.EmptyBlock {
	var out []api.EmptyBlock
	for _, a := range d.families() {
		out = append(out, a.EmptyBlocks(grace)...)
	}
	return out
}

// RunBlockRelease runs each family's block release until ctx is done.
func (d *Dual) RunBlockRelease(ctx context.Context, every time.Duration) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, a := range d.families() {
		g.Go(func() error { return a.RunBlockRelease(ctx, every) })
	}
	return g.Wait()
}

// ServeHTTPDebug writes the IPv4 allocator's debug state; in a dual-stack
// cluster its blocks, allocations and cooling addresses also list the IPv6
// ones, and "ipv6" holds the IPv6 allocator's own state.
func (d *Dual) ServeHTTPDebug(w http.ResponseWriter, r *http.Request) {
	if len(d.families()) == 1 {
		d.families()[0].ServeHTTPDebug(w, r)
		return
	}
	v4, v6 := d.v4.debugSnapshot(), d.v6.debugSnapshot()
	out := struct {
		debugState
		IPv6 debugState `json:"ipv6"`
	}{v4, v6}
	out.Blocks = append(out.Blocks, v6.Blocks...)
	out.Allocations = append(out.Allocations, v6.Allocations...)
	out.Cooling = append(out.Cooling, v6.Cooling...)
	out.EmptyBlocks = append(out.EmptyBlocks, v6.EmptyBlocks...)
	out.Stats = d.Stats()
	writeDebug(w, out)
}

// HomeBlock returns the node's IPv4 home block (its IPv6 one in an
// IPv6-only cluster).
func (d *Dual) HomeBlock() netip.Prefix { return d.families()[0].HomeBlock() }

// undo frees the address network's attachment o was just given, without a
// cooldown: no container ever used it.
func (a *Allocator) undo(network string, o api.Owner) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	al, ok, err := a.attachmentLocked(network, o)
	if err != nil || !ok {
		return err
	}
	a.freeLocked(al, a.now())
	delete(a.cooling, al.IP)
	if err := a.saveLocked(); err != nil {
		a.restoreLocked(al)
		return err
	}
	return nil
}
