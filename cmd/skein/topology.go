package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/report"
)

func newTopologyCmd(g *globalFlags) *cobra.Command {
	af := &agentFlags{}
	cmd := &cobra.Command{
		Use:   "topology",
		Short: "Print the cluster as a graph: nodes and the tunnels or BGP sessions between them",
		Long: `Print every node and its link to every other node (the same graph /ui draws).

Each end grades its own side of a link: up when every VXLAN entry for the peer is in its kernel or
the BGP session is established, partial, pending, down or none. A side is "observed" when that end's
debug endpoint answered just now, else "reported" as its status record last said; the link takes the
worse known side. A node whose agent is stopped is "agent down, data path kept": its kernel and its
peers keep forwarding, so its links are graded by what is known, never down for that reason alone
(unknown when nothing is). See docs/operations.md "Link states".

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
			rep := report.Build(in)
			graph := report.NewGraph(rep, report.FullMesh(in.Inv.Cluster))
			if err := g.render(cmd.OutOrStdout(), graph, func(tw *tabwriter.Writer, wide bool) { renderGraph(tw, graph, wide) }); err != nil {
				return err
			}
			return unhealthyExit(rep)
		},
	}
	af.register(cmd)
	return cmd
}

func renderGraph(tw *tabwriter.Writer, g report.Graph, wide bool) {
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
		state := api.AgentDownDataPathKept
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
		var mine []api.PairLink
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
			fmt.Fprintf(tw, "  %s %s\t%s\t(%s)", branch, other, l.State, l.Basis)
			if l.Kind != "" {
				fmt.Fprintf(tw, " %s", l.Kind)
			}
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
