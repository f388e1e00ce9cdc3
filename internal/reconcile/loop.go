package reconcile

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Defaults for Loop's optional fields.
const (
	DefaultResync     = 60 * time.Second
	DefaultMinBackoff = 500 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
)

// Loop calls Sync whenever it is triggered, after a failure (with exponential
// backoff) and every Resync. Triggers that arrive while Sync runs or while the
// loop waits are coalesced into one more call. A trigger that arrives while the
// loop backs off after a failure waits for the backoff to end, so a storm of
// events cannot turn a persistent failure into a busy loop.
//
// The zero value plus Sync is ready to use. Trigger may be called before Run,
// concurrently with it and after it returned.
type Loop struct {
	// Name identifies the loop in logs; optional.
	Name string
	// Sync converges the world to the desired state; required. It must be
	// safe to call again after any failure.
	Sync func(ctx context.Context) error
	// Resync is the period of unconditional syncs; optional, default DefaultResync.
	Resync time.Duration
	// MinBackoff is the wait after the first failure; optional, default DefaultMinBackoff.
	MinBackoff time.Duration
	// MaxBackoff caps the doubling wait after consecutive failures; optional,
	// default DefaultMaxBackoff.
	MaxBackoff time.Duration
	// Log receives one line per failed sync and per recovery; optional, default discards.
	Log *slog.Logger

	once  sync.Once
	dirty chan struct{}
}

func (l *Loop) init() {
	l.once.Do(func() { l.dirty = make(chan struct{}, 1) })
}

// Trigger marks the state dirty. It never blocks.
func (l *Loop) Trigger() {
	l.init()
	select {
	case l.dirty <- struct{}{}:
	default:
	}
}

// Run syncs once at once and then as described on Loop, until ctx is done.
// It returns nil when ctx is done, and an error only when misconfigured.
func (l *Loop) Run(ctx context.Context) error {
	if l.Sync == nil {
		return errors.New("reconcile loop: Sync is nil")
	}
	l.init()
	resync := orDefault(l.Resync, DefaultResync)
	minBackoff := orDefault(l.MinBackoff, DefaultMinBackoff)
	maxBackoff := max(orDefault(l.MaxBackoff, DefaultMaxBackoff), minBackoff)
	log := l.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("loop", l.Name)

	// Reset before every wait is enough: since Go 1.23 it discards a value
	// that fired but was never received.
	timer := time.NewTimer(resync)
	defer timer.Stop()

	failures := 0
	backoff := time.Duration(0)
	for {
		// Whatever was pending before this sync is covered by it.
		select {
		case <-l.dirty:
		default:
		}
		start := time.Now()
		err := l.Sync(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		if err != nil {
			failures++
			if backoff == 0 {
				backoff = minBackoff
			} else {
				backoff = min(2*backoff, maxBackoff)
			}
			wait = backoff
			log.Warn("sync failed", "err", err, "count", failures, "dur", time.Since(start), "retry_in", wait)
		} else {
			if failures > 0 {
				log.Info("sync recovered", "count", failures, "dur", time.Since(start))
			}
			failures, backoff = 0, 0
			wait = resync
		}
		timer.Reset(wait)

		if failures > 0 {
			// Backing off: only the timer or ctx end the wait; a trigger
			// stays pending in the channel and is served by the retry.
			select {
			case <-ctx.Done():
				return nil
			case <-timer.C:
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-l.dirty:
		}
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
