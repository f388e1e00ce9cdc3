package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/api"
)

func TestBGPPeerCommands(t *testing.T) {
	tc := newTestCluster(t)
	tc.node(t, "n1", 1, true, "")
	cmd := func() *cobra.Command { return newBGPCmd(tc.g) }

	out, err := run(t, cmd(), "peer", "add", "tor", "--peer-ip", "10.255.1.254", "--asn", "64512", "--description", "rack 1")
	if err != nil || !strings.Contains(out, "bgp peer tor added: 10.255.1.254 AS 64512, all nodes") {
		t.Fatalf("peer add: %v\n%s", err, out)
	}
	// The cluster runs VXLAN: the peer is stored, with a note.
	if !strings.Contains(out, "note: the cluster runs backend vxlan") {
		t.Errorf("peer add on a vxlan cluster gives no note:\n%s", out)
	}
	out, err = run(t, cmd(), "peer", "add", "rack2", "--peer-ip", "10.0.2.1", "--asn", "65002", "--node", "h9", "--port", "1179")
	if err != nil || !strings.Contains(out, "node h9") || !strings.Contains(out, "node h9 is not registered") {
		t.Fatalf("peer add --node: %v\n%s", err, out)
	}
	for _, tcase := range []struct {
		args []string
		want string
	}{
		{[]string{"peer", "add", "tor", "--peer-ip", "10.9.9.9", "--asn", "64512"}, `bgp peer "tor" exists`},
		{[]string{"peer", "add", "x", "--peer-ip", "10.9.9.9", "--asn", "23456"}, "AS_TRANS"},
		{[]string{"peer", "add", "x", "--peer-ip", "10.9.9.9", "--asn", "0"}, "asn 0 is reserved"},
		{[]string{"peer", "add", "x", "--peer-ip", "10.9.9.9", "--asn", "4294967296"}, "asn"},
		{[]string{"peer", "add", "x", "--peer-ip", "fd00::1", "--asn", "64512"}, "--peer-ip fd00::1: an IPv6 session carries IPv6 routes only, and the cluster has no IPv6 pool"},
		{[]string{"peer", "add", "x", "--peer-ip", "fe80::1", "--asn", "64512"}, "peer IP fe80::1: link-local"},
		{[]string{"peer", "add", "x", "--peer-ip", "::ffff:10.9.9.9", "--asn", "64512"}, "IPv4-mapped"},
		{[]string{"peer", "add", "x", "--peer-ip", "nope", "--asn", "64512"}, "not an IP address"},
		{[]string{"peer", "add", "X_1", "--peer-ip", "10.9.9.9", "--asn", "64512"}, `name "X_1"`},
		{[]string{"peer", "add", "x", "--asn", "64512"}, `"peer-ip" not set`},
		{[]string{"peer", "add", "x", "--peer-ip", "10.0.0.1", "--asn", "64512"}, "is node n1's underlay address"},
		{[]string{"peer", "delete", "nope"}, `bgp peer "nope" not found`},
	} {
		out, err := run(t, cmd(), tcase.args...)
		if err == nil || !strings.Contains(err.Error(), tcase.want) {
			t.Errorf("%v: %v, want an error containing %q\n%s", tcase.args, err, tcase.want, out)
		}
	}

	out, err = run(t, cmd(), "peer", "list")
	if err != nil {
		t.Fatal(err)
	}
	if !regexpLine(out, `^rack2\s+10\.0\.2\.1\s+65002\s+h9\s+1179$`) || !regexpLine(out, `^tor\s+10\.255\.1\.254\s+64512\s+\(all\)\s+179$`) {
		t.Errorf("peer list:\n%s", out)
	}
	tc.g.Output = "json"
	out, err = run(t, cmd(), "peer", "list")
	if err != nil {
		t.Fatal(err)
	}
	var peers []api.BGPPeer
	if err := json.Unmarshal([]byte(out), &peers); err != nil || len(peers) != 2 || peers[1].Description != "rack 1" {
		t.Errorf("peer list -o json: %v %+v\n%s", err, peers, out)
	}
	tc.g.Output = "table"

	out, err = run(t, cmd(), "peer", "delete", "tor")
	if err != nil || !strings.Contains(out, "bgp peer tor deleted") {
		t.Errorf("peer delete: %v\n%s", err, out)
	}
	if _, err := tc.cl.GetBGPPeer(tc.ctx(t), "tor"); err == nil {
		t.Error("tor still stored after delete")
	}
	// A corrupt record is reported, the rest still listed.
	if _, err := tc.cl.Etcd().Put(tc.ctx(t), tc.cl.Prefix()+"bgppeers/junk", "{"); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, cmd(), "peer", "list")
	if err == nil || !strings.Contains(err.Error(), "bgppeers/junk") || !strings.Contains(out, "rack2") {
		t.Errorf("peer list with a corrupt record: %v\n%s", err, out)
	}
}

