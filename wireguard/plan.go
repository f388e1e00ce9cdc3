package wireguard

import (
	"cmp"
	"net/netip"
	"slices"
)

// Node is what the planner needs of a cluster node.
type Node struct {
	Name     string
	Key      string // public key, base64; "" when not published
	Underlay netip.Addr
	Blocks   []netip.Prefix
}

// Peer is one peer of the device.
type Peer struct {
	Node       string
	PublicKey  Key
	Endpoint   netip.AddrPort
	AllowedIPs []netip.Prefix
}

// Blocked is a block that gets an unreachable route: its node has no
// usable key, and its traffic must not go out in clear.
type Blocked struct {
	Node   string
	Block  netip.Prefix
	Reason string
}

// Entry is what one other node gets: a peer whose blocks go through the
// device, or, refused for the reason given, its blocks unreachable.
type Entry struct {
	Peer    *Peer          // nil when refused
	Refused string         // why the node is no peer
	Blocks  []netip.Prefix // sorted
}

func (e Entry) equal(o Entry) bool {
	if e.Refused != o.Refused || !slices.Equal(e.Blocks, o.Blocks) || (e.Peer == nil) != (o.Peer == nil) {
		return false
	}
	return e.Peer == nil || (e.Peer.PublicKey == o.Peer.PublicKey && e.Peer.Endpoint == o.Peer.Endpoint && e.Peer.Node == o.Peer.Node)
}

// Plan is what the device and the routing table should hold.
type Plan struct {
	Peers []Peer
	// Tunnel are the blocks routed through the device.
	Tunnel []netip.Prefix
	// Blocked are the blocks routed nowhere (unreachable).
	Blocked []Blocked
	// Refused names the nodes without a usable key and why (also those
	// without blocks, which need no route).
	Refused map[string]string
}

// Planner plans the tunnel from self to every other node, one node at a
// time: a change to a node re-plans that node, and only the nodes sharing
// its old or new key besides (two nodes with one key, a copied state dir,
// are both refused rather than silently mixed up).
type Planner struct {
	self    string
	port    int
	nodes   map[string]Node
	byKey   map[string]map[string]bool // published key -> node names
	entries map[string]Entry           // every node but self
}

// NewPlanner plans for self, every node listening on port.
func NewPlanner(self string, port int) *Planner {
	return &Planner{self: self, port: port, nodes: map[string]Node{}, byKey: map[string]map[string]bool{}, entries: map[string]Entry{}}
}

// Set adds or changes a node and returns the nodes whose entries changed.
func (p *Planner) Set(n Node) []string {
	n.Blocks = slices.Clone(n.Blocks)
	slices.SortFunc(n.Blocks, comparePrefix)
	old, had := p.nodes[n.Name]
	affected := map[string]bool{n.Name: true}
	if !had || old.Key != n.Key {
		p.keyed(old.Key, affected)
		p.keyed(n.Key, affected)
	}
	if had {
		p.unindex(old)
	}
	p.nodes[n.Name] = n
	if n.Key != "" {
		if p.byKey[n.Key] == nil {
			p.byKey[n.Key] = map[string]bool{}
		}
		p.byKey[n.Key][n.Name] = true
	}
	return p.replan(affected)
}

// Delete removes a node and returns the nodes whose entries changed.
func (p *Planner) Delete(name string) []string {
	old, had := p.nodes[name]
	if !had {
		return nil
	}
	affected := map[string]bool{name: true}
	p.keyed(old.Key, affected)
	p.unindex(old)
	delete(p.nodes, name)
	return p.replan(affected)
}

// Changes returns the entries of names in the form Reconciler.Update takes
// (nil: the node has no entry any more).
func (p *Planner) Changes(names []string) map[string]*Entry {
	out := make(map[string]*Entry, len(names))
	for _, n := range names {
		if e, ok := p.entries[n]; ok {
			out[n] = &e
		} else {
			out[n] = nil
		}
	}
	return out
}

// Entries returns every entry by node (a copy of the map; O(cluster), for
// a full resync).
func (p *Planner) Entries() map[string]Entry {
	out := make(map[string]Entry, len(p.entries))
	for k, v := range p.entries {
		out[k] = v
	}
	return out
}

// keyed adds to affected the nodes that published key (for a key change of
// self: every node that shares self's old or new key).
func (p *Planner) keyed(key string, affected map[string]bool) {
	if key == "" {
		return
	}
	for other := range p.byKey[key] {
		affected[other] = true
	}
}

func (p *Planner) unindex(n Node) {
	if set := p.byKey[n.Key]; set != nil {
		delete(set, n.Name)
		if len(set) == 0 {
			delete(p.byKey, n.Key)
		}
	}
}

// replan recomputes the entries of affected and returns, sorted, those that
// changed.
func (p *Planner) replan(affected map[string]bool) []string {
	var changed []string
	for name := range affected {
		n, ok := p.nodes[name]
		old, had := p.entries[name]
		if !ok || name == p.self {
			if had {
				delete(p.entries, name)
				changed = append(changed, name)
			}
			continue
		}
		e := p.plan(n)
		if had && old.equal(e) {
			continue
		}
		p.entries[name] = e
		changed = append(changed, name)
	}
	slices.Sort(changed)
	return changed
}

func (p *Planner) plan(n Node) Entry {
	e := Entry{Blocks: n.Blocks}
	selfKey := p.nodes[p.self].Key
	var key Key
	switch {
	case n.Key == "":
		e.Refused = "no WireGuard key published"
	case !n.Underlay.IsValid():
		e.Refused = "no underlay address"
	case n.Key == selfKey || len(p.byKey[n.Key]) > 1:
		e.Refused = "WireGuard key shared with another node"
	default:
		var err error
		if key, err = ParseKey(n.Key); err != nil {
			e.Refused = "published WireGuard key is invalid"
		}
	}
	if e.Refused == "" {
		e.Peer = &Peer{Node: n.Name, PublicKey: key, Endpoint: netip.AddrPortFrom(n.Underlay, uint16(p.port)), AllowedIPs: n.Blocks}
	}
	return e
}

// PlanOf assembles the whole plan from entries by node: O(cluster), for
// status and full resyncs.
func PlanOf(entries map[string]Entry) Plan {
	p := Plan{Refused: map[string]string{}}
	for name, e := range entries {
		if e.Peer == nil {
			p.Refused[name] = e.Refused
			for _, b := range e.Blocks {
				p.Blocked = append(p.Blocked, Blocked{Node: name, Block: b, Reason: e.Refused})
			}
			continue
		}
		p.Peers = append(p.Peers, *e.Peer)
		p.Tunnel = append(p.Tunnel, e.Blocks...)
	}
	slices.SortFunc(p.Peers, func(a, b Peer) int { return cmp.Compare(a.Node, b.Node) })
	slices.SortFunc(p.Tunnel, comparePrefix)
	slices.SortFunc(p.Blocked, func(a, b Blocked) int {
		return cmp.Or(comparePrefix(a.Block, b.Block), cmp.Compare(a.Node, b.Node))
	})
	return p
}

// Make plans the tunnel from self to every node at once.
func Make(self string, port int, nodes []Node) Plan {
	pl := NewPlanner(self, port)
	for _, n := range nodes {
		pl.Set(n)
	}
	return PlanOf(pl.entries)
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}
