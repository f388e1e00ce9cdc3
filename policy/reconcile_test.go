package policy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeDP is an in-memory Dataplane: it remembers the last program it
// enforced and fails while fail > 0.
type fakeDP struct {
	mu      sync.Mutex
	applied *Program
	applies int
	resets  int
	fail    int
	// elements records each ApplyElements call's number of changes.
	elements []int
}

func (f *fakeDP) Apply(_ context.Context, p *Program) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies++
	if f.fail > 0 {
		f.fail--
		return errors.New("injected failure")
	}
	f.applied = p
	return nil
}

func (f *fakeDP) ApplyElements(ctx context.Context, p *Program, chs []SetChanges) error {
	f.mu.Lock()
	f.elements = append(f.elements, len(chs))
	f.mu.Unlock()
	return f.Apply(ctx, p)
}

func (f *fakeDP) Stats() ApplyStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return ApplyStats{Updates: f.applies}
}

func (f *fakeDP) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resets++
}

func (f *fakeDP) state() (*Program, int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied, f.applies, f.resets
}

func programWith(ifaces ...string) *Program {
	p := &Program{Sets: map[string]Set{}}
	for _, iface := range ifaces {
		p.Endpoints = append(p.Endpoints, EndpointProgram{Namespace: "x", Name: iface, HostIface: iface})
	}
	return p
}

func startReconciler(t *testing.T, f *fakeDP, cfg ReconcilerConfig) (*Reconciler, func()) {
	t.Helper()
	cfg.Dataplane = f
	r, err := NewReconciler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return r, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func TestReconcilerWaitApplied(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeDP{}
		r, stop := startReconciler(t, f, ReconcilerConfig{})
		defer stop()

		p1 := programWith("ska")
		v1 := r.Set(p1)
		if err := r.WaitApplied(t.Context(), v1); err != nil {
			t.Fatalf("WaitApplied(%d): %v", v1, err)
		}
		if got, _, _ := f.state(); got != p1 {
			t.Errorf("dataplane holds %v, want p1", got)
		}
		if err := r.WaitEndpoint(t.Context(), "ska"); err != nil {
			t.Errorf("WaitEndpoint(ska): %v", err)
		}

		// An endpoint not in any applied program: the wait ends with ctx.
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		err := r.WaitEndpoint(ctx, "skb")
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("WaitEndpoint(skb) = %v, want a deadline error", err)
		}

		// A later program with the endpoint ends a wait already running.
		waited := make(chan error, 1)
		go func() { waited <- r.WaitEndpoint(t.Context(), "skb") }()
		synctest.Wait()
		select {
		case err := <-waited:
			t.Fatalf("WaitEndpoint(skb) returned %v before skb was applied", err)
		default:
		}
		v2 := r.Set(programWith("ska", "skb"))
		if v2 != v1+1 {
			t.Errorf("versions %d then %d", v1, v2)
		}
		if err := <-waited; err != nil {
			t.Errorf("WaitEndpoint(skb): %v", err)
		}
		if err := r.WaitApplied(t.Context(), v1); err != nil {
			t.Errorf("WaitApplied of an older version: %v", err)
		}
		if d := r.Debug(); d.DesiredVersion != v2 || d.AppliedVersion != v2 || d.Program.Endpoints != 2 {
			t.Errorf("Debug() = %+v", d)
		}
	})
}

func TestReconcilerRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeDP{fail: 3}
		r, stop := startReconciler(t, f, ReconcilerConfig{})
		defer stop()

		v := r.Set(programWith("ska"))
		// With a short deadline the wait names the failure.
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		err := r.WaitApplied(ctx, v)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "injected failure") {
			t.Errorf("WaitApplied during failures = %v, want the last error", err)
		}
		// The loop backs off and retries until it succeeds.
		if err := r.WaitApplied(t.Context(), v); err != nil {
			t.Fatalf("WaitApplied: %v", err)
		}
		d := r.Debug()
		if d.Failures != 3 || d.LastError != "" || d.AppliedVersion != v {
			t.Errorf("Debug() = %+v, want 3 failures, then applied", d)
		}
	})
}

func TestReconcilerRebuildsPeriodically(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeDP{}
		r, stop := startReconciler(t, f, ReconcilerConfig{Resync: time.Minute, RebuildEvery: 5 * time.Minute})
		defer stop()
		if err := r.WaitApplied(t.Context(), r.Set(programWith("ska"))); err != nil {
			t.Fatal(err)
		}
		_, applies, resets := f.state()
		if applies != 1 || resets != 1 {
			t.Errorf("first sync: %d applies, %d resets; want 1 and 1", applies, resets)
		}
		time.Sleep(10*time.Minute + time.Second)
		synctest.Wait()
		// The minutely resyncs find the program current and do nothing;
		// the rebuilds at 5 and 10 minutes rewrite the table.
		_, applies, resets = f.state()
		if applies != 3 || resets != 3 {
			t.Errorf("after 10 minutes: %d applies, %d resets; want 3 and 3", applies, resets)
		}
	})
}

func TestReconcilerNothingBeforeSet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeDP{}
		_, stop := startReconciler(t, f, ReconcilerConfig{})
		defer stop()
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if _, applies, _ := f.state(); applies != 0 {
			t.Errorf("%d applies before any Set", applies)
		}
	})
}

func TestServeHTTPDebug(t *testing.T) {
	t.Parallel()
	r, err := NewReconciler(ReconcilerConfig{Dataplane: &fakeDP{}})
	if err != nil {
		t.Fatal(err)
	}
	p := programWith("ska")
	p.Warnings = []string{"something ignored"}
	r.Set(p)
	if err := r.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	r.ServeHTTPDebug(rec, httptest.NewRequest("GET", "/debug/policy", nil))
	var d DebugState
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
		t.Fatalf("decode %s: %v", rec.Body, err)
	}
	if d.AppliedVersion != 1 || d.Program.Endpoints != 1 || len(d.Program.Warnings) != 1 {
		t.Errorf("debug = %+v", d)
	}
	if _, err := NewReconciler(ReconcilerConfig{}); err == nil {
		t.Error("NewReconciler without Dataplane succeeded")
	}
}

// TestReconcilerUpdateAppliesElementsOnly: after Set, Updates reach the
// dataplane as element batches (coalesced when they queue up), never as
// whole applies, and an idle resync applies nothing.
func TestReconcilerUpdateAppliesElementsOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeDP{}
		r, stop := startReconciler(t, f, ReconcilerConfig{Resync: time.Minute})
		defer stop()
		if err := r.WaitApplied(t.Context(), r.Set(programWith("ska"))); err != nil {
			t.Fatal(err)
		}
		ch := SetChanges{AddPrefixes: map[string][]netip.Prefix{"p-x": {netip.MustParsePrefix("10.0.0.1/32")}}}
		r.Update(programWith("ska"), ch)
		v := r.Update(programWith("ska"), ch)
		if err := r.WaitApplied(t.Context(), v); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Minute)
		synctest.Wait()
		f.mu.Lock()
		defer f.mu.Unlock()
		total := 0
		for _, n := range f.elements {
			total += n
		}
		if f.applies != 1+len(f.elements) || total != 2 {
			t.Errorf("%d applies, element batches %v; want 1 whole apply and the 2 updates as element batches, nothing when idle", f.applies, f.elements)
		}
	})
}
