package store

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
)

// waitTimeout is how long a test waits for etcd to reach a state.
const waitTimeout = 20 * time.Second

// watcher records the snapshots a Watch hands out.
type watcher struct {
	notify chan struct{}

	mu    sync.Mutex
	snaps []Snapshot
}

// startWatch runs c.Watch until the test ends, and checks that it returns nil.
func startWatch(t *testing.T, c *Client) *watcher {
	t.Helper()
	w := &watcher{notify: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Watch(ctx, w.changed) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch returned %v, want nil", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Watch did not return after cancel")
		}
	})
	return w
}

func (w *watcher) changed(s Snapshot) {
	w.mu.Lock()
	w.snaps = append(w.snaps, s)
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// waitFor waits until the latest snapshot satisfies cond, and returns it.
func (w *watcher) waitFor(t *testing.T, what string, cond func(Snapshot) bool) Snapshot {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		var last Snapshot
		n := len(w.snaps)
		if n > 0 {
			last = w.snaps[n-1]
		}
		w.mu.Unlock()
		if n > 0 && cond(last) {
			return last
		}
		select {
		case <-w.notify:
		case <-deadline.C:
			t.Fatalf("no snapshot with %s after %s; last (of %d): %+v", what, waitTimeout, n, last)
		}
	}
}

func (w *watcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.snaps)
}

