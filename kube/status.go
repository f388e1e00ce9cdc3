package kube

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
)

// statusTracker counts what is mirrored and what failed, for api.KubeStatus.
type statusTracker struct {
	inflight atomic.Int64

	mu         sync.Mutex
	namespaces map[string]bool
	pods       map[string]int // pod → endpoints carrying its labels
	policies   map[objKey]bool
	errs       map[objKey]string
	lastEvent  time.Time
	syncDur    time.Duration
	isSynced   bool
	connected  bool
}

func newStatusTracker() *statusTracker {
	return &statusTracker{namespaces: map[string]bool{}, pods: map[string]int{}, policies: map[objKey]bool{}, errs: map[objKey]string{}}
}

func (s *statusTracker) begin()      { s.inflight.Add(1) }
func (s *statusTracker) end()        { s.inflight.Add(-1) }
func (s *statusTracker) busy() int64 { return s.inflight.Load() }

func (s *statusTracker) event() {
	s.mu.Lock()
	s.lastEvent = time.Now().UTC()
	s.mu.Unlock()
}

func (s *statusTracker) synced(d time.Duration) {
	s.mu.Lock()
	s.isSynced, s.syncDur = true, d
	s.mu.Unlock()
}

func (s *statusTracker) setConnected(ok bool) {
	s.mu.Lock()
	s.connected = ok
	s.mu.Unlock()
}

func (s *statusTracker) setNamespace(name string, mirrored bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if mirrored {
		s.namespaces[name] = true
	} else {
		delete(s.namespaces, name)
	}
}

func (s *statusTracker) setPod(pod string, exists bool, endpoints int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if exists {
		s.pods[pod] = endpoints
	} else {
		delete(s.pods, pod)
	}
}

// setPolicy records a policy's state; msg is why it is not (fully)
// enforced, "" when it is. It reports whether msg is new, so that an Event
// is recorded once per problem, not once per resync.
func (s *statusTracker) setPolicy(k objKey, mirrored bool, msg string) (newMsg bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if mirrored {
		s.policies[k] = true
	} else {
		delete(s.policies, k)
	}
	old := s.errs[k]
	if msg == "" {
		delete(s.errs, k)
		return false
	}
	s.errs[k] = msg
	return old != msg
}

func (s *statusTracker) snapshot() api.KubeStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := api.KubeStatus{
		Connected:  s.connected,
		Synced:     s.isSynced,
		LastEvent:  s.lastEvent,
		Namespaces: len(s.namespaces),
		Pods:       len(s.pods),
		Policies:   len(s.policies),
	}
	if s.isSynced {
		st.SyncDuration = s.syncDur.Round(time.Millisecond).String()
	}
	for _, n := range s.pods {
		st.Endpoints += n
	}
	for _, k := range slices.SortedFunc(maps.Keys(s.errs), compareKeys) {
		st.Errors = append(st.Errors, k.String()+": "+s.errs[k])
	}
	return st
}

// publishStatus writes the status record now and every interval until ctx
// ends, probing the API server each time (ping).
func publishStatus(ctx context.Context, cli *clientv3.Client, key, leader string, s *statusTracker, interval time.Duration, ping func(context.Context) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, interval)
		s.setConnected(ping(pctx) == nil)
		st := s.snapshot()
		st.Leader, st.Updated = leader, time.Now().UTC()
		if b, err := json.Marshal(st); err == nil {
			_, _ = cli.Put(pctx, key, string(b)) // best effort: the next tick writes again
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
