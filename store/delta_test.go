package store

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/skeinnet/skein/api"
)

// cmpAddrs lets cmp compare netip values.
var cmpAddrs = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

// view is what a consumer of WatchDeltas rebuilds from the deltas alone.
type view struct {
	Rev        int64
	Cluster    *api.Cluster
	Nodes      map[string]api.Node
	Blocks     map[netip.Prefix]api.Block
	Endpoints  map[string]api.Endpoint
	Namespaces map[string]api.Namespace
	Alive      map[string]bool
	Other      map[string]string
	Errors     []string
}

func viewOf(s *Snapshot) view {
	v := view{
		Rev: s.Rev, Cluster: s.Cluster,
		Nodes: maps.Clone(s.Nodes), Blocks: maps.Clone(s.Blocks), Endpoints: maps.Clone(s.Endpoints),
		Namespaces: maps.Clone(s.Namespaces), Alive: maps.Clone(s.Alive), Other: map[string]string{},
		Errors: s.Errors,
	}
	for k, b := range s.Other {
		v.Other[k] = string(b)
	}
	return v
}

// applyChanges moves m by cs and returns one problem per change whose Old does
// not match what m held: a delta must describe the consumer's own past.
func applyChanges[K comparable, T any](m map[K]T, cs []Change[T], key func(Change[T]) K) []string {
	var bad []string
	for _, c := range cs {
		k := key(c)
		cur, had := m[k]
		switch {
		case c.Old == nil && had:
			bad = append(bad, fmt.Sprintf("%v: delta says created, consumer holds %+v", k, cur))
		case c.Old != nil && !had:
			bad = append(bad, fmt.Sprintf("%v: delta says old %+v, consumer holds nothing", k, *c.Old))
		case c.Old != nil && !cmp.Equal(*c.Old, cur, cmpopts.EquateEmpty(), cmpAddrs):
			bad = append(bad, fmt.Sprintf("%v: delta old %+v != consumer %+v", k, *c.Old, cur))
		}
		if c.Old != nil && c.New != nil && cmp.Equal(*c.Old, *c.New, cmpAddrs) {
			bad = append(bad, fmt.Sprintf("%v: a no-op change was delivered", k))
		}
		if c.New == nil {
			delete(m, k)
		} else {
			m[k] = *c.New
		}
	}
	return bad
}

func byKey[T any](c Change[T]) string { return c.Key }

func (v *view) apply(d Delta) []string {
	if d.Reset {
		*v = viewOf(d.Snapshot)
		return nil
	}
	v.Rev = d.Rev
	var bad []string
	for _, c := range d.Cluster {
		v.Cluster = c.New
	}
	bad = append(bad, applyChanges(v.Nodes, d.Nodes, byKey)...)
	bad = append(bad, applyChanges(v.Blocks, d.Blocks, func(c Change[api.Block]) netip.Prefix {
		p, err := api.ParseBlockKeyName(c.Key)
		if err != nil {
			panic(err) // the store never emits a change for a bad key
		}
		return p
	})...)
	bad = append(bad, applyChanges(v.Endpoints, d.Endpoints, byKey)...)
	bad = append(bad, applyChanges(v.Namespaces, d.Namespaces, byKey)...)
	for _, a := range d.Alive {
		if v.Alive[a.Node] == a.Alive {
			bad = append(bad, fmt.Sprintf("alive %s: no-op change to %v", a.Node, a.Alive))
		}
		if a.Alive {
			v.Alive[a.Node] = true
		} else {
			delete(v.Alive, a.Node)
		}
	}
	other := map[string][]byte{}
	for k, s := range v.Other {
		other[k] = []byte(s)
	}
	bad = append(bad, applyChanges(other, d.Other, byKey)...)
	v.Other = map[string]string{}
	for k, b := range other {
		v.Other[k] = string(b)
	}
	if d.ErrorsChanged {
		v.Errors = d.Errors
	}
	return bad
}

// deltaConsumer runs WatchDeltas for the test and keeps the rebuilt view.
type deltaConsumer struct {
	mu     sync.Mutex
	v      view
	snap   Snapshot // moved by Snapshot.Apply
	resets int
	bad    []string
	notify chan struct{}
}

