package agent

import (
	"cmp"
	"net"
	"net/netip"
	"slices"
	"sort"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
	"github.com/skeinnet/skein/vxlan"
)

// vxlanPeers turns the cluster snapshot into the overlay's peers: every other
// node with a VTEP, with the blocks the store says it owns. Liveness plays no
// part: a dead agent's containers stay reachable until the node is deleted.
func vxlanPeers(self string, underlay onLink, snap store.Snapshot) []vxlan.Peer {
	byNode := map[string][]netip.Prefix{}
	for cidr, b := range snap.Blocks {
		byNode[b.Node] = append(byNode[b.Node], cidr)
	}
	var peers []vxlan.Peer
	for name, n := range snap.Nodes {
		if p, ok := vxlanPeerOf(self, name, underlay, n, byNode[name]); ok {
			peers = append(peers, p)
		}
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].Node < peers[j].Node })
	return peers
}

// vxlanPeerOf turns node name's record and blocks into an overlay peer;
// false for this node and for a node without underlay, VTEP or MAC yet.
func vxlanPeerOf(self, name string, underlay onLink, n api.Node, blocks []netip.Prefix) (vxlan.Peer, bool) {
	if name == self || !n.UnderlayIP.IsValid() || (!n.VTEPIP.IsValid() && !n.VTEPIP6.IsValid()) || len(n.VTEPMAC) != 6 {
		return vxlan.Peer{}, false
	}
	blocks = slices.Clone(blocks)
	slices.SortFunc(blocks, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) })
	return vxlan.Peer{
		Node:        name,
		UnderlayIP:  n.UnderlayIP,
		UnderlayIP6: n.UnderlayIP6,
		VTEPMAC:     net.HardwareAddr(slices.Clone(n.VTEPMAC)),
		VTEPIP:      n.VTEPIP,
		VTEPIP6:     n.VTEPIP6,
		Blocks:      blocks,
		SameSubnet:  underlay.contains(n.UnderlayIP),
		SameSubnet6: underlay.contains(n.UnderlayIP6),
	}, true
}

// onLink are this host's underlay subnets (IPv4, IPv6), for same-L2 checks.
type onLink []netip.Prefix

// contains reports whether a is on one of the subnets.
func (o onLink) contains(a netip.Addr) bool {
	return a.IsValid() && slices.ContainsFunc(o, func(p netip.Prefix) bool { return p.IsValid() && p.Contains(a) })
}

// localEndpoints returns this node's endpoints from the snapshot, sorted by key.
func localEndpoints(self string, snap store.Snapshot) []api.Endpoint {
	var out []api.Endpoint
	for _, ep := range snap.Endpoints {
		if ep.Node == self {
			out = append(out, ep)
		}
	}
	slices.SortFunc(out, func(a, b api.Endpoint) int {
		return cmp.Or(cmp.Compare(a.ContainerID, b.ContainerID), cmp.Compare(a.IfName, b.IfName))
	})
	return out
}
