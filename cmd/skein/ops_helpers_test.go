package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// testCluster is an embedded etcd with a store client and CLI flags aimed at it.
type testCluster struct {
	cl *store.Client
	g  *globalFlags
}

func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped under -short: needs an embedded etcd")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	e, err := store.StartEmbedded(ctx, store.EmbeddedConfig{Dir: t.TempDir(), UnsafeNoFsync: true,
		Log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Close)
	cl, err := store.New(ctx, store.Config{Endpoints: e.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	err = cl.CreateCluster(ctx, api.Cluster{
		Pools:   []api.Pool{{CIDR: netip.MustParsePrefix("10.244.0.0/16"), BlockSize: 26}},
		Backend: api.BackendVXLAN,
		VXLAN:   api.VXLANConfig{VNI: 4096, Port: 4789},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &testCluster{cl: cl, g: &globalFlags{EtcdEndpoints: e.Endpoints(), EtcdPrefix: api.DefaultPrefix, Output: "table", Timeout: 10 * time.Second}}
}

func (tc *testCluster) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// node registers a node with one block, as its agent would; alive puts its
// heartbeat and a ready status record.
func (tc *testCluster) node(t *testing.T, name string, index int, alive bool, debugAddr string) netip.Prefix {
	t.Helper()
	ctx := tc.ctx(t)
	block := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(index), 0}), 26)
	n := api.Node{Name: name, UnderlayIP: netip.AddrFrom4([4]byte{10, 0, 0, byte(index)}), VTEPMAC: api.MAC{2, 0, 0, 0, 0, byte(index)},
		VTEPIP: block.Addr(), DebugAddr: debugAddr, Version: "v1"}
	if err := tc.cl.PutNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	if ok, err := tc.cl.ClaimBlock(ctx, block, name); err != nil || !ok {
		t.Fatalf("claim %s: %v %v", block, ok, err)
	}
	if alive {
		tc.heartbeat(t, name, api.NodeStatus{
			Node: name, Version: "v1", Backend: api.BackendVXLAN, Ready: true, Blocks: []string{block.String()},
			Updated: time.Now().UTC(), LastSync: time.Now().UTC(), DebugAddr: debugAddr,
		})
	}
	return block
}

// heartbeat puts alive/<name> and status/<name> on a fresh lease and
// returns it.
func (tc *testCluster) heartbeat(t *testing.T, name string, st api.NodeStatus) clientv3.LeaseID {
	t.Helper()
	ctx := tc.ctx(t)
	lease, err := tc.cl.Etcd().Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(st)
	p := tc.cl.Prefix()
	if _, err := tc.cl.Etcd().Put(ctx, p+"alive/"+name, `{"node":"`+name+`"}`, clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.cl.Etcd().Put(ctx, p+"status/"+name, string(b), clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	return lease.ID
}

// setPeers rewrites the peer count in every status record.
func (tc *testCluster) setPeers(t *testing.T, peers int) {
	t.Helper()
	ctx := tc.ctx(t)
	resp, err := tc.cl.Etcd().Get(ctx, tc.cl.Prefix()+"status/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		var st api.NodeStatus
		if err := json.Unmarshal(kv.Value, &st); err != nil {
			t.Fatal(err)
		}
		st.Peers, st.PeersUp = peers, peers
		b, _ := json.Marshal(st)
		if _, err := tc.cl.Etcd().Put(ctx, string(kv.Key), string(b), clientv3.WithLease(clientv3.LeaseID(kv.Lease))); err != nil {
			t.Fatal(err)
		}
	}
}

// run executes cmd with args and returns its output and error.
func run(t *testing.T, cmd *cobra.Command, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(t.Context())
	return out.String(), err
}
