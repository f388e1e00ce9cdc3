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
	Pools    []api.Pool // required: the cluster's pools (IPv4); a zero BlockSize means api.DefaultBlockSize
	Store    BlockStore // required
	StateDir string     // required: the state lives in StateDir/ipam.json (mode 0600)
	// Cooldown is how long a released address rests before reuse; optional,
	// default DefaultCooldown; negative disables the cooldown.
	Cooldown  time.Duration
	MaxBlocks int              // optional, default 0 = unlimited
	Now       func() time.Time // optional, default time.Now
	Log       *slog.Logger     // optional, default discards
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
type Stats struct {
	Blocks   int `json:"blocks"`
	Capacity int `json:"capacity"` // addresses pods may get in the node's blocks
	Used     int `json:"used"`
	Free     int `json:"free"`    // allocatable now: neither used nor cooling
	Cooling  int `json:"cooling"` // released and still resting
}

// Allocator hands out this node's pod addresses. It is safe for concurrent use.
type Allocator struct {
	node      string
	pools     []api.Pool
	store     BlockStore
	path      string
	cooldown  time.Duration
	maxBlocks int
	now       func() time.Time
	log       *slog.Logger

	// mu guards the fields below. It is also held across store claims and
	// state writes, so that what is on disk is always what was answered.
	mu      sync.Mutex
	home    netip.Prefix
	blocks  []netip.Prefix // home first, then the others in address order
	allocs  map[netip.Addr]Allocation
	owners  map[api.Owner]netip.Addr
	cooling map[netip.Addr]time.Time // released address → when it may be reused
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
	a := &Allocator{
		node:      cfg.Node,
		pools:     pools,
		store:     cfg.Store,
		path:      filepath.Join(cfg.StateDir, StateFileName),
		cooldown:  cfg.Cooldown,
		maxBlocks: cfg.MaxBlocks,
		now:       cfg.Now,
		log:       cfg.Log,
		allocs:    make(map[netip.Addr]Allocation),
		owners:    make(map[api.Owner]netip.Addr),
		cooling:   make(map[netip.Addr]time.Time),
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

	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("ipam: create state dir: %w", err)
	}
	if err := atomicfile.RemoveStaleTemps(cfg.StateDir, StateFileName); err != nil {
		a.log.Warn("stale temp files left in state dir", "err", err)
	}
	st, found, err := loadState(a.path, a.node)
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}

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
	if err := a.saveLocked(); err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
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
	for i := range pools {
		if pools[i].BlockSize == 0 {
			pools[i].BlockSize = api.DefaultBlockSize
		}
		if err := pools[i].Validate(); err != nil {
			return nil, err
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

	if ip, ok := a.owners[o]; ok {
		al := a.allocs[ip]
		if err := a.matchLocked(al, network); err != nil {
			return netip.Addr{}, false, fmt.Errorf("allocate for %s in network %q: %w", o, network, err)
		}
		if al.Network == "" || (al.Pod == "" && pod != "") {
			al.Network = network
			if al.Pod == "" {
				al.Pod = pod
			}
			a.allocs[ip] = al
			if err := a.saveLocked(); err != nil {
				// The address is held either way; only the pod name or the
				// adopted network is not on disk (adopted again next time).
				a.log.Warn("allocation update not saved", "ip", ip, "container_id", o.ContainerID, "ifname", o.IfName, "err", err)
			}
		}
		return ip, true, nil
	}

	now := a.now()
	ip, ok := pickAddr(a.blocks, a.allocs, a.cooling, now)
	if !ok {
		if !mayClaim {
			return netip.Addr{}, false, fmt.Errorf("allocate for %s: %w", o, ErrNeedsBlock)
		}
		b, err := a.claimLocked(ctx)
		if err != nil {
			return netip.Addr{}, false, fmt.Errorf("allocate for %s: %w", o, err)
		}
		if ip, ok = pickAddr([]netip.Prefix{b}, a.allocs, a.cooling, now); !ok {
			return netip.Addr{}, false, fmt.Errorf("allocate for %s: new block %s has no free address", o, b)
		}
	}
	al := Allocation{IP: ip, Owner: o, Network: network, Pod: pod, Block: a.blockOfLocked(ip), Created: now}
	a.allocs[ip] = al
	a.owners[o] = ip
	delete(a.cooling, ip) // only an expired entry can be here
	if err := a.saveLocked(); err != nil {
		delete(a.allocs, ip)
		delete(a.owners, o)
		return netip.Addr{}, false, fmt.Errorf("allocate for %s: %w", o, err)
	}
	a.log.Debug("address allocated", "ip", ip, "network", network, "container_id", o.ContainerID, "ifname", o.IfName, "pod", pod)
	return ip, false, nil
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
	ip, ok := a.owners[o]
	if !ok {
		return nil, nil
	}
	al := a.allocs[ip]
	if err := a.matchLocked(al, network); err != nil {
		return nil, fmt.Errorf("release %s in network %q: %w", o, network, err)
	}
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
	ip, ok := a.owners[o]
	if !ok {
		return nil, nil
	}
	al := a.allocs[ip]
	if err := a.matchLocked(al, network); err != nil {
		return nil, fmt.Errorf("%s in network %q: %w", o, network, err)
	}
	if al.Network == "" {
		a.adoptLocked(al, network)
	}
	return []netip.Addr{ip}, nil
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
	if a.cooldown > 0 {
		a.cooling[al.IP] = now.Add(a.cooldown)
	}
}

// restoreLocked undoes freeLocked. a.mu must be held.
func (a *Allocator) restoreLocked(al Allocation) {
	a.allocs[al.IP] = al
	a.owners[al.Owner] = al.IP
	delete(a.cooling, al.IP)
}

// ReleaseEmptyBlocks returns to the pool every block other than the home
// block that holds no allocation and no cooling address, and returns them.
// A block the store refuses to release stays; its error is joined.
func (a *Allocator) ReleaseEmptyBlocks(ctx context.Context) ([]netip.Prefix, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	busy := make(map[netip.Prefix]bool)
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
	var released []netip.Prefix
	var errs []error
	for _, b := range slices.Clone(a.blocks) {
		if b == a.home || busy[b] {
			continue
		}
		if err := a.releaseBlock(ctx, b); err != nil {
			errs = append(errs, fmt.Errorf("release block %s: %w", b, err))
			continue
		}
		a.blocks = slices.DeleteFunc(a.blocks, func(p netip.Prefix) bool { return p == b })
		for ip := range a.cooling {
			if b.Contains(ip) {
				delete(a.cooling, ip)
			}
		}
		released = append(released, b)
		a.log.Info("block released", "prefix", b)
	}
	if len(released) > 0 {
		// A block already released in the store but still in the file is
		// harmless: the next start re-claims it or drops it, empty.
		if err := a.saveLocked(); err != nil {
			errs = append(errs, err)
		}
	}
	return released, errors.Join(errs...)
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
	s := Stats{Blocks: len(a.blocks), Used: len(a.allocs)}
	for _, b := range a.blocks {
		s.Capacity += usableCount(b)
	}
	for ip, until := range a.cooling {
		if _, used := a.allocs[ip]; !used && until.After(now) && inAny(a.blocks, ip) {
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
	return saveState(a.path, st)
}
