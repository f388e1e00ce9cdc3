package store

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
)

var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
var cmpPrefix = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func TestCluster(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)

	if _, err := c.GetCluster(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetCluster before init: err = %v, want ErrNotFound", err)
	}
	want := api.Cluster{
		Pools:   []api.Pool{{CIDR: netip.MustParsePrefix("10.244.0.0/16"), BlockSize: 26}},
		Backend: api.BackendVXLAN,
		VXLAN:   api.VXLANConfig{VNI: 4096, Port: 4789},
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	if err := c.CreateCluster(ctx, want); err != nil {
		t.Fatalf("CreateCluster: %v", err)
	}
	second := want
	second.Backend = api.BackendBGP
	if err := c.CreateCluster(ctx, second); !errors.Is(err, ErrExists) {
		t.Fatalf("second CreateCluster: err = %v, want ErrExists", err)
	}
	got, err := c.GetCluster(ctx)
	if err != nil {
		t.Fatalf("GetCluster: %v", err)
	}
	if d := cmp.Diff(want, got, cmpPrefix); d != "" {
		t.Errorf("GetCluster mismatch (-want +got):\n%s", d)
	}
	if err := c.PutCluster(ctx, second); err != nil {
		t.Fatalf("PutCluster: %v", err)
	}
	got, err = c.GetCluster(ctx)
	if err != nil {
		t.Fatalf("GetCluster: %v", err)
	}
	if got.Backend != api.BackendBGP {
		t.Errorf("after PutCluster backend = %q, want bgp", got.Backend)
	}
}

func TestClaimBlockRace(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)
	cidr := netip.MustParsePrefix("10.244.3.0/26")

	const n = 50
	won := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			won[i], errs[i] = c.ClaimBlock(ctx, cidr, fmt.Sprintf("node-%d", i))
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("ClaimBlock node-%d: %v", i, errs[i])
		}
		if won[i] {
			if winner >= 0 {
				t.Fatalf("both node-%d and node-%d won %s", winner, i, cidr)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatalf("nobody won %s", cidr)
	}
	owner := fmt.Sprintf("node-%d", winner)
	again, err := c.ClaimBlock(ctx, cidr, owner)
	if err != nil || !again {
		t.Errorf("owner's second ClaimBlock = %v, %v; want true, nil", again, err)
	}
	other := fmt.Sprintf("node-%d", (winner+1)%n)
	if got, err := c.ClaimBlock(ctx, cidr, other); err != nil || got {
		t.Errorf("non-owner ClaimBlock = %v, %v; want false, nil", got, err)
	}
	blocks, err := c.ListBlocks(ctx)
	if err != nil {
		t.Fatalf("ListBlocks: %v", err)
	}
	if d := cmp.Diff([]api.Block{{CIDR: cidr, Node: owner}}, blocks, cmpPrefix); d != "" {
		t.Errorf("ListBlocks mismatch (-want +got):\n%s", d)
	}
}

func TestReleaseBlock(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)
	cidr := netip.MustParsePrefix("10.244.0.64/26")
	if ok, err := c.ClaimBlock(ctx, cidr, "a"); err != nil || !ok {
		t.Fatalf("ClaimBlock = %v, %v", ok, err)
	}
	if err := c.ReleaseBlock(ctx, cidr, "b"); err != nil {
		t.Fatalf("ReleaseBlock by non-owner: %v", err)
	}
	blocks, err := c.ListBlocks(ctx)
	if err != nil {
		t.Fatalf("ListBlocks: %v", err)
	}
	if d := cmp.Diff([]api.Block{{CIDR: cidr, Node: "a"}}, blocks, cmpPrefix); d != "" {
		t.Errorf("after release by non-owner (-want +got):\n%s", d)
	}
	if err := c.ReleaseBlock(ctx, cidr, "a"); err != nil {
		t.Fatalf("ReleaseBlock by owner: %v", err)
	}
	blocks, err = c.ListBlocks(ctx)
	if err != nil {
		t.Fatalf("ListBlocks: %v", err)
	}
	if len(blocks) != 0 {
		t.Errorf("after release by owner: blocks = %v, want none", blocks)
	}
	if err := c.ReleaseBlock(ctx, cidr, "a"); err != nil {
		t.Errorf("ReleaseBlock of an absent block: %v", err)
	}
	if ok, err := c.ClaimBlock(ctx, cidr, "b"); err != nil || !ok {
		t.Errorf("ClaimBlock after release = %v, %v; want true", ok, err)
	}
}

