package report

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// bgpInventory is inventory(n) turned into a BGP node mesh whose sessions
// are all Established.
func bgpInventory(t *testing.T, n int) (inv store.Inventory) {
	t.Helper()
	inv = inventory(n, time.Now())
	inv.Cluster.Backend = api.BackendBGP
	inv.Cluster.BGP = &api.BGPConfig{ASN: 64512, NodeMesh: true}
	for name := range inv.Nodes {
		setStatus(t, inv, name, func(st *api.NodeStatus) {
			st.Backend = api.BackendBGP
			st.BGP = nil
			for other, o := range inv.Nodes {
				if other != name {
					st.BGP = append(st.BGP, api.BGPNeighbor{Name: other, Address: o.UnderlayIP, ASN: 64512, State: "Established", Uptime: "1m", Received: 1, Advertised: 1})
				}
			}
		})
	}
	return inv
}

func TestBuildBGPReport(t *testing.T) {
	inv := bgpInventory(t, 3)
	inv.Other = map[string][]byte{
		"bgppeers/tor":                    []byte(`{"name":"tor","peerIP":"10.0.0.254","asn":64512}`),
		"bgppeers/bad":                    []byte(`{"name":"bad","peerIP":"10.0.0.253","asn":0}`),
		"policies/NetworkPolicy/x/ignore": []byte(`{}`),
	}
	n1 := inv.Nodes["n1"]
	n1.Labels = map[string]string{"skein.dev/route-reflector": "10.0.0.1"}
	inv.Nodes["n1"] = n1

	rep := BuildBGP(inv, nil)
	if rep.ASN != 64512 || !rep.NodeMesh || len(rep.Peers) != 1 || rep.Peers[0].Name != "tor" {
		t.Errorf("report header = AS %d mesh %v peers %+v", rep.ASN, rep.NodeMesh, rep.Peers)
	}
	if d := cmp.Diff([]string{`undecodable bgppeers/bad: bgp peer bad: asn 0 is reserved (want 1-4294967295)`}, rep.Problems); d != "" {
		t.Errorf("problems (-want +got):\n%s", d)
	}
	if rep.Healthy {
		t.Error("report with an undecodable peer is healthy")
	}
	delete(inv.Other, "bgppeers/bad")
	rep = BuildBGP(inv, nil)
	if !rep.Healthy || len(rep.Nodes) != 3 {
		t.Fatalf("all sessions up: healthy %v, nodes %d, problems %d: %+v", rep.Healthy, len(rep.Nodes), rep.ProblemCount(), rep)
	}
	if n := rep.Nodes[0]; n.Name != "n1" || n.Source != "etcd" || n.Reflector == nil || *n.Reflector != "10.0.0.1" || len(n.Neighbors) != 2 || n.Neighbors[0].Name != "n2" {
		t.Errorf("n1 = %+v", n)
	}

	// A session down, a node down, a node that never published.
	setStatus(t, inv, "n2", func(st *api.NodeStatus) {
		for i := range st.BGP {
			if st.BGP[i].Name == "n1" {
				st.BGP[i].State = "Active"
			}
		}
	})
	inv.Alive["n3"] = false
	delete(inv.Status, "n3")
	inv.Nodes["n4"] = api.Node{Name: "n4", UnderlayIP: netip.MustParseAddr("10.0.0.4")}
	inv.Alive["n4"] = true
	rep = BuildBGP(inv, nil)
	got := map[string][]string{}
	for _, n := range rep.Nodes {
		got[n.Name] = n.Problems
	}
	want := map[string][]string{
		"n1": nil,
		"n2": {"sessions not established: n1 Active"},
		"n3": {"no heartbeat: agent down or cut off from etcd (peers keep its routes for the graceful-restart time, then until `skein node delete`)"},
		"n4": {"no BGP state published yet"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("problems by node (-want +got):\n%s", d)
	}
	if rep.Healthy {
		t.Error("unhealthy cluster reported healthy")
	}

	// An agent's live view wins over its status record.
	live := &api.BGPStatus{RouterID: netip.MustParseAddr("10.0.0.2"), Neighbors: []api.BGPSession{
		{Name: "n1", Address: netip.MustParseAddr("10.0.0.1"), ASN: 64512, State: "Established", Uptime: "5s", Received: 1, Advertised: 2},
		{Name: "tor", Address: netip.MustParseAddr("10.0.0.254"), ASN: 64512, State: "Connect", LastError: "dial tcp 10.0.0.254:179: connection refused"},
	}}
	rep = BuildBGP(inv, map[string]BGPProbe{"n2": {State: live}, "n1": {Err: "connection refused"}})
	n2 := rep.Nodes[1]
	wantN2 := []api.BGPNeighbor{
		{Name: "n1", Address: netip.MustParseAddr("10.0.0.1"), ASN: 64512, State: "Established", Uptime: "5s", Received: 1, Advertised: 2},
		{Name: "tor", Address: netip.MustParseAddr("10.0.0.254"), ASN: 64512, State: "Connect", LastError: "dial tcp 10.0.0.254:179: connection refused"},
	}
	if d := cmp.Diff(wantN2, n2.Neighbors, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" || n2.Source != "agent" || n2.Agent != "ok" {
		t.Errorf("n2 from its agent: source %s agent %s (-want +got):\n%s", n2.Source, n2.Agent, d)
	}
	if d := cmp.Diff([]string{"sessions not established: tor Connect"}, n2.Problems); d != "" {
		t.Errorf("n2 problems (-want +got):\n%s", d)
	}
	if n1 := rep.Nodes[0]; n1.Source != "etcd" || n1.Agent != "connection refused" {
		t.Errorf("n1 with an unreachable agent: source %s agent %q", n1.Source, n1.Agent)
	}

	// An IPv6 peer of a node without an IPv6 underlay address: the problem
	// names the peer and why it has no session.
	live.Neighbors[1] = api.BGPSession{Name: "tor6", Address: netip.MustParseAddr("fd00::fe"), ASN: 64512,
		State: api.BGPNoSession, LastError: "no session: this node has no IPv6 underlay address (UnderlayIP6)"}
	rep = BuildBGP(inv, map[string]BGPProbe{"n2": {State: live}, "n1": {Err: "connection refused"}})
	want6 := "sessions not established: tor6 NoSession (no session: this node has no IPv6 underlay address (UnderlayIP6))"
	if d := cmp.Diff([]string{want6}, rep.Nodes[1].Problems); d != "" || rep.Healthy {
		t.Errorf("n2 problems with a NoSession peer, healthy %v (-want +got):\n%s", rep.Healthy, d)
	}
}

// TestBuildBGPReportIPv6: in a dual-stack cluster a node without an IPv6
// underlay address is a problem of its own (no IPv6 routes to or from it).
func TestBuildBGPReportIPv6(t *testing.T) {
	inv := bgpInventory(t, 2)
	inv.Cluster.Pools = append(inv.Cluster.Pools, api.Pool{CIDR: netip.MustParsePrefix("fd00:10:244::/56"), BlockSize: 122})
	n1 := inv.Nodes["n1"]
	n1.UnderlayIP6 = netip.MustParseAddr("fd00:255::1")
	inv.Nodes["n1"] = n1
	rep := BuildBGP(inv, nil)
	if rep.Healthy {
		t.Error("report with a dual-stack node lacking UnderlayIP6 is healthy")
	}
	if n := rep.Nodes[0]; n.Name != "n1" || n.UnderlayIP6 != n1.UnderlayIP6 || len(n.Problems) != 0 {
		t.Errorf("n1 = %+v, want its IPv6 underlay address and no problem", n)
	}
	if p := rep.Nodes[1].Problems; len(p) != 1 || !strings.Contains(p[0], "no IPv6 underlay address (UnderlayIP6)") {
		t.Errorf("n2 problems = %q, want the missing IPv6 underlay address", p)
	}
	n2 := inv.Nodes["n2"]
	n2.UnderlayIP6 = netip.MustParseAddr("fd00:255::2")
	inv.Nodes["n2"] = n2
	if rep := BuildBGP(inv, nil); !rep.Healthy {
		t.Errorf("report with every node's UnderlayIP6 is unhealthy: %+v", rep)
	}
}
