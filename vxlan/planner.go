package vxlan

import (
	"maps"
	"net/netip"
	"slices"
)

// Planner keeps the overlay's desired State current one peer at a time, so a
// node or block change costs that peer's entries, not the cluster's.
//
// The State it holds always equals Plan(cfg, peers) (a randomized test checks
// it). Plan resolves conflicts between peers (two claim one block, VTEP IP or
// VTEP MAC: the first node name wins), which couples peers; a peer whose
// entries share no key with another peer's is independent of all others, so
// its change is the difference between its own old and new single-peer plans.
// Only a change that touches a contested key replans everything, which
// happens only while two records disagree.
type Planner struct {
	cfg   Config
	peers map[string]Peer
	// own is each peer's single-peer plan.
	own map[string]State
	// claims counts how many peers' single-peer plans hold each key.
	claims map[planKey]int
	state  State
}

// planKey is any object key of a State.
type planKey struct {
	neigh netip.Addr
	mac   string
	route netip.Prefix
}

// Changes lists the objects a Planner call changed: Set holds the new
// value of each added or changed object, Del the old value of each removed
// one. A key is in at most one of the two.
type Changes struct {
	SetNeighs  []Neigh
	DelNeighs  []Neigh
	SetFDB     []FDBEntry
	DelFDB     []FDBEntry
	SetRoutes  []Route
	DelRoutes  []Route
	FullReplan bool
}

// Len returns how many objects c changes.
func (c Changes) Len() int {
	return len(c.SetNeighs) + len(c.DelNeighs) + len(c.SetFDB) + len(c.DelFDB) + len(c.SetRoutes) + len(c.DelRoutes)
}

// NewPlanner returns a Planner holding Plan(cfg, peers). Peers are keyed by
// node name; a later duplicate name replaces an earlier one.
func NewPlanner(cfg Config, peers []Peer) *Planner {
	p := &Planner{cfg: cfg.Defaulted(), peers: map[string]Peer{}, own: map[string]State{}, claims: map[planKey]int{}}
	for _, peer := range peers {
		p.peers[peer.Node] = peer
	}
	for name, peer := range p.peers {
		p.own[name] = p.single(peer)
		p.count(p.own[name], 1)
	}
	p.state = Plan(p.cfg, slices.Collect(maps.Values(p.peers)))
	return p
}

// State returns the desired state; callers must not modify it.
func (p *Planner) State() State { return p.state }

// Peers returns how many peers the planner holds.
func (p *Planner) Peers() int { return len(p.peers) }

// SetPeer adds or replaces a peer and returns what changed.
func (p *Planner) SetPeer(peer Peer) Changes {
	return p.replace(peer.Node, &peer)
}

// DeletePeer removes a peer and returns what changed.
func (p *Planner) DeletePeer(node string) Changes {
	if _, ok := p.peers[node]; !ok {
		return Changes{}
	}
	return p.replace(node, nil)
}

func (p *Planner) replace(node string, peer *Peer) Changes {
	old := p.own[node]
	var nw State
	if peer != nil {
		nw = p.single(*peer)
	}
	contested := p.contested(old) // before: old shares a key with another peer
	p.count(old, -1)
	delete(p.own, node)
	delete(p.peers, node)
	if peer != nil {
		p.peers[node] = *peer
		p.own[node] = nw
		p.count(nw, 1)
	}
	if contested || p.contested(nw) {
		want := Plan(p.cfg, slices.Collect(maps.Values(p.peers)))
		c := diffStates(p.state, want)
		c.FullReplan = true
		p.state = want
		return c
	}
	c := diffStates(old, nw)
	applyChanges(&p.state, c)
	return c
}

// single is the peer's own plan, as if it were the only peer.
func (p *Planner) single(peer Peer) State {
	return Plan(p.cfg, []Peer{peer})
}

func keysOf(s State) []planKey {
	var ks []planKey
	for ip := range s.Neighs {
		ks = append(ks, planKey{neigh: ip})
	}
	for _, e := range s.FDB {
		ks = append(ks, planKey{mac: e.MAC.String()})
	}
	for dst := range s.Routes {
		ks = append(ks, planKey{route: dst})
	}
	return ks
}

