package vxlan

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/reconcile"
)

// Devices are the interface indexes the overlay's objects hang on.
type Devices struct {
	// Overlay is the VXLAN device.
	Overlay int
	// Underlay is the interface of direct routes; 0 when there is none.
	Underlay int
}

// OpKind says whether an Op installs or removes its object.
type OpKind int

// The kinds of Op.
const (
	OpSet OpKind = iota
	OpDel
)

// Op is one change to one object; exactly one of Neigh, FDB and Route is set.
type Op struct {
	Kind  OpKind
	Neigh *Neigh
	FDB   *FDBEntry
	Route *Route
}

// String renders op as "set <object>" or "del <object>".
func (op Op) String() string {
	verb := "set"
	if op.Kind == OpDel {
		verb = "del"
	}
	switch {
	case op.Neigh != nil:
		return verb + " " + op.Neigh.String()
	case op.FDB != nil:
		return verb + " " + op.FDB.String()
	case op.Route != nil:
		return verb + " " + op.Route.String()
	}
	return verb + " nothing"
}

// Dataplane is the kernel as the Reconciler sees it.
type Dataplane interface {
	// EnsureLink makes the device match spec, recreating it only when
	// spec.Incompat says so, sets it up with addr as its only address, and
	// returns the devices objects refer to.
	// addr6 is the IPv6 address (invalid: none).
	EnsureLink(ctx context.Context, spec LinkSpec, addr, addr6 netip.Prefix) (Devices, error)
	// Observe returns the device's spec and address, and the objects Skein
	// owns: every neighbour and FDB entry on the device, and routes marked
	// with api.RouteProtocol on either device.
	Observe(ctx context.Context, devs Devices) (State, error)
	// Apply makes one change. Setting an object that is there and deleting
	// one that is not both succeed.
	Apply(ctx context.Context, devs Devices, op Op) error
}

// ReconcilerConfig configures a Reconciler.
type ReconcilerConfig struct {
	// Dataplane applies changes; required.
	Dataplane Dataplane
	// Log receives lifecycle and per-sync lines; optional, default discards.
	Log *slog.Logger
	// Resync is the period of full syncs; optional, default reconcile.DefaultResync.
	Resync time.Duration
}

// Reconciler keeps the kernel's overlay state at the last State given to Set.
type Reconciler struct {
	dp   Dataplane
	log  *slog.Logger
	loop reconcile.Loop

	syncMu sync.Mutex // serializes Sync
	resync time.Duration

	mu      sync.Mutex
	desired *State // nil until the first Set: nothing is touched before
	actual  State
	// devs are the devices of the last full sync; valid when lastFull is set.
	devs Devices
	// full asks the next Sync to observe the kernel and diff everything:
	// after Set, Trigger (possible drift) and failures.
	full     bool
	lastFull time.Time
	// dirty holds the keys Update changed since the last sync; the next
	// incremental sync touches only these.
	dirty    dirtyKeys
	lastSync time.Time
	lastErr  error
	syncs    int
	failures int
	lastOps  int
	lastDur  time.Duration
	// fullSyncs and updates count the two kinds of sync, for tests and debug.
	fullSyncs, updates int
	// drifts counts foreign kernel changes by kind (KernelEvent).
	drifts map[string]int
}

// dirtyKeys are objects whose desired value changed since the last sync.
type dirtyKeys struct {
	neighs map[netip.Addr]struct{}
	fdb    map[FDBKey]struct{}
	routes map[netip.Prefix]struct{}
}

func (d *dirtyKeys) add(c Changes) {
	if d.neighs == nil {
		*d = dirtyKeys{neighs: map[netip.Addr]struct{}{}, fdb: map[FDBKey]struct{}{}, routes: map[netip.Prefix]struct{}{}}
	}
	for _, n := range append(slices.Clone(c.SetNeighs), c.DelNeighs...) {
		d.neighs[n.IP] = struct{}{}
	}
	for _, e := range append(slices.Clone(c.SetFDB), c.DelFDB...) {
		d.fdb[e.Key()] = struct{}{}
	}
	for _, r := range append(slices.Clone(c.SetRoutes), c.DelRoutes...) {
		d.routes[r.Dst] = struct{}{}
	}
}

