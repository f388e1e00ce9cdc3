package ipam

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/atomicfile"
	"github.com/skeinnet/skein/internal/slotfile"
)

// BlockStore keeps the cluster-wide block affinities. *store.Client implements it.
type BlockStore interface {
	// ListBlocks returns every claimed block of the cluster.
	ListBlocks(ctx context.Context) ([]api.Block, error)
	// ClaimBlock creates the affinity of cidr to node if no one holds it and
	// reports whether node owns cidr afterwards.
	ClaimBlock(ctx context.Context, cidr netip.Prefix, node string) (bool, error)
	// ReleaseBlock deletes the affinity of cidr only if node still owns it.
	ReleaseBlock(ctx context.Context, cidr netip.Prefix, node string) error
}

// Sentinel errors callers branch on.
var (
	// ErrExhausted means no free block is left in any pool and the node's own
	// blocks have no free address (or the node holds MaxBlocks blocks).
	ErrExhausted = errors.New("ipam: pool exhausted")
	// ErrNotFound means the owner holds no allocation.
	ErrNotFound = errors.New("ipam: owner has no allocation")
	// ErrOtherNetwork means the attachment (container id + ifname) is held
	// by another CNI network than the one asking.
	ErrOtherNetwork = errors.New("ipam: attachment belongs to another network")
	// ErrNeedsBlock means the node's blocks have no free address and the
	// caller asked not to claim a new block (etcd is unreachable).
	ErrNeedsBlock = errors.New("ipam: the node's blocks are full and a new block needs the store")
)

// DefaultCooldown is how long a released address rests before reuse.
const DefaultCooldown = 30 * time.Second

const (
	// storeTimeout bounds every store call.
	storeTimeout = 10 * time.Second
	// claimCandidates is how many free blocks one claim round tries before it
	// lists the store again.
	claimCandidates = 8
	// claimRounds bounds the list-and-claim rounds of one claim. A lost claim
	// means another node took that block, so rounds only repeat while the pools
	// are filling up under contention.
	claimRounds = 32
)

// Config configures an Allocator.
type Config struct {
	Node     string     // required: this node's name
	Pools    []api.Pool // required: the cluster's pools of one family; a zero BlockSize means the family's default
	Store    BlockStore // required
	StateDir string     // required: the state lives in StateDir/ipam.state.{0,1} (mode 0600)
	// Cooldown is how long a released address rests before reuse; optional,
	// default DefaultCooldown; negative disables the cooldown.
	Cooldown  time.Duration
	MaxBlocks int              // optional, default 0 = unlimited
	Now       func() time.Time // optional, default time.Now
	Log       *slog.Logger     // optional, default discards
	// ReleaseGrace is how long a block other than the home block must have
	// held no allocation and no cooling address before ReleaseEmptyBlocks
	// returns it to the pool; optional, default 0 = at the first call.
	ReleaseGrace time.Duration
}

// Allocation is one address held by one attachment: the CNI network plus the
// owner (container id + ifname). An allocation written before networks were
// recorded has an empty Network: it is adopted by the first ADD, CHECK or DEL
// (or a GC that lists it as valid) that names it, and no GC frees it before.
type Allocation struct {
	IP      netip.Addr   `json:"ip"`
	Owner   api.Owner    `json:"owner"`
	Network string       `json:"network,omitempty"`
	Pod     string       `json:"pod,omitempty"` // "namespace/name" where known
	Block   netip.Prefix `json:"block"`
	Created time.Time    `json:"created"`
}

// Stats summarises the node's address space.
type Stats = api.IPAMStats

