package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// nodeRow is one node as `skein node list` shows it.
type nodeRow struct {
	api.Node
	Alive  bool     `json:"alive"`
	Blocks []string `json:"blocks"`
	// LastSeen is when the agent last published its status (only asked
	// for with --stale); LastSeenNote says why it is unknown.
	LastSeen     *time.Time `json:"lastSeen,omitempty"`
	LastSeenNote string     `json:"lastSeenNote,omitempty"`
}

// identityFingerprint is the short form of a node identity, as skeind
// prints it in its errors.
func identityFingerprint(id string) string {
	if id == "" {
		return "none (registered by an earlier version)"
	}
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}

func newNodeCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "node",
		Short:   "List, show and delete nodes",
		Example: "  skein node list\n  skein node show h1\n  skein node delete h4\n  skein node rotate-key h2",
	}
	var stale time.Duration
	list := &cobra.Command{
		Use:   "list",
		Short: "List nodes with their underlay address, blocks and liveness",
		Long: `List nodes with their underlay address, blocks and liveness (ALIVE: the agent's heartbeat lease
is current).

--stale DURATION lists only stale nodes: no heartbeat, and the agent's last status record is older
than DURATION. The last status time is read from etcd's history (status records live on the
heartbeat lease and vanish ~30 s after an agent stops); when etcd has compacted that history the
time is unknown and the node is listed. Stale nodes still route: their containers stay reachable
until ` + "`skein node delete`" + ` removes them.`,
		Example: `  skein node list -o wide
  skein node list --stale 24h          # candidates for skein node delete
  skein node list --stale 1h -o json | jq -r '.[].name'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rows, err := nodeRows(cmd, g, "", stale)
			if err != nil {
				return err
			}
			now := time.Now()
			return g.render(cmd.OutOrStdout(), rows, func(tw *tabwriter.Writer, wide bool) {
				fmt.Fprint(tw, "NAME\tUNDERLAY\tALIVE\tBLOCKS")
				if stale > 0 {
					fmt.Fprint(tw, "\tLAST SEEN")
				}
				if wide {
					fmt.Fprint(tw, "\tVTEP IP\tVTEP MAC\tMTU\tVERSION")
				}
				fmt.Fprintln(tw)
				for _, r := range rows {
					fmt.Fprintf(tw, "%s\t%s\t%v\t%s", r.Name, underlayIPs(r.Node), r.Alive, strings.Join(r.Blocks, ","))
					if stale > 0 {
						seen := r.LastSeenNote
						if r.LastSeen != nil {
							seen = ago(*r.LastSeen, now) + " ago"
						}
						fmt.Fprintf(tw, "\t%s", seen)
					}
					if wide {
						fmt.Fprintf(tw, "\t%s\t%s\t%d\t%s", vtepIPs(r.Node), r.VTEPMAC, r.MTU, r.Version)
					}
					fmt.Fprintln(tw)
				}
			})
		},
	}
	list.Flags().DurationVar(&stale, "stale", 0, "only nodes without heartbeat whose last status is older than this (0: off)")
	show := &cobra.Command{
		Use:               "show NAME",
		Short:             "Show one node",
		Example:           "  skein node show h1\n  skein node show h1 -o yaml",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeNodeNames(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			rows, err := nodeRows(cmd, g, args[0], 0)
			if err != nil {
				return err
			}
			if len(rows) == 0 {
				return fmt.Errorf("node %q not found", args[0])
			}
			r := rows[0]
			return g.render(cmd.OutOrStdout(), r, func(tw *tabwriter.Writer, _ bool) {
				fmt.Fprintf(tw, "NAME\t%s\nUNDERLAY\t%s\nALIVE\t%v\nBLOCKS\t%s\nVTEP\t%s %s\nMTU\t%d\nDEBUG\t%s\nVERSION\t%s\nIDENTITY\t%s\n",
					r.Name, underlayIPs(r.Node), r.Alive, strings.Join(r.Blocks, ","), vtepIPs(r.Node), r.VTEPMAC, r.MTU, r.DebugAddr, r.Version, identityFingerprint(r.Identity))
			})
		},
	}
	var force bool
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Decommission a node: free its blocks and endpoints; other hosts drop its routes",
		Long: `Decommission a node: delete its node record, its blocks, its endpoints and its heartbeat and status
keys in one etcd transaction. Every other agent removes its routes, neighbour and FDB entry (VXLAN) or
BGP paths to the node on the watch event, well within a second.

Refuses while the node's agent heartbeats (stop skeind there first) unless --force; a forced delete of
a live node is undone at once, as its agent registers again.`,
		Example: `  skein node delete h4
  skein node delete h4 --force   # even though its agent still heartbeats`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeNodeNames(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				inv, err := cl.Inventory(ctx)
				if err != nil {
					return err
				}
				if _, ok := inv.Nodes[name]; !ok {
					return fmt.Errorf("node %q not found (see skein node list)", name)
				}
				if inv.Alive[name] && !force {
					return fmt.Errorf("node %q is alive (its agent heartbeats); stop skeind there first, or use --force", name)
				}
				blocks, eps := 0, 0
				for _, b := range inv.Blocks {
					if b.Node == name {
						blocks++
					}
				}
				for _, ep := range inv.Endpoints {
					if ep.Node == name {
						eps++
					}
				}
				if err := cl.DeleteNode(ctx, name); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "node %s deleted: %d block(s) and %d endpoint(s) freed\n", name, blocks, eps)
				return nil
			})
		},
	}
	del.Flags().BoolVar(&force, "force", false, "delete even if the node's agent is alive")
	cmd.AddCommand(list, show, del, newRotateKeyCmd(g))
	return cmd
}

