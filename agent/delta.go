package agent

import (
	"strings"

	"github.com/skeinnet/skein/store"
)

// onDelta takes every change of the cluster from the store's watch. The
// agent's view (a.snap) has moved in place under viewMu, and each consumer gets
// only what concerns it: the overlay the peers whose node or blocks changed,
// BGP and policy only the kinds they read. A Reset (first load, resync)
// rebuilds everything; every other delta costs what it lists.
func (a *Agent) onDelta(d store.Delta) {
	if d.Reset {
		a.viewMu.Lock()
		a.snap.Store(d.Snapshot)
		a.viewMu.Unlock()
		if a.checkOwnRecord() {
			return
		}
		a.resetConsumers(*d.Snapshot)
		return
	}
	// The view already holds d (store.WatchView applied it).
	for _, c := range d.Nodes {
		switch {
		case c.Old == nil:
			a.log.Info("node joined", "peer", c.Key, "ip", c.New.UnderlayIP)
		case c.New == nil:
			a.log.Info("node removed", "peer", c.Key)
		}
	}
	if len(d.Nodes) > 0 && a.checkOwnRecord() {
		return
	}
	a.readView(func(s store.Snapshot) { a.be.update(s, d) })
	policies := len(d.Namespaces) > 0
	for _, c := range d.Other {
		policies = policies || strings.HasPrefix(c.Key, "policies/")
	}
	switch {
	case policies:
		a.pol.update(nil)
	default:
		if len(d.Endpoints) > 0 {
			a.pol.endpoints(d.Endpoints)
		}
		if len(d.Nodes) > 0 {
			a.pol.nodes()
		}
	}
}

// resetConsumers hands every consumer the whole cluster.
func (a *Agent) resetConsumers(s store.Snapshot) {
	a.be.reset(s)
	a.pol.update(nil)
}

// readView runs fn with the agent's view of the cluster, read-locked; fn
// must not keep the snapshot's maps. Before the first load it does nothing.
func (a *Agent) readView(fn func(store.Snapshot)) {
	a.viewMu.RLock()
	defer a.viewMu.RUnlock()
	if s := a.snap.Load(); s != nil {
		fn(*s)
	}
}
