package store

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
)

// TestEmbeddedCluster starts three members with Name and InitialCluster:
// they form one cluster with one leader, a client holding every endpoint
// writes through it, and once the leader is gone the other two elect a new
// one and the client's writes go on.
func TestEmbeddedCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: needs embedded etcd members")
	}
	const n = 3
	names := make([]string, n)
	cfgs := make([]EmbeddedConfig, n)
	var peers []string
	for i := range n {
		cp, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		pp, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		names[i] = fmt.Sprintf("m%d", i+1)
		cfgs[i] = EmbeddedConfig{
			Dir:               filepath.Join(t.TempDir(), names[i]),
			ClientURLs:        []string{fmt.Sprintf("http://127.0.0.1:%d", cp)},
			PeerURL:           fmt.Sprintf("http://127.0.0.1:%d", pp),
			Name:              names[i],
			ClusterToken:      "test-" + t.Name(),
			UnsafeNoFsync:     true,
			HeartbeatInterval: 50 * time.Millisecond,
			ElectionTimeout:   500 * time.Millisecond,
			Log:               testLog(t),
		}
		peers = append(peers, names[i]+"="+cfgs[i].PeerURL)
	}
	ms := make([]*Embedded, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// A member is ready only with a quorum: start them together.
	for i := range n {
		cfgs[i].InitialCluster = strings.Join(peers, ",")
		wg.Go(func() { ms[i], errs[i] = StartEmbedded(ctx, cfgs[i]) })
	}
	wg.Wait()
	var eps []string
	for i, m := range ms {
		if errs[i] != nil {
			t.Fatalf("start member %s: %v", names[i], errs[i])
		}
		t.Cleanup(m.Close)
		eps = append(eps, m.Endpoints()...)
	}

	leader := func(skip int) int {
		for i, m := range ms {
			if i != skip && m.Etcd().Server.Leader() == m.Etcd().Server.MemberID() {
				return i
			}
		}
		return -1
	}
	lead := -1
	waitUntil(t, 10*time.Second, "a leader", func() bool { lead = leader(-1); return lead >= 0 })
	for i, m := range ms {
		if got := len(m.Etcd().Server.Cluster().Members()); got != n {
			t.Errorf("member %s sees %d members, want %d", names[i], got, n)
		}
	}

	c, err := New(ctx, Config{Endpoints: eps, Log: testLog(t)})
	if err != nil {
		t.Fatalf("New with every member: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() }) // the cluster is torn down under it
	if err := c.PutNode(ctx, api.Node{Name: "before"}); err != nil {
		t.Fatalf("PutNode: %v", err)
	}

	ms[lead].Close()
	next := -1
	waitUntil(t, 10*time.Second, "a new leader", func() bool { next = leader(lead); return next >= 0 })
	// The first write may meet the election; the client must get through
	// once it is over.
	waitUntil(t, 10*time.Second, "a write after the leader left", func() bool {
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
		defer wcancel()
		return c.PutNode(wctx, api.Node{Name: "after"}) == nil
	})
	for _, name := range []string{"before", "after"} {
		if _, err := c.GetNode(ctx, name); err != nil {
			t.Errorf("GetNode %s after the leader left: %v", name, err)
		}
	}
	t.Logf("leader %s closed, %s leads", names[lead], names[next])
}

// waitUntil polls cond every 20 ms until it holds or d passes.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
