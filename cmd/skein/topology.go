package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/agent"
	"github.com/skeinnet/skein/api"
)

// topologyGraph is what `skein topology` prints: the nodes of `skein status`
// and the links between them.
type topologyGraph struct {
	clusterReport
	Links []graphLink `json:"links"`
}

// graphLink is the tunnel or BGP session between two nodes.
type graphLink struct {
	From  string `json:"from"`
	To    string `json:"to"`
	State string `json:"state"`
	// Observed is true when an agent at one end reported the link itself;
	// false when the state is inferred from both ends' status records.
	Observed bool   `json:"observed"`
	Detail   string `json:"detail,omitempty"`
}

func newTopologyCmd(g *globalFlags) *cobra.Command {
	af := &agentFlags{}
	cmd := &cobra.Command{
		Use:   "topology",
		Short: "Print the cluster as a graph: nodes and the tunnels or BGP sessions between them",
		Long: `Print every node and its link to every other node (the same graph /ui draws).

A link's state comes from the agent at one end when its debug endpoint answers ("seen by"): up when
every VXLAN entry for the peer is in the kernel or the BGP session is established, partial, pending,
down or none. Otherwise it is inferred from both ends' status records ("reported"): up when both are
alive, ready and error-free, down when either has no heartbeat.

Exit status as for skein status: 2 when anything is unhealthy.`,
		Example: `  skein topology
  skein topology -o wide        # with what each link state is based on
  skein topology -o json | jq '.links[] | select(.state != "up")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, err := readStatusInput(cmd, g, af)
			if err != nil {
				return err
			}
			rep := buildReport(in)
			nodeMesh := true
			if in.inv.Cluster != nil && in.inv.Cluster.Backend == api.BackendBGP && in.inv.Cluster.BGP != nil {
				nodeMesh = in.inv.Cluster.BGP.NodeMesh
			}
			graph := buildGraph(rep, nodeMesh)
			if err := g.render(cmd.OutOrStdout(), graph, func(tw *tabwriter.Writer, wide bool) { renderGraph(tw, graph, wide) }); err != nil {
				return err
			}
			return unhealthyExit(rep)
		},
	}
	af.register(cmd)
	return cmd
}

// buildGraph links every pair of nodes. Without a full mesh (BGP with route
// reflectors) only links an agent reported are drawn.
func buildGraph(rep clusterReport, fullMesh bool) topologyGraph {
	g := topologyGraph{clusterReport: rep, Links: []graphLink{}}
	for i, a := range rep.Nodes {
		for _, b := range rep.Nodes[i+1:] {
			l := graphLink{From: a.Name, To: b.Name}
			if la, ok := a.Links[b.Name]; ok {
				l.State, l.Observed, l.Detail = la.State, true, "seen by "+a.Name+": "+orDash(la.Detail)
			} else if lb, ok := b.Links[a.Name]; ok {
				l.State, l.Observed, l.Detail = lb.State, true, "seen by "+b.Name+": "+orDash(lb.Detail)
			} else if state, ok := sessionState(a, b); ok {
				l.State, l.Detail = state, "reported by the nodes' BGP sessions"
			} else if !fullMesh {
				continue
			} else {
				l.State, l.Detail = inferLink(a, b)
			}
			g.Links = append(g.Links, l)
		}
	}
	return g
}

// sessionState grades a BGP session from either end's status record.
func sessionState(a, b nodeReport) (string, bool) {
	state, ok := a.Sessions[b.Name]
	if !ok {
		state, ok = b.Sessions[a.Name]
	}
	if !ok {
		return "", false
	}
	if state == "Established" {
		return agent.LinkUp, true
	}
	return agent.LinkDown, true
}

// inferLink grades the link between two nodes from their status records.
func inferLink(a, b nodeReport) (state, detail string) {
	switch {
	case !a.Alive || !b.Alive:
		var dead []string
		for _, n := range []nodeReport{a, b} {
			if !n.Alive {
				dead = append(dead, n.Name)
			}
		}
		return agent.LinkDown, "reported: no heartbeat from " + strings.Join(dead, " and ")
	case a.Ready == nil || b.Ready == nil:
		return agent.LinkPending, "reported: no status record yet"
	case !*a.Ready || !*b.Ready || a.LastError != "" || b.LastError != "":
		return agent.LinkPartial, "reported: an end is not ready or has an error"
	}
	return agent.LinkUp, "reported: both ends ready"
}

func renderGraph(tw *tabwriter.Writer, g topologyGraph, wide bool) {
	verdict := "healthy"
	if !g.Healthy {
		verdict = "UNHEALTHY"
	}
	fmt.Fprintf(tw, "cluster: backend %s, %d nodes, etcd rev %d: %s\n", orDash(string(g.Backend)), len(g.Nodes), g.Rev, verdict)
	for _, p := range g.Problems {
		fmt.Fprintf(tw, "  ! %s\n", p)
	}
	for _, n := range g.Nodes {
		fmt.Fprintln(tw)
		state := "dead"
		if n.Alive {
			state = "alive"
			if n.Ready != nil && *n.Ready {
				state += ", ready"
			} else {
				state += ", NOT ready"
			}
		}
		under := "-"
		if n.UnderlayIP.IsValid() {
			under = n.UnderlayIP.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\tblocks %s\t%d endpoints\tpolicy sync %s\n", n.Name, under, state,
			orDash(strings.Join(n.Blocks, ",")), n.Endpoints, ago(n.PolicySync, g.Checked))
		var mine []graphLink
		for _, l := range g.Links {
			if l.From == n.Name || l.To == n.Name {
				mine = append(mine, l)
			}
		}
		for i, l := range mine {
			branch := "├──"
			if i == len(mine)-1 {
				branch = "└──"
			}
			other := l.To
			if other == n.Name {
				other = l.From
			}
			how := "reported"
			if l.Observed {
				how = "observed"
			}
			fmt.Fprintf(tw, "  %s %s\t%s\t(%s)", branch, other, l.State, how)
			if wide {
				fmt.Fprintf(tw, "\t%s", l.Detail)
			}
			fmt.Fprintln(tw)
		}
		for _, p := range n.Problems {
			fmt.Fprintf(tw, "  ! %s\n", p)
		}
	}
}