func TestBGPStatusCommand(t *testing.T) {
	tc := newTestCluster(t)
	ctx := tc.ctx(t)
	cl, err := tc.cl.GetCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, err := run(t, newBGPCmd(tc.g), "status")
	if err == nil || !strings.Contains(err.Error(), "backend vxlan") {
		t.Errorf("bgp status on a vxlan cluster: %v\n%s", err, out)
	}
	cl.Backend, cl.BGP = api.BackendBGP, &api.BGPConfig{ASN: 64512, NodeMesh: true}
	if err := tc.cl.PutCluster(ctx, cl); err != nil {
		t.Fatal(err)
	}

	// n1's agent answers with its live state; n2's debug address reaches
	// n1's agent, which must not be taken for n2's.
	live := api.BGPStatus{RouterID: netip.MustParseAddr("10.0.0.1"), ASN: 64512, Neighbors: []api.BGPSession{
		{Name: "n2", Address: netip.MustParseAddr("10.0.0.2"), ASN: 64512, State: "Established", Uptime: "42s", Received: 1, Advertised: 1},
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/bgp" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(live)
	}))
	defer srv.Close()
	tc.node(t, "n1", 1, false, srv.Listener.Addr().String())
	tc.node(t, "n2", 2, false, srv.Listener.Addr().String())
	for name, peer := range map[string]string{"n1": "n2", "n2": "n1"} {
		n, err := tc.cl.GetNode(ctx, peer)
		if err != nil {
			t.Fatal(err)
		}
		tc.heartbeat(t, name, api.NodeStatus{Node: name, Backend: api.BackendBGP, Ready: true, Updated: time.Now().UTC(), DebugAddr: srv.Listener.Addr().String(),
			BGP: []api.BGPNeighbor{{Name: peer, Address: n.UnderlayIP, ASN: 64512, State: "Established", Uptime: "40s"}}})
	}
	tc.g.Output = "wide"
	out, err = run(t, newBGPCmd(tc.g), "status")
	tc.g.Output = "table"
	if err != nil {
		t.Fatalf("bgp status: %v\n%s", err, out)
	}
	if !strings.Contains(out, "AS 64512, node mesh, 0 external peer(s)") ||
		!regexpLine(out, `^n1\s+n2\s+10\.0\.0\.2\s+64512\s+Established\s+42s\s+1\s+1\s+agent\s+-$`) ||
		!regexpLine(out, `^n2\s+n1\s+10\.0\.0\.1\s+64512\s+Established\s+40s\s+0\s+0\s+etcd\s+-$`) ||
		!strings.Contains(out, "all sessions established") || !strings.Contains(out, "n2: debug endpoint: "+srv.Listener.Addr().String()+" answered with router id 10.0.0.1, not 10.0.0.2") {
		t.Errorf("bgp status output:\n%s", out)
	}

	// A session down: exit 2, with the reason.
	tc.heartbeat(t, "n2", api.NodeStatus{Node: "n2", Backend: api.BackendBGP, Ready: true, Updated: time.Now().UTC(),
		BGP: []api.BGPNeighbor{{Name: "n1", Address: netip.MustParseAddr("10.0.0.1"), ASN: 64512, State: "Active"}}})
	out, err = run(t, newBGPCmd(tc.g), "status", "--agents=false")
	if exitCode(err) != exitUnhealthy || !strings.Contains(out, "n2: sessions not established: n1 Active") {
		t.Errorf("bgp status with a session down: exit %d (%v)\n%s", exitCode(err), err, out)
	}
}

// TestBGPPeerAddIPv6 adds an IPv6 peer to a dual-stack cluster: accepted,
// except at a node's IPv6 underlay address.
func TestBGPPeerAddIPv6(t *testing.T) {
	tc := newTestCluster(t)
	ctx := tc.ctx(t)
	cl, err := tc.cl.GetCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cl.Pools = append(cl.Pools, api.Pool{CIDR: netip.MustParsePrefix("fd00:10:244::/56"), BlockSize: 122})
	if err := tc.cl.PutCluster(ctx, cl); err != nil {
		t.Fatal(err)
	}
	tc.node(t, "n1", 1, true, "")
	n, err := tc.cl.GetNode(ctx, "n1")
	if err != nil {
		t.Fatal(err)
	}
	n.UnderlayIP6 = netip.MustParseAddr("fd00:255::1")
	if err := tc.cl.PutNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	cmd := func() *cobra.Command { return newBGPCmd(tc.g) }
	out, err := run(t, cmd(), "peer", "add", "tor6", "--peer-ip", "fd00:255::fe", "--asn", "64512")
	if err != nil || !strings.Contains(out, "bgp peer tor6 added: fd00:255::fe AS 64512, all nodes") {
		t.Fatalf("peer add IPv6: %v\n%s", err, out)
	}
	if p, err := tc.cl.GetBGPPeer(ctx, "tor6"); err != nil || p.PeerIP != netip.MustParseAddr("fd00:255::fe") {
		t.Errorf("stored tor6 = %+v, %v", p, err)
	}
	_, err = run(t, cmd(), "peer", "add", "x", "--peer-ip", "fd00:255::1", "--asn", "64512")
	if err == nil || !strings.Contains(err.Error(), "is node n1's underlay address") {
		t.Errorf("peer add at n1's UnderlayIP6: %v, want it refused", err)
	}
}
