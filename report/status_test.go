package report

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// inventory builds an etcd view of nodes n1..nN, each with a block, all
// alive with ready status records that see every peer.
func inventory(n int, now time.Time) store.Inventory {
	inv := store.Inventory{
		Snapshot: store.Snapshot{
			Rev:       7,
			Cluster:   &api.Cluster{Backend: api.BackendVXLAN, Pools: []api.Pool{{CIDR: netip.MustParsePrefix("10.244.0.0/16"), BlockSize: 26}}},
			Nodes:     map[string]api.Node{},
			Blocks:    map[netip.Prefix]api.Block{},
			Endpoints: map[string]api.Endpoint{},
			Alive:     map[string]bool{},
		},
		Status:  map[string][]byte{},
		ModRevs: map[string]int64{},
	}
	for i := 1; i <= n; i++ {
		name := "n" + string(rune('0'+i))
		block := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 26)
		inv.Nodes[name] = api.Node{Name: name, UnderlayIP: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), Version: "v1"}
		inv.Blocks[block] = api.Block{CIDR: block, Node: name}
		inv.ModRevs[store.BlockModRevKey(block)] = int64(100 + i)
		inv.Alive[name] = true
		st, _ := json.Marshal(api.NodeStatus{Node: name, Version: "v1", Backend: api.BackendVXLAN,
			Ready: true, Peers: n - 1, PeersUp: n - 1, Updated: now.Add(-5 * time.Second), LastSync: now.Add(-3 * time.Second)})
		inv.Status[name] = st
	}
	return inv
}

func setStatus(t *testing.T, inv store.Inventory, node string, f func(*api.NodeStatus)) {
	t.Helper()
	var st api.NodeStatus
	if err := json.Unmarshal(inv.Status[node], &st); err != nil {
		t.Fatal(err)
	}
	f(&st)
	inv.Status[node], _ = json.Marshal(st)
}

