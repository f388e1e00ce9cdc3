package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// loadTimeout bounds the Get of everything under the prefix.
const loadTimeout = 30 * time.Second

// Watch follows everything under the prefix until ctx is done. It loads all
// keys with one Get at revision R and calls changed with that snapshot, then
// watches from R+1 and calls changed with a fresh snapshot after each batch
// of events that changes it (status/ keys are not followed). When the watch
// is compacted or breaks, Watch reloads (with backoff) and counts a resync;
// when etcd is unreachable it keeps retrying. A value that does not decode
// is reported in Snapshot.Errors and never stops the watch.
//
// changed runs on Watch's goroutine: it should hand the snapshot on and
// return. Watch returns nil when ctx is done.
func (c *Client) Watch(ctx context.Context, changed func(Snapshot)) error {
	return c.watch(ctx, func(st *state) { changed(st.snapshot()) }, func(st *state, evs []*clientv3.Event) {
		dirty := false
		for _, ev := range evs {
			if st.apply(string(ev.Kv.Key), eventValue(ev)) {
				dirty = true
			}
		}
		if dirty {
			changed(st.snapshot())
		}
	})
}

// WatchDeltas follows the keys an agent uses, like Watch, but hands out typed
// changes instead of whole snapshots: first (and after every resync) a Delta
// with Reset and the full Snapshot, then one Delta per watch response that
// changed something, listing only what it changed. fn runs on WatchDeltas'
// goroutine, in revision order; the Delta and its values are fn's to keep
// (read-only). WatchDeltas returns nil when ctx is done.
func (c *Client) WatchDeltas(ctx context.Context, fn func(Delta)) error {
	return c.watch(ctx, func(st *state) {
		snap := st.snapshot()
		fn(Delta{Rev: st.rev, Reset: true, Snapshot: &snap})
	}, func(st *state, evs []*clientv3.Event) {
		d := Delta{Rev: st.rev}
		for _, ev := range evs {
			st.applyDelta(string(ev.Kv.Key), eventValue(ev), &d)
		}
		if d.ErrorsChanged {
			d.Errors = st.errorList()
		}
		if !d.Empty() {
			fn(d)
		}
	})
}

// WatchView is WatchDeltas for a consumer that keeps one view of the
// cluster and reads it under mu: the Reset delta's Snapshot is the store's
// own working copy, and every later delta has already been applied to it,
// under mu, when fn runs (fn must not Apply it again). The consumer holds
// one copy of the cluster instead of two, which at 50 000 endpoints is the
// difference that matters. Readers of the view hold mu (or its read side);
// fn runs on WatchView's goroutine, the only writer.
func (c *Client) WatchView(ctx context.Context, mu sync.Locker, fn func(Delta)) error {
	var view *Snapshot
	return c.watch(ctx, func(st *state) {
		view = st.shared()
		fn(Delta{Rev: st.rev, Reset: true, Snapshot: view})
	}, func(st *state, evs []*clientv3.Event) {
		d := Delta{Rev: st.rev}
		mu.Lock()
		for _, ev := range evs {
			st.applyDelta(string(ev.Kv.Key), eventValue(ev), &d)
		}
		if d.ErrorsChanged {
			d.Errors = st.errorList()
			view.Errors = d.Errors
		}
		view.Rev, view.Cluster = st.rev, st.cluster
		mu.Unlock()
		if !d.Empty() {
			fn(d)
		}
	})
}

