package report

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/probe"
	"github.com/skeinnet/skein/store"
)

// BGP is what `skein bgp status` prints (and -o json|yaml gives).
type BGP struct {
	ASN      uint32        `json:"asn"`
	NodeMesh bool          `json:"nodeMesh"`
	Peers    []api.BGPPeer `json:"externalPeers"`
	Nodes    []BGPNode     `json:"nodes"`
	Healthy  bool          `json:"healthy"`
	Problems []string      `json:"problems,omitempty"`
}

// ProblemCount counts the cluster-wide problems and every node's.
func (r BGP) ProblemCount() int {
	n := len(r.Problems)
	for _, nr := range r.Nodes {
		n += len(nr.Problems)
	}
	return n
}

// BGPNode is one node's sessions.
type BGPNode struct {
	Name       string     `json:"name"`
	UnderlayIP netip.Addr `json:"underlayIP,omitzero"`
	// UnderlayIP6 is the next hop of the node's IPv6 blocks.
	UnderlayIP6 netip.Addr `json:"underlayIP6,omitzero"`
	Alive       bool       `json:"alive"`
	// Reflector is the node's route-reflector cluster id label, when set.
	Reflector *string `json:"routeReflector,omitempty"`
	// Source is where Neighbors come from: "agent" (its debug endpoint),
	// "etcd" (its status record) or "none".
	Source    string            `json:"source"`
	Neighbors []api.BGPNeighbor `json:"neighbors"`
	// Agent says whether the debug endpoint answered: "ok", "not asked",
	// "no address", or why not.
	Agent    string   `json:"agent"`
	Problems []string `json:"problems,omitempty"`
}

// BGPProbe is what asking one agent's /debug/bgp gave.
type BGPProbe struct {
	State *api.BGPStatus
	Err   string
}

// ProbeBGP asks every node's debug endpoint for its BGP state, each within
// timeout and all at once (up to probe.MaxParallel); failures are recorded, never
// fatal.
func ProbeBGP(ctx context.Context, inv store.Inventory, timeout time.Duration) map[string]BGPProbe {
	return probe.Each(ctx, inv, timeout, func(msg string) BGPProbe { return BGPProbe{Err: msg} },
		func(ctx context.Context, hc *http.Client, _ string, n api.Node, addr string) BGPProbe {
			var ds api.BGPStatus
			switch err := probe.Get(ctx, hc, addr, "/debug/bgp", &ds); {
			case err != nil:
				return BGPProbe{Err: err.Error()}
			case n.UnderlayIP.IsValid() && ds.RouterID != n.UnderlayIP:
				// A loopback address reaches whichever agent runs here.
				return BGPProbe{Err: fmt.Sprintf("%s answered with router id %s, not %s (its debug address is not reachable from here)", addr, ds.RouterID, n.UnderlayIP)}
			}
			return BGPProbe{State: &ds}
		})
}

// neighborsOf converts an agent's live BGP state into the published form.
func neighborsOf(ds *api.BGPStatus) []api.BGPNeighbor {
	out := make([]api.BGPNeighbor, 0, len(ds.Neighbors))
	for _, n := range ds.Neighbors {
		out = append(out, n.Neighbor())
	}
	return out
}

// BuildBGP grades every node's sessions; it is pure so tests can
// feed it. A node is healthy when it heartbeats and every session it
// reports is Established; without an agent's answer its status record
// decides.
func BuildBGP(inv store.Inventory, probes map[string]BGPProbe) BGP {
	rep := BGP{Nodes: []BGPNode{}, Peers: []api.BGPPeer{}}
	if c := inv.Cluster; c != nil && c.BGP != nil {
		rep.ASN, rep.NodeMesh = c.BGP.ASN, c.BGP.NodeMesh
	}
	for _, k := range slices.Sorted(maps.Keys(inv.Other)) {
		if !strings.HasPrefix(k, api.BGPPeerKeyKind+"/") {
			continue
		}
		p, err := api.DecodeBGPPeer(inv.Other[k])
		if err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("undecodable %s: %v", k, err))
			continue
		}
		rep.Peers = append(rep.Peers, p)
	}
	for _, e := range inv.Errors {
		rep.Problems = append(rep.Problems, "undecodable record in etcd: "+e)
	}
	for _, name := range slices.Sorted(maps.Keys(inv.Nodes)) {
		n := inv.Nodes[name]
		nr := BGPNode{Name: n.Name, UnderlayIP: n.UnderlayIP, UnderlayIP6: n.UnderlayIP6, Alive: inv.Alive[n.Name], Source: "none", Agent: "not asked", Neighbors: []api.BGPNeighbor{}}
		if v, ok := n.Labels[api.RouteReflectorLabel]; ok {
			nr.Reflector = &v
		}
		problem := func(format string, args ...any) { nr.Problems = append(nr.Problems, fmt.Sprintf(format, args...)) }
		st, hasStatus, err := probe.Status(inv, n.Name)
		if err != nil {
			problem("%v", err)
		}
		if hasStatus {
			nr.Source, nr.Neighbors = "etcd", append(nr.Neighbors, st.BGP...)
		}
		if p, ok := probes[n.Name]; ok {
			nr.Agent = "ok"
			if p.Err != "" {
				nr.Agent = p.Err
			} else if p.State != nil {
				nr.Source, nr.Neighbors = "agent", neighborsOf(p.State)
			}
		}
		sort.Slice(nr.Neighbors, func(i, j int) bool { return nr.Neighbors[i].Name < nr.Neighbors[j].Name })
		if inv.Cluster != nil && api.DualStack(inv.Cluster.Pools) && !n.UnderlayIP6.IsValid() {
			problem("no IPv6 underlay address (UnderlayIP6): its IPv6 blocks are not advertised and it installs no IPv6 route")
		}
		if !nr.Alive {
			problem("no heartbeat: agent down or cut off from etcd (peers keep its routes for the graceful-restart time, then until `skein node delete`)")
		}
		switch {
		case nr.Source == "none" && nr.Alive:
			problem("no BGP state published yet")
		case nr.Source != "none" && len(nr.Neighbors) == 0 && len(inv.Nodes) > 1:
			problem("no BGP sessions configured")
		}
		var down []string
		for _, nb := range nr.Neighbors {
			switch {
			case nb.State == api.BGPNoSession && nb.LastError != "":
				// Not a session that is coming: say why there is none.
				down = append(down, nb.Name+" "+nb.State+" ("+nb.LastError+")")
			case nb.State != api.BGPEstablished:
				down = append(down, nb.Name+" "+nb.State)
			}
		}
		if len(down) > 0 {
			problem("sessions not established: %s", strings.Join(down, ", "))
		}
		rep.Nodes = append(rep.Nodes, nr)
	}
	rep.Healthy = rep.ProblemCount() == 0
	return rep
}
