package main

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/api"
)

// nodeRow is one node as `skein node list` shows it.
type nodeRow struct {
	api.Node
	Alive  bool     `json:"alive"`
	Blocks []string `json:"blocks"`
}

func newNodeCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "List, show and delete nodes"}
	list := &cobra.Command{
		Use:     "list",
		Short:   "List nodes with their underlay address, blocks and liveness",
		Example: "  skein node list -o wide",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rows, err := nodeRows(cmd, g, "")
			if err != nil {
				return err
			}
			return g.render(cmd.OutOrStdout(), rows, func(tw *tabwriter.Writer, wide bool) {
				fmt.Fprint(tw, "NAME\tUNDERLAY\tALIVE\tBLOCKS")
				if wide {
					fmt.Fprint(tw, "\tVTEP IP\tVTEP MAC\tMTU\tVERSION")
				}
				fmt.Fprintln(tw)
				for _, r := range rows {
					fmt.Fprintf(tw, "%s\t%s\t%v\t%s", r.Name, r.UnderlayIP, r.Alive, strings.Join(r.Blocks, ","))
					if wide {
						fmt.Fprintf(tw, "\t%s\t%s\t%d\t%s", r.VTEPIP, r.VTEPMAC, r.MTU, r.Version)
					}
					fmt.Fprintln(tw)
				}
			})
		},
	}
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show one node",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rows, err := nodeRows(cmd, g, args[0])
			if err != nil {
				return err
			}
			if len(rows) == 0 {
				return fmt.Errorf("node %q not found", args[0])
			}
			r := rows[0]
			return g.render(cmd.OutOrStdout(), r, func(tw *tabwriter.Writer, _ bool) {
				fmt.Fprintf(tw, "NAME\t%s\nUNDERLAY\t%s\nALIVE\t%v\nBLOCKS\t%s\nVTEP\t%s %s\nMTU\t%d\nDEBUG\t%s\nVERSION\t%s\n",
					r.Name, r.UnderlayIP, r.Alive, strings.Join(r.Blocks, ","), r.VTEPIP, r.VTEPMAC, r.MTU, r.DebugAddr, r.Version)
			})
		},
	}
	var force bool
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Decommission a node: free its blocks and endpoints; other hosts drop its routes",
		Example: `  skein node delete h4
  skein node delete h4 --force   # even though its agent still heartbeats`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			if _, err := cl.GetNode(ctx, args[0]); err != nil {
				return fmt.Errorf("node %q: %w", args[0], err)
			}
			alive, err := cl.AliveNodes(ctx)
			if err != nil {
				return err
			}
			if alive[args[0]] && !force {
				return fmt.Errorf("node %q is alive (its agent heartbeats); stop skeind there first, or use --force", args[0])
			}
			if err := cl.DeleteNode(ctx, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %s deleted\n", args[0])
			return nil
		},
	}
	del.Flags().BoolVar(&force, "force", false, "delete even if the node's agent is alive")
	cmd.AddCommand(list, show, del)
	return cmd
}

// nodeRows reads nodes, liveness and blocks; only is a name filter ("" = all).
func nodeRows(cmd *cobra.Command, g *globalFlags, only string) ([]nodeRow, error) {
	cl, err := g.client(cmd.Context())
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := g.ctx(cmd)
	defer cancel()
	nodes, err := cl.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	alive, err := cl.AliveNodes(ctx)
	if err != nil {
		return nil, err
	}
	blocks, err := cl.ListBlocks(ctx)
	if err != nil {
		return nil, err
	}
	byNode := map[string][]string{}
	for _, b := range blocks {
		byNode[b.Node] = append(byNode[b.Node], b.CIDR.String())
	}
	rows := []nodeRow{}
	for _, n := range nodes {
		if only != "" && n.Name != only {
			continue
		}
		bl := byNode[n.Name]
		sort.Strings(bl)
		rows = append(rows, nodeRow{Node: n, Alive: alive[n.Name], Blocks: bl})
	}
	return rows, nil
}
