package agent

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/skeinnet/skein/store"
	"github.com/skeinnet/skein/vxlan"
)

// onDelta takes every change of the cluster from the store's watch. The
// agent's view (a.snap) moves in place under viewMu, and each consumer gets
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
	a.viewMu.Lock()
	a.snap.Load().Apply(d)
	a.viewMu.Unlock()

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
	if a.vx != nil {
		a.updatePeers(d)
	}
	bgpPeers := false
	policies := len(d.Namespaces) > 0
	for _, c := range d.Other {
		bgpPeers = bgpPeers || strings.HasPrefix(c.Key, "bgppeers/")
		policies = policies || strings.HasPrefix(c.Key, "policies/")
	}
	if a.bgp != nil && (len(d.Nodes)+len(d.Blocks) > 0 || bgpPeers) {
		a.readView(a.updateBGP)
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
	if a.vx != nil {
		a.blocksOf = map[string][]netip.Prefix{}
		for cidr, b := range s.Blocks {
			a.blocksOf[b.Node] = append(a.blocksOf[b.Node], cidr)
		}
		a.vxPlan = vxlan.NewPlanner(a.vxlanConfig(), vxlanPeers(a.cfg.NodeName, a.ul.Network, s))
		a.vx.Set(a.vxPlan.State())
	}
	if a.bgp != nil {
		a.updateBGP(s)
	}
	a.pol.update(nil)
}

// updatePeers replans the overlay for the nodes whose record or blocks d
// changed, and hands the reconciler just those changes.
func (a *Agent) updatePeers(d store.Delta) {
	touched := map[string]bool{}
	for _, c := range d.Nodes {
		touched[c.Key] = true
	}
	for _, c := range d.Blocks {
		if c.Old != nil {
			a.blocksOf[c.Old.Node] = slices.DeleteFunc(a.blocksOf[c.Old.Node], func(p netip.Prefix) bool { return p == c.Old.CIDR })
			touched[c.Old.Node] = true
		}
		if c.New != nil {
			a.blocksOf[c.New.Node] = append(a.blocksOf[c.New.Node], c.New.CIDR)
			touched[c.New.Node] = true
		}
	}
	for name := range touched {
		if len(a.blocksOf[name]) == 0 {
			delete(a.blocksOf, name)
		}
		var ch vxlan.Changes
		p, ok := a.vxlanPeer(name)
		if ok {
			ch = a.vxPlan.SetPeer(p)
		} else {
			ch = a.vxPlan.DeletePeer(name)
		}
		if ch.Len() > 0 {
			verb := "peer programmed"
			if !ok {
				verb = "peer removed"
			}
			a.log.Info(verb, "peer", name, "count", ch.Len())
		}
		a.vx.Update(ch)
	}
}

// vxlanPeer is node name as an overlay peer, false when it is this node, gone
// or not usable (no underlay, VTEP or MAC yet).
func (a *Agent) vxlanPeer(name string) (vxlan.Peer, bool) {
	a.viewMu.RLock()
	n, ok := a.snap.Load().Nodes[name]
	a.viewMu.RUnlock()
	if !ok {
		return vxlan.Peer{}, false
	}
	return vxlanPeerOf(a.cfg.NodeName, name, a.ul.Network, n, a.blocksOf[name])
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
