package agent

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/nflog"
	"github.com/skeinnet/skein/store"
)

// TestDropLogRing: the ring keeps the last dropRingSize drops in order,
// ?since= returns only newer ones, endpoints are named, and the rule label
// is capped at maxDropRules.
func TestDropLogRing(t *testing.T) {
	snap := store.Snapshot{Endpoints: map[string]api.Endpoint{
		"k1": {Namespace: "x", Name: "a", IPs: []netip.Addr{netip.MustParseAddr("10.0.1.1")}},
		"k2": {Namespace: "y", Name: "b", IPs: []netip.Addr{netip.MustParseAddr("10.0.2.2")}},
	}}
	reg := prometheus.NewRegistry()
	d := newDropLog(slog.New(slog.DiscardHandler), "n1", reg, func(src, dst netip.Addr) (from, to *api.EndpointRef) {
		return endpointsByAddr(snap, src, dst)
	})
	now := time.Unix(1000, 0)
	total := dropRingSize + maxDropRules + 10
	for i := range total {
		d.add(nflog.Packet{Prefix: fmt.Sprintf("rule %d", i), Src: netip.MustParseAddr("10.0.1.1"), Dst: netip.MustParseAddr("10.0.2.2"), Proto: 6, DstPort: 80}, now)
	}
	got := d.snapshot(0, now)
	if len(got.Drops) != dropRingSize || got.Total != uint64(total) {
		t.Fatalf("kept %d drops of total %d, want %d of %d", len(got.Drops), got.Total, dropRingSize, total)
	}
	for i, dr := range got.Drops {
		if want := uint64(total - dropRingSize + i + 1); dr.Seq != want {
			t.Fatalf("drop %d has seq %d, want %d (oldest first)", i, dr.Seq, want)
		}
	}
	last := got.Drops[len(got.Drops)-1]
	if last.Rule != fmt.Sprintf("rule %d", total-1) || last.Proto != "TCP" || last.DstPort != 80 ||
		last.From == nil || *last.From != (api.EndpointRef{Namespace: "x", Name: "a"}) || last.To == nil || last.To.Name != "b" {
		t.Fatalf("last drop: %+v", last)
	}
	if n := len(d.snapshot(uint64(total-3), now).Drops); n != 3 {
		t.Fatalf("since total-3: %d drops, want 3", n)
	}
	if n := testutil.CollectAndCount(d.counter); n != maxDropRules+1 {
		t.Fatalf("%d rule label values, want %d (capped, plus %q)", n, maxDropRules+1, otherRule)
	}
	if v := testutil.ToFloat64(d.counter.WithLabelValues(otherRule)); v != float64(total-maxDropRules) {
		t.Fatalf("other: %v, want %d", v, total-maxDropRules)
	}

	d.add(nflog.Packet{Prefix: "isolated for ingress by NetworkPolicy y/deny and no rule allows it: Deny", Src: netip.MustParseAddr("10.0.1.1"), Dst: netip.MustParseAddr("10.0.2.2"), Proto: 17, DstPort: 53}, now)
	if got := d.snapshot(uint64(total), now).Drops; len(got) != 1 || got[0].Rule != "y/b is isolated for ingress by NetworkPolicy y/deny and no rule allows it: Deny" || got[0].Proto != "UDP" {
		t.Fatalf("isolation drop: %+v", got)
	}

	rec := httptest.NewRecorder()
	d.serve(rec, httptest.NewRequest("GET", "/debug/drops?since=x", nil))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "since") {
		t.Fatalf("bad since: %d %s", rec.Code, rec.Body)
	}
	var nilLog *dropLog
	rec = httptest.NewRecorder()
	nilLog.serve(rec, httptest.NewRequest("GET", "/debug/drops", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("no drop log: %d", rec.Code)
	}
}