// Allocator hands out this node's pod addresses. It is safe for concurrent use.
type Allocator struct {
	node      string
	pools     []api.Pool
	v6        bool // the pools' family
	store     BlockStore
	dir       string
	cooldown  time.Duration
	maxBlocks int
	grace     time.Duration
	now       func() time.Time
	log       *slog.Logger

	// releaseMu runs one ReleaseEmptyBlocks at a time. It is held across
	// store calls, but only the releaser ever waits on it.
	releaseMu sync.Mutex

	// mu guards the fields below. It is held across state-file writes, so
	// that what is on disk is always what was answered, but never across a
	// store call: a slow etcd must not stall Lookup, Release, Stats or an
	// Allocate that finds a free address in the node's blocks.
	mu      sync.Mutex
	home    netip.Prefix
	blocks  []netip.Prefix // home first, then the others in address order
	allocs  map[netip.Addr]Allocation
	owners  map[api.Owner]netip.Addr
	cooling map[netip.Addr]time.Time // released address → when it may be reused
	// quietAt maps each block to when its last address stopped being used
	// or cooling (possibly in the future, when a cooldown ends), or when the
	// node got the block; it means "empty since" only for a block that holds
	// no allocation and no cooling address now.
	quietAt map[netip.Prefix]time.Time
	// slots hold the state on disk; every change is written there before
	// the call that made it returns.
	slots *slotfile.File
	// releasing holds blocks whose release to the pool is in flight or
	// failed (and is retried): no address is ever picked from them.
	releasing map[netip.Prefix]bool
	// claiming is the block claim in flight, or nil: one at a time.
	claiming *claimCall
	// testHookWait, if set, is called when an Allocate starts waiting for
	// the claim in flight (tests only; set before the allocator is shared).
	testHookWait func()
}

// claimCall is one block claim that Allocates needing a block wait for.
type claimCall struct {
	done chan struct{} // closed when the claim is over
	// Set before done is closed.
	err       error
	abandoned bool // the claimer's context ended: a waiter claims instead
}

// New loads the state from cfg.StateDir, reconciles it with the store and
// makes sure the node holds at least one block.
func New(ctx context.Context, cfg Config) (*Allocator, error) {
	if err := api.ValidateNodeName(cfg.Node); err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	pools, err := checkPools(cfg.Pools)
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	if cfg.Store == nil {
		return nil, errors.New("ipam: store is required")
	}
	if cfg.StateDir == "" {
		return nil, errors.New("ipam: state dir is required")
	}
	if cfg.MaxBlocks < 0 {
		return nil, fmt.Errorf("ipam: max blocks %d is negative", cfg.MaxBlocks)
	}
	if cfg.ReleaseGrace < 0 {
		return nil, fmt.Errorf("ipam: block release grace %s is negative", cfg.ReleaseGrace)
	}
	a := &Allocator{
		node:      cfg.Node,
		pools:     pools,
		v6:        pools[0].CIDR.Addr().Is6(),
		store:     cfg.Store,
		dir:       cfg.StateDir,
		cooldown:  cfg.Cooldown,
		maxBlocks: cfg.MaxBlocks,
		now:       cfg.Now,
		log:       cfg.Log,
		allocs:    make(map[netip.Addr]Allocation),
		owners:    make(map[api.Owner]netip.Addr),
		cooling:   make(map[netip.Addr]time.Time),
		quietAt:   make(map[netip.Prefix]time.Time),
		releasing: make(map[netip.Prefix]bool),
		grace:     cfg.ReleaseGrace,
	}
	if a.cooldown == 0 {
		a.cooldown = DefaultCooldown
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.log = a.log.With("component", "ipam", "node", a.node)
	if a.v6 {
		a.log = a.log.With("family", "ipv6")
	}

	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("ipam: create state dir: %w", err)
	}
	for _, name := range []string{StateFileName, StateName + ".0", StateName + ".1"} {
		if err := atomicfile.RemoveStaleTemps(cfg.StateDir, name); err != nil {
			a.log.Warn("stale temp files left in state dir", "err", err)
		}
	}
	slots, st, found, legacy, err := openState(cfg.StateDir, a.node)
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	a.slots = slots

	a.mu.Lock()
	defer a.mu.Unlock()
	for _, al := range st.Allocations {
		a.allocs[al.IP] = al
		a.owners[al.Owner] = al.IP
	}
	for _, c := range st.Cooling {
		a.cooling[c.IP] = c.Until
	}
	a.blocks = slices.Clone(st.Blocks)
	if err := a.reconcileLocked(ctx, st.Home); err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	a.loadQuietLocked(a.now())
	if err := a.saveLocked(); err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	if legacy {
		// The slots hold the state now; a leftover legacy file is never read
		// again, so a crash before this removal is harmless.
		if err := os.Remove(filepath.Join(cfg.StateDir, StateFileName)); err != nil {
			a.log.Warn("legacy ipam state file left in state dir", "err", err)
		}
	}
	a.log.Info("ipam ready", "prefix", a.home, "count", len(a.allocs),
		"blocks", len(a.blocks), "state_found", found)
	return a, nil
}