// NewReconciler returns a Reconciler; call Set and Run.
func NewReconciler(cfg ReconcilerConfig) (*Reconciler, error) {
	if cfg.Dataplane == nil {
		return nil, errors.New("vxlan reconciler: Dataplane is required")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reconciler{dp: cfg.Dataplane, log: log.With("component", "vxlan"), resync: cfg.Resync, full: true}
	if r.resync <= 0 {
		r.resync = reconcile.DefaultResync
	}
	r.loop = reconcile.Loop{Name: "vxlan", Sync: r.Sync, Resync: r.resync, Log: r.log}
	return r, nil
}

// Set stores a copy of the desired state and schedules a sync. It never blocks.
func (r *Reconciler) Set(want State) {
	c := want.Clone()
	r.mu.Lock()
	r.desired = &c
	r.full = true
	r.mu.Unlock()
	r.loop.Trigger()
}

// Update moves the desired state by c (a Planner's output) and schedules a
// sync that touches only the objects c names, without dumping the kernel:
// the cost of a peer change is that peer's objects. It never blocks. Before
// the first Set it does nothing (there is no state to move).
func (r *Reconciler) Update(c Changes) {
	if c.Len() == 0 {
		return
	}
	r.mu.Lock()
	if r.desired == nil {
		r.mu.Unlock()
		return
	}
	c = c.clone()
	applyChanges(r.desired, c)
	r.dirty.add(c)
	r.mu.Unlock()
	r.loop.Trigger()
}

// Trigger schedules a full sync without changing the desired state, e.g.
// after a netlink event that may mean drift.
func (r *Reconciler) Trigger() {
	r.mu.Lock()
	r.full = true
	r.mu.Unlock()
	r.loop.Trigger()
}

// Run syncs until ctx is done: on Set, on Trigger, every resync period, and
// with backoff after failures.
func (r *Reconciler) Run(ctx context.Context) error {
	r.log.Info("reconciler started")
	defer r.log.Info("reconciler stopped")
	return r.loop.Run(ctx)
}

// Sync makes the kernel match the desired state once. A full sync ensures
// the device, observes the owned objects and applies the difference, adds
// and changes before deletes; it runs first, after Set or Trigger, after a
// failure and once per resync period. Otherwise Sync applies only the
// objects Update named since the last sync. It keeps going after a failed
// object and returns all failures joined. Before the first Set it does nothing.
func (r *Reconciler) Sync(ctx context.Context) error {
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	r.mu.Lock()
	if r.desired == nil {
		r.mu.Unlock()
		return nil
	}
	full := r.full || r.lastFull.IsZero() || time.Since(r.lastFull) >= r.resync
	var want State
	var dirty dirtyKeys
	if full {
		want = r.desired.Clone()
	} else {
		dirty = r.dirty
		want = r.desired.pick(dirty)
	}
	r.dirty = dirtyKeys{}
	r.full = false
	devs, actual := r.devs, r.actual.pick(dirty)
	r.mu.Unlock()

	start := time.Now()
	var ops int
	var err error
	if full {
		actual, devs, ops, err = r.sync(ctx, want)
	} else {
		ops, err = r.applyDiff(ctx, devs, want, actual)
	}
	if err != nil {
		err = fmt.Errorf("sync vxlan: %w", err)
	}

	r.mu.Lock()
	if full {
		r.actual, r.devs, r.lastFull = actual, devs, time.Now()
		r.fullSyncs++
	} else {
		r.actual.merge(actual, dirty)
		r.updates++
	}
	r.lastSync, r.lastErr, r.lastOps = time.Now(), err, ops
	r.lastDur = r.lastSync.Sub(start)
	r.syncs++
	if err != nil {
		r.failures++
		r.full = true // the kernel may be anywhere now: look at all of it
	}
	r.mu.Unlock()

	// A failure is returned, not logged: the loop logs it with its retry.
	kind, count := "full", len(want.Routes)
	if !full {
		kind, count = "update", len(dirty.neighs)+len(dirty.fdb)+len(dirty.routes)
	}
	if ops > 0 {
		r.log.Info("synced", "kind", kind, "op", ops, "count", count, "dur", time.Since(start))
	} else {
		r.log.Debug("synced", "kind", kind, "op", 0, "count", count, "dur", time.Since(start))
	}
	return err
}

// sync returns the actual state as far as it knows it and the number of
// successful operations.
func (r *Reconciler) sync(ctx context.Context, want State) (State, Devices, int, error) {
	devs, err := r.dp.EnsureLink(ctx, want.Link, want.Addr, want.Addr6)
	if err != nil {
		return State{}, devs, 0, fmt.Errorf("ensure link %s: %w", want.Link.Name, err)
	}
	have, err := r.dp.Observe(ctx, devs)
	if err != nil {
		return State{}, devs, 0, fmt.Errorf("observe %s: %w", want.Link.Name, err)
	}
	have = have.Clone() // actual is updated below as operations succeed
	have.initMaps()
	ops, err := r.applyDiff(ctx, devs, want, have)
	return have, devs, ops, err
}

// applyDiff makes have (a map set of the kernel's objects) match want's
// objects, moving have as operations succeed, and returns how many did.
func (r *Reconciler) applyDiff(ctx context.Context, devs Devices, want, have State) (int, error) {

	neighs := reconcile.Diff(want.Neighs, have.Neighs, neighEqual)
	neighs.Sort(netip.Addr.Compare)
	fdb := reconcile.Diff(want.FDB, have.FDB, fdbEqual)
	fdb.Sort(compareFDBKey)
	routes := reconcile.Diff(want.Routes, have.Routes, routeEqual)
	routes.Sort(netip.Prefix.Compare)

	var errs []error
	ops := 0
	apply := func(op Op, done func()) {
		if ctx.Err() != nil {
			return // reported once below
		}
		if err := r.dp.Apply(ctx, devs, op); err != nil {
			r.log.Debug("op failed", "op", op.String(), "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", op, err))
			return
		}
		r.log.Debug("op applied", "op", op.String())
		ops++
		done()
	}
	// Neighbours and FDB entries go first so that a new route's next hop
	// resolves from its first packet; routes go first on the way out.
	for _, it := range append(neighs.Add, neighs.Change...) {
		apply(Op{Kind: OpSet, Neigh: &it.Value}, func() { have.Neighs[it.Key] = it.Value })
	}
	for _, it := range append(fdb.Add, fdb.Change...) {
		apply(Op{Kind: OpSet, FDB: &it.Value}, func() { have.FDB[it.Key] = it.Value })
	}
	for _, it := range append(routes.Add, routes.Change...) {
		apply(Op{Kind: OpSet, Route: &it.Value}, func() { have.Routes[it.Key] = it.Value })
	}
	for _, it := range routes.Delete {
		apply(Op{Kind: OpDel, Route: &it.Value}, func() { delete(have.Routes, it.Key) })
	}
	for _, it := range neighs.Delete {
		apply(Op{Kind: OpDel, Neigh: &it.Value}, func() { delete(have.Neighs, it.Key) })
	}
	for _, it := range fdb.Delete {
		apply(Op{Kind: OpDel, FDB: &it.Value}, func() { delete(have.FDB, it.Key) })
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return ops, errors.Join(errs...)
}

func compareFDBKey(a, b FDBKey) int {
	return cmp.Or(cmp.Compare(a.MAC, b.MAC), a.Dst.Compare(b.Dst))
}

// DebugState is what the debug endpoint shows about the overlay.
type DebugState = api.VXLANStatus

// Stats is the cheap part of Debug: counters, no object lists. It costs the
// same whatever the cluster's size, for loops that poll it.
type Stats struct {
	LastSync     time.Time
	LastDuration time.Duration
	LastOps      int
	LastError    string
	Syncs        int
	// FullSyncs and Updates split Syncs by kind.
	FullSyncs, Updates int
	Failures           int
	// Routes, Neighs and FDB count desired objects.
	Routes, Neighs, FDB int
}

// Stats returns the reconciler's counters.
func (r *Reconciler) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Stats{LastSync: r.lastSync, LastDuration: r.lastDur, LastOps: r.lastOps, Syncs: r.syncs, FullSyncs: r.fullSyncs, Updates: r.updates, Failures: r.failures}
	if r.desired != nil {
		st.Routes, st.Neighs, st.FDB = len(r.desired.Routes), len(r.desired.Neighs), len(r.desired.FDB)
	}
	if r.lastErr != nil {
		st.LastError = r.lastErr.Error()
	}
	return st
}

