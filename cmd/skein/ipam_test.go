package main

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/ipamaudit"
	"github.com/skeinnet/skein/store"
)

// TestIPAMReleaseCommand: check names the problems (exit 2); release
// --dry-run changes nothing; release fixes them, and check is then clean.
func TestIPAMReleaseCommand(t *testing.T) {
	tc := newTestCluster(t)
	ctx := tc.ctx(t)
	tc.node(t, "n1", 1, true, "off")
	orphan := netip.MustParsePrefix("10.244.9.0/26")
	if _, err := tc.cl.ClaimBlock(ctx, orphan, "gone"); err != nil {
		t.Fatal(err)
	}
	eps := []api.Endpoint{
		{Namespace: "x", Name: "old", Node: "gone", ContainerID: "c-old", IfName: "eth0", IPs: []netip.Addr{netip.MustParseAddr("10.244.9.2")}},
		{Namespace: "x", Name: "far", Node: "n1", ContainerID: "c-far", IfName: "eth0", IPs: []netip.Addr{netip.MustParseAddr("10.244.7.7")}},
		{Namespace: "x", Name: "fine", Node: "n1", ContainerID: "c-fine", IfName: "eth0", IPs: []netip.Addr{netip.MustParseAddr("10.244.1.7")}},
	}
	for _, ep := range eps {
		if err := tc.cl.PutEndpoint(ctx, ep); err != nil {
			t.Fatal(err)
		}
	}
	out, err := run(t, newIPAMCheckCmd(tc.g))
	if exitCode(err) != exitUnhealthy {
		t.Fatalf("check: exit %d (%v), want %d\n%s", exitCode(err), err, exitUnhealthy, out)
	}
	for _, want := range []string{ipamaudit.OrphanBlock, ipamaudit.StaleEndpoint, ipamaudit.EndpointOutsideBlocks, "3 finding(s)", "allocations not checked", "n1: the agent serves no debug endpoint"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}

	out, err = run(t, newIPAMReleaseCmd(tc.g), "--dry-run")
	if err != nil || strings.Count(out, "would delete") != 3 {
		t.Fatalf("release --dry-run: %v\n%s", err, out)
	}
	if inv, _ := tc.cl.Inventory(ctx); len(inv.Endpoints) != 3 || len(inv.Blocks) != 2 {
		t.Fatalf("--dry-run changed etcd: %d endpoints, %d blocks", len(inv.Endpoints), len(inv.Blocks))
	}

	tc.g.Output = "json"
	out, err = run(t, newIPAMReleaseCmd(tc.g))
	if err != nil {
		t.Fatalf("release: %v\n%s", err, out)
	}
	var results []releaseResult
	if err := json.Unmarshal([]byte(out), &results); err != nil {
		t.Fatalf("release -o json: %v\n%s", err, out)
	}
	for _, r := range results {
		if !strings.HasPrefix(r.Result, "released") {
			t.Errorf("%s %s: %s", r.Kind, r.What(), r.Result)
		}
	}
	inv, err := tc.cl.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := inv.Endpoints["n1/c-fine/eth0"]; len(inv.Endpoints) != 1 || !ok || len(inv.Blocks) != 1 {
		t.Errorf("after release: endpoints %v blocks %v, want only the fine endpoint and n1's block", inv.Endpoints, inv.Blocks)
	}
	tc.g.Output = "table"
	// n1 serves no debug endpoint: check etcd alone (item 3 makes an
	// unasked agent an error otherwise).
	if out, err := run(t, newIPAMCheckCmd(tc.g), "--etcd-only"); err != nil || !strings.Contains(out, "no problems found") {
		t.Errorf("check after release: %v\n%s", err, out)
	}
}

// TestIPAMReleaseSkipsChanged: a node that comes back between check and
// release keeps its block (the guarded transaction refuses).
func TestIPAMReleaseSkipsChanged(t *testing.T) {
	tc := newTestCluster(t)
	ctx := tc.ctx(t)
	b := netip.MustParsePrefix("10.244.9.0/26")
	if _, err := tc.cl.ClaimBlock(ctx, b, "back"); err != nil {
		t.Fatal(err)
	}
	inv, err := tc.cl.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rep := ipamaudit.Audit(inv, nil, nil, time.Now(), time.Minute)
	if len(rep.Findings) != 1 || rep.Findings[0].Kind != ipamaudit.OrphanBlock {
		t.Fatalf("findings %+v", rep.Findings)
	}
	if err := tc.cl.PutNode(ctx, api.Node{Name: "back"}); err != nil {
		t.Fatal(err)
	}
	if got := ipamaudit.Release(ctx, tc.cl, rep.Findings[0], tc.g.Timeout); !strings.HasPrefix(got, "skipped: changed") {
		t.Errorf("release after the node came back: %q", got)
	}
	if blocks, _ := tc.cl.ListBlocks(ctx); len(blocks) != 1 {
		t.Errorf("the block of a node that came back was released")
	}
}