// checkPools validates pools and fills in the default block size.
func checkPools(in []api.Pool) ([]api.Pool, error) {
	if len(in) == 0 {
		return nil, errors.New("at least one pool is required")
	}
	pools := slices.Clone(in)
	v6 := pools[0].CIDR.Addr().Is6()
	for i := range pools {
		if pools[i].BlockSize == 0 {
			pools[i].BlockSize = api.DefaultBlockSize
			if v6 {
				pools[i].BlockSize = api.DefaultBlockSizeV6
			}
		}
		if err := pools[i].Validate(); err != nil {
			return nil, err
		}
		if pools[i].CIDR.Addr().Is6() != v6 {
			return nil, fmt.Errorf("pools %s and %s: one allocator serves one address family", pools[0].CIDR, pools[i].CIDR)
		}
		for _, o := range pools[:i] {
			if o.CIDR.Overlaps(pools[i].CIDR) {
				return nil, fmt.Errorf("pools %s and %s: %w", o.CIDR, pools[i].CIDR, api.ErrOverlap)
			}
		}
	}
	return pools, nil
}

// checkOwner rejects an owner that cannot identify an attachment.
func checkOwner(o api.Owner) error {
	if o.ContainerID == "" || o.IfName == "" {
		return fmt.Errorf("owner %q: container ID and ifname are required", o)
	}
	return nil
}

// checkAttachment rejects an attachment key with a part missing.
func checkAttachment(network string, o api.Owner) error {
	if network == "" {
		return fmt.Errorf("owner %q: network name is required", o)
	}
	return checkOwner(o)
}

// matchLocked reports (as an error wrapping ErrOtherNetwork) whether al
// belongs to another network than network. An allocation without a network
// (written by an older version) matches any network. a.mu must be held.
func (a *Allocator) matchLocked(al Allocation, network string) error {
	if al.Network != "" && al.Network != network {
		return fmt.Errorf("held by network %q: %w", al.Network, ErrOtherNetwork)
	}
	return nil
}

// Allocate returns an address for network's attachment o. It is idempotent
// per attachment: if o already holds an address in network, that address is
// returned with existing=true; if another network holds o, it fails with
// ErrOtherNetwork. Otherwise it picks the lowest free address not cooling
// down from the node's blocks, claiming a new block when they are full. The
// allocation is on disk before Allocate returns.
func (a *Allocator) Allocate(ctx context.Context, network string, o api.Owner, pod string) (ip netip.Addr, existing bool, err error) {
	return a.allocate(ctx, network, o, pod, true)
}

// AllocateLocal is Allocate without claiming a block: when the node's blocks
// are full it fails with ErrNeedsBlock. It makes no store call.
func (a *Allocator) AllocateLocal(ctx context.Context, network string, o api.Owner, pod string) (ip netip.Addr, existing bool, err error) {
	return a.allocate(ctx, network, o, pod, false)
}