func TestBuildReport(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	topo := func(self string, links map[string]string) *api.Topology {
		tp := &api.Topology{Node: api.Node{Name: self}, Ready: true, Nodes: []api.TopologyNode{{Node: api.Node{Name: self}, Self: true}}}
		for peer, state := range links {
			tp.Nodes = append(tp.Nodes, api.TopologyNode{Node: api.Node{Name: peer}, Link: api.Link{Kind: "vxlan", State: state}})
		}
		return tp
	}
	tests := []struct {
		name   string
		change func(t *testing.T, in *Input)
		want   map[string][]string // node ("" for the cluster) → problems
	}{
		{name: "healthy", change: func(*testing.T, *Input) {}, want: map[string][]string{}},
		{name: "agent down", change: func(_ *testing.T, in *Input) {
			delete(in.Inv.Alive, "n2")
			delete(in.Inv.Status, "n2")
		}, want: map[string][]string{"n2": {"no heartbeat: agent down, data path kept (agent stopped or cut off from etcd; its containers and its peers keep their routes until `skein node delete`)"}}},
		{name: "not ready with error", change: func(t *testing.T, in *Input) {
			setStatus(t, in.Inv, "n3", func(st *api.NodeStatus) { st.Ready, st.LastError = false, "sync vxlan: boom" })
		}, want: map[string][]string{"n3": {"not ready", "last error: sync vxlan: boom"}}},
		{name: "missing peers", change: func(t *testing.T, in *Input) {
			setStatus(t, in.Inv, "n1", func(st *api.NodeStatus) { st.Peers = 1 })
		}, want: map[string][]string{"n1": {"programs 1 of 2 peers"}}},
		{name: "stale status", change: func(t *testing.T, in *Input) {
			setStatus(t, in.Inv, "n1", func(st *api.NodeStatus) { st.Updated = now.Add(-5 * time.Minute) })
		}, want: map[string][]string{"n1": {"status not refreshed for 5m0s (agent stuck, or clocks apart)"}}},
		{name: "corrupt records", change: func(_ *testing.T, in *Input) {
			in.Inv.Status["n2"] = []byte(`{"ready":"yes"}`)
			in.Inv.Errors = []string{"/skein/nodes/x: bad"}
		}, want: map[string][]string{
			"":   {"undecodable record in etcd: /skein/nodes/x: bad"},
			"n2": {"status record of n2: json: cannot unmarshal string into Go struct field NodeStatus.ready of type bool"},
		}},
		{name: "no cluster config", change: func(_ *testing.T, in *Input) { in.Inv.Cluster = nil },
			want: map[string][]string{"": {"no cluster configuration (run `skein cluster init`)"}}},
		{name: "heartbeat without node record", change: func(_ *testing.T, in *Input) {
			in.Inv.Alive["ghost"] = true
		}, want: map[string][]string{"ghost": {"no node record (heartbeat without registration)", "heartbeat but no status record"}}},
		{name: "bgp sessions down", change: func(t *testing.T, in *Input) {
			setStatus(t, in.Inv, "n1", func(st *api.NodeStatus) {
				st.Backend, st.Peers, st.PeersUp = api.BackendBGP, 2, 1
				st.BGP = []api.BGPNeighbor{{Name: "n2", State: "Established"}, {Name: "n3", State: "Active"}}
			})
		}, want: map[string][]string{"n1": {"BGP sessions not established: n3 Active"}}},
		{name: "vxlan peers not programmed", change: func(t *testing.T, in *Input) {
			setStatus(t, in.Inv, "n2", func(st *api.NodeStatus) { st.PeersUp = 1 })
		}, want: map[string][]string{"n2": {"1 of 2 peers fully programmed"}}},
		{name: "policy error", change: func(t *testing.T, in *Input) {
			setStatus(t, in.Inv, "n2", func(st *api.NodeStatus) { st.PolicyError = "apply: netlink: EPERM" })
		}, want: map[string][]string{"n2": {"policy: apply: netlink: EPERM"}}},
		{name: "invalid stored policy", change: func(t *testing.T, in *Input) {
			setStatus(t, in.Inv, "n1", func(st *api.NodeStatus) {
				st.InvalidPolicies = []api.InvalidPolicy{{Key: "policies/NetworkPolicy/x/deny", Error: "spec.policyTypes[0]: unsupported value", Enforced: api.EnforcedQuarantine}}
			})
		}, want: map[string][]string{"n1": {"invalid stored policy policies/NetworkPolicy/x/deny: spec.policyTypes[0]: unsupported value (enforced: quarantine)"}}},
		{name: "unpublished endpoint changes", change: func(t *testing.T, in *Input) {
			setStatus(t, in.Inv, "n2", func(st *api.NodeStatus) { st.Unpublished, st.UnpublishedSince = 2, now.Add(-time.Minute) })
		}, want: map[string][]string{"n2": {"2 endpoint change(s) not yet in etcd (oldest 1m0s ago): other nodes' policy does not know them yet"}}},
		{name: "agent cut off from etcd", change: func(_ *testing.T, in *Input) {
			tp := topo("n3", map[string]string{"n1": api.LinkUp, "n2": api.LinkUp})
			tp.Offline = &api.OfflineState{Etcd: api.EtcdState{Reachable: false}, JournalStats: api.JournalStats{Unpublished: 1, Oldest: now.Add(-10 * time.Second)}}
			in.Probes = map[string]AgentProbe{"n3": {Addr: "c", Topology: tp}}
		}, want: map[string][]string{"n3": {
			"agent cannot reach etcd: new containers start from its own blocks only, and are published when etcd is back",
			"1 endpoint change(s) not yet in etcd (oldest 10s ago): other nodes' policy does not know them yet",
		}}},
		{name: "agent views", change: func(_ *testing.T, in *Input) {
			in.Probes = map[string]AgentProbe{
				"n1": {Addr: "a", Topology: topo("n1", map[string]string{"n2": api.LinkUp, "n3": api.LinkPartial})},
				"n2": {Addr: "b", Topology: topo("n2", map[string]string{"n1": api.LinkUp, "n3": api.LinkUp})},
				"n3": {Addr: "c", Err: "connection refused"},
			}
		}, want: map[string][]string{"n1": {"links not up: n3 partial"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Inv: inventory(3, now), Now: now}
			tc.change(t, &in)
			rep := Build(in)
			got := map[string][]string{}
			if len(rep.Problems) > 0 {
				got[""] = rep.Problems
			}
			for _, n := range rep.Nodes {
				if len(n.Problems) > 0 {
					got[n.Name] = n.Problems
				}
				if n.Healthy != (len(n.Problems) == 0) {
					t.Errorf("%s: healthy %v with problems %v", n.Name, n.Healthy, n.Problems)
				}
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("problems (-want +got):\n%s", d)
			}
			if rep.Healthy != (len(tc.want) == 0) {
				t.Errorf("healthy = %v, want %v", rep.Healthy, len(tc.want) == 0)
			}
		})
	}
}

