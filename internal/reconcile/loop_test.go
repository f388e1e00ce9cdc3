package reconcile

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// recorder is a Sync func that records the (virtual) time of each call,
// relative to the start of the bubble, and fails while fail says so.
type recorder struct {
	start time.Time
	mu    sync.Mutex
	calls []time.Duration
	fail  func(n int) bool // n counts calls from 1
	block chan struct{}    // when set, each call waits for a receive on it
}

func (r *recorder) sync(ctx context.Context) error {
	r.mu.Lock()
	r.calls = append(r.calls, time.Since(r.start))
	n := len(r.calls)
	r.mu.Unlock()
	if r.block != nil {
		select {
		case <-r.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if r.fail != nil && r.fail(n) {
		return errors.New("boom")
	}
	return nil
}

func (r *recorder) got() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.calls...)
}

// run starts l.Run in the bubble and returns a stop function that cancels it
// and checks that Run returned nil.
func run(t *testing.T, l *Loop) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	}
}

func testLog(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

func TestLoopSyncsAtStartAndResyncs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{start: time.Now()}
		l := &Loop{Name: "t", Sync: r.sync, Resync: 10 * time.Second, Log: testLog(t)}
		stop := run(t, l)
		time.Sleep(35 * time.Second) // virtual time
		synctest.Wait()
		stop()
		want := []time.Duration{0, 10 * time.Second, 20 * time.Second, 30 * time.Second}
		if d := cmp.Diff(want, r.got()); d != "" {
			t.Errorf("sync times mismatch (-want +got):\n%s", d)
		}
	})
}

func TestLoopTriggerSyncsNowAndRestartsResync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{start: time.Now()}
		l := &Loop{Sync: r.sync, Resync: 10 * time.Second}
		stop := run(t, l)
		time.Sleep(3 * time.Second)
		l.Trigger()
		synctest.Wait()
		time.Sleep(12 * time.Second) // resync due 10s after the triggered sync, at 13s
		synctest.Wait()
		stop()
		want := []time.Duration{0, 3 * time.Second, 13 * time.Second}
		if d := cmp.Diff(want, r.got()); d != "" {
			t.Errorf("sync times mismatch (-want +got):\n%s", d)
		}
	})
}

func TestLoopCoalescesTriggers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{start: time.Now(), block: make(chan struct{})}
		l := &Loop{Sync: r.sync, Resync: time.Hour}
		// Triggers before Run are kept, and covered by the first sync.
		l.Trigger()
		l.Trigger()
		stop := run(t, l)
		synctest.Wait()
		if n := len(r.got()); n != 1 {
			t.Fatalf("after start: %d syncs, want 1", n)
		}
		// Many triggers while the first sync runs make exactly one more.
		for range 5 {
			l.Trigger()
		}
		r.block <- struct{}{} // finish sync 1
		synctest.Wait()
		if n := len(r.got()); n != 2 {
			t.Fatalf("after triggers during sync: %d syncs, want 2", n)
		}
		r.block <- struct{}{} // finish sync 2
		synctest.Wait()
		if n := len(r.got()); n != 2 {
			t.Errorf("with no new trigger: %d syncs, want 2", n)
		}
		stop()
	})
}

func TestLoopBacksOffExponentially(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{start: time.Now(), fail: func(n int) bool { return n <= 6 }}
		l := &Loop{
			Sync:       r.sync,
			Resync:     time.Hour,
			MinBackoff: time.Second,
			MaxBackoff: 8 * time.Second,
			Log:        testLog(t),
		}
		stop := run(t, l)
		time.Sleep(time.Minute)
		synctest.Wait()
		stop()
		// Failures at 0,1,3,7,15,23 (waits 1,2,4,8,8,8), success at 31.
		want := []time.Duration{0, 1, 3, 7, 15, 23, 31}
		for i := range want {
			want[i] *= time.Second
		}
		if d := cmp.Diff(want, r.got()); d != "" {
			t.Errorf("sync times mismatch (-want +got):\n%s", d)
		}
	})
}

func TestLoopBackoffResetsAfterSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{start: time.Now(), fail: func(n int) bool { return n == 1 || n == 2 || n == 4 }}
		l := &Loop{Sync: r.sync, Resync: 10 * time.Second, MinBackoff: time.Second, MaxBackoff: time.Minute}
		stop := run(t, l)
		time.Sleep(15 * time.Second)
		synctest.Wait()
		stop()
		// fail 0, fail 1, ok 3, resync fail 13, retry after min backoff ok 14.
		want := []time.Duration{0, 1, 3, 13, 14}
		for i := range want {
			want[i] *= time.Second
		}
		if d := cmp.Diff(want, r.got()); d != "" {
			t.Errorf("sync times mismatch (-want +got):\n%s", d)
		}
	})
}

func TestLoopTriggerWaitsOutBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{start: time.Now(), fail: func(n int) bool { return n == 1 }}
		l := &Loop{Sync: r.sync, Resync: time.Hour, MinBackoff: 5 * time.Second}
		stop := run(t, l)
		time.Sleep(time.Second)
		l.Trigger()
		l.Trigger()
		synctest.Wait()
		if n := len(r.got()); n != 1 {
			t.Fatalf("trigger during backoff: %d syncs, want 1", n)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		stop()
		// The retry at 5s covers the triggers: no extra sync after it.
		want := []time.Duration{0, 5 * time.Second}
		if d := cmp.Diff(want, r.got()); d != "" {
			t.Errorf("sync times mismatch (-want +got):\n%s", d)
		}
	})
}

func TestLoopStopsOnCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{start: time.Now(), block: make(chan struct{})}
		l := &Loop{Sync: r.sync}
		stop := run(t, l)
		synctest.Wait()
		stop() // cancels while Sync blocks; Sync returns ctx.Err(), Run returns nil
		if n := len(r.got()); n != 1 {
			t.Errorf("%d syncs, want 1", n)
		}
	})
}

func TestLoopWithoutSync(t *testing.T) {
	t.Parallel()
	var l Loop
	if err := l.Run(t.Context()); err == nil {
		t.Error("Run() with nil Sync = nil, want error")
	}
}