// completeNodeNames completes node names from etcd.
func completeNodeNames(g *globalFlags) cobra.CompletionFunc {
	return g.completeFromStore(func(ctx context.Context, cl *store.Client) ([]string, error) {
		nodes, err := cl.ListNodes(ctx)
		names := make([]string, len(nodes))
		for i, n := range nodes {
			names[i] = n.Name
		}
		return names, err
	})
}

// nodeRows reads nodes, liveness and blocks; only is a name filter ("" =
// all). With stale > 0 only stale nodes are returned, with their last
// status time.
func nodeRows(cmd *cobra.Command, g *globalFlags, only string, stale time.Duration) ([]nodeRow, error) {
	rows := []nodeRow{}
	err := g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
		nodes, err := cl.ListNodes(ctx)
		if err != nil {
			return err
		}
		alive, err := cl.AliveNodes(ctx)
		if err != nil {
			return err
		}
		blocks, err := cl.ListBlocks(ctx)
		if err != nil {
			return err
		}
		byNode := map[string][]string{}
		for _, b := range blocks {
			byNode[b.Node] = append(byNode[b.Node], b.CIDR.String())
		}
		now := time.Now()
		for _, n := range nodes {
			if only != "" && n.Name != only {
				continue
			}
			bl := byNode[n.Name]
			sort.Strings(bl)
			r := nodeRow{Node: n, Alive: alive[n.Name], Blocks: bl}
			if stale > 0 {
				if r.Alive {
					continue
				}
				seen, err := cl.LastSeen(ctx, n.Name)
				switch {
				case err == nil:
					if now.Sub(seen) < stale {
						continue
					}
					r.LastSeen = &seen
				case errors.Is(err, store.ErrHistoryCompacted):
					r.LastSeenNote = "unknown (etcd history compacted)"
				case errors.Is(err, store.ErrNotFound):
					r.LastSeenNote = "never (no status since registration)"
				default:
					return err
				}
			}
			rows = append(rows, r)
		}
		return nil
	})
	return rows, err
}

// underlayIPs renders a node's underlay addresses: its underlayIP, and its
// IPv6 one when that is another ("10.0.0.1,fd00::1").
func underlayIPs(n api.Node) string {
	if n.UnderlayIP6.IsValid() && n.UnderlayIP6 != n.UnderlayIP {
		return n.UnderlayIP.String() + "," + n.UnderlayIP6.String()
	}
	return n.UnderlayIP.String()
}

// vtepIPs renders a node's VTEP addresses: IPv4, and IPv6 in a dual-stack
// cluster ("10.244.0.0,fd00::"); IPv6 alone in an IPv6-only one; "-"
// before the node has any.
func vtepIPs(n api.Node) string {
	var out []string
	for _, a := range []netip.Addr{n.VTEPIP, n.VTEPIP6} {
		if a.IsValid() {
			out = append(out, a.String())
		}
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ",")
}