func TestBlockArgs(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)
	for _, tc := range []struct {
		cidr string
		node string
	}{
		{"10.244.0.1/26", "a"}, // host bits
		{"10.244.0.0/26", ""},
		{"10.244.0.0/26", "a/b"},
	} {
		if _, err := c.ClaimBlock(ctx, netip.MustParsePrefix(tc.cidr), tc.node); err == nil {
			t.Errorf("ClaimBlock(%s, %q) succeeded, want an error", tc.cidr, tc.node)
		}
	}
}

func TestListBlocksSortedByCIDR(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)
	var want []api.Block
	// Key order ("10.244.1.0-26" < "10.244.10.0-26" < "10.244.2.0-26") is not CIDR order.
	for _, s := range []string{"10.244.10.0/26", "10.244.2.0/26", "10.244.1.0/26", "10.244.1.0/27"} {
		if ok, err := c.ClaimBlock(ctx, netip.MustParsePrefix(s), "n"); err != nil || !ok {
			t.Fatalf("ClaimBlock %s = %v, %v", s, ok, err)
		}
	}
	for _, s := range []string{"10.244.1.0/26", "10.244.1.0/27", "10.244.2.0/26", "10.244.10.0/26"} {
		want = append(want, api.Block{CIDR: netip.MustParsePrefix(s), Node: "n"})
	}
	got, err := c.ListBlocks(ctx)
	if err != nil {
		t.Fatalf("ListBlocks: %v", err)
	}
	if d := cmp.Diff(want, got, cmpPrefix); d != "" {
		t.Errorf("ListBlocks mismatch (-want +got):\n%s", d)
	}
	// A corrupt block is an error naming its key, not a silently free block.
	key := c.Prefix() + "blocks/10.244.20.0-26"
	if _, err := c.Etcd().Put(ctx, key, "{"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListBlocks(ctx); err == nil || !strings.Contains(err.Error(), key) {
		t.Errorf("ListBlocks with a corrupt block: err = %v, want one naming %s", err, key)
	}
}

func endpoint(node, container string) api.Endpoint {
	return api.Endpoint{
		Namespace:   "default",
		Name:        "pod-" + container,
		Labels:      map[string]string{"app": "web"},
		IPs:         []netip.Addr{netip.MustParseAddr("10.244.0.10")},
		Node:        node,
		ContainerID: container,
		IfName:      "eth0",
		HostIface:   api.HostIfaceName(api.Owner{ContainerID: container, IfName: "eth0"}),
	}
}

func TestNodesEndpointsNamespaces(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)

	nodes := []api.Node{
		{Name: "b", UnderlayIP: netip.MustParseAddr("192.168.0.2"), VTEPMAC: api.MAC{2, 0, 0, 0, 0, 2}},
		{Name: "a", UnderlayIP: netip.MustParseAddr("192.168.0.1"), Labels: map[string]string{"zone": "x"}},
	}
	for _, n := range nodes {
		if err := c.PutNode(ctx, n); err != nil {
			t.Fatalf("PutNode %s: %v", n.Name, err)
		}
	}
	got, err := c.ListNodes(ctx)
	if err != nil {
		t.Fatalf("ListNodes: %v", err)
	}
	if d := cmp.Diff([]api.Node{nodes[1], nodes[0]}, got, cmpAddr); d != "" {
		t.Errorf("ListNodes mismatch (-want +got):\n%s", d)
	}
	if n, err := c.GetNode(ctx, "b"); err != nil || n.Name != "b" {
		t.Errorf("GetNode b = %+v, %v", n, err)
	}
	if _, err := c.GetNode(ctx, "zz"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetNode zz: err = %v, want ErrNotFound", err)
	}
	if err := c.PutNode(ctx, api.Node{Name: "x/y"}); err == nil {
		t.Errorf("PutNode with '/' in the name succeeded")
	}

	ep1, ep2 := endpoint("a", "c1"), endpoint("b", "c2")
	for _, ep := range []api.Endpoint{ep2, ep1} {
		if err := c.PutEndpoint(ctx, ep); err != nil {
			t.Fatalf("PutEndpoint: %v", err)
		}
	}
	eps, err := c.ListEndpoints(ctx)
	if err != nil {
		t.Fatalf("ListEndpoints: %v", err)
	}
	if d := cmp.Diff([]api.Endpoint{ep1, ep2}, eps, cmpAddr); d != "" {
		t.Errorf("ListEndpoints mismatch (-want +got):\n%s", d)
	}
	owner := api.Owner{ContainerID: "c1", IfName: "eth0"}
	if got, err := c.GetEndpoint(ctx, "a", owner); err != nil || got.Name != ep1.Name {
		t.Errorf("GetEndpoint = %+v, %v", got, err)
	}
	if err := c.DeleteEndpoint(ctx, "a", owner); err != nil {
		t.Fatalf("DeleteEndpoint: %v", err)
	}
	if err := c.DeleteEndpoint(ctx, "a", owner); err != nil {
		t.Errorf("DeleteEndpoint of an absent endpoint: %v", err)
	}
	if eps, err := c.ListNodeEndpoints(ctx, "a"); err != nil || len(eps) != 0 {
		t.Errorf("ListNodeEndpoints a = %v, %v; want none", eps, err)
	}
	if err := c.PutEndpoint(ctx, api.Endpoint{Node: "a", IfName: "eth0"}); err == nil {
		t.Errorf("PutEndpoint without a container id succeeded")
	}

	nss := []api.Namespace{{Name: "default"}, {Name: "prod", Labels: map[string]string{"env": "prod"}}}
	for _, ns := range nss {
		if err := c.PutNamespace(ctx, ns); err != nil {
			t.Fatalf("PutNamespace: %v", err)
		}
	}
	gotNS, err := c.ListNamespaces(ctx)
	if err != nil {
		t.Fatalf("ListNamespaces: %v", err)
	}
	if d := cmp.Diff(nss, gotNS); d != "" {
		t.Errorf("ListNamespaces mismatch (-want +got):\n%s", d)
	}
	if ns, err := c.GetNamespace(ctx, "prod"); err != nil || ns.Labels["env"] != "prod" {
		t.Errorf("GetNamespace prod = %+v, %v", ns, err)
	}
	if err := c.DeleteNamespace(ctx, "prod"); err != nil {
		t.Fatalf("DeleteNamespace: %v", err)
	}
	if _, err := c.GetNamespace(ctx, "prod"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetNamespace after delete: err = %v, want ErrNotFound", err)
	}
}