// watch is the load → follow → resync loop behind Watch and WatchDeltas:
// loaded runs after every (re)load, batch after every watch response with
// events.
func (c *Client) watch(ctx context.Context, loaded func(*state), batch func(*state, []*clientv3.Event)) error {
	log := c.log
	bo := backoff{min: 100 * time.Millisecond, max: 5 * time.Second}
	first, failing := true, false
	for {
		st, err := c.load(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !failing {
				log.Warn("watch load failed, will retry", "err", err)
				failing = true
			} else {
				log.Debug("watch load failed", "err", err)
			}
			if !sleep(ctx, bo.next()) {
				return nil
			}
			continue
		}
		failing = false
		if !first {
			c.resyncs.Add(1)
			log.Info("watch resynced", "rev", st.rev, "count", len(st.nodes)+len(st.blocks)+len(st.endpoints))
		} else {
			log.Debug("watch loaded", "rev", st.rev)
		}
		first = false
		loaded(st)
		if c.afterLoad != nil {
			c.afterLoad(st.rev)
		}

		progressed, err := c.follow(ctx, st, batch)
		if ctx.Err() != nil {
			return nil
		}
		if progressed {
			bo.reset()
		}
		if errors.Is(err, rpctypes.ErrCompacted) {
			log.Info("watch compacted, resyncing", "rev", st.rev, "err", err)
		} else {
			log.Warn("watch broken, resyncing", "rev", st.rev, "err", err)
		}
		if !sleep(ctx, bo.next()) {
			return nil
		}
	}
}

// Resyncs returns how many times Watch reloaded after its first load.
func (c *Client) Resyncs() int64 { return c.resyncs.Load() }

// loadPage bounds the keys of one read of load: at 50 000 endpoints one
// response would be tens of megabytes, held at once beside what it decodes
// to, and the process keeps that peak as resident memory.
var loadPage int64 = 2000

// load reads everything under the prefix at one revision, a page at a time.
func (c *Client) load(ctx context.Context) (*state, error) {
	lctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	st := newState(c.prefix)
	key, end := c.prefix, c.watchEnd()
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(loadPage)}
		if st.rev != 0 {
			opts = append(opts, clientv3.WithRev(st.rev)) // every page at the first one's revision
		}
		resp, err := c.cli.Get(lctx, key, opts...)
		if err != nil {
			return nil, fmt.Errorf("get %s* from %s: %w", c.prefix, key, err)
		}
		if st.rev == 0 {
			st.rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			st.apply(string(kv.Key), putValue(kv.Value))
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return st, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// follow hands the watch responses from st.rev+1 on to batch, after moving
// st.rev. It returns why the watch ended, and whether any response arrived
// before.
func (c *Client) follow(ctx context.Context, st *state, batch func(*state, []*clientv3.Event)) (progressed bool, err error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := c.cli.Watch(wctx, c.prefix, clientv3.WithRange(c.watchEnd()), clientv3.WithRev(st.rev+1), clientv3.WithProgressNotify())
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return progressed, fmt.Errorf("watch %s* from rev %d: compacted at rev %d: %w", c.prefix, st.rev+1, resp.CompactRevision, rpctypes.ErrCompacted)
		}
		if err := resp.Err(); err != nil {
			return progressed, fmt.Errorf("watch %s*: %w", c.prefix, err)
		}
		if resp.Canceled {
			return progressed, fmt.Errorf("watch %s*: canceled by the server", c.prefix)
		}
		if resp.Header.Revision < st.rev {
			// etcd lost its data (restored or recreated): history starts over.
			return progressed, fmt.Errorf("watch %s*: etcd revision went back from %d to %d", c.prefix, st.rev, resp.Header.Revision)
		}
		progressed = true
		st.rev = resp.Header.Revision
		if resp.IsProgressNotify() || len(resp.Events) == 0 {
			continue
		}
		batch(st, resp.Events)
	}
	return progressed, fmt.Errorf("watch %s*: channel closed", c.prefix)
}

// watchEnd ends the range the watch follows just before status/: status
// records change every few seconds on every node and no agent decision
// depends on them, so at 1 000 nodes following them would wake each agent
// ~100 times a second for nothing. Every kind an agent uses sorts before it.
func (c *Client) watchEnd() string { return c.key(kindStatus) + "/" }

// sleep waits for d; it reports false when ctx is done first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// eventValue returns the value of a put, nil for a delete.
func eventValue(ev *clientv3.Event) []byte {
	if ev.Type == clientv3.EventTypePut {
		return putValue(ev.Kv.Value)
	}
	return nil
}

// putValue returns v, or an empty non-nil slice for an empty value: state.apply
// takes nil for a delete.
func putValue(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}
