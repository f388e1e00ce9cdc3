package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/ipamaudit"
	"github.com/skeinnet/skein/store"
)

func newIPAMCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "ipam",
		Short:   "Inspect address pools and blocks; audit and repair address leaks",
		Example: "  skein ipam show\n  skein ipam check\n  skein ipam release --dry-run",
	}
	cmd.AddCommand(newIPAMShowCmd(g), newIPAMCheckCmd(g), newIPAMReleaseCmd(g))
	return cmd
}

func newIPAMShowCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Show each pool, its blocks, which node holds them and which are empty since when",
		Long: `Show each pool, its blocks and which node holds them. EMPTY says, from the status each agent
publishes, since when a block has had no container and no address cooling down, and when its node
returns it to the pool (skeind --block-release-grace, 10m by default; never the node's home block).`,
		Example: "  skein ipam show\n  skein ipam show -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				c, err := cl.GetCluster(ctx)
				if err != nil {
					return fmt.Errorf("cluster config: %w", err)
				}
				blocks, err := cl.ListBlocks(ctx)
				if err != nil {
					return err
				}
				eps, err := cl.ListEndpoints(ctx)
				if err != nil {
					return err
				}
				raw, err := cl.StatusRecords(ctx)
				if err != nil {
					return err
				}
				statuses := map[string]api.NodeStatus{}
				for node, b := range raw {
					var st api.NodeStatus
					if json.Unmarshal(b, &st) == nil { // unreadable: shown as no status
						statuses[node] = st
					}
				}
				usage := ipamaudit.Usage(c.Pools, blocks, eps, statuses)
				now := time.Now()
				return g.render(cmd.OutOrStdout(), usage, func(tw *tabwriter.Writer, _ bool) { renderIPAMShow(tw, usage, now) })
			})
		},
	}
}

// renderIPAMShow prints the pools and their blocks as of now.
func renderIPAMShow(tw *tabwriter.Writer, usage []ipamaudit.PoolUsage, now time.Time) {
	for _, u := range usage {
		total := fmt.Sprint(u.BlocksTotal)
		if u.BlocksTotal == 0 && u.BlockSize > u.CIDR.Bits() {
			total = fmt.Sprintf("2^%d", u.BlockSize-u.CIDR.Bits()) // an IPv6 pool: too many to count
		}
		fmt.Fprintf(tw, "POOL %s\tblocks /%d\t%d/%s blocks claimed\t%d endpoint addresses\n", u.CIDR, u.BlockSize, u.BlocksUsed, total, u.EndpointIPs)
		_ = tw.Flush() // the pool line has columns of its own; render's Flush reports a write error
		fmt.Fprintln(tw, "  BLOCK\tNODE\tENDPOINTS\tEMPTY")
		for _, b := range u.Blocks {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\n", b.CIDR, b.Node, b.Endpoints, emptyText(b, now))
		}
		_ = tw.Flush() // the same for the next pool
	}
}

// emptyText says whether a block is empty, since when and what happens to it.
func emptyText(b ipamaudit.BlockUsage, now time.Time) string {
	switch {
	case b.NoStatus:
		return "unknown (no status from " + b.Node + ")"
	case b.Empty == nil:
		return "-"
	}
	e := b.Empty
	since := fmt.Sprintf("since %s (%s ago)", e.Since.UTC().Format(time.RFC3339), ago(e.Since, now))
	switch {
	case e.Home:
		return since + ", home block: kept"
	case e.ReleaseAt.IsZero():
		return since + ", kept: release off"
	case e.ReleaseAt.After(now):
		return since + ", back to the pool in " + ago(now, e.ReleaseAt)
	}
	return since + ", back to the pool now"
}

// ipamFlags are the flags of check and release.
type ipamFlags struct {
	agentFlags
	grace time.Duration
	// etcdOnly checks etcd alone and says so: no agent is asked, and
	// unchecked agents do not fail the check.
	etcdOnly bool
}

func (f *ipamFlags) register(cmd *cobra.Command) {
	f.agentFlags.register(cmd)
	cmd.Flags().DurationVar(&f.grace, "grace", 5*time.Minute, "an allocation without endpoint counts as leaked only when older than this (an ADD in flight has none yet)")
	cmd.Flags().BoolVar(&f.etcdOnly, "etcd-only", false, "check what etcd holds only; do not ask the agents (leaked-address and endpoint-without-allocation are not checked)")
}

