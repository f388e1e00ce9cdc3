package agent

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/bgp"
	"github.com/skeinnet/skein/store"
)

func (a *Agent) newSpeaker() (*bgp.Speaker, error) {
	cfg := bgp.Config{
		RouterID: a.ul.IP,
		ASN:      a.cluster.BGP.ASN,
		Log:      a.log,
	}
	for _, p := range a.cluster.Pools {
		cfg.Import = append(cfg.Import, p.CIDR)
	}
	if id, ok := a.self.Labels[api.RouteReflectorLabel]; ok {
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

// bgpPlan is what the speaker should have: its peers and role.
type bgpPlan struct {
	peers     []bgp.Peer
	reflector bool
}

// planBGP derives this node's BGP peers from the cluster: with the node mesh
// every other node; without it, reflectors peer with every node (as their
// clients) and with each other, other nodes peer only with reflectors; and
// external peers meant for all nodes or for this one. Liveness plays no part.
func planBGP(self string, cl api.Cluster, snap store.Snapshot) (bgpPlan, []string) {
	var plan bgpPlan
	var errs []string
	asn := cl.BGP.ASN
	isRR := func(n api.Node) bool { _, ok := n.Labels[api.RouteReflectorLabel]; return ok }
	me, ok := snap.Nodes[self]
	plan.reflector = ok && isRR(me)
	names := make([]string, 0, len(snap.Nodes))
	for name := range snap.Nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		n := snap.Nodes[name]
		if name == self || !n.UnderlayIP.IsValid() {
			continue
		}
		switch {
		case cl.BGP.NodeMesh:
			plan.peers = append(plan.peers, bgp.Peer{Name: name, Address: n.UnderlayIP, ASN: asn, Description: "node mesh"})
		case plan.reflector:
			plan.peers = append(plan.peers, bgp.Peer{Name: name, Address: n.UnderlayIP, ASN: asn, RouteReflectorClient: !isRR(n), Description: "reflector client"})
		case isRR(n):
			plan.peers = append(plan.peers, bgp.Peer{Name: name, Address: n.UnderlayIP, ASN: asn, Description: "route reflector"})
		}
	}
	keys := make([]string, 0, len(snap.Other))
	for k := range snap.Other {
		if strings.HasPrefix(k, "bgppeers/") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		p, err := api.DecodeBGPPeer(snap.Other[k])
		if err != nil {
			errs = append(errs, k+": "+err.Error())
			continue
		}
		if p.Node != "" && p.Node != self {
			continue
		}
		plan.peers = append(plan.peers, bgp.Peer{Name: p.Name, Address: p.PeerIP, ASN: p.ASN, Port: p.Port, Description: p.Description})
	}
	return plan, errs
}

// ownBlocks lists the blocks the store says this node holds.
func ownBlocks(self string, snap store.Snapshot) []netip.Prefix {
	var out []netip.Prefix
	for p, b := range snap.Blocks {
		if b.Node == self {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr().Less(out[j].Addr()) })
	return out
}

// updateBGP hands the speaker its desired state from a new snapshot.
func (a *Agent) updateBGP(s store.Snapshot) {
	plan, errs := planBGP(a.cfg.NodeName, a.cluster, s)
	blocks := a.alloc.Blocks()
	a.bgp.SetLocal(blocks)
	a.bgp.SetAdvertised(blocks, a.ul.IP)
	if err := a.bgp.SetPeers(plan.peers); err != nil {
		errs = append(errs, err.Error())
	}
	msg := strings.Join(errs, "; ")
	if prev, _ := a.bgpErrs.Load().(string); prev != msg {
		a.bgpErrs.Store(msg)
		if msg != "" {
			a.log.Warn("bgp peers not all usable", "err", msg)
		}
	}
}