func (a *Allocator) allocate(ctx context.Context, network string, o api.Owner, pod string, mayClaim bool) (ip netip.Addr, existing bool, err error) {
	if err := checkAttachment(network, o); err != nil {
		return netip.Addr{}, false, fmt.Errorf("allocate: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for {
		switch al, ok, err := a.attachmentLocked(network, o); {
		case err != nil:
			return netip.Addr{}, false, fmt.Errorf("allocate: %w", err)
		case ok:
			a.fillLocked(al, network, pod)
			return al.IP, true, nil
		}
		now := a.now()
		if ip, ok := pickAddr(a.usableBlocksLocked(), a.allocs, a.cooling, now); ok {
			if err := a.recordLocked(ip, o, network, pod, now); err != nil {
				return netip.Addr{}, false, fmt.Errorf("allocate for %s: %w", o, err)
			}
			a.log.Debug("address allocated", "ip", ip, "network", network, "container_id", o.ContainerID, "ifname", o.IfName, "pod", pod)
			return ip, false, nil
		}
		if !mayClaim {
			return netip.Addr{}, false, fmt.Errorf("allocate for %s: %w", o, ErrNeedsBlock)
		}
		// The lock is let go while the store is asked, so o may hold an
		// address when this returns (a retried ADD): the loop checks again.
		if err := a.awaitBlockLocked(ctx); err != nil {
			return netip.Addr{}, false, fmt.Errorf("allocate for %s: %w", o, err)
		}
	}
}

// attachmentLocked returns the allocation of network's attachment o; ok is
// false when o holds nothing, and the error wraps ErrOtherNetwork when
// another network holds o. a.mu must be held.
func (a *Allocator) attachmentLocked(network string, o api.Owner) (Allocation, bool, error) {
	ip, ok := a.owners[o]
	if !ok {
		return Allocation{}, false, nil
	}
	al := a.allocs[ip]
	if err := a.matchLocked(al, network); err != nil {
		return al, true, fmt.Errorf("%s in network %q: %w", o, network, err)
	}
	return al, true, nil
}

// fillLocked records on an existing allocation the network (allocations
// from before networks were recorded have none) and the pod name, when it
// lacks them. a.mu must be held.
func (a *Allocator) fillLocked(al Allocation, network, pod string) {
	if al.Network == "" {
		a.adoptLocked(al, network)
		al = a.allocs[al.IP]
	}
	if al.Pod != "" || pod == "" {
		return
	}
	al.Pod = pod
	a.allocs[al.IP] = al
	if err := a.saveLocked(); err != nil {
		// The address is held either way; only the pod name is not on disk.
		a.log.Warn("pod name not saved", "ip", al.IP, "container_id", al.Owner.ContainerID, "ifname", al.Owner.IfName, "err", err)
	}
}

// recordLocked gives ip to network's attachment o and saves the state, or
// changes nothing. a.mu must be held.
func (a *Allocator) recordLocked(ip netip.Addr, o api.Owner, network, pod string, now time.Time) error {
	al := Allocation{IP: ip, Owner: o, Network: network, Pod: pod, Block: a.blockOfLocked(ip), Created: now}
	a.allocs[ip] = al
	a.owners[o] = ip
	delete(a.cooling, ip) // only an expired entry can be here
	if err := a.saveLocked(); err != nil {
		delete(a.allocs, ip)
		delete(a.owners, o)
		return err
	}
	return nil
}

// usableBlocksLocked returns the blocks addresses may be picked from: all
// but those being released. a.mu must be held.
func (a *Allocator) usableBlocksLocked() []netip.Prefix {
	if len(a.releasing) == 0 {
		return a.blocks
	}
	out := make([]netip.Prefix, 0, len(a.blocks))
	for _, b := range a.blocks {
		if !a.releasing[b] {
			out = append(out, b)
		}
	}
	return out
}

// awaitBlockLocked gets the node one more block, or waits for the claim in
// flight: one claim at a time, whatever the number of Allocates that need a
// block. a.mu must be held; it is released while the store is asked or the
// claim awaited, and held again on return. A nil error means the caller
// should look for a free address again (another caller may have taken the
// new block's addresses meanwhile).
func (a *Allocator) awaitBlockLocked(ctx context.Context) error {
	if c := a.claiming; c != nil {
		if a.testHookWait != nil {
			a.testHookWait()
		}
		a.mu.Unlock()
		select {
		case <-c.done:
		case <-ctx.Done():
		}
		a.mu.Lock()
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("wait for block claim: %w", err)
		}
		if c.abandoned {
			return nil // its caller gave up, not the store: claim again
		}
		return c.err
	}
	if err := a.maxBlocksLocked(); err != nil {
		return err
	}
	c := &claimCall{done: make(chan struct{})}
	a.claiming = c
	have := slices.Clone(a.blocks)
	a.mu.Unlock()
	b, adopted, err := a.claim(ctx, have)
	a.mu.Lock()
	a.claiming = nil
	switch {
	case err == nil:
		a.addClaimedLocked(b, adopted)
	case errors.Is(err, errNoFreeBlock):
		err = a.exhaustedLocked()
	case ctx.Err() != nil:
		c.abandoned = true
	}
	c.err = err
	close(c.done)
	return err
}