func startDeltas(t *testing.T, c *Client) *deltaConsumer {
	t.Helper()
	dc := &deltaConsumer{notify: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- c.WatchDeltas(ctx, func(d Delta) {
			dc.mu.Lock()
			if d.Reset {
				dc.resets++
			}
			dc.bad = append(dc.bad, dc.v.apply(d)...)
			if d.Reset {
				dc.snap = *d.Snapshot
			} else {
				dc.snap.Apply(d)
			}
			dc.mu.Unlock()
			select {
			case dc.notify <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchDeltas returned %v, want nil", err)
		}
	})
	return dc
}

// sharedConsumer runs WatchView and keeps the store's shared view.
type sharedConsumer struct {
	mu     sync.RWMutex
	view   *Snapshot
	resets int
	notify chan struct{}
}

func startShared(t *testing.T, c *Client) *sharedConsumer {
	t.Helper()
	sc := &sharedConsumer{notify: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- c.WatchView(ctx, &sc.mu, func(d Delta) {
			if d.Reset {
				sc.mu.Lock()
				sc.view = d.Snapshot
				sc.resets++
				sc.mu.Unlock()
			}
			select {
			case sc.notify <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchView returned %v, want nil", err)
		}
	})
	return sc
}

// waitRev waits until the shared view reaches rev and returns its content.
func (sc *sharedConsumer) waitRev(t *testing.T, rev int64) view {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		sc.mu.RLock()
		var v view
		if sc.view != nil {
			v = viewOf(sc.view)
		}
		sc.mu.RUnlock()
		if v.Rev >= rev {
			return v
		}
		select {
		case <-sc.notify:
		case <-deadline:
			t.Fatalf("shared view stuck at rev %d, want %d", v.Rev, rev)
		}
	}
}

// waitRev waits until the consumer's view reaches rev.
func (dc *deltaConsumer) waitRev(t *testing.T, rev int64) view {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		dc.mu.Lock()
		v := dc.v
		dc.mu.Unlock()
		if v.Rev >= rev {
			return v
		}
		select {
		case <-dc.notify:
		case <-deadline:
			t.Fatalf("consumer stuck at rev %d, want %d", v.Rev, rev)
		}
	}
}

