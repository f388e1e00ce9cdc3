package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/report"
	"github.com/skeinnet/skein/store"
)

// Exit statuses of skein beyond 0 (success) and 1 (the command failed).
const (
	// exitUnhealthy: `skein status` or `skein topology` found the network
	// unhealthy, or `skein ipam check` found problems.
	exitUnhealthy = 2
)

// newOpsCmds returns the operations commands: status, topology and completion.
func newOpsCmds(g *globalFlags) []*cobra.Command {
	return []*cobra.Command{newStatusCmd(g), newTopologyCmd(g), newCompletionCmd()}
}

// agentFlags control how status-like commands ask agents.
type agentFlags struct {
	query   bool
	timeout time.Duration
}

func (af *agentFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&af.query, "agents", true, "also ask each agent's debug endpoint (from its node record), when reachable")
	cmd.Flags().DurationVar(&af.timeout, "agent-timeout", 2*time.Second, "deadline for each agent's debug endpoint")
}

func newStatusCmd(g *globalFlags) *cobra.Command {
	af := &agentFlags{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the health of every node from one place",
		Long: `Show every node: heartbeat, readiness, agent version, backend state, blocks, endpoints,
peers (VXLAN) or BGP sessions, dataplane and policy sync age, and the last error.

The status comes from etcd (each agent publishes status/<node> on its heartbeat lease), so it needs
no route to the hosts. When an agent's debug endpoint (its node record's debug address) is reachable
from here, its own view adds the state of each tunnel or BGP session; an unreachable agent is shown
as such and is not by itself a problem (the default address is loopback on each host).

Exit status: 0 when every node is healthy, 2 when anything is not (a node without heartbeat, not
ready, with a last error, a stale status record, missing peers or sessions, undecodable records in
etcd, invalid stored policies), 1 when the status could not be read.

A stored policy that does not decode or validate is never dropped: the agent quarantines the pods
it names (isolated both ways) or, if it was valid before, keeps its last valid value; each node
lists such policies as problems.`,
		Example: `  skein status
  skein status -o wide
  skein status -o json | jq '.nodes[] | select(.healthy | not)'
  skein status --agents=false            # etcd only
  skein status || echo "network unhealthy"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := gatherStatus(cmd, g, af)
			if err != nil {
				return err
			}
			if err := g.render(cmd.OutOrStdout(), rep, func(tw *tabwriter.Writer, wide bool) { renderStatus(tw, rep, wide) }); err != nil {
				return err
			}
			return unhealthyExit(rep)
		},
	}
	af.register(cmd)
	return cmd
}

// unhealthyExit returns the exit error for an unhealthy report, or nil.
func unhealthyExit(rep report.Cluster) error {
	if rep.Healthy {
		return nil
	}
	n := rep.ProblemCount()
	// The verdict and each problem are in the output (stdout, after the table; `healthy` in JSON).
	return &exitError{code: exitUnhealthy, err: fmt.Errorf("unhealthy: %d problem(s)", n), said: true}
}

func gatherStatus(cmd *cobra.Command, g *globalFlags, af *agentFlags) (report.Cluster, error) {
	in, err := readStatusInput(cmd, g, af)
	if err != nil {
		return report.Cluster{}, err
	}
	return report.Build(in), nil
}

// readStatusInput reads etcd at one revision and, unless --agents=false,
// asks the agents.
func readStatusInput(cmd *cobra.Command, g *globalFlags, af *agentFlags) (report.Input, error) {
	var in report.Input
	err := g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
		inv, err := cl.Inventory(ctx)
		if err != nil {
			return err
		}
		in.Inv = inv
		if af.query {
			in.Probes = report.ProbeAgents(cmd.Context(), inv, af.timeout)
		}
		in.Now = time.Now()
		return nil
	})
	return in, err
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

// ago renders the age of t at now: "4s", "3m", "-" for never.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < 90*time.Second:
		return d.Round(time.Second).String()
	case d < 90*time.Minute:
		return fmt.Sprintf("%dm", int(d.Minutes()+0.5))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()+0.5))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24+0.5))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func renderStatus(tw *tabwriter.Writer, rep report.Cluster, wide bool) {
	fmt.Fprint(tw, "NODE\tALIVE\tREADY\tVERSION\tBACKEND\tPEERS\tBLOCKS\tENDPOINTS\tSYNCED\tPOLICY")
	if wide {
		fmt.Fprint(tw, "\tUNDERLAY\tBLOCK LIST\tDEBUG\tAGENT\tLAST ERROR")
	}
	fmt.Fprintln(tw)
	for _, n := range rep.Nodes {
		ready := "-"
		if n.Ready != nil {
			ready = yesNo(*n.Ready)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s", n.Name, yesNo(n.Alive), ready, orDash(n.Version),
			orDash(string(n.Backend)), orDash(n.Peers), len(n.Blocks), n.Endpoints, ago(n.LastSync, rep.Checked), ago(n.PolicySync, rep.Checked))
		if wide {
			under := "-"
			if n.UnderlayIP.IsValid() {
				under = n.UnderlayIP.String()
			}
			fmt.Fprintf(tw, "\t%s\t%s\t%s\t%s\t%s", under, orDash(strings.Join(n.Blocks, ",")), orDash(n.DebugAddr), n.Agent, orDash(n.LastError))
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush() // the table goes before the summary
	alive, eps := 0, 0
	for _, n := range rep.Nodes {
		if n.Alive {
			alive++
		}
		eps += n.Endpoints
	}
	verdict := "healthy"
	if !rep.Healthy {
		verdict = "UNHEALTHY"
	}
	fmt.Fprintf(tw, "\n%d nodes, %d alive, %d endpoints, backend %s, etcd rev %d: %s\n", len(rep.Nodes), alive, eps, orDash(string(rep.Backend)), rep.Rev, verdict)
	for _, p := range rep.Problems {
		fmt.Fprintf(tw, "  cluster: %s\n", p)
	}
	for _, n := range rep.Nodes {
		for _, p := range n.Problems {
			fmt.Fprintf(tw, "  %s: %s\n", n.Name, p)
		}
	}
	renderWireGuard(tw, rep)
	renderKube(tw, rep.Kube, rep.Checked)
}

// renderWireGuard lists each node's WireGuard peers with their handshake age.
func renderWireGuard(tw *tabwriter.Writer, rep report.Cluster) {
	header := false
	for _, n := range rep.Nodes {
		if n.WireGuard == nil {
			continue
		}
		if !header {
			fmt.Fprintf(tw, "\nWIREGUARD\tDEVICE\tPEER\tHANDSHAKE\tRX\tTX\n")
			header = true
		}
		if len(n.WireGuard.Peers) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\n", n.Name, n.WireGuard.Device)
		}
		for _, p := range n.WireGuard.Peers {
			shake := "never"
			switch {
			case p.Blocked != "":
				shake = "no path: " + p.Blocked
			case p.HandshakeAge != nil:
				shake = p.HandshakeAge.Round(time.Second).String() + " ago"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", n.Name, n.WireGuard.Device, p.Node, shake, p.RxBytes, p.TxBytes)
		}
	}
	_ = tw.Flush()
}