func (p *Planner) count(s State, d int) {
	for _, k := range keysOf(s) {
		if p.claims[k] += d; p.claims[k] == 0 {
			delete(p.claims, k)
		}
	}
}

// contested reports whether a key of s is claimed by more than one peer.
func (p *Planner) contested(s State) bool {
	for _, k := range keysOf(s) {
		if p.claims[k] > 1 {
			return true
		}
	}
	return false
}

// diffStates returns the changes that turn from into to (objects only).
func diffStates(from, to State) Changes {
	var c Changes
	diffMap(from.Neighs, to.Neighs, neighEqual, &c.SetNeighs, &c.DelNeighs)
	diffMap(from.FDB, to.FDB, fdbEqual, &c.SetFDB, &c.DelFDB)
	diffMap(from.Routes, to.Routes, routeEqual, &c.SetRoutes, &c.DelRoutes)
	return c
}

func diffMap[K comparable, V any](from, to map[K]V, eq func(a, b V) bool, set, del *[]V) {
	for k, v := range to {
		if old, ok := from[k]; !ok || !eq(old, v) {
			*set = append(*set, v)
		}
	}
	for k, v := range from {
		if _, ok := to[k]; !ok {
			*del = append(*del, v)
		}
	}
}

// clone returns c with lists of its own.
func (c Changes) clone() Changes {
	c.SetNeighs, c.DelNeighs = slices.Clone(c.SetNeighs), slices.Clone(c.DelNeighs)
	c.SetFDB, c.DelFDB = slices.Clone(c.SetFDB), slices.Clone(c.DelFDB)
	c.SetRoutes, c.DelRoutes = slices.Clone(c.SetRoutes), slices.Clone(c.DelRoutes)
	return c
}

// initMaps makes s's nil object maps empty ones.
func (s *State) initMaps() {
	if s.Neighs == nil {
		s.Neighs = map[netip.Addr]Neigh{}
	}
	if s.FDB == nil {
		s.FDB = map[FDBKey]FDBEntry{}
	}
	if s.Routes == nil {
		s.Routes = map[netip.Prefix]Route{}
	}
}

// pick returns the objects of s under the keys of d, in maps of their own
// (the link spec and address come along).
func (s State) pick(d dirtyKeys) State {
	out := State{Link: s.Link, Addr: s.Addr, Addr6: s.Addr6}
	out.initMaps()
	for k := range d.neighs {
		if v, ok := s.Neighs[k]; ok {
			out.Neighs[k] = v
		}
	}
	for k := range d.fdb {
		if v, ok := s.FDB[k]; ok {
			out.FDB[k] = v
		}
	}
	for k := range d.routes {
		if v, ok := s.Routes[k]; ok {
			out.Routes[k] = v
		}
	}
	return out
}

// merge sets the keys of d in s to what part holds (absent: deleted).
func (s *State) merge(part State, d dirtyKeys) {
	s.initMaps()
	for k := range d.neighs {
		if v, ok := part.Neighs[k]; ok {
			s.Neighs[k] = v
		} else {
			delete(s.Neighs, k)
		}
	}
	for k := range d.fdb {
		if v, ok := part.FDB[k]; ok {
			s.FDB[k] = v
		} else {
			delete(s.FDB, k)
		}
	}
	for k := range d.routes {
		if v, ok := part.Routes[k]; ok {
			s.Routes[k] = v
		} else {
			delete(s.Routes, k)
		}
	}
}

// applyChanges moves s by c.
func applyChanges(s *State, c Changes) {
	s.initMaps()
	for _, n := range c.DelNeighs {
		delete(s.Neighs, n.IP)
	}
	for _, e := range c.DelFDB {
		delete(s.FDB, e.Key())
	}
	for _, r := range c.DelRoutes {
		delete(s.Routes, r.Dst)
	}
	for _, n := range c.SetNeighs {
		s.Neighs[n.IP] = n
	}
	for _, e := range c.SetFDB {
		s.FDB[e.Key()] = e
	}
	for _, r := range c.SetRoutes {
		s.Routes[r.Dst] = r
	}
}