func TestDeleteNode(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)
	lease, err := c.Etcd().Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	// "ab" shares a prefix with "a": its keys must survive a's deletion.
	for _, n := range []string{"a", "ab"} {
		if err := c.PutNode(ctx, api.Node{Name: n}); err != nil {
			t.Fatal(err)
		}
		if err := c.PutEndpoint(ctx, endpoint(n, "c-"+n)); err != nil {
			t.Fatal(err)
		}
		for _, kind := range []string{"alive", "status"} {
			if _, err := c.Etcd().Put(ctx, c.Prefix()+kind+"/"+n, "{}", clientv3.WithLease(lease.ID)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// a owns many blocks, more than fit in one transaction.
	var wantBlocks []api.Block
	for i := range 130 {
		cidr := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 26)
		owner := "a"
		if i%10 == 0 {
			owner = "ab"
			wantBlocks = append(wantBlocks, api.Block{CIDR: cidr, Node: owner})
		}
		if ok, err := c.ClaimBlock(ctx, cidr, owner); err != nil || !ok {
			t.Fatalf("ClaimBlock %s: %v, %v", cidr, ok, err)
		}
	}

	if err := c.DeleteNode(ctx, "a"); err != nil {
		t.Fatalf("DeleteNode: %v", err)
	}

	resp, err := c.Etcd().Get(ctx, c.Prefix(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		if k := string(kv.Key); !strings.Contains(k, "/blocks/") {
			keys = append(keys, k)
		}
	}
	p := c.Prefix()
	wantKeys := []string{p + "alive/ab", p + "endpoints/ab/c-ab/eth0", p + "nodes/ab", p + "status/ab"}
	if d := cmp.Diff(wantKeys, keys); d != "" {
		t.Errorf("keys left (-want +got):\n%s", d)
	}
	blocks, err := c.ListBlocks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(wantBlocks, blocks, cmpPrefix); d != "" {
		t.Errorf("blocks left (-want +got):\n%s", d)
	}
	if err := c.DeleteNode(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteNode: err = %v, want ErrNotFound", err)
	}
}

func TestNewUnreachable(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: waits for a dial timeout")
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	ep := fmt.Sprintf("http://127.0.0.1:%d", port)
	start := time.Now()
	_, err = New(t.Context(), Config{Endpoints: []string{ep}, DialTimeout: 500 * time.Millisecond})
	took := time.Since(start)
	if err == nil {
		t.Fatalf("New(%s) succeeded with nothing listening", ep)
	}
	if !strings.Contains(err.Error(), ep) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("New error %q does not name the endpoint %s and the cause", err, ep)
	}
	if took > 3*time.Second {
		t.Errorf("New took %s, want about the 500ms dial timeout", took)
	}
	t.Logf("error after %s: %v", took, err)
}