func TestNodeCommands(t *testing.T) {
	tc := newTestCluster(t)
	ctx := tc.ctx(t)
	tc.node(t, "live", 1, true, "off")
	// "dead" last published two hours ago, "recent" a moment ago; then
	// their heartbeats end. Each agent starts its heartbeat right after it
	// registers, as skeind does.
	var leases []int64
	for i, name := range []string{"dead", "recent"} {
		tc.node(t, name, 2+i, false, "off")
		age := map[string]time.Duration{"dead": 2 * time.Hour, "recent": time.Second}[name]
		st := api.NodeStatus{Node: name, Ready: true, Updated: time.Now().Add(-age).UTC()}
		leases = append(leases, int64(tc.heartbeat(t, name, st)))
		tc.node(t, "live", 1, true, "off") // other traffic
	}
	for _, l := range leases {
		if _, err := tc.cl.Etcd().Revoke(ctx, clientv3.LeaseID(l)); err != nil {
			t.Fatal(err)
		}
	}
	tc.g.Output = "json"
	out, err := run(t, newNodeCmd(tc.g), "list", "--stale", "1h")
	if err != nil {
		t.Fatal(err)
	}
	var rows []nodeRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(rows) != 1 || rows[0].Name != "dead" || rows[0].LastSeen == nil || time.Since(*rows[0].LastSeen) < 2*time.Hour {
		t.Errorf("node list --stale 1h: %s", out)
	}
	tc.g.Output = "table"
	out, err = run(t, newNodeCmd(tc.g), "list", "--stale", "1ms")
	if err != nil || !strings.Contains(out, "LAST SEEN") || !strings.Contains(out, "recent") || strings.Contains(out, "live") {
		t.Errorf("node list --stale 1ms: %v\n%s", err, out)
	}

	if _, err := run(t, newNodeCmd(tc.g), "delete", "live"); err == nil || !strings.Contains(err.Error(), "is alive") {
		t.Errorf("delete of a live node: %v", err)
	}
	if _, err := run(t, newNodeCmd(tc.g), "delete", "nosuch"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("delete of an unknown node: %v", err)
	}
	if err := tc.cl.PutEndpoint(ctx, api.Endpoint{Node: "dead", ContainerID: "c", IfName: "eth0"}); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, newNodeCmd(tc.g), "delete", "dead")
	if err != nil || !strings.Contains(out, "node dead deleted: 1 block(s) and 1 endpoint(s) freed") {
		t.Errorf("delete dead: %v\n%s", err, out)
	}
	if _, err := tc.cl.GetNode(ctx, "dead"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("node record after delete: %v", err)
	}
	out, err = run(t, newNodeCmd(tc.g), "delete", "live", "--force")
	if err != nil || !strings.Contains(out, "node live deleted") {
		t.Errorf("delete --force of a live node: %v\n%s", err, out)
	}
}

// TestIPAMShowEmptyBlocks: `skein ipam show` says, from the agents' status
// records, which blocks are empty, since when and what becomes of them.
func TestIPAMShowEmptyBlocks(t *testing.T) {
	tc := newTestCluster(t)
	ctx := tc.ctx(t)
	home := tc.node(t, "n1", 1, true, "off")
	spare := netip.MustParsePrefix("10.244.5.0/26")
	if ok, err := tc.cl.ClaimBlock(ctx, spare, "n1"); err != nil || !ok {
		t.Fatalf("claim %s: %t %v", spare, ok, err)
	}
	busy := tc.node(t, "n2", 2, false, "off") // no heartbeat, no status
	if err := tc.cl.PutEndpoint(ctx, api.Endpoint{Namespace: "x", Name: "a", Node: "n2", ContainerID: "c-a", IfName: "eth0",
		IPs: []netip.Addr{netip.MustParseAddr("10.244.2.5")}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	tc.heartbeat(t, "n1", api.NodeStatus{
		Node: "n1", Ready: true, Blocks: []string{home.String(), spare.String()}, Updated: now,
		EmptyBlocks: []api.EmptyBlock{
			{CIDR: home, Since: now.Add(-15 * time.Minute), Home: true},
			{CIDR: spare, Since: now.Add(-5 * time.Minute), ReleaseAt: now.Add(5 * time.Minute)},
		},
	})

	out, err := run(t, newIPAMShowCmd(tc.g))
	if err != nil {
		t.Fatalf("ipam show: %v\n%s", err, out)
	}
	rows := map[netip.Prefix]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			if p, err := netip.ParsePrefix(f[0]); err == nil {
				rows[p] = strings.Join(f[1:], " ")
			}
		}
	}
	want := map[netip.Prefix]string{
		home:  "n1 0 since " + now.Add(-15*time.Minute).Format(time.RFC3339) + " (15m ago), home block: kept",
		spare: "n1 0 since " + now.Add(-5*time.Minute).Format(time.RFC3339) + " (5m ago), back to the pool in 5m",
		busy:  "n2 1 unknown (no status from n2)",
	}
	// The command reads the clock a moment after this test did; ages are
	// rounded to the minute.
	for p, w := range want {
		if rows[p] != w {
			t.Errorf("row of %s = %q, want %q\n%s", p, rows[p], w, out)
		}
	}

	tc.g.Output = "json"
	out, err = run(t, newIPAMShowCmd(tc.g))
	if err != nil {
		t.Fatalf("ipam show -o json: %v\n%s", err, out)
	}
	var usage []ipamaudit.PoolUsage
	if err := json.Unmarshal([]byte(out), &usage); err != nil {
		t.Fatalf("decode: %v\n%s", err, out)
	}
	if len(usage) != 1 || len(usage[0].Blocks) != 3 {
		t.Fatalf("usage %+v, want one pool of 3 blocks", usage)
	}
	for _, b := range usage[0].Blocks {
		switch b.CIDR {
		case spare:
			if b.Empty == nil || !b.Empty.Since.Equal(now.Add(-5*time.Minute)) || !b.Empty.ReleaseAt.Equal(now.Add(5*time.Minute)) {
				t.Errorf("%s: empty %+v", b.CIDR, b.Empty)
			}
		case busy:
			if b.Empty != nil || !b.NoStatus || b.Endpoints != 1 {
				t.Errorf("%s: %+v, want 1 endpoint and no status", b.CIDR, b)
			}
		}
	}
}