// Release frees the addresses network's attachment o holds and starts their
// cooldown. It returns an empty list and no error when o holds nothing, which
// is what a stale or repeated DEL sees even if the address now belongs to
// someone else. When another network holds o it frees nothing and fails with
// ErrOtherNetwork.
func (a *Allocator) Release(_ context.Context, network string, o api.Owner) ([]netip.Addr, error) {
	if err := checkAttachment(network, o); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	al, ok, err := a.attachmentLocked(network, o)
	switch {
	case err != nil:
		return nil, fmt.Errorf("release: %w", err)
	case !ok:
		return nil, nil
	}
	ip := al.IP
	a.freeLocked(al, a.now())
	if err := a.saveLocked(); err != nil {
		a.restoreLocked(al)
		return nil, fmt.Errorf("release %s: %w", o, err)
	}
	a.log.Debug("address released", "ip", ip, "network", network, "container_id", o.ContainerID, "ifname", o.IfName)
	return []netip.Addr{ip}, nil
}

// Held returns the addresses network's attachment o holds (nil when none),
// or an error wrapping ErrOtherNetwork when another network holds o. An
// allocation without a network is adopted by network.
func (a *Allocator) Held(network string, o api.Owner) ([]netip.Addr, error) {
	if err := checkAttachment(network, o); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	al, ok, err := a.attachmentLocked(network, o)
	if err != nil || !ok {
		return nil, err
	}
	if al.Network == "" {
		a.adoptLocked(al, network)
	}
	return []netip.Addr{al.IP}, nil
}

// Stale returns network's allocations whose owner is not in valid, sorted
// by owner: what a CNI GC of network frees. Allocations of other networks
// are never stale here. Allocations without a network are adopted when valid
// lists them and left alone otherwise (see Allocation). Stale frees nothing:
// the caller unpublishes each endpoint, then Releases it.
func (a *Allocator) Stale(network string, valid []api.Owner) ([]Allocation, error) {
	if network == "" {
		return nil, errors.New("stale: network name is required")
	}
	keep := make(map[api.Owner]bool, len(valid))
	for _, o := range valid {
		keep[o] = true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var stale []Allocation
	for _, al := range a.allocs {
		switch {
		case al.Network == "" && keep[al.Owner]:
			a.adoptLocked(al, network)
		case al.Network == network && !keep[al.Owner]:
			stale = append(stale, al)
		}
	}
	slices.SortFunc(stale, func(x, y Allocation) int { return compareOwners(x.Owner, y.Owner) })
	return stale, nil
}

// adoptLocked records network on an allocation written without one. A
// failed save only logs: the allocation is adopted again next time. a.mu
// must be held.
func (a *Allocator) adoptLocked(al Allocation, network string) {
	al.Network = network
	a.allocs[al.IP] = al
	if err := a.saveLocked(); err != nil {
		a.log.Warn("adopted network not saved", "ip", al.IP, "network", network, "container_id", al.Owner.ContainerID, "ifname", al.Owner.IfName, "err", err)
		return
	}
	a.log.Info("allocation adopted by network", "ip", al.IP, "network", network, "container_id", al.Owner.ContainerID, "ifname", al.Owner.IfName)
}

func compareOwners(x, y api.Owner) int {
	return cmp.Or(cmp.Compare(x.ContainerID, y.ContainerID), cmp.Compare(x.IfName, y.IfName))
}

// freeLocked drops al and starts its address's cooldown. a.mu must be held.
func (a *Allocator) freeLocked(al Allocation, now time.Time) {
	delete(a.allocs, al.IP)
	delete(a.owners, al.Owner)
	quiet := now
	if a.cooldown > 0 {
		quiet = now.Add(a.cooldown)
		a.cooling[al.IP] = quiet
	}
	if b, ok := a.containingLocked(al.IP); ok && quiet.After(a.quietAt[b]) {
		a.quietAt[b] = quiet
	}
}

// restoreLocked undoes freeLocked. a.mu must be held.
func (a *Allocator) restoreLocked(al Allocation) {
	a.allocs[al.IP] = al
	a.owners[al.Owner] = al.IP
	delete(a.cooling, al.IP)
}

// Lookup returns the addresses o holds, or nil.
func (a *Allocator) Lookup(o api.Owner) []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ip, ok := a.owners[o]; ok {
		return []netip.Addr{ip}
	}
	return nil
}

