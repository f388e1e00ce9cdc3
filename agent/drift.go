package agent

import (
	"context"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/policy"
	"github.com/skeinnet/skein/vxlan"
)

// watchRetry is the pause before a broken kernel subscription is renewed.
const watchRetry = time.Second

// watchKernel turns foreign changes to the overlay's routes, neighbours, FDB
// entries and device into immediate repairs (vxlan.Reconciler.KernelEvent).
func (a *Agent) watchKernel(ctx context.Context) error {
	return a.rewatch(ctx, "kernel", func(ctx context.Context) error {
		return vxlan.WatchKernel(ctx, nil, api.VXLANDevice, func(ev vxlan.Event) { a.vx.KernelEvent(ev) })
	}, a.vx.Trigger)
}

// watchTable does the same for table inet skein: another process's change
// to it makes the policy reconciler rewrite the table.
func (a *Agent) watchTable(ctx context.Context) error {
	return a.rewatch(ctx, "nftables", func(ctx context.Context) error {
		return policy.WatchTable(ctx, 0, a.pol.rec.TableDrift)
	}, a.pol.rec.Rewrite)
}

// rewatch runs watch until ctx is done, renewing it when it breaks; resync
// repairs whatever changed while no event could be seen.
func (a *Agent) rewatch(ctx context.Context, what string, watch func(context.Context) error, resync func()) error {
	for {
		err := watch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		a.log.Warn("watch broken; renewing it", "kind", what, "err", err)
		resync()
		t := time.NewTimer(watchRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// drifts sums the repairs of foreign changes by kind.
func (a *Agent) drifts() map[string]int {
	out := map[string]int{}
	if a.vx != nil {
		for k, n := range a.vx.Drifts() {
			out[k] += n
		}
	}
	if a.pol != nil {
		for k, n := range a.pol.rec.Drifts() {
			out[k] += n
		}
	}
	return out
}
