package agent

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strings"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/bgp"
	"github.com/skeinnet/skein/store"
)

func newSpeaker(ul underlay, cl api.Cluster, self api.Node, log *slog.Logger) (*bgp.Speaker, error) {
	cfg := bgp.Config{
		RouterID: ul.IP,
		// IPv6 peers' sessions run from the node's IPv6 underlay address;
		// without one the speaker names them instead.
		ListenAddr6: ul.IP6,
		ASN:         cl.BGP.ASN,
		Log:         log,
	}
	for _, p := range cl.Pools {
		cfg.Import = append(cfg.Import, p.CIDR)
	}
	if id, ok := self.Labels[api.RouteReflectorLabel]; ok {
		rr := &bgp.RRConfig{}
		if id != "" {
			cid, err := netip.ParseAddr(id)
			if err != nil || !cid.Is4() {
				return nil, fmt.Errorf("label %s=%q: cluster id must be an IPv4 address", api.RouteReflectorLabel, id)
			}
			rr.ClusterID = cid
		}
		cfg.RouteReflector = rr
	}
	return bgp.New(cfg)
}

// isReflector reports whether n carries the route-reflector label.
func isReflector(n api.Node) bool { _, ok := n.Labels[api.RouteReflectorLabel]; return ok }

// nodePeer is this node's session with node name, planned from that node's
// record alone (and this node's role): with the node mesh every other node;
// without it, reflectors peer with every node (as their clients) and with
// each other, other nodes peer only with reflectors. Liveness plays no part.
func nodePeer(self string, selfRR bool, cl api.Cluster, name string, n api.Node) (bgp.Peer, bool) {
	if name == self || !n.UnderlayIP.IsValid() {
		return bgp.Peer{}, false
	}
	asn := cl.BGP.ASN
	switch {
	case cl.BGP.NodeMesh:
		return bgp.Peer{Name: name, Address: n.UnderlayIP, ASN: asn, Description: "node mesh"}, true
	case selfRR:
		return bgp.Peer{Name: name, Address: n.UnderlayIP, ASN: asn, RouteReflectorClient: !isReflector(n), Description: "reflector client"}, true
	case isReflector(n):
		return bgp.Peer{Name: name, Address: n.UnderlayIP, ASN: asn, Description: "route reflector"}, true
	}
	return bgp.Peer{}, false
}

// externalPeers are the stored BGPPeers meant for every node or for this
// one, by key order; errs names the records that do not decode.
func externalPeers(self string, other map[string][]byte) (peers []bgp.Peer, errs []string) {
	keys := make([]string, 0)
	for k := range other {
		if strings.HasPrefix(k, "bgppeers/") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		p, err := api.DecodeBGPPeer(other[k])
		if err != nil {
			errs = append(errs, k+": "+err.Error())
			continue
		}
		if p.Node != "" && p.Node != self {
			continue
		}
		peers = append(peers, bgp.Peer{Name: p.Name, Address: p.PeerIP, ASN: p.ASN, Port: p.Port, Description: p.Description})
	}
	return peers, errs
}

// bgpPlan is what the speaker should have: its peers and role.
type bgpPlan struct {
	peers     []bgp.Peer
	reflector bool
}

// planBGP derives this node's BGP peers from the whole cluster: the node
// peers by name, then the external ones. It is the resync path and what the
// per-node planner (bgpPeers) must always equal.
func planBGP(self string, cl api.Cluster, snap store.Snapshot) (bgpPlan, []string) {
	var plan bgpPlan
	me, ok := snap.Nodes[self]
	plan.reflector = ok && isReflector(me)
	names := make([]string, 0, len(snap.Nodes))
	for name := range snap.Nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if p, ok := nodePeer(self, plan.reflector, cl, name, snap.Nodes[name]); ok {
			plan.peers = append(plan.peers, p)
		}
	}
	ext, errs := externalPeers(self, snap.Other)
	plan.peers = append(plan.peers, ext...)
	return plan, errs
}

// bgpPeers plans this node's peers one changed node at a time: a node's
// record changing replans that node's session only. This node's own record
// (its role) and the BGPPeer records replan their part in full.
type bgpPeers struct {
	self      string
	cl        api.Cluster
	reflector bool
	byNode    map[string]bgp.Peer
	external  []bgp.Peer
	errs      []string
}

func newBGPPeers(self string, cl api.Cluster, s store.Snapshot) *bgpPeers {
	p := &bgpPeers{self: self, cl: cl}
	p.resetNodes(s)
	p.external, p.errs = externalPeers(self, s.Other)
	return p
}

func (p *bgpPeers) resetNodes(s store.Snapshot) {
	me, ok := s.Nodes[p.self]
	p.reflector = ok && isReflector(me)
	p.byNode = make(map[string]bgp.Peer, len(s.Nodes))
	for name, n := range s.Nodes {
		if peer, ok := nodePeer(p.self, p.reflector, p.cl, name, n); ok {
			p.byNode[name] = peer
		}
	}
}

// update replans what d changed; s has d applied. It reports whether the
// peers may have changed.
func (p *bgpPeers) update(s store.Snapshot, d store.Delta) bool {
	changed := false
	for _, c := range d.Nodes {
		changed = true
		if c.Key == p.self {
			p.resetNodes(s) // this node's role decides every session
			break
		}
		n, ok := s.Nodes[c.Key]
		peer, want := nodePeer(p.self, p.reflector, p.cl, c.Key, n)
		if ok && want {
			p.byNode[c.Key] = peer
		} else {
			delete(p.byNode, c.Key)
		}
	}
	for _, c := range d.Other {
		if strings.HasPrefix(c.Key, "bgppeers/") {
			p.external, p.errs = externalPeers(p.self, s.Other)
			return true
		}
	}
	return changed
}

// plan lists the peers in planBGP's order.
func (p *bgpPeers) plan() bgpPlan {
	plan := bgpPlan{reflector: p.reflector, peers: make([]bgp.Peer, 0, len(p.byNode)+len(p.external))}
	names := make([]string, 0, len(p.byNode))
	for name := range p.byNode {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		plan.peers = append(plan.peers, p.byNode[name])
	}
	plan.peers = append(plan.peers, p.external...)
	return plan
}