func TestWatch(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)
	if err := c.PutNode(ctx, api.Node{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, c)
	first := w.waitFor(t, "node a", func(s Snapshot) bool { return s.Nodes["a"].Name == "a" })
	if first.Rev == 0 || first.Cluster != nil {
		t.Errorf("initial snapshot: rev %d cluster %v, want rev > 0 and no cluster", first.Rev, first.Cluster)
	}

	cidr := netip.MustParsePrefix("10.244.0.0/26")
	if err := c.PutCluster(ctx, api.Cluster{Backend: api.BackendVXLAN}); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.ClaimBlock(ctx, cidr, "a"); err != nil || !ok {
		t.Fatalf("ClaimBlock = %v, %v", ok, err)
	}
	ep := endpoint("a", "c1")
	if err := c.PutEndpoint(ctx, ep); err != nil {
		t.Fatal(err)
	}
	if err := c.PutNamespace(ctx, api.Namespace{Name: "default"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Etcd().Put(ctx, c.Prefix()+"alive/a", "{}"); err != nil {
		t.Fatal(err)
	}
	got := w.waitFor(t, "everything", func(s Snapshot) bool { return s.Alive["a"] })
	want := Snapshot{
		Rev:        got.Rev,
		Cluster:    &api.Cluster{Backend: api.BackendVXLAN},
		Nodes:      map[string]api.Node{"a": {Name: "a"}},
		Blocks:     map[netip.Prefix]api.Block{cidr: {CIDR: cidr, Node: "a"}},
		Endpoints:  map[string]api.Endpoint{"a/c1/eth0": ep},
		Namespaces: map[string]api.Namespace{"default": {Name: "default"}},
		Alive:      map[string]bool{"a": true},
		Other:      map[string][]byte{},
	}
	if d := cmp.Diff(want, got, cmpPrefix, cmpAddr); d != "" {
		t.Errorf("snapshot mismatch (-want +got):\n%s", d)
	}
	if got.Rev <= first.Rev {
		t.Errorf("rev went from %d to %d, want it to grow", first.Rev, got.Rev)
	}

	if err := c.DeleteNode(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	gone := w.waitFor(t, "node a deleted", func(s Snapshot) bool { return len(s.Nodes) == 0 })
	if len(gone.Blocks)+len(gone.Endpoints)+len(gone.Alive) != 0 {
		t.Errorf("after DeleteNode: blocks %v endpoints %v alive %v, want none", gone.Blocks, gone.Endpoints, gone.Alive)
	}
	// Snapshots handed out earlier are the caller's: later changes leave them be.
	if _, ok := first.Nodes["a"]; !ok || len(first.Blocks) != 0 {
		t.Errorf("first snapshot changed after later events: %+v", first)
	}
	if n := c.Resyncs(); n != 0 {
		t.Errorf("Resyncs = %d, want 0", n)
	}
}

func TestWatchResyncAfterCompaction(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)
	if err := c.PutNode(ctx, api.Node{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	// Between Watch's load and its watch, the history it needs is written and compacted away.
	c.afterLoad = func(rev int64) {
		once.Do(func() {
			for _, n := range []string{"b", "c"} {
				if err := c.PutNode(ctx, api.Node{Name: n}); err != nil {
					t.Errorf("PutNode: %v", err)
				}
			}
			if err := c.DeleteNode(ctx, "a"); err != nil {
				t.Errorf("DeleteNode: %v", err)
			}
			resp, err := c.Etcd().Get(ctx, "any")
			if err != nil {
				t.Errorf("Get: %v", err)
				return
			}
			if _, err := c.Etcd().Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
				t.Errorf("Compact: %v", err)
			}
			t.Logf("loaded at rev %d, compacted at %d", rev, resp.Header.Revision)
		})
	}
	w := startWatch(t, c)
	got := w.waitFor(t, "nodes b and c only", func(s Snapshot) bool {
		return slices.Equal(slices.Sorted(maps.Keys(s.Nodes)), []string{"b", "c"})
	})
	if n := c.Resyncs(); n != 1 {
		t.Errorf("Resyncs = %d, want 1", n)
	}
	// The watch goes on after the resync.
	if err := c.PutNode(ctx, api.Node{Name: "d"}); err != nil {
		t.Fatal(err)
	}
	after := w.waitFor(t, "node d", func(s Snapshot) bool { _, ok := s.Nodes["d"]; return ok })
	if after.Rev <= got.Rev {
		t.Errorf("rev after resync went from %d to %d", got.Rev, after.Rev)
	}
}

func TestWatchCorruptValue(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)
	w := startWatch(t, c)
	w.waitFor(t, "the initial load", func(Snapshot) bool { return true })

	bad := c.Prefix() + "nodes/bad"
	if _, err := c.Etcd().Put(ctx, bad, "{not json"); err != nil {
		t.Fatal(err)
	}
	if err := c.PutNode(ctx, api.Node{Name: "good"}); err != nil {
		t.Fatal(err)
	}
	got := w.waitFor(t, "node good", func(s Snapshot) bool { _, ok := s.Nodes["good"]; return ok })
	if len(got.Errors) != 1 || !strings.HasPrefix(got.Errors[0], bad+": ") {
		t.Errorf("Errors = %q, want one for %s", got.Errors, bad)
	}
	if _, ok := got.Nodes["bad"]; ok {
		t.Errorf("undecodable node is in the snapshot")
	}
	if err := c.PutNode(ctx, api.Node{Name: "bad"}); err != nil {
		t.Fatal(err)
	}
	fixed := w.waitFor(t, "node bad fixed", func(s Snapshot) bool { _, ok := s.Nodes["bad"]; return ok })
	if len(fixed.Errors) != 0 {
		t.Errorf("Errors after the fix = %q, want none", fixed.Errors)
	}
	if n := c.Resyncs(); n != 0 {
		t.Errorf("Resyncs = %d, want 0", n)
	}
}

func TestWatchIgnoresStatus(t *testing.T) {
	c := newClient(t, startEtcd(t))
	ctx := ctxTimeout(t)
	w := startWatch(t, c)
	w.waitFor(t, "the initial load", func(Snapshot) bool { return true })
	if _, err := c.Etcd().Put(ctx, c.Prefix()+"status/a", `{"node":"a"}`); err != nil {
		t.Fatal(err)
	}
	if err := c.PutNode(ctx, api.Node{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "node a", func(s Snapshot) bool { _, ok := s.Nodes["a"]; return ok })
	if n := w.count(); n != 2 {
		t.Errorf("got %d snapshots, want 2 (load, node a): status changes are not followed", n)
	}
}
