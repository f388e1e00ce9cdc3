package ipamaudit

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/ipam"
)

// TestUsage: blocks and endpoint addresses are counted per pool and block,
// and a block's emptiness comes from its node's status (or is unknown).
func TestUsage(t *testing.T) {
	t.Parallel()
	pfx, ip := netip.MustParsePrefix, netip.MustParseAddr
	pools := []api.Pool{{CIDR: pfx("10.244.0.0/16"), BlockSize: 26}, {CIDR: pfx("10.245.0.0/24"), BlockSize: 28}}
	blocks := []api.Block{{CIDR: pfx("10.244.1.0/26"), Node: "n1"}, {CIDR: pfx("10.244.2.0/26"), Node: "n2"}, {CIDR: pfx("10.245.0.16/28"), Node: "n1"}}
	eps := []api.Endpoint{{Node: "n1", IPs: []netip.Addr{ip("10.244.1.5"), ip("10.245.0.17")}}, {Node: "n1", IPs: []netip.Addr{ip("10.244.1.6")}}}
	since := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	statuses := map[string]api.NodeStatus{"n1": {EmptyBlocks: []api.EmptyBlock{{CIDR: pfx("10.245.0.16/28"), Since: since}}}}
	got := Usage(pools, blocks, eps, statuses)
	type row struct {
		Pool, Block     string
		Endpoints       int
		Empty, NoStatus bool
	}
	var rows []row
	for _, u := range got {
		for _, b := range u.Blocks {
			rows = append(rows, row{u.CIDR.String(), b.CIDR.String(), b.Endpoints, b.Empty != nil, b.NoStatus})
		}
	}
	want := []row{
		{"10.244.0.0/16", "10.244.1.0/26", 2, false, false},
		{"10.244.0.0/16", "10.244.2.0/26", 0, false, true},
		{"10.245.0.0/24", "10.245.0.16/28", 1, true, false},
	}
	if d := cmp.Diff(want, rows); d != "" {
		t.Errorf("blocks (-want +got):\n%s", d)
	}
	if got[0].BlocksTotal != 1024 || got[0].BlocksUsed != 2 || got[0].EndpointIPs != 2 || got[0].AddressTotal != 65536 {
		t.Errorf("pool 1 totals: %+v", got[0])
	}
	if got[1].BlocksTotal != 16 || got[1].BlocksUsed != 1 || got[1].EndpointIPs != 1 {
		t.Errorf("pool 2 totals: %+v", got[1])
	}
}

// TestProbe asks real HTTP servers: a node without heartbeat is not asked,
// an agent that answers as another node is not trusted, one that answers
// gives its allocations.
func TestProbe(t *testing.T) {
	t.Parallel()
	serve := func(node string) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/debug/ipam" {
				http.NotFound(w, r)
				return
			}
			_ = json.NewEncoder(w).Encode(AgentIPAM{Node: node, Allocations: []ipam.Allocation{{IP: netip.MustParseAddr("10.244.1.2")}}}) // the test reads what arrived
		}))
		t.Cleanup(s.Close)
		return strings.TrimPrefix(s.URL, "http://")
	}
	inv := inventory(4)
	for name, addr := range map[string]string{"n1": serve("n1"), "n2": serve("n1"), "n3": serve("n3")} {
		n := inv.Nodes[name]
		n.DebugAddr = addr
		inv.Nodes[name] = n
	}
	inv.Alive["n3"] = false
	allocs, unchecked := Probe(context.Background(), inv, 5*time.Second)
	if len(allocs) != 1 || len(allocs["n1"].Allocations) != 1 {
		t.Errorf("allocations: %+v, want n1's only", allocs)
	}
	for node, want := range map[string]string{"n2": `answered as node "n1"`, "n3": "no heartbeat", "n4": "serves no debug endpoint"} {
		if !strings.Contains(unchecked[node], want) {
			t.Errorf("unchecked %s = %q, want it to say %q", node, unchecked[node], want)
		}
	}
	if len(unchecked) != 3 {
		t.Errorf("unchecked = %v, want n2, n3 and n4", unchecked)
	}
}
