package wireguard

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Stats counts the reconciler's syncs.
type Stats struct {
	Syncs        int
	Failures     int
	LastSync     time.Time
	LastError    string
	LastDuration time.Duration
	// Repairs counts route changes made after the first successful sync
	// that no plan change asked for: someone else changed the kernel.
	Repairs int
}

// Reconciler keeps the device's peers and Skein's routes at the plan.
type Reconciler struct {
	dev    Device
	pools  []netip.Prefix
	srcs   []netip.Addr
	resync time.Duration
	log    *slog.Logger

	kick chan struct{}

	mu      sync.Mutex
	plan    Plan
	planned bool
	// dirty is set by Set: the next sync's route changes are the plan's,
	// not repairs.
	dirty bool
	stats Stats
}

// NewReconciler reconciles dev; pools (of both families) get an
// unreachable route under the tunnel routes, srcs are the host's addresses
// on the device (at most one per family).
func NewReconciler(dev Device, pools []netip.Prefix, srcs []netip.Addr, resync time.Duration, log *slog.Logger) *Reconciler {
	if resync <= 0 {
		resync = 30 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{dev: dev, pools: pools, srcs: srcs, resync: resync, log: log, kick: make(chan struct{}, 1)}
}

// Device is the device the reconciler programs.
func (r *Reconciler) Device() Device { return r.dev }

// Set hands the reconciler a new plan.
func (r *Reconciler) Set(p Plan) {
	r.mu.Lock()
	r.plan, r.planned, r.dirty = p, true, true
	r.mu.Unlock()
	r.Trigger()
}

// Plan returns the last plan set.
func (r *Reconciler) Plan() Plan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.plan
}

// Trigger asks for a sync soon.
func (r *Reconciler) Trigger() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Stats returns the sync counters.
func (r *Reconciler) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Run syncs on every Set and Trigger and every resync period until ctx
// is done.
func (r *Reconciler) Run(ctx context.Context) error {
	t := time.NewTicker(r.resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.kick:
		case <-t.C:
		}
		r.sync()
	}
}

func (r *Reconciler) sync() {
	r.mu.Lock()
	p, planned, planChange := r.plan, r.planned, r.dirty
	r.dirty = false
	r.mu.Unlock()
	if !planned {
		return
	}
	start := time.Now()
	changed, err := r.apply(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.LastDuration = time.Since(start)
	if err != nil {
		r.stats.Failures++
		r.stats.LastError = err.Error()
		r.dirty = r.dirty || planChange
		r.log.Warn("wireguard sync failed; retrying", "err", err)
		go func() { time.Sleep(time.Second); r.Trigger() }()
		return
	}
	if changed > 0 && !planChange && r.stats.Syncs > 0 {
		r.stats.Repairs += changed
		r.log.Warn("wireguard routes repaired", "count", changed)
	}
	r.stats.Syncs++
	r.stats.LastSync, r.stats.LastError = time.Now(), ""
}
