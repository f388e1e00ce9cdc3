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
	Syncs int
	// Full counts the syncs that compared everything with the kernel (the
	// first, every resync period, and after a failure); the others touched
	// only the nodes that changed.
	Full         int
	Failures     int
	LastSync     time.Time
	LastError    string
	LastDuration time.Duration
	// Repairs counts route changes made after the first successful sync
	// that no plan change asked for: someone else changed the kernel.
	Repairs int
	// PeerOps and RouteOps count the peers and routes the syncs set or
	// removed, so a test sees that one node's change costs one node's work.
	PeerOps  int
	RouteOps int
}

// Reconciler keeps the device's peers and Skein's routes at the planned
// entries. A change to some nodes is applied to those nodes only; the
// resync compares the whole plan with the kernel and repairs it.
type Reconciler struct {
	dev    Device
	pools  []netip.Prefix
	srcs   []netip.Addr
	resync time.Duration
	log    *slog.Logger

	kick chan struct{}

	mu      sync.Mutex
	want    map[string]Entry // by node
	planned bool
	// pending are the nodes changed since the last sync; full asks the
	// next sync to compare everything (set by Reset and after a failure).
	pending map[string]bool
	full    bool
	// planChange is set by Reset and Update: the next sync's route changes
	// are the plan's, not repairs.
	planChange bool
	plan       *Plan // built from want on demand; nil when stale
	stats      Stats

	// applied is what the last successful sync put in the kernel; only the
	// Run goroutine uses it.
	applied map[string]Entry
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
	return &Reconciler{dev: dev, pools: pools, srcs: srcs, resync: resync, log: log, kick: make(chan struct{}, 1),
		want: map[string]Entry{}, pending: map[string]bool{}}
}

// Device is the device the reconciler programs.
func (r *Reconciler) Device() Device { return r.dev }

// Reset hands the reconciler every node's entry; the next sync compares
// all of them with the kernel.
func (r *Reconciler) Reset(entries map[string]Entry) {
	r.mu.Lock()
	r.want, r.planned, r.full, r.planChange, r.plan = entries, true, true, true, nil
	clear(r.pending)
	r.mu.Unlock()
	r.Trigger()
}

// Update hands the reconciler the entries of the nodes that changed (nil:
// the node is gone); the next sync applies those nodes only.
func (r *Reconciler) Update(changed map[string]*Entry) {
	if len(changed) == 0 {
		return
	}
	r.mu.Lock()
	for name, e := range changed {
		if e == nil {
			delete(r.want, name)
		} else {
			r.want[name] = *e
		}
		r.pending[name] = true
	}
	r.planChange, r.plan = true, nil
	r.mu.Unlock()
	r.Trigger()
}

// Plan returns the whole plan last handed over (built once per change).
func (r *Reconciler) Plan() Plan {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.plan == nil {
		p := PlanOf(r.want)
		r.plan = &p
	}
	return *r.plan
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

// Run syncs on every Reset, Update and Trigger, and compares everything
// every resync period, until ctx is done.
func (r *Reconciler) Run(ctx context.Context) error {
	t := time.NewTicker(r.resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.kick:
			r.sync(false)
		case <-t.C:
			r.sync(true)
		}
	}
}

// sync applies the pending nodes, or everything when full (or when a Reset
// or failure asked for it).
func (r *Reconciler) sync(full bool) {
	r.mu.Lock()
	if !r.planned {
		r.mu.Unlock()
		return
	}
	full = full || r.full || r.applied == nil
	// Route changes of this sync are the plan's; once it succeeds, any a
	// later full sync finds are repairs.
	planChange := r.planChange
	r.planChange = false
	names := make([]string, 0, len(r.pending))
	for n := range r.pending {
		names = append(names, n)
	}
	clear(r.pending)
	want := make(map[string]Entry, len(names))
	if full {
		for k, v := range r.want {
			want[k] = v
		}
		r.full = false
	} else {
		for _, n := range names {
			if e, ok := r.want[n]; ok {
				want[n] = e
			}
		}
	}
	r.mu.Unlock()

	start := time.Now()
	var res syncCounts
	var err error
	if full {
		res, err = r.applyFull(want)
	} else {
		res, err = r.applyNodes(names, want)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.LastDuration = time.Since(start)
	r.stats.PeerOps += res.peers
	r.stats.RouteOps += res.routes
	if err != nil {
		r.stats.Failures++
		r.stats.LastError = err.Error()
		// What the kernel holds is unknown now: compare everything next.
		r.full, r.planChange = true, true
		r.log.Warn("wireguard sync failed; retrying", "err", err)
		go func() { time.Sleep(time.Second); r.Trigger() }()
		return
	}
	if full {
		r.applied = want
		r.stats.Full++
		if res.routes > 0 && !planChange && r.stats.Syncs > 0 {
			r.stats.Repairs += res.routes
			r.log.Warn("wireguard routes repaired", "count", res.routes)
		}
	} else {
		for _, n := range names {
			if e, ok := want[n]; ok {
				r.applied[n] = e
			} else {
				delete(r.applied, n)
			}
		}
	}
	r.stats.Syncs++
	r.stats.LastSync, r.stats.LastError = time.Now(), ""
}

// syncCounts counts what a sync changed.
type syncCounts struct {
	peers, routes int
}
