package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/reconcile"
)

// ApplyStats describes a dataplane's applies and the size of its table.
type ApplyStats = api.PolicyDataplane

// Dataplane enforces Programs; *Applier is the nftables one.
type Dataplane interface {
	// Apply makes the dataplane enforce p; it is idempotent.
	Apply(ctx context.Context, p *Program) error
	// Stats describes the applies so far.
	Stats() ApplyStats
	// Reset makes the next Apply rewrite everything (drift repair).
	Reset()
	// ApplyElements makes the dataplane enforce p, which differs from the
	// last applied program only by the set elements chs name, in order.
	ApplyElements(ctx context.Context, p *Program, chs []SetChanges) error
}

// DefaultRebuildEvery is how often the Reconciler rewrites the whole table to
// repair drift (someone editing table inet skein by hand).
const DefaultRebuildEvery = 10 * time.Minute

// ReconcilerConfig configures a Reconciler.
type ReconcilerConfig struct {
	// Dataplane applies programs; required.
	Dataplane Dataplane
	// Log receives lifecycle and per-sync lines; optional, default discards.
	Log *slog.Logger
	// Resync is the period of syncs without changes; optional, default
	// reconcile.DefaultResync.
	Resync time.Duration
	// RebuildEvery is the period of full rewrites; optional, default
	// DefaultRebuildEvery.
	RebuildEvery time.Duration
}

// Reconciler keeps the dataplane at the last Program given to Set, and lets
// callers wait until a program version, or an endpoint, is enforced.
type Reconciler struct {
	dp           Dataplane
	log          *slog.Logger
	loop         reconcile.Loop
	rebuildEvery time.Duration

	syncMu      sync.Mutex // serializes Sync
	lastRebuild time.Time  // guarded by syncMu

	mu      sync.Mutex
	desired *Program // nil until the first Set: nothing is touched before
	version uint64   // of desired
	applied uint64   // version last enforced
	// pending are the element changes Update made since the last sync;
	// full asks for a whole apply instead (after Set and failures).
	pending []SetChanges
	full    bool
	// rewrite makes the next sync rebuild the table from scratch: someone
	// else changed it (TableDrift). drifts counts those changes by kind.
	rewrite  bool
	drifts   map[string]int
	ifaces   map[string]bool
	changed  chan struct{} // closed when applied or lastErr changes
	lastSync time.Time
	lastErr  error
	syncs    int
	failures int
	summary  programSummary
}

// programSummary describes the desired program on the debug endpoint.
type programSummary = api.PolicyProgram

// NewReconciler returns a Reconciler; call Set and Run.
func NewReconciler(cfg ReconcilerConfig) (*Reconciler, error) {
	if cfg.Dataplane == nil {
		return nil, errors.New("policy reconciler: Dataplane is required")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reconciler{
		dp:           cfg.Dataplane,
		log:          log.With("component", "policy"),
		rebuildEvery: cfg.RebuildEvery,
		changed:      make(chan struct{}),
	}
	if r.rebuildEvery <= 0 {
		r.rebuildEvery = DefaultRebuildEvery
	}
	r.loop = reconcile.Loop{Name: "policy", Sync: r.Sync, Resync: cfg.Resync, Log: r.log}
	return r, nil
}

// Set makes p the desired program and schedules a sync; it returns p's
// version, for WaitApplied. It never blocks. The Reconciler keeps p: the
// caller must not modify it afterwards (Compile returns a fresh one each time).
func (r *Reconciler) Set(p *Program) uint64 {
	s := programSummary{Endpoints: len(p.Endpoints), Sets: len(p.Sets), Warnings: p.Warnings}
	for i := range p.Endpoints {
		for _, d := range []*Direction{&p.Endpoints[i].Ingress, &p.Endpoints[i].Egress} {
			s.Rules += len(d.ANP) + len(d.NP) + len(d.BANP)
		}
	}
	r.mu.Lock()
	r.desired = p
	r.version++
	v := r.version
	r.summary = s
	r.full, r.pending = true, nil
	r.mu.Unlock()
	r.loop.Trigger()
	return v
}

// Update makes p the desired program, where p differs from the one given
// last only by ch's set elements (Incremental's answer to a change of an
// endpoint on another node), and schedules a sync that applies just those
// elements. It returns p's version and never blocks.
func (r *Reconciler) Update(p *Program, ch SetChanges) uint64 {
	r.mu.Lock()
	r.desired = p
	r.version++
	v := r.version
	r.summary.Sets = len(p.Sets)
	if !r.full {
		r.pending = append(r.pending, ch)
	}
	r.mu.Unlock()
	r.loop.Trigger()
	return v
}

// TableDrift is told that another process changed the table (WatchTable):
// it counts the change by kind, logs it at warn and schedules a sync that
// rewrites the whole table, which repairs whatever was done.
func (r *Reconciler) TableDrift(kinds []string) {
	r.mu.Lock()
	if r.drifts == nil {
		r.drifts = map[string]int{}
	}
	for _, k := range kinds {
		r.drifts[k]++
	}
	r.rewrite = true
	r.mu.Unlock()
	r.log.Warn("foreign change to the policy table; rewriting it", "kind", strings.Join(kinds, ","))
	r.loop.Trigger()
}

// Rewrite schedules a sync that rewrites the whole table, e.g. after the
// table watch broke and changes may have gone unseen.
func (r *Reconciler) Rewrite() {
	r.mu.Lock()
	r.rewrite = true
	r.mu.Unlock()
	r.loop.Trigger()
}

// Drifts returns how many foreign changes touched each kind of object.
func (r *Reconciler) Drifts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.drifts)
}