func TestRenderIPAMShow(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	pfx := netip.MustParsePrefix
	usage := []ipamaudit.PoolUsage{{
		CIDR: pfx("10.244.0.0/16"), BlockSize: 26, BlocksTotal: 1024, BlocksUsed: 4, EndpointIPs: 3,
		Blocks: []ipamaudit.BlockUsage{
			{Block: api.Block{CIDR: pfx("10.244.1.0/26"), Node: "n1"}, Empty: &api.EmptyBlock{CIDR: pfx("10.244.1.0/26"), Since: now.Add(-2 * time.Hour), Home: true}},
			{Block: api.Block{CIDR: pfx("10.244.2.0/26"), Node: "n1"}, Endpoints: 3},
			{Block: api.Block{CIDR: pfx("10.244.3.0/26"), Node: "n1"}, Empty: &api.EmptyBlock{CIDR: pfx("10.244.3.0/26"), Since: now.Add(-11 * time.Minute), ReleaseAt: now.Add(-time.Minute)}},
			{Block: api.Block{CIDR: pfx("10.244.4.0/26"), Node: "n2"}, Empty: &api.EmptyBlock{CIDR: pfx("10.244.4.0/26"), Since: now.Add(-30 * time.Second)}},
		},
	}}
	var out strings.Builder
	tw := tabwriter.NewWriter(&out, 0, 4, 2, ' ', 0)
	renderIPAMShow(tw, usage, now)
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	want := `POOL 10.244.0.0/16  blocks /26  4/1024 blocks claimed  3 endpoint addresses
  BLOCK          NODE  ENDPOINTS  EMPTY
  10.244.1.0/26  n1    0          since 2026-01-01T10:00:00Z (2h ago), home block: kept
  10.244.2.0/26  n1    3          -
  10.244.3.0/26  n1    0          since 2026-01-01T11:49:00Z (11m ago), back to the pool now
  10.244.4.0/26  n2    0          since 2026-01-01T11:59:30Z (30s ago), kept: release off
`
	if d := cmp.Diff(want, out.String()); d != "" {
		t.Errorf("ipam show (-want +got):\n%s", d)
	}
}

// TestRenderIPAMReportUnchecked: a check that found nothing but could not
// ask some agents does not say "no problems found" alone: it names the
// nodes it did not check and how to check them.
func TestRenderIPAMReportUnchecked(t *testing.T) {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	renderIPAMReport(tw, ipamaudit.Report{Rev: 7, Unchecked: []ipamaudit.Unchecked{{Node: "n2", Reason: "debug endpoint: connection refused"}}}, false)
	_ = tw.Flush()
	for _, want := range []string{"no problems found in what could be checked", "1 node(s) NOT checked", "n2: debug endpoint: connection refused", "run `skein ipam check` on it", "--etcd-only"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	renderIPAMReport(tw, ipamaudit.Report{Rev: 7}, false)
	_ = tw.Flush()
	if got := b.String(); got != "no problems found (etcd rev 7)\n" {
		t.Errorf("report with everything checked = %q", got)
	}
}
