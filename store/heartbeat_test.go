package store

import (
	"context"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
)

// waitKey waits until cond holds for key's current value (nil when absent),
// following the key with an etcd watch, and returns that value.
func waitKey(t *testing.T, c *Client, key string, what string, cond func(*mvccpb.KeyValue) bool) *mvccpb.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	resp, err := c.Etcd().Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	var kv *mvccpb.KeyValue
	if len(resp.Kvs) > 0 {
		kv = resp.Kvs[0]
	}
	if cond(kv) {
		return kv
	}
	for wr := range c.Etcd().Watch(ctx, key, clientv3.WithRev(resp.Header.Revision+1)) {
		for _, ev := range wr.Events {
			kv = ev.Kv
			if ev.Type == clientv3.EventTypeDelete {
				kv = nil
			}
			if cond(kv) {
				return kv
			}
		}
	}
	t.Fatalf("%s: not %s within %s", key, what, waitTimeout)
	return nil
}

func TestHeartbeat(t *testing.T) {
	c := newClient(t, startEtcd(t))
	aliveKey, statusKey := c.Prefix()+"alive/n1", c.Prefix()+"status/n1"
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	updates := make(chan api.NodeStatus)
	done := make(chan error, 1)
	go func() { done <- c.Heartbeat(ctx, "n1", 3*time.Second, updates) }()

	present := func(kv *mvccpb.KeyValue) bool { return kv != nil }
	alive := waitKey(t, c, aliveKey, "present", present)
	if alive.Lease == 0 {
		t.Fatalf("%s is not on a lease", aliveKey)
	}
	lease1 := alive.Lease

	select {
	case updates <- api.NodeStatus{Version: "v1", Ready: true}:
	case <-time.After(waitTimeout):
		t.Fatal("Heartbeat does not take status updates")
	}
	st := waitKey(t, c, statusKey, "present", present)
	if st.Lease != lease1 {
		t.Errorf("status on lease %x, want the heartbeat's %x", st.Lease, lease1)
	}
	if got, err := c.GetStatus(ctxTimeout(t), "n1"); err != nil || got.Node != "n1" || !got.Ready {
		t.Errorf("GetStatus = %+v, %v; want node n1 ready", got, err)
	}
	if nodes, err := c.AliveNodes(ctxTimeout(t)); err != nil || !nodes["n1"] {
		t.Errorf("AliveNodes = %v, %v; want n1", nodes, err)
	}

	// Someone revokes the lease: alive and status come back on a new one.
	if _, err := c.Etcd().Revoke(ctxTimeout(t), clientv3.LeaseID(lease1)); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	newLease := func(kv *mvccpb.KeyValue) bool { return kv != nil && kv.Lease != lease1 }
	alive = waitKey(t, c, aliveKey, "back on a new lease", newLease)
	st = waitKey(t, c, statusKey, "back on a new lease", newLease)
	if st.Lease != alive.Lease {
		t.Errorf("status on lease %x, alive on %x, want the same", st.Lease, alive.Lease)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Heartbeat returned %v, want nil", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Heartbeat did not return after cancel")
	}
	// A clean exit revokes the lease: the node is down at once, not after the TTL.
	nodes, err := c.AliveNodes(ctxTimeout(t))
	if err != nil {
		t.Fatal(err)
	}
	if nodes["n1"] {
		t.Errorf("n1 still alive after Heartbeat returned")
	}
	if st, err := c.ListStatus(ctxTimeout(t)); err != nil || len(st) != 0 {
		t.Errorf("ListStatus after Heartbeat returned = %v, %v; want none", st, err)
	}
}
