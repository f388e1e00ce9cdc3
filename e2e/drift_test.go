//go:build e2e

package e2e

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/policy"
)

// driftBound is how long a repair may take here. The agents resync every
// 60 s; a repair within this bound can only come from the kernel events.
// Each repair's measured time is logged (milliseconds on an idle machine).
const driftBound = 10 * time.Second

// nftCounters strips the packet counters, which traffic moves, from a listing.
var nftCounters = regexp.MustCompile(`counter packets \d+ bytes \d+`)

// TestDriftRepaired deletes, by hand on one host, a route, a neighbour, an
// FDB entry, the anti-spoofing map's elements, a chain's rules and then the
// whole policy table; each comes back by itself, long before the periodic
// resync, and skein_drift_repairs_total counts each kind.
func TestDriftRepaired(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	waitHealthy(ctx, t)
	h, peer := shared.Hosts()[0], shared.Hosts()[1]
	cl := storeClient(ctx, t)
	node, err := cl.GetNode(ctx, peer.Name)
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := cl.ListBlocks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var block string
	for _, b := range blocks {
		if b.Node == peer.Name {
			block = b.CIDR.String()
			break
		}
	}
	if block == "" {
		t.Fatalf("%s holds no block", peer.Name)
	}
	// Lines sorted: the kernel lists a re-added FDB entry in another place.
	overlay := func() string {
		out, err := dataplaneOf(ctx, h.Name)
		if err != nil {
			t.Fatalf("read %s's overlay: %v\n%s", h.Name, err, out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		slices.Sort(lines)
		return strings.Join(lines, "\n")
	}
	table := func() string {
		out, err := shared.Exec(ctx, h.Name, "nft", "list", "table", "inet", policy.TableName)
		if err != nil {
			return "" // deleted: not repaired yet
		}
		// Sorted: a rebuilt table may list its chains in another order.
		lines := strings.Split(nftCounters.ReplaceAllString(string(out), "counter"), "\n")
		// The drop log's per-endpoint limits are the kernel's (they come
		// with drops and expire), not the program's: not drift.
		lines = slices.DeleteFunc(lines, func(l string) bool { return strings.Contains(l, " expires ") })
		slices.Sort(lines)
		return strings.Join(lines, "\n")
	}
	wantOverlay, wantTable := overlay(), table()
	if !strings.Contains(wantOverlay, block) || wantTable == "" {
		t.Fatalf("%s before the test: overlay lacks %s or no table:\n%s", h.Name, block, wantOverlay)
	}
	edit := func(what string, read func() string, want string, args ...string) {
		t.Helper()
		if out, err := shared.Exec(ctx, h.Name, args...); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, out)
		}
		start := time.Now()
		for read() != want {
			if time.Since(start) > driftBound {
				t.Fatalf("%s: not repaired after %s; now:\n%s\nwant:\n%s", what, driftBound, read(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("%s: repaired in %s", what, time.Since(start).Round(time.Millisecond))
	}
	edit("route deleted", overlay, wantOverlay, "ip", "route", "del", block, "dev", api.VXLANDevice)
	edit("neighbour deleted", overlay, wantOverlay, "ip", "neigh", "del", node.VTEPIP.String(), "dev", api.VXLANDevice)
	edit("fdb entry deleted", overlay, wantOverlay, "bridge", "fdb", "del", node.VTEPMAC.String(), "dev", api.VXLANDevice, "dst", node.UnderlayIP.String())
	edit("anti-spoofing map flushed", table, wantTable, "nft", "flush", "map", "inet", policy.TableName, policy.EndpointAddrs)
	edit("forward chain flushed", table, wantTable, "nft", "flush", "chain", "inet", policy.TableName, "forward")
	edit("table deleted", table, wantTable, "nft", "delete", "table", "inet", policy.TableName)

	hc, err := shared.HTTPClient(h.Name)
	if err != nil {
		t.Fatal(err)
	}
	_, body := httpGet(ctx, t, hc, "http://"+h.DebugAddr+"/metrics")
	for _, kind := range []string{"route", "neigh", "fdb", "element", "rule", "table"} {
		if v, ok := metricValue(body, `skein_drift_repairs_total{kind="`+kind+`"}`); !ok || v < 1 {
			t.Errorf("skein_drift_repairs_total{kind=%q} = %v (found %v), want at least 1", kind, v, ok)
		}
	}
	logText, err := os.ReadFile(h.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logText), "foreign change") {
		t.Errorf("%s's log (%s) has no warning about the foreign changes", h.Name, h.LogPath)
	}
}
