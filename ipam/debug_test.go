package ipam

import (
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestServeHTTPDebug(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.newAlloc(e.config())
	mustAllocate(t, a, owner("c1"), "ns/p1")
	mustAllocate(t, a, owner("c2"), "ns/p2")
	mustRelease(t, a, owner("c1"))

	rec := httptest.NewRecorder()
	a.ServeHTTPDebug(rec, httptest.NewRequest("GET", "/debug/ipam", nil))
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var got debugState
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("decode %s: %v", rec.Body, err)
	}
	want := debugState{
		Node: "node-a", Home: pfx("10.0.0.12/30"), VTEP: addr("10.0.0.12"),
		Blocks:      pfxs("10.0.0.12/30"),
		Stats:       Stats{Blocks: 1, Capacity: 3, Used: 1, Free: 1, Cooling: 1},
		Allocations: a.Allocations(),
		Cooling:     []coolingAddr{{IP: addr("10.0.0.13"), Until: e.clock.Now().Add(DefaultCooldown)}},
		StateFile:   a.slots.Newest(),
		Now:         e.clock.Now(),
	}
	if d := cmp.Diff(want, got, cmpOpts); d != "" {
		t.Errorf("debug state (-want +got):\n%s", d)
	}
}