// Get returns o's allocation, or an error wrapping ErrNotFound.
func (a *Allocator) Get(o api.Owner) (Allocation, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ip, ok := a.owners[o]; ok {
		return a.allocs[ip], nil
	}
	return Allocation{}, fmt.Errorf("owner %s: %w", o, ErrNotFound)
}

// Allocations returns every allocation, sorted by IP.
func (a *Allocator) Allocations() []Allocation {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sortedAllocsLocked()
}

func (a *Allocator) sortedAllocsLocked() []Allocation {
	out := make([]Allocation, 0, len(a.allocs))
	for _, al := range a.allocs {
		out = append(out, al)
	}
	slices.SortFunc(out, func(x, y Allocation) int { return x.IP.Compare(y.IP) })
	return out
}

// Blocks returns the node's blocks: the home block first, then the others in
// address order.
func (a *Allocator) Blocks() []netip.Prefix {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.blocks)
}

// HomeBlock returns the node's first block, which carries its VTEP address.
func (a *Allocator) HomeBlock() netip.Prefix {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.home
}

// VTEPAddr returns the node's VTEP address: the first address of its home block.
func (a *Allocator) VTEPAddr() netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.home.Masked().Addr()
}

// Stats counts the node's blocks and addresses.
func (a *Allocator) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.statsLocked(a.now())
}

func (a *Allocator) statsLocked(now time.Time) Stats {
	// A block being released counts among the node's blocks but offers
	// no address.
	usable := a.usableBlocksLocked()
	s := Stats{Blocks: len(a.blocks), Used: len(a.allocs)}
	for _, b := range usable {
		s.Capacity += usableCount(b)
	}
	for ip, until := range a.cooling {
		if _, used := a.allocs[ip]; !used && until.After(now) && inAny(usable, ip) {
			s.Cooling++
		}
	}
	s.Free = s.Capacity - s.Used - s.Cooling
	return s
}

// blockOfLocked returns the node's block holding ip. a.mu must be held.
func (a *Allocator) blockOfLocked(ip netip.Addr) netip.Prefix {
	b, _ := a.containingLocked(ip)
	return b
}

// containingLocked returns the node's block holding ip. a.mu must be held.
func (a *Allocator) containingLocked(ip netip.Addr) (netip.Prefix, bool) {
	for _, b := range a.blocks {
		if b.Contains(ip) {
			return b, true
		}
	}
	return netip.Prefix{}, false
}

// saveLocked writes the state file, dropping expired cooldowns. a.mu must be held.
func (a *Allocator) saveLocked() error {
	now := a.now()
	st := stateFile{
		Version:     stateVersion,
		Node:        a.node,
		Home:        a.home,
		Blocks:      slices.Clone(a.blocks),
		Allocations: a.sortedAllocsLocked(),
	}
	for ip, until := range a.cooling {
		if !until.After(now) {
			delete(a.cooling, ip)
			continue
		}
		st.Cooling = append(st.Cooling, coolingAddr{IP: ip, Until: until})
	}
	slices.SortFunc(st.Cooling, func(x, y coolingAddr) int { return x.IP.Compare(y.IP) })
	doc, err := encodeState(st)
	if err != nil {
		return err
	}
	if err := a.slots.Write(doc); err != nil {
		return fmt.Errorf("save ipam state: %w", err)
	}
	return nil
}