// TestWatchDeltasRandomWalk writes a random walk of puts and deletes (good
// and undecodable values, every kind, status records that must not wake
// anyone) and checks after every step that the view a consumer rebuilt from
// deltas alone equals a fresh load of the store, and that each delta's Old
// values are what the consumer held.
func TestWatchDeltasRandomWalk(t *testing.T) {
	// Pages of 3 keys: every load (the consumers' first, each fresh load
	// compared against) reads several pages at one revision.
	defer func(n int64) { loadPage = n }(loadPage)
	loadPage = 3
	e := startEtcd(t)
	c := newClient(t, e)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(7, 11))

	// A few records exist before the watch starts: the first delta is a Reset.
	if _, err := c.cli.Put(ctx, c.key(kindNodes, "pre"), `{"name":"pre","underlayIP":"192.0.2.200"}`); err != nil {
		t.Fatal(err)
	}
	dc := startDeltas(t, c)
	sc := startShared(t, c)

	kinds := []string{kindNodes, kindBlocks, kindEndpoints, kindNamespaces, kindAlive, "policies", "bgppeers", kindStatus, kindCluster}
	value := func(kind, name string, i int) string {
		if rng.IntN(10) == 0 {
			return `{"broken":` // undecodable: reported, old value gone
		}
		switch kind {
		case kindNodes:
			return fmt.Sprintf(`{"name":%q,"underlayIP":"192.0.2.%d","labels":{"v":"%d"}}`, name, 1+i%3, i%2)
		case kindBlocks:
			return fmt.Sprintf(`{"node":"n%d"}`, i%2)
		case kindEndpoints:
			return fmt.Sprintf(`{"namespace":"ns","name":"p","node":"n1","ips":["10.244.0.%d"],"labels":{"v":"%d"}}`, 1+i%3, i%2)
		case kindNamespaces:
			return fmt.Sprintf(`{"name":%q,"labels":{"v":"%d"}}`, name, i%2)
		case kindCluster:
			return fmt.Sprintf(`{"backend":"vxlan","pools":[{"cidr":"10.244.0.0/16","blockSize":%d}]}`, 24+i%3)
		}
		return fmt.Sprintf(`{"v":%d}`, i%2)
	}
	key := func(kind string, i int) string {
		switch kind {
		case kindCluster:
			return c.key(kindCluster)
		case kindBlocks:
			return c.key(kindBlocks, api.BlockKeyName(netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/26", i))))
		case kindEndpoints:
			return c.key(kindEndpoints, "n1", fmt.Sprintf("c%d", i), "eth0")
		case "policies":
			return c.key("policies", "NetworkPolicy", "ns", fmt.Sprintf("p%d", i))
		}
		return c.key(kind, fmt.Sprintf("x%d", i))
	}

	var lastStatusOnly int64
	for step := range 300 {
		kind := kinds[rng.IntN(len(kinds))]
		i := rng.IntN(4)
		k := key(kind, i)
		if rng.IntN(4) == 0 {
			if _, err := c.cli.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
		} else {
			resp, err := c.cli.Put(ctx, k, value(kind, k, rng.IntN(6)))
			if err != nil {
				t.Fatal(err)
			}
			if kind == kindStatus {
				lastStatusOnly = resp.Header.Revision
			}
		}
		// A no-op write moves no consumer: a marker that always changes is
		// the barrier that says the watch has passed the step.
		resp, err := c.cli.Put(ctx, c.key(kindNamespaces, "marker"), fmt.Sprintf(`{"name":"marker","labels":{"step":"%d"}}`, step))
		if err != nil {
			t.Fatal(err)
		}
		got := dc.waitRev(t, resp.Header.Revision)
		st, err := c.load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		snap := st.snapshot()
		want := viewOf(&snap)
		want.Rev, got.Rev = 0, 0
		if d := cmp.Diff(want, got, cmpopts.EquateEmpty(), cmpAddrs); d != "" {
			t.Fatalf("step %d (%s %s): view from deltas != fresh load (-load +deltas):\n%s", step, kind, k, d)
		}
		shared := sc.waitRev(t, resp.Header.Revision)
		shared.Rev = 0
		if d := cmp.Diff(want, shared, cmpopts.EquateEmpty(), cmpAddrs); d != "" {
			t.Fatalf("step %d (%s %s): WatchView's shared view != fresh load (-load +shared):\n%s", step, kind, k, d)
		}
		dc.mu.Lock()
		applied := viewOf(&dc.snap)
		dc.mu.Unlock()
		applied.Rev = 0
		if d := cmp.Diff(want, applied, cmpopts.EquateEmpty(), cmpAddrs); d != "" {
			t.Fatalf("step %d (%s %s): Snapshot.Apply != fresh load (-load +applied):\n%s", step, kind, k, d)
		}
	}
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if len(dc.bad) > 0 {
		t.Errorf("deltas inconsistent with the consumer's past:\n%v", dc.bad)
	}
	if dc.resets != 1 {
		t.Errorf("resets = %d, want 1 (no resync in a healthy walk)", dc.resets)
	}
	if lastStatusOnly == 0 {
		t.Errorf("the walk wrote no status record: pick another seed")
	}
}

// TestWatchDeltasSkipsNoOps checks that rewriting a record with the same
// content and writing status records wakes no consumer.
func TestWatchDeltasSkipsNoOps(t *testing.T) {
	e := startEtcd(t)
	c := newClient(t, e)
	ctx := t.Context()
	var mu sync.Mutex
	var got []Delta
	ch := make(chan struct{}, 16)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_ = c.WatchDeltas(wctx, func(d Delta) { // returns nil on cancel
			mu.Lock()
			got = append(got, d)
			mu.Unlock()
			ch <- struct{}{}
		})
	}()
	<-ch // the Reset
	node := `{"name":"a","underlayIP":"192.0.2.1"}`
	if _, err := c.cli.Put(ctx, c.key(kindNodes, "a"), node); err != nil {
		t.Fatal(err)
	}
	<-ch
	for range 3 {
		if _, err := c.cli.Put(ctx, c.key(kindNodes, "a"), node); err != nil {
			t.Fatal(err)
		}
		if _, err := c.cli.Put(ctx, c.key(kindStatus, "a"), `{"node":"a"}`); err != nil {
			t.Fatal(err)
		}
	}
	// A marker change proves the watch went past the no-ops.
	if _, err := c.cli.Put(ctx, c.key(kindNamespaces, "m"), `{"name":"m"}`); err != nil {
		t.Fatal(err)
	}
	<-ch
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("got %d deltas, want 3 (reset, node a created, namespace m): %+v", len(got), got)
	}
	if n := got[1].Nodes; len(n) != 1 || n[0].Old != nil || n[0].New == nil || n[0].New.Name != "a" {
		t.Errorf("second delta: %+v, want node a created", got[1])
	}
	if ns := got[2].Namespaces; len(ns) != 1 || got[2].Count() != 1 {
		t.Errorf("third delta: %+v, want only namespace m", got[2])
	}
}
