package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
)

// endpointEntry is one endpoint record as last seen in etcd.
type endpointEntry struct {
	ep  api.Endpoint
	rev int64
}

// endpointIndex follows endpoints/ in etcd and finds the records of a pod
// by namespace/name without listing them all.
type endpointIndex struct {
	mu    sync.Mutex
	byKey map[string]endpointEntry       // etcd key (without prefix) → record
	byPod map[string]map[string]struct{} // "ns/name" → etcd keys
}

func newEndpointIndex() *endpointIndex {
	return &endpointIndex{byKey: map[string]endpointEntry{}, byPod: map[string]map[string]struct{}{}}
}

// set records key's value (nil: deleted) and returns the pod it belongs to
// now and before ("" when none).
func (x *endpointIndex) set(key string, value []byte, rev int64) (pod, was string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if old, ok := x.byKey[key]; ok {
		was = objectName(old.ep.Namespace, old.ep.Name)
		delete(x.byPod[was], key)
		if len(x.byPod[was]) == 0 {
			delete(x.byPod, was)
		}
		delete(x.byKey, key)
	}
	if value == nil {
		return "", was
	}
	var ep api.Endpoint
	if api.UnmarshalJSON(value, &ep) != nil || ep.Name == "" {
		return "", was // the agents report undecodable records
	}
	pod = objectName(ep.Namespace, ep.Name)
	x.byKey[key] = endpointEntry{ep: ep, rev: rev}
	if x.byPod[pod] == nil {
		x.byPod[pod] = map[string]struct{}{}
	}
	x.byPod[pod][key] = struct{}{}
	return pod, was
}

// reset replaces the index with a full listing and returns every pod seen
// before or after.
func (x *endpointIndex) reset(kvs map[string]endpointEntry) []string {
	x.mu.Lock()
	pods := slices.Collect(maps.Keys(x.byPod))
	x.byKey = map[string]endpointEntry{}
	x.byPod = map[string]map[string]struct{}{}
	for k, e := range kvs {
		x.byKey[k] = e
		pod := objectName(e.ep.Namespace, e.ep.Name)
		if x.byPod[pod] == nil {
			x.byPod[pod] = map[string]struct{}{}
			pods = append(pods, pod)
		}
		x.byPod[pod][k] = struct{}{}
	}
	x.mu.Unlock()
	slices.Sort(pods)
	return slices.Compact(pods)
}

// of returns the records of pod, sorted by key.
func (x *endpointIndex) of(pod string) map[string]endpointEntry {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make(map[string]endpointEntry, len(x.byPod[pod]))
	for k := range x.byPod[pod] {
		out[k] = x.byKey[k]
	}
	return out
}

// pods returns every pod that has records, sorted.
func (x *endpointIndex) pods() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Sorted(maps.Keys(x.byPod))
}

// watchEndpoints keeps idx current and calls changed with each pod whose
// records were added, changed or removed. It lists endpoints/ first (and
// again after a compaction or a broken watch) and returns when ctx ends.
func watchEndpoints(ctx context.Context, cli *clientv3.Client, prefix string, idx *endpointIndex, changed func(pod string), loaded func()) error {
	p := prefix + "endpoints/"
	for ctx.Err() == nil {
		resp, err := cli.Get(ctx, p, clientv3.WithPrefix())
		if err != nil {
			if !pause(ctx, time.Second) {
				break
			}
			continue
		}
		all := make(map[string]endpointEntry, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			var ep api.Endpoint
			if api.UnmarshalJSON(kv.Value, &ep) == nil && ep.Name != "" {
				all[strings.TrimPrefix(string(kv.Key), prefix)] = endpointEntry{ep: ep, rev: kv.ModRevision}
			}
		}
		for _, pod := range idx.reset(all) {
			changed(pod)
		}
		if loaded != nil {
			loaded()
			loaded = nil
		}
		wctx, cancel := context.WithCancel(ctx)
		wch := cli.Watch(clientv3.WithRequireLeader(wctx), p, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
		for wr := range wch {
			if err := wr.Err(); err != nil {
				if !errors.Is(err, rpctypes.ErrCompacted) {
					_ = pause(ctx, time.Second) // relist after a short pause; ctx is checked by the loop
				}
				break
			}
			for _, ev := range wr.Events {
				var value []byte
				if ev.Type == clientv3.EventTypePut {
					value = ev.Kv.Value
				}
				pod, was := idx.set(strings.TrimPrefix(string(ev.Kv.Key), prefix), value, ev.Kv.ModRevision)
				for _, p := range []string{pod, was} {
					if p != "" {
						changed(p)
					}
				}
			}
		}
		cancel()
	}
	return ctx.Err()
}

// labelEndpoints gives every record of a pod the pod's labels and named
// ports. A record that changed since it was indexed is errConflict: the
// watch brings the new revision and the pod is retried.
func labelEndpoints(ctx context.Context, m *mirror, entries map[string]endpointEntry, labels map[string]string, ports []api.NamedPort) (changed int, err error) {
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(entries)) {
		e := entries[key]
		if maps.Equal(e.ep.Labels, labels) && slices.Equal(e.ep.Ports, ports) {
			continue
		}
		ep := e.ep
		ep.Labels, ep.Ports = labels, ports
		b, err := json.Marshal(ep)
		if err != nil {
			errs = append(errs, fmt.Errorf("encode %s: %w", key, err))
			continue
		}
		if err := m.put(ctx, key, e.rev, b); err != nil {
			errs = append(errs, err)
			continue
		}
		changed++
	}
	return changed, errors.Join(errs...)
}

// pause waits d; it reports false when ctx ended first.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