// Run syncs until ctx is done: on Set, every resync period, and with
// backoff after failures.
func (r *Reconciler) Run(ctx context.Context) error {
	r.log.Info("reconciler started")
	defer r.log.Info("reconciler stopped")
	return r.loop.Run(ctx)
}

// Sync applies the desired program once: only the pending element changes
// when Update is all that happened since the last sync, the whole program
// after Set, a failure or when the periodic rebuild is due, and nothing
// when the applied program is current (idle costs nothing, whatever the
// cluster's size). Before the first Set it does nothing.
func (r *Reconciler) Sync(ctx context.Context) error {
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	r.mu.Lock()
	p, v, pending, full, current := r.desired, r.version, r.pending, r.full || r.lastErr != nil, r.applied == r.version
	rewrite := r.rewrite
	r.pending, r.full, r.rewrite = nil, false, false
	r.mu.Unlock()
	if p == nil {
		return nil
	}
	rebuild := rewrite || time.Since(r.lastRebuild) >= r.rebuildEvery
	if rebuild {
		r.dp.Reset()
		r.lastRebuild = time.Now()
	}
	start := time.Now()
	var err error
	switch {
	case rebuild || full:
		err = r.dp.Apply(ctx, p)
	case len(pending) > 0:
		err = r.dp.ApplyElements(ctx, p, pending)
	case current:
	default:
		err = r.dp.Apply(ctx, p)
	}
	if err != nil {
		err = fmt.Errorf("sync policy version %d: %w", v, err)
	}

	r.mu.Lock()
	r.lastSync, r.lastErr = time.Now(), err
	r.syncs++
	if err != nil {
		r.failures++
		r.full, r.pending = true, nil
	} else if v > r.applied {
		r.applied = v
		r.ifaces = make(map[string]bool, len(p.Endpoints))
		for i := range p.Endpoints {
			if iface := p.Endpoints[i].HostIface; iface != "" {
				r.ifaces[iface] = true
			}
		}
	}
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()

	if err != nil {
		return err // the loop logs it with its retry
	}
	st := r.dp.Stats()
	if st.LastOps > 0 && (rebuild || full) {
		// A new program (or a rewrite) is an event an operator reads;
		// element updates for endpoints elsewhere are not.
		r.log.Info("policy applied", "version", v, "kind", st.LastKind, "chains", st.Chains, "rules", st.Rules, "elements", st.Elements, "dur", time.Since(start))
	} else {
		r.log.Debug("synced", "version", v, "op", st.LastOps, "dur", time.Since(start))
	}
	return nil
}

// WaitApplied blocks until version (from Set) or a later one is enforced,
// or ctx is done; the error then names the last apply failure, if any.
func (r *Reconciler) WaitApplied(ctx context.Context, version uint64) error {
	return r.wait(ctx, fmt.Sprintf("policy version %d", version), func() bool { return r.applied >= version })
}

// WaitEndpoint blocks until a program holding the endpoint of host
// interface iface is enforced (its chains, dispatch entries and addresses
// are in place), or ctx is done. The CNI ADD of an endpoint waits for this.
func (r *Reconciler) WaitEndpoint(ctx context.Context, iface string) error {
	return r.wait(ctx, "policy for "+iface, func() bool { return r.ifaces[iface] })
}

func (r *Reconciler) wait(ctx context.Context, what string, doneLocked func() bool) error {
	for {
		r.mu.Lock()
		done, ch, lastErr, applied := doneLocked(), r.changed, r.lastErr, r.applied
		r.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("wait for %s (applied version %d): %w; last error: %w", what, applied, ctx.Err(), lastErr)
			}
			return fmt.Errorf("wait for %s (applied version %d): %w", what, applied, ctx.Err())
		case <-ch:
		}
	}
}

// DebugState is what /debug/policy shows.
type DebugState = api.PolicyStatus

// Debug returns the reconciler's state.
func (r *Reconciler) Debug() DebugState {
	st := r.dp.Stats()
	r.mu.Lock()
	defer r.mu.Unlock()
	d := DebugState{
		DesiredVersion: r.version,
		AppliedVersion: r.applied,
		Program:        r.summary,
		Dataplane:      st,
		LastSync:       r.lastSync,
		Syncs:          r.syncs,
		Failures:       r.failures,
	}
	if r.lastErr != nil {
		d.LastError = r.lastErr.Error()
	}
	return d
}

// ServeHTTPDebug writes Debug as JSON.
func (r *Reconciler) ServeHTTPDebug(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(r.Debug()) // the client went away: nothing to do
}
