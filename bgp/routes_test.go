package bgp

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func routesOf(rs ...string) map[netip.Prefix]Route {
	out := map[netip.Prefix]Route{}
	for i := 0; i+1 < len(rs); i += 2 {
		r := Route{Dst: netip.MustParsePrefix(rs[i]), Gw: netip.MustParseAddr(rs[i+1])}
		out[r.Dst] = r
	}
	return out
}

func TestRouteSyncer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dp := newFakeDataplane()
	rec := newLogRecorder(t.Output())
	s := newRouteSyncer(dp, slog.New(rec))

	// Converge from empty.
	want := routesOf("10.1.1.0/24", "10.0.0.2", "10.1.2.0/24", "10.0.0.3")
	ops, kept, err := s.sync(ctx, want, nil)
	if err != nil || ops != 2 || kept != 0 {
		t.Fatalf("first sync = %d ops, %d kept, %v; want 2, 0, nil", ops, kept, err)
	}
	if d := cmp.Diff([]string{"10.1.1.0/24 via 10.0.0.2", "10.1.2.0/24 via 10.0.0.3"}, dp.lines()); d != "" {
		t.Errorf("routes mismatch (-want +got):\n%s", d)
	}
	// A second sync changes nothing.
	before := dp.opCount()
	if ops, _, err := s.sync(ctx, want, nil); err != nil || ops != 0 || dp.opCount() != before {
		t.Errorf("second sync = %d ops (%d recorded), %v; want none", ops, dp.opCount()-before, err)
	}
	// Change a gateway, drop one, add one.
	want = routesOf("10.1.1.0/24", "10.0.0.9", "10.1.3.0/24", "10.0.0.4")
	if ops, _, err := s.sync(ctx, want, nil); err != nil || ops != 3 {
		t.Errorf("third sync = %d ops, %v; want 3, nil", ops, err)
	}
	if d := cmp.Diff([]string{"10.1.1.0/24 via 10.0.0.9", "10.1.3.0/24 via 10.0.0.4"}, dp.lines()); d != "" {
		t.Errorf("routes mismatch (-want +got):\n%s", d)
	}
	installed, _ := s.state()
	if len(installed) != 2 {
		t.Errorf("state() = %v, want 2 routes", installed)
	}
}

func TestRouteSyncerKeepsStale(t *testing.T) {
	t.Parallel()
	dp := newFakeDataplane()
	dp.routes = routesOf("10.1.1.0/24", "10.0.0.2", "10.1.9.0/24", "10.0.0.9")
	s := newRouteSyncer(dp, slog.New(slog.DiscardHandler))
	keepAll := func(Route) bool { return true }
	ops, kept, err := s.sync(context.Background(), routesOf("10.1.1.0/24", "10.0.0.3"), keepAll)
	if err != nil || ops != 1 || kept != 1 {
		t.Fatalf("sync while syncing = %d ops, %d kept, %v; want 1 (replace), 1, nil", ops, kept, err)
	}
	if _, _, err := s.sync(context.Background(), routesOf("10.1.1.0/24", "10.0.0.3"), nil); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"10.1.1.0/24 via 10.0.0.3"}, dp.lines()); d != "" {
		t.Errorf("routes after the stale phase mismatch (-want +got):\n%s", d)
	}
}

func TestRouteSyncerRetriesFailuresKeepsGoing(t *testing.T) {
	t.Parallel()
	dp := newFakeDataplane()
	bad := netip.MustParsePrefix("10.1.2.0/24")
	dp.fail[bad] = errors.New("network is unreachable")
	s := newRouteSyncer(dp, slog.New(slog.DiscardHandler))
	want := routesOf("10.1.1.0/24", "10.0.0.2", "10.1.2.0/24", "10.0.0.3", "10.1.3.0/24", "10.0.0.4")
	ops, _, err := s.sync(context.Background(), want, nil)
	if err == nil || ops != 2 {
		t.Fatalf("sync with a failing route = %d ops, %v; want 2 and an error", ops, err)
	}
	if want := "add route 10.1.2.0/24 via 10.0.0.3: network is unreachable"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	delete(dp.fail, bad)
	if ops, _, err := s.sync(context.Background(), want, nil); err != nil || ops != 1 {
		t.Errorf("retry = %d ops, %v; want 1, nil", ops, err)
	}
}

func TestRouteSyncerNeverReplacesForeignRoutes(t *testing.T) {
	t.Parallel()
	dp := newFakeDataplane()
	dp.foreign[netip.MustParsePrefix("10.0.0.0/24")] = true
	rec := newLogRecorder(t.Output())
	s := newRouteSyncer(dp, slog.New(rec))
	want := routesOf("10.0.0.0/24", "10.0.0.1", "10.1.1.0/24", "10.0.0.2")
	for range 3 {
		if _, _, err := s.sync(context.Background(), want, nil); err != nil {
			t.Fatalf("sync = %v; a foreign route is not a failure", err)
		}
	}
	if d := cmp.Diff([]string{"10.1.1.0/24 via 10.0.0.2"}, dp.lines()); d != "" {
		t.Errorf("routes mismatch (-want +got):\n%s", d)
	}
	if n := rec.count("another route has the destination", "10.0.0.0/24"); n != 1 {
		t.Errorf("blocked route logged %d times, want 1", n)
	}
	if _, blocked := s.state(); len(blocked) != 1 {
		t.Errorf("state() blocked = %v, want 10.0.0.0/24", blocked)
	}
}

// TestRouteSyncerRandomWalk: whatever the order of desired states, each
// sync converges and the next one is a no-op.
func TestRouteSyncerRandomWalk(t *testing.T) {
	t.Parallel()
	states := []map[netip.Prefix]Route{
		{},
		routesOf("10.1.1.0/24", "10.0.0.2"),
		routesOf("10.1.1.0/24", "10.0.0.3", "10.1.2.0/24", "10.0.0.3"),
		routesOf("10.1.2.0/24", "10.0.0.4", "10.1.3.0/24", "10.0.0.2", "10.1.4.0/25", "10.0.0.2"),
		routesOf("0.0.0.0/0", "10.0.0.1"),
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	dp := newFakeDataplane()
	s := newRouteSyncer(dp, slog.New(slog.DiscardHandler))
	for i := range 50 {
		want := states[rnd.IntN(len(states))]
		if _, _, err := s.sync(context.Background(), want, nil); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		have, _ := dp.Routes(context.Background())
		if d := cmp.Diff(want, have, cmp.Comparer(func(a, b Route) bool { return a == b })); d != "" {
			t.Fatalf("step %d mismatch (-want +got):\n%s", i, d)
		}
		if ops, _, _ := s.sync(context.Background(), want, nil); ops != 0 {
			t.Fatalf("step %d: resync made %d ops", i, ops)
		}
	}
}
