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
// A broken subscription is renewed, with a full sync for what it missed.
func (a *Agent) watchKernel(ctx context.Context) error {
	for {
		err := vxlan.WatchKernel(ctx, nil, api.VXLANDevice, func(ev vxlan.Event) { a.vx.KernelEvent(ev) })
		if ctx.Err() != nil {
			return nil
		}
		a.log.Warn("kernel watch broken; renewing it", "err", err)
		a.vx.Trigger()
		if !sleepCtx(ctx, watchRetry) {
			return nil
		}
	}
}

// watchTable does the same for table inet skein: another process's change
// to it makes the policy reconciler rewrite the table.
func (a *Agent) watchTable(ctx context.Context) error {
	for {
		err := policy.WatchTable(ctx, 0, a.pol.rec.TableDrift)
		if ctx.Err() != nil {
			return nil
		}
		a.log.Warn("nftables watch broken; renewing it", "err", err)
		a.pol.rec.Rewrite()
		if !sleepCtx(ctx, watchRetry) {
			return nil
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

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