// exitUnchecked is `skein ipam check`'s status when nothing was found but
// some agents could not be asked: "no problem" would claim what nobody checked.
const exitUnchecked = 3

func newIPAMCheckCmd(g *globalFlags) *cobra.Command {
	f := &ipamFlags{}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Find leaked addresses, endpoints without allocation, orphan blocks and double claims",
		Long: `Audit address management across the cluster, read from etcd at one revision and, for what only an
agent knows (its allocations, kept in its --state-dir), from each agent's /debug/ipam:

  orphan-block                a block held by a node that no longer exists
  stale-endpoint              an endpoint record of a node that no longer exists
  endpoint-outside-blocks     an endpoint address in none of its node's blocks
  endpoint-without-allocation an endpoint whose agent holds no such address      (agent needed)
  leaked-address              an address held for a container with no endpoint (agent needed)
  double-claim                one address in two endpoint records
  allocation-outside-blocks   an agent allocated from a block that is not its own (agent needed)
  block-outside-pools         a block in none of the cluster's pools

Nodes whose agent cannot be reached are listed as unchecked, with how to check them: run the check
on that host (the debug endpoint listens on loopback by default). Exit status 2 when anything is found,
3 when nothing is found but some agents could not be asked (use --etcd-only to check etcd alone).`,
		Example: `  skein ipam check
  skein ipam check -o json | jq '.findings[] | select(.kind == "leaked-address")'
  skein ipam check --grace 1m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var rep ipamaudit.Report
			err := g.withStore(cmd, func(ctx context.Context, cl *store.Client) (err error) {
				rep, err = runIPAMCheck(ctx, cmd, cl, f)
				return err
			})
			if err != nil {
				return err
			}
			if err := g.render(cmd.OutOrStdout(), rep, func(tw *tabwriter.Writer, wide bool) { renderIPAMReport(tw, rep, wide) }); err != nil {
				return err
			}
			if len(rep.Findings) > 0 {
				return &exitError{code: exitUnhealthy, err: fmt.Errorf("%d finding(s)", len(rep.Findings))}
			}
			if len(rep.Unchecked) > 0 && !f.etcdOnly {
				return &exitError{code: exitUnchecked, err: fmt.Errorf("%d node(s) not checked", len(rep.Unchecked)), said: true}
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Example += "\n  skein ipam check --etcd-only          # etcd alone, from an admin machine that cannot reach the agents"
	return cmd
}

// runIPAMCheck reads etcd (within ctx), then the agents (each within
// --agent-timeout), and audits them.
func runIPAMCheck(ctx context.Context, cmd *cobra.Command, cl *store.Client, f *ipamFlags) (ipamaudit.Report, error) {
	inv, err := cl.Inventory(ctx)
	if err != nil {
		return ipamaudit.Report{}, err
	}
	allocs, unchecked := map[string]ipamaudit.AgentIPAM{}, map[string]string{}
	switch {
	case f.etcdOnly:
		for name := range inv.Nodes {
			unchecked[name] = "agents not asked (--etcd-only)"
		}
	case f.query:
		allocs, unchecked = ipamaudit.Probe(cmd.Context(), inv, f.timeout)
	default:
		for name := range inv.Nodes {
			unchecked[name] = "agents not asked (--agents=false)"
		}
	}
	return ipamaudit.Audit(inv, allocs, unchecked, time.Now(), f.grace), nil
}

func renderIPAMReport(tw *tabwriter.Writer, rep ipamaudit.Report, wide bool) {
	switch {
	case len(rep.Findings) == 0 && len(rep.Unchecked) > 0:
		fmt.Fprintf(tw, "no problems found in what could be checked (etcd rev %d); %d node(s) NOT checked, see below\n", rep.Rev, len(rep.Unchecked))
	case len(rep.Findings) == 0:
		fmt.Fprintf(tw, "no problems found (etcd rev %d)\n", rep.Rev)
	default:
		fmt.Fprint(tw, "KIND\tNODE\tWHAT\tDETAIL")
		if wide {
			fmt.Fprint(tw, "\tFIX")
		}
		fmt.Fprintln(tw)
		for _, f := range rep.Findings {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s", f.Kind, orDash(f.Node), f.What(), f.Detail)
			if wide {
				fmt.Fprintf(tw, "\t%s", f.Fix)
			}
			fmt.Fprintln(tw)
		}
		_ = tw.Flush() // the table goes before the summary
		fmt.Fprintf(tw, "\n%d finding(s) at etcd rev %d; `skein ipam release --dry-run` shows what it would fix\n", len(rep.Findings), rep.Rev)
	}
	if len(rep.Unchecked) > 0 {
		fmt.Fprintln(tw, "\nallocations not checked (leaked-address and endpoint-without-allocation need the agent):")
		for _, u := range rep.Unchecked {
			fmt.Fprintf(tw, "  %s: %s\n", u.Node, u.Reason)
		}
		fmt.Fprintln(tw, "to check a node: run `skein ipam check` on it (its debug endpoint is on loopback); --etcd-only checks etcd alone")
	}
}

// releaseResult is what release did about one finding.
type releaseResult struct {
	ipamaudit.Finding
	Result string `json:"result"`
}

func newIPAMReleaseCmd(g *globalFlags) *cobra.Command {
	f := &ipamFlags{}
	var (
		dryRun bool
		leaked bool
		socket string
	)
	cmd := &cobra.Command{
		Use:   "release",
		Short: "Free what `skein ipam check` finds: orphan blocks and stale endpoint records",
		Long: `Run the check, then fix what can be fixed safely, each in one etcd transaction that goes ahead only
if what the check read is unchanged (a node that came back, a block claimed meanwhile or an endpoint
re-published by a new ADD make it skip, never free a live address):

  orphan-block                 the block is deleted (the node must still be gone)
  stale-endpoint               the endpoint record is deleted (the node must still be gone)
  endpoint-outside-blocks      the endpoint record is deleted (the blocks must be unchanged)
  endpoint-without-allocation  the endpoint record is deleted (it must be unchanged)

With --leaked, leaked addresses of the node whose agent serves --socket (run it on that host, as root)
are freed through the agent, after it confirms it has no endpoint for them; the agent refuses to
publish an address its owner no longer holds, so a late ADD fails cleanly instead of sharing it. Prefer
the runtime's CNI GC, which knows which containers exist; use --leaked for containers gone for good.

Double claims and allocations outside blocks are left for an operator. Exit status 1 if a release failed.`,
		Example: `  skein ipam release --dry-run
  skein ipam release
  skein ipam release --leaked --socket /run/skein/skeind.sock   # on the node with leaks`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				rep, err := runIPAMCheck(ctx, cmd, cl, f)
				if err != nil {
					return err
				}
				var sock *ipamaudit.Agent
				if leaked && !dryRun {
					if sock, err = ipamaudit.DialAgent(cmd.Context(), socket); err != nil {
						return err
					}
				}
				results := []releaseResult{}
				failed := 0
				for _, fd := range rep.Findings {
					r := releaseResult{Finding: fd}
					switch {
					case fd.Kind == ipamaudit.LeakedAddress && !leaked:
						continue
					case fd.Kind == ipamaudit.LeakedAddress && dryRun:
						r.Result = "would free through the agent of " + fd.Node
					case fd.Kind == ipamaudit.LeakedAddress:
						r.Result = sock.ReleaseLeak(cmd.Context(), cl, fd, g.Timeout)
					case !fd.Releasable():
						r.Result = "left for an operator: " + fd.Fix
					case dryRun:
						r.Result = "would " + fd.ReleaseVerb()
					default:
						r.Result = ipamaudit.Release(cmd.Context(), cl, fd, g.Timeout)
					}
					if strings.HasPrefix(r.Result, "failed") {
						failed++
					}
					results = append(results, r)
				}
				err = g.render(cmd.OutOrStdout(), results, func(tw *tabwriter.Writer, _ bool) {
					if len(results) == 0 {
						fmt.Fprintln(tw, "nothing to release")
						return
					}
					fmt.Fprintln(tw, "KIND\tNODE\tWHAT\tRESULT")
					for _, r := range results {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Kind, orDash(r.Node), r.What(), r.Result)
					}
				})
				if err != nil {
					return err
				}
				if failed > 0 {
					return fmt.Errorf("%d release(s) failed", failed)
				}
				return nil
			})
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only print what would be released")
	cmd.Flags().BoolVar(&leaked, "leaked", false, "also free leaked addresses of the node whose agent serves --socket")
	cmd.Flags().StringVar(&socket, "socket", api.DefaultSocket, "the local agent's socket, for --leaked")
	return cmd
}