// Debug returns a snapshot for the debug endpoint.
func (r *Reconciler) Debug() DebugState {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := DebugState{
		LastSync:     r.lastSync,
		LastDuration: r.lastDur,
		LastOps:      r.lastOps,
		Syncs:        r.syncs,
		Failures:     r.failures,
	}
	if r.desired != nil {
		d.Desired = r.desired.Lines()
		d.Routes, d.Neighs, d.FDB = len(r.desired.Routes), len(r.desired.Neighs), len(r.desired.FDB)
	}
	if r.syncs > 0 && r.actual.Link.Name != "" {
		d.Actual, d.ActualFrom = r.actual.Lines(), "last sync"
	}
	if r.lastErr != nil {
		d.LastError = r.lastErr.Error()
	}
	return d
}

// DebugKernel is Debug with Actual read from the kernel now, so that a
// debug view compares what Skein wants with what the kernel has, not with
// what the reconciler last saw. It falls back to the last sync's view (and
// says why) when the kernel cannot be read.
func (r *Reconciler) DebugKernel(ctx context.Context) DebugState {
	d := r.Debug()
	r.mu.Lock()
	devs, synced := r.devs, !r.lastFull.IsZero()
	r.mu.Unlock()
	if !synced {
		return d
	}
	have, err := r.dp.Observe(ctx, devs)
	if err != nil {
		d.ActualError = err.Error()
		return d
	}
	d.Actual, d.ActualFrom = have.Lines(), "kernel"
	return d
}

// ServeHTTPDebug writes DebugKernel as JSON.
func (r *Reconciler) ServeHTTPDebug(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r.DebugKernel(req.Context())); err != nil {
		r.log.Debug("write debug state", "err", err)
	}
}
