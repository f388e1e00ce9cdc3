package report

import (
	"github.com/skeinnet/skein/api"
)

// Graph is what `skein topology` prints: the nodes of `skein status`
// and the links between them.
type Graph struct {
	Cluster
	Links []api.PairLink `json:"links"`
}

// NewGraph links every pair of nodes. Without a full mesh (BGP with route
// reflectors) only links some end has a session for are drawn.
func NewGraph(rep Cluster, fullMesh bool) Graph {
	g := Graph{Cluster: rep, Links: []api.PairLink{}}
	for i, a := range rep.Nodes {
		for _, b := range rep.Nodes[i+1:] {
			l := api.GradeLink(linkSide(a, b), linkSide(b, a))
			if !fullMesh && (l.State == api.LinkNone || l.State == api.LinkUnknown) {
				continue
			}
			g.Links = append(g.Links, l)
		}
	}
	return g
}

// linkSide is what the report knows of n's side of its link to other: its
// agent's own view when it answered, else its status record.
func linkSide(n, other Node) api.LinkSide {
	s := api.LinkSide{Node: n.Name, AgentUp: n.Alive}
	if l, ok := n.Links[other.Name]; ok {
		s.Observed = &l
	}
	s.Reported = n.reported[other.Name]
	return s
}

// FullMesh reports whether every node peers with every other: always with
// VXLAN, and with BGP unless the cluster uses route reflectors instead of
// the node mesh.
func FullMesh(c *api.Cluster) bool {
	if c != nil && c.Backend == api.BackendBGP && c.BGP != nil {
		return c.BGP.NodeMesh
	}
	return true
}
