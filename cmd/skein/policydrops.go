package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/probe"
	"github.com/skeinnet/skein/store"
)

// nodeDrop is a drop with the node that logged it.
type nodeDrop struct {
	Node string `json:"node"`
	api.Drop
}

type dropsFlags struct {
	follow    bool
	namespace string
	pod       string
	timeout   time.Duration
	every     time.Duration
}

// keep says whether d concerns the endpoints the flags name.
func (f *dropsFlags) keep(d api.Drop) bool {
	match := func(r *api.EndpointRef) bool {
		return r != nil && (f.namespace == "" || r.Namespace == f.namespace) && (f.pod == "" || r.Name == f.pod)
	}
	if f.namespace == "" && f.pod == "" {
		return true
	}
	return match(d.From) || match(d.To)
}

func newPolicyDropsCmd(g *globalFlags) *cobra.Command {
	f := &dropsFlags{}
	cmd := &cobra.Command{
		Use:   "drops [--follow] [--namespace NS] [--pod NAME]",
		Short: "Show the packets policy and anti-spoofing rules dropped, from every node's /debug/drops",
		Long: `Show the packets that policy rules and the anti-spoofing rule dropped recently, as each node's agent
logged them (nftables logs drops to an NFLOG group, at most 10 a second per policed endpoint; the agent keeps the
last 1024). RULE is the rule's name as 'skein policy trace' prints it. Nodes whose agent cannot be
asked are listed on stderr. --follow keeps asking and prints new drops as they come.`,
		Example: `  skein policy drops
  skein policy drops --namespace x --pod a
  skein policy drops --follow -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var inv store.Inventory
			err := g.withStore(cmd, func(ctx context.Context, cl *store.Client) (err error) {
				inv, err = cl.Inventory(ctx)
				return err
			})
			if err != nil {
				return err
			}
			return runPolicyDrops(cmd.Context(), cmd, g, f, inv)
		},
	}
	cmd.Flags().BoolVarP(&f.follow, "follow", "f", false, "keep printing new drops until interrupted")
	cmd.Flags().StringVarP(&f.namespace, "namespace", "n", "", "only drops from or to endpoints of this namespace")
	cmd.Flags().StringVar(&f.pod, "pod", "", "only drops from or to endpoints of this name")
	cmd.Flags().DurationVar(&f.timeout, "agent-timeout", 2*time.Second, "deadline for each agent's debug endpoint")
	cmd.Flags().DurationVar(&f.every, "interval", time.Second, "how often --follow asks the agents")
	return cmd
}

type dropsAnswer struct {
	drops api.Drops
	err   string
}

func runPolicyDrops(ctx context.Context, cmd *cobra.Command, g *globalFlags, f *dropsFlags, inv store.Inventory) error {
	since := map[string]uint64{}
	warned := map[string]bool{}
	out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
	for first := true; ; first = false {
		answers := probe.Each(ctx, inv, f.timeout, func(msg string) dropsAnswer { return dropsAnswer{err: msg} },
			func(ctx context.Context, hc *http.Client, name string, _ api.Node, addr string) dropsAnswer {
				var d api.Drops
				if err := probe.Get(ctx, hc, addr, "/debug/drops?since="+strconv.FormatUint(since[name], 10), &d); err != nil {
					return dropsAnswer{err: err.Error()}
				}
				if d.Node != name {
					// A loopback address reaches whichever agent runs here.
					return dropsAnswer{err: fmt.Sprintf("%s answered as node %s (its debug address is not reachable from here)", addr, d.Node)}
				}
				return dropsAnswer{drops: d}
			})
		var rows []nodeDrop
		for name, a := range answers {
			switch {
			case a.err != "":
				if !warned[name] {
					fmt.Fprintf(errw, "node %s not asked: %s\n", name, a.err)
					warned[name] = true
				}
				continue
			case a.drops.Reader != "" && !warned[name]:
				fmt.Fprintf(errw, "node %s: drop log not running: %s\n", name, a.drops.Reader)
				warned[name] = true
			}
			// An agent that restarted numbers from 1 again.
			if a.drops.Total < since[name] {
				since[name] = 0
			}
			for _, d := range a.drops.Drops {
				if d.Seq > since[name] && f.keep(d) {
					rows = append(rows, nodeDrop{Node: name, Drop: d})
				}
			}
			since[name] = a.drops.Total
		}
		slices.SortFunc(rows, func(a, b nodeDrop) int { return a.Time.Compare(b.Time) })
		if err := printDrops(out, g, rows, first, f.follow); err != nil {
			return err
		}
		if !f.follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(f.every):
		}
	}
}

// printDrops prints rows: a JSON/YAML list, or with --follow in JSON one
// object a line, or a table whose header only the first batch prints.
func printDrops(w io.Writer, g *globalFlags, rows []nodeDrop, first, follow bool) error {
	if follow && g.Output == "json" {
		enc := json.NewEncoder(w)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	if rows == nil {
		rows = []nodeDrop{}
	}
	if g.Output == "json" || g.Output == "yaml" {
		return g.render(w, rows, nil)
	}
	if !first && len(rows) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if first {
		fmt.Fprintln(tw, "TIME\tNODE\tFROM\tTO\tPROTO\tPORT\tRULE")
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Time.Format(time.TimeOnly), r.Node,
			endpointText(r.From, r.Src.String()), endpointText(r.To, r.Dst.String()), r.Proto, portText(r.DstPort), r.Rule)
	}
	return tw.Flush()
}

func endpointText(r *api.EndpointRef, addr string) string {
	if r == nil {
		return addr
	}
	return r.Namespace + "/" + r.Name + " (" + addr + ")"
}

func portText(p uint16) string {
	if p == 0 {
		return "-"
	}
	return strconv.Itoa(int(p))
}
