package agent

import (
	"context"
	"time"

	"github.com/skeinnet/skein/policy"
)

// watchRetry is the pause before a broken kernel subscription is renewed.
const watchRetry = time.Second

// watchTable does the same for table inet skein: another process's change
// to it makes the policy reconciler rewrite the table.
func (a *Agent) watchTable(ctx context.Context) error {
	return rewatch(ctx, a.log, "nftables", func(ctx context.Context) error {
		return policy.WatchTable(ctx, 0, a.pol.rec.TableDrift)
	}, a.pol.rec.Rewrite)
}

// drifts sums the repairs of foreign changes by kind.
func (a *Agent) drifts() map[string]int {
	out := map[string]int{}
	for k, n := range a.be.drifts() {
		out[k] += n
	}
	if a.pol != nil {
		for k, n := range a.pol.rec.Drifts() {
			out[k] += n
		}
	}
	return out
}