func TestBuildReportColumns(t *testing.T) {
	now := time.Now()
	in := Input{Inv: inventory(2, now), Now: now, Probes: map[string]AgentProbe{
		"n2": {Addr: "x", Err: "127.0.0.1:9595 answered as node \"n1\""},
	}}
	in.Inv.Endpoints["n1/c/eth0"] = api.Endpoint{Node: "n1"}
	rep := Build(in)
	n1, n2 := rep.Nodes[0], rep.Nodes[1]
	if n1.Peers != "1/1" || n1.Endpoints != 1 || len(n1.Blocks) != 1 || n1.Ready == nil || !*n1.Ready || n1.Agent != "not asked" {
		t.Errorf("n1 row: %+v", n1)
	}
	if !strings.Contains(n2.Agent, "answered as node") || !n2.Healthy {
		t.Errorf("n2 row: agent %q healthy %v: an agent unreachable from here is shown, not a problem", n2.Agent, n2.Healthy)
	}
}

func TestBuildGraph(t *testing.T) {
	now := time.Now()
	in := Input{Inv: inventory(3, now), Now: now, Probes: map[string]AgentProbe{
		"n1": {Topology: &api.Topology{Node: api.Node{Name: "n1"}, Ready: true, Nodes: []api.TopologyNode{
			{Node: api.Node{Name: "n1"}, Self: true},
			{Node: api.Node{Name: "n2"}, Link: api.Link{State: api.LinkUp, Detail: "4 entries programmed"}},
			{Node: api.Node{Name: "n3"}, Link: api.Link{State: api.LinkDown}},
		}}},
	}}
	delete(in.Inv.Alive, "n3")
	delete(in.Inv.Status, "n3")
	type link struct {
		From, To, State, Basis string
		AgentDown              []string
	}
	links := func(g Graph) []link {
		var got []link
		for _, l := range g.Links {
			got = append(got, link{l.From, l.To, l.State, l.Basis, l.AgentDown})
		}
		return got
	}
	// n3's agent is stopped: n2's record says nothing of n3, so that link
	// is unknown, never down.
	g := NewGraph(Build(in), true)
	want := []link{{"n1", "n2", "up", "observed", nil}, {"n1", "n3", "down", "observed", []string{"n3"}}, {"n2", "n3", "unknown", "none", []string{"n3"}}}
	if d := cmp.Diff(want, links(g)); d != "" {
		t.Errorf("links (-want +got):\n%s", d)
	}
	if g := NewGraph(Build(in), false); len(g.Links) != 2 {
		t.Errorf("without a full mesh only links with a known side are drawn: %+v", g.Links)
	}
	// Once n2 reports its side to n3 programmed, the link to the stopped
	// agent is up (reported), and n2's side to n1 down makes that link down
	// whatever n1 observes.
	setStatus(t, in.Inv, "n2", func(st *api.NodeStatus) { st.Links = map[string]string{"n3": api.LinkUp, "n1": api.LinkDown} })
	want = []link{{"n1", "n2", "down", "observed", nil}, {"n1", "n3", "down", "observed", []string{"n3"}}, {"n2", "n3", "up", "reported", []string{"n3"}}}
	if d := cmp.Diff(want, links(NewGraph(Build(in), true))); d != "" {
		t.Errorf("links with n2's record (-want +got):\n%s", d)
	}
}
