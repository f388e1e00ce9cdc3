package store

import (
	"context"
	"errors"
	"fmt"
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
	log := c.log
	bo := backoff{min: 100 * time.Millisecond, max: 5 * time.Second}
	loaded, failing := false, false
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
		if loaded {
			c.resyncs.Add(1)
			log.Info("watch resynced", "rev", st.rev, "count", len(st.nodes)+len(st.blocks)+len(st.endpoints))
		} else {
			log.Debug("watch loaded", "rev", st.rev)
		}
		loaded = true
		changed(st.snapshot())
		if c.afterLoad != nil {
			c.afterLoad(st.rev)
		}

		progressed, err := c.follow(ctx, st, changed)
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

// load reads everything under the prefix at one revision.
func (c *Client) load(ctx context.Context) (*state, error) {
	lctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	resp, err := c.cli.Get(lctx, c.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("get %s*: %w", c.prefix, err)
	}
	st := newState(c.prefix)
	st.rev = resp.Header.Revision
	for _, kv := range resp.Kvs {
		st.apply(string(kv.Key), putValue(kv.Value))
	}
	return st, nil
}

// follow applies watch events from st.rev+1 on, calling changed after each
// batch that changed st. It returns why the watch ended, and whether any
// batch arrived before.
func (c *Client) follow(ctx context.Context, st *state, changed func(Snapshot)) (progressed bool, err error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := c.cli.Watch(wctx, c.prefix, clientv3.WithPrefix(), clientv3.WithRev(st.rev+1), clientv3.WithProgressNotify())
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
		if resp.IsProgressNotify() {
			continue
		}
		dirty := false
		for _, ev := range resp.Events {
			var value []byte
			if ev.Type == clientv3.EventTypePut {
				value = putValue(ev.Kv.Value)
			}
			if st.apply(string(ev.Kv.Key), value) {
				dirty = true
			}
		}
		if dirty {
			changed(st.snapshot())
		}
	}
	return progressed, fmt.Errorf("watch %s*: channel closed", c.prefix)
}

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

// putValue returns v, or an empty non-nil slice for an empty value: state.apply
// takes nil for a delete.
func putValue(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}
