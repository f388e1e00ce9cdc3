package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/ipam"
	"github.com/skeinnet/skein/store"
)

// poolUsage is one pool's block usage as `skein ipam show` reports it.
type poolUsage struct {
	CIDR         netip.Prefix `json:"cidr"`
	BlockSize    int          `json:"blockSize"`
	BlocksTotal  int          `json:"blocksTotal"`
	BlocksUsed   int          `json:"blocksUsed"`
	Blocks       []blockUsage `json:"blocks"`
	EndpointIPs  int          `json:"endpointIPs"`
	AddressTotal int          `json:"addressTotal"`
}

// blockUsage is one claimed block in `skein ipam show`.
type blockUsage struct {
	api.Block
	// Endpoints counts endpoint addresses inside the block.
	Endpoints int `json:"endpoints"`
	// Empty is set when the node's agent last reported the block empty.
	Empty *api.EmptyBlock `json:"empty,omitempty"`
	// NoStatus: the node published no readable status, so whether the
	// block is empty is not known.
	NoStatus bool `json:"noStatus,omitempty"`
}

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
			cl, ctx, done, err := g.open(cmd)
			if err != nil {
				return err
			}
			defer done()
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
			usage := ipamUsage(c.Pools, blocks, eps, statuses)
			now := time.Now()
			return g.render(cmd.OutOrStdout(), usage, func(tw *tabwriter.Writer, _ bool) { renderIPAMShow(tw, usage, now) })
		},
	}
}

// renderIPAMShow prints the pools and their blocks as of now.
func renderIPAMShow(tw *tabwriter.Writer, usage []poolUsage, now time.Time) {
	for _, u := range usage {
		fmt.Fprintf(tw, "POOL %s\tblocks /%d\t%d/%d blocks claimed\t%d endpoint addresses\n", u.CIDR, u.BlockSize, u.BlocksUsed, u.BlocksTotal, u.EndpointIPs)
		_ = tw.Flush() // the pool line has columns of its own; render's Flush reports a write error
		fmt.Fprintln(tw, "  BLOCK\tNODE\tENDPOINTS\tEMPTY")
		for _, b := range u.Blocks {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\n", b.CIDR, b.Node, b.Endpoints, emptyText(b, now))
		}
		_ = tw.Flush() // the same for the next pool
	}
}

// emptyText says whether a block is empty, since when and what happens to it.
func emptyText(b blockUsage, now time.Time) string {
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

// ipamUsage groups blocks and endpoint addresses by pool; statuses (by node)
// say which blocks are empty.
func ipamUsage(pools []api.Pool, blocks []api.Block, eps []api.Endpoint, statuses map[string]api.NodeStatus) []poolUsage {
	var out []poolUsage
	for _, p := range pools {
		u := poolUsage{CIDR: p.CIDR, BlockSize: p.BlockSize, Blocks: []blockUsage{}}
		if p.BlockSize >= p.CIDR.Bits() && p.BlockSize-p.CIDR.Bits() < 31 {
			u.BlocksTotal = 1 << (p.BlockSize - p.CIDR.Bits())
		}
		if bits := p.CIDR.Addr().BitLen() - p.CIDR.Bits(); bits < 31 {
			u.AddressTotal = 1 << bits
		}
		for _, b := range blocks {
			if p.CIDR.Contains(b.CIDR.Addr()) {
				u.Blocks = append(u.Blocks, blockUsage{Block: b})
			}
		}
		u.BlocksUsed = len(u.Blocks)
		for _, ep := range eps {
			for _, ip := range ep.IPs {
				if p.CIDR.Contains(ip) {
					u.EndpointIPs++
				}
				for i := range u.Blocks {
					if u.Blocks[i].CIDR.Contains(ip) {
						u.Blocks[i].Endpoints++
					}
				}
			}
		}
		for i := range u.Blocks {
			b := &u.Blocks[i]
			st, ok := statuses[b.Node]
			if !ok {
				b.NoStatus = true
				continue
			}
			for _, e := range st.EmptyBlocks {
				if e.CIDR == b.CIDR {
					b.Empty = &e
				}
			}
		}
		out = append(out, u)
	}
	return out
}

// Kinds of IPAM findings.
const (
	// findOrphanBlock: a block held by a node that has no node record.
	findOrphanBlock = "orphan-block"
	// findStaleEndpoint: an endpoint record of a node that has no node record.
	findStaleEndpoint = "stale-endpoint"
	// findEndpointOutsideBlocks: an endpoint address in none of its node's
	// blocks, so no allocation can back it.
	findEndpointOutsideBlocks = "endpoint-outside-blocks"
	// findEndpointNoAllocation: the node's agent holds no such address for
	// the endpoint's owner.
	findEndpointNoAllocation = "endpoint-without-allocation"
	// findLeakedAddress: the agent holds an address for an owner that has
	// no endpoint record, for longer than an ADD takes.
	findLeakedAddress = "leaked-address"
	// findDoubleClaim: one address in two endpoint records.
	findDoubleClaim = "double-claim"
	// findAllocationOutsideBlocks: the agent allocated from a block etcd
	// does not give it.
	findAllocationOutsideBlocks = "allocation-outside-blocks"
	// findBlockOutsidePools: a block in none of the cluster's pools.
	findBlockOutsidePools = "block-outside-pools"
)

// ipamFinding is one problem `skein ipam check` found.
type ipamFinding struct {
	Kind   string       `json:"kind"`
	Node   string       `json:"node,omitempty"`
	Block  netip.Prefix `json:"block,omitzero"`
	IPs    []netip.Addr `json:"ips,omitempty"`
	Owner  string       `json:"owner,omitempty"`
	Detail string       `json:"detail"`
	// Fix says what `skein ipam release` does about it, or what to do by hand.
	Fix string `json:"fix"`

	// What a guarded release needs.
	owner   api.Owner
	network string
	modRev  int64
	guard   store.Guard
}

// releasable reports whether `skein ipam release` fixes f through etcd.
func (f ipamFinding) releasable() bool {
	switch f.Kind {
	case findOrphanBlock, findStaleEndpoint, findEndpointOutsideBlocks, findEndpointNoAllocation:
		return true
	}
	return false
}

// uncheckedNode is a node whose allocations could not be read.
type uncheckedNode struct {
	Node   string `json:"node"`
	Reason string `json:"reason"`
}

// ipamReport is what `skein ipam check` prints.
type ipamReport struct {
	Rev       int64           `json:"rev"`
	Findings  []ipamFinding   `json:"findings"`
	Unchecked []uncheckedNode `json:"unchecked,omitempty"`
}

// agentIPAM is the part of an agent's /debug/ipam the audit reads.
type agentIPAM struct {
	Node        string            `json:"node"`
	Blocks      []netip.Prefix    `json:"blocks"`
	Allocations []ipam.Allocation `json:"allocations"`
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
			rep, err := runIPAMCheck(cmd, g, f)
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

// runIPAMCheck reads etcd, then the agents, and audits them.
func runIPAMCheck(cmd *cobra.Command, g *globalFlags, f *ipamFlags) (ipamReport, error) {
	cl, ctx, done, err := g.open(cmd)
	if err != nil {
		return ipamReport{}, err
	}
	defer done()
	inv, err := cl.Inventory(ctx)
	if err != nil {
		return ipamReport{}, err
	}
	allocs, unchecked := map[string]agentIPAM{}, map[string]string{}
	switch {
	case f.etcdOnly:
		for name := range inv.Nodes {
			unchecked[name] = "agents not asked (--etcd-only)"
		}
	case f.query:
		allocs, unchecked = probeIPAM(cmd.Context(), inv, f.timeout)
	default:
		for name := range inv.Nodes {
			unchecked[name] = "agents not asked (--agents=false)"
		}
	}
	return auditIPAM(inv, allocs, unchecked, time.Now(), f.grace), nil
}

// probeIPAM reads every live agent's allocations from its /debug/ipam.
func probeIPAM(ctx context.Context, inv store.Inventory, timeout time.Duration) (map[string]agentIPAM, map[string]string) {
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: timeout}
	allocs, unchecked := map[string]agentIPAM{}, map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxProbes)
	for name, n := range inv.Nodes {
		if !inv.Alive[name] {
			unchecked[name] = "no heartbeat: its allocations are only on its disk"
			continue
		}
		st, _, _ := decodeStatus(inv, name)
		addr := agentAddr(n, st)
		if addr == "" {
			unchecked[name] = "the agent serves no debug endpoint"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			var a agentIPAM
			err := agentGet(ctx, hc, addr, "/debug/ipam", &a)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				unchecked[name] = "debug endpoint: " + err.Error()
			case a.Node != name:
				unchecked[name] = fmt.Sprintf("%s answered as node %q (not reachable from here: run the check on %s)", addr, a.Node, name)
			default:
				allocs[name] = a
			}
		}()
	}
	wg.Wait()
	return allocs, unchecked
}

// blockOf returns the pool block that contains ip, if any pool does.
func blockOf(pools []api.Pool, ip netip.Addr) (netip.Prefix, bool) {
	for _, p := range pools {
		if p.CIDR.Contains(ip) && p.BlockSize >= p.CIDR.Bits() {
			b, err := ip.Prefix(p.BlockSize)
			return b, err == nil
		}
	}
	return netip.Prefix{}, false
}

// auditIPAM finds the problems; it is pure so tests can feed it. allocs
// holds the allocations of the agents that answered, unchecked why the
// others could not be read.
func auditIPAM(inv store.Inventory, allocs map[string]agentIPAM, unchecked map[string]string, now time.Time, grace time.Duration) ipamReport {
	rep := ipamReport{Rev: inv.Rev, Findings: []ipamFinding{}}
	var pools []api.Pool
	if inv.Cluster != nil {
		pools = inv.Cluster.Pools
	}
	blocksOf := map[string][]netip.Prefix{}
	for cidr, b := range inv.Blocks {
		blocksOf[b.Node] = append(blocksOf[b.Node], cidr)
		if _, ok := inv.Nodes[b.Node]; !ok {
			rep.Findings = append(rep.Findings, ipamFinding{
				Kind: findOrphanBlock, Node: b.Node, Block: cidr,
				Detail: "held by " + b.Node + ", which has no node record",
				Fix:    "release deletes the block (if the node is still gone)",
				modRev: inv.ModRevs[store.BlockModRevKey(cidr)],
				guard:  store.Guard{NodesAbsent: []string{b.Node}},
			})
		}
		inPool := false
		for _, p := range pools {
			if p.CIDR.Contains(cidr.Addr()) {
				inPool = true
			}
		}
		if inv.Cluster != nil && !inPool {
			rep.Findings = append(rep.Findings, ipamFinding{
				Kind: findBlockOutsidePools, Node: b.Node, Block: cidr,
				Detail: "in none of the cluster's pools (a removed pool?)",
				Fix:    "by hand: move the node's containers, then let its agent release the block",
			})
		}
	}
	// Endpoints: by owner, and who claims each address.
	type epRef struct {
		node  string
		owner api.Owner
	}
	claims := map[netip.Addr][]epRef{}
	published := map[string]map[api.Owner]api.Endpoint{}
	for _, ep := range inv.Endpoints {
		o := api.Owner{ContainerID: ep.ContainerID, IfName: ep.IfName}
		if published[ep.Node] == nil {
			published[ep.Node] = map[api.Owner]api.Endpoint{}
		}
		published[ep.Node][o] = ep
		for _, ip := range ep.IPs {
			claims[ip] = append(claims[ip], epRef{ep.Node, o})
		}
		modRev := inv.ModRevs[store.EndpointModRevKey(ep.Node, o)]
		base := ipamFinding{Node: ep.Node, IPs: ep.IPs, Owner: o.String(), owner: o, modRev: modRev}
		if _, ok := inv.Nodes[ep.Node]; !ok {
			f := base
			f.Kind, f.Detail = findStaleEndpoint, fmt.Sprintf("endpoint %s/%s of %s, which has no node record", ep.Namespace, ep.Name, ep.Node)
			f.Fix, f.guard = "release deletes the endpoint record (if the node is still gone)", store.Guard{NodesAbsent: []string{ep.Node}}
			rep.Findings = append(rep.Findings, f)
			continue
		}
		var outside []netip.Addr
		guard := store.Guard{Blocks: map[netip.Prefix]int64{}}
		for _, ip := range ep.IPs {
			if slices.ContainsFunc(blocksOf[ep.Node], func(b netip.Prefix) bool { return b.Contains(ip) }) {
				continue
			}
			outside = append(outside, ip)
			if b, ok := blockOf(pools, ip); ok {
				guard.Blocks[b] = inv.ModRevs[store.BlockModRevKey(b)] // 0: must stay unclaimed
			}
		}
		if len(outside) > 0 {
			f := base
			f.Kind, f.IPs = findEndpointOutsideBlocks, outside
			f.Detail = fmt.Sprintf("endpoint %s/%s: address outside every block of %s", ep.Namespace, ep.Name, ep.Node)
			f.Fix, f.guard = "release deletes the endpoint record (if no block changed hands meanwhile)", guard
			rep.Findings = append(rep.Findings, f)
			continue
		}
		if a, ok := allocs[ep.Node]; ok {
			var held []netip.Addr
			for _, al := range a.Allocations {
				if al.Owner == o {
					held = append(held, al.IP)
				}
			}
			var missing []netip.Addr
			for _, ip := range ep.IPs {
				if !slices.Contains(held, ip) {
					missing = append(missing, ip)
				}
			}
			if len(missing) > 0 {
				f := base
				f.Kind, f.IPs = findEndpointNoAllocation, missing
				f.Detail = fmt.Sprintf("endpoint %s/%s: the agent of %s holds %v for this owner", ep.Namespace, ep.Name, ep.Node, held)
				f.Fix = "release deletes the endpoint record (if unchanged since the check)"
				rep.Findings = append(rep.Findings, f)
			}
		}
	}
	for ip, refs := range claims {
		if len(refs) < 2 {
			continue
		}
		var who []string
		for _, r := range refs {
			who = append(who, r.node+":"+r.owner.String())
		}
		sort.Strings(who)
		rep.Findings = append(rep.Findings, ipamFinding{
			Kind: findDoubleClaim, IPs: []netip.Addr{ip},
			Detail: "claimed by " + strings.Join(who, " and "),
			Fix:    "by hand: delete the container that should not have it (CNI DEL), then check again",
		})
	}
	for node, a := range allocs {
		for _, al := range a.Allocations {
			if !slices.ContainsFunc(blocksOf[node], func(b netip.Prefix) bool { return b.Contains(al.IP) }) {
				rep.Findings = append(rep.Findings, ipamFinding{
					Kind: findAllocationOutsideBlocks, Node: node, IPs: []netip.Addr{al.IP}, Owner: al.Owner.String(), owner: al.Owner, network: al.Network,
					Detail: "allocated by the agent from " + al.Block.String() + ", which etcd does not give " + node,
					Fix:    "by hand: delete the container (CNI DEL); the agent reconciles its blocks on restart",
				})
			}
			if _, ok := published[node][al.Owner]; ok {
				continue
			}
			if age := now.Sub(al.Created); age < grace {
				continue // an ADD may still be in flight
			}
			pod := al.Pod
			if pod == "" {
				pod = "unknown pod"
			}
			rep.Findings = append(rep.Findings, ipamFinding{
				Kind: findLeakedAddress, Node: node, IPs: []netip.Addr{al.IP}, Owner: al.Owner.String(), owner: al.Owner, network: al.Network,
				Detail: fmt.Sprintf("held since %s for %s, which has no endpoint record", al.Created.UTC().Format(time.RFC3339), pod),
				Fix:    "the runtime's CNI GC frees it; or, on " + node + ": skein ipam release --leaked",
			})
		}
	}
	for node, why := range unchecked {
		rep.Unchecked = append(rep.Unchecked, uncheckedNode{Node: node, Reason: why})
	}
	sort.Slice(rep.Unchecked, func(i, j int) bool { return rep.Unchecked[i].Node < rep.Unchecked[j].Node })
	sort.SliceStable(rep.Findings, func(i, j int) bool {
		a, b := rep.Findings[i], rep.Findings[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Node != b.Node {
			return a.Node < b.Node
		}
		return findingWhat(a) < findingWhat(b)
	})
	return rep
}

// findingWhat names what a finding is about: a block, an owner or addresses.
func findingWhat(f ipamFinding) string {
	var parts []string
	if f.Block.IsValid() {
		parts = append(parts, "block "+f.Block.String())
	}
	if f.Owner != "" {
		parts = append(parts, f.Owner)
	}
	if len(f.IPs) > 0 {
		ips := make([]string, len(f.IPs))
		for i, ip := range f.IPs {
			ips[i] = ip.String()
		}
		parts = append(parts, strings.Join(ips, ","))
	}
	return strings.Join(parts, " ")
}

func renderIPAMReport(tw *tabwriter.Writer, rep ipamReport, wide bool) {
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
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s", f.Kind, orDash(f.Node), findingWhat(f), f.Detail)
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
	ipamFinding
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
			rep, err := runIPAMCheck(cmd, g, f)
			if err != nil {
				return err
			}
			cl, err := g.client(cmd.Context())
			if err != nil {
				return err
			}
			defer cl.Close()
			var sock *agentSocket
			if leaked && !dryRun {
				if sock, err = dialAgentSocket(cmd.Context(), socket); err != nil {
					return err
				}
			}
			results := []releaseResult{}
			failed := 0
			for _, fd := range rep.Findings {
				r := releaseResult{ipamFinding: fd}
				switch {
				case fd.Kind == findLeakedAddress && !leaked:
					continue
				case fd.Kind == findLeakedAddress && dryRun:
					r.Result = "would free through the agent of " + fd.Node
				case fd.Kind == findLeakedAddress:
					r.Result = sock.releaseLeak(cmd.Context(), g, cl, fd)
				case !fd.releasable():
					r.Result = "left for an operator: " + fd.Fix
				case dryRun:
					r.Result = "would " + releaseVerb(fd)
				default:
					r.Result = applyRelease(cmd.Context(), g, cl, fd)
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
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Kind, orDash(r.Node), findingWhat(r.ipamFinding), r.Result)
				}
			})
			if err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("%d release(s) failed", failed)
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only print what would be released")
	cmd.Flags().BoolVar(&leaked, "leaked", false, "also free leaked addresses of the node whose agent serves --socket")
	cmd.Flags().StringVar(&socket, "socket", api.DefaultSocket, "the local agent's socket, for --leaked")
	return cmd
}

func releaseVerb(f ipamFinding) string {
	if f.Kind == findOrphanBlock {
		return "delete block " + f.Block.String()
	}
	return "delete endpoint record " + f.Node + "/" + f.Owner
}

// applyRelease makes one guarded release and says how it went.
func applyRelease(ctx context.Context, g *globalFlags, cl *store.Client, f ipamFinding) string {
	cctx, cancel := context.WithTimeout(ctx, g.Timeout)
	defer cancel()
	var err error
	if f.Kind == findOrphanBlock {
		err = cl.ReleaseBlockIf(cctx, f.Block, f.modRev, f.guard)
	} else {
		err = cl.DeleteEndpointIf(cctx, f.Node, f.owner, f.modRev, f.guard)
	}
	switch {
	case err == nil:
		return "released: " + releaseVerb(f)[len("delete "):] + " deleted"
	case isChanged(err):
		return "skipped: changed since the check (run it again)"
	}
	return "failed: " + err.Error()
}

func isChanged(err error) bool { return errors.Is(err, store.ErrChanged) }

// agentSocket talks to the local agent over its unix socket, as skein-cni does.
type agentSocket struct {
	hc   *http.Client
	node string
}

func dialAgentSocket(ctx context.Context, path string) (*agentSocket, error) {
	s := &agentSocket{hc: &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
	var st api.AgentStatus
	if code, err := s.call(ctx, http.MethodGet, api.PathStatus, nil, &st); err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("agent socket %s (--socket): status %d: %v", path, code, err)
	}
	s.node = st.Node
	return s, nil
}

// call sends req (nil for none) and decodes a 200 answer into resp.
func (s *agentSocket) call(ctx context.Context, method, path string, req, resp any) (int, error) {
	var body io.Reader
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	r, err := http.NewRequestWithContext(ctx, method, "http://skeind"+path, body)
	if err != nil {
		return 0, err
	}
	res, err := s.hc.Do(r)
	if err != nil {
		return 0, shortNetErr(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		var ae api.AgentError
		_ = json.NewDecoder(res.Body).Decode(&ae) // the status says enough without it
		return res.StatusCode, fmt.Errorf("%s: %s", path, ae.Message)
	}
	if resp != nil {
		if err := json.NewDecoder(res.Body).Decode(resp); err != nil {
			return res.StatusCode, fmt.Errorf("%s: decode: %w", path, err)
		}
	}
	return res.StatusCode, nil
}

// releaseLeak frees a leaked address through the agent after checking, as
// late as possible, that it is still unpublished and still the same.
func (s *agentSocket) releaseLeak(ctx context.Context, g *globalFlags, cl *store.Client, f ipamFinding) string {
	if s.node != f.Node {
		return fmt.Sprintf("skipped: the agent on --socket is node %s; run this on %s", s.node, f.Node)
	}
	cctx, cancel := context.WithTimeout(ctx, g.Timeout)
	defer cancel()
	if _, err := cl.GetEndpoint(cctx, f.Node, f.owner); err == nil {
		return "skipped: its endpoint was published meanwhile"
	} else if !errors.Is(err, store.ErrNotFound) {
		return "failed: " + err.Error()
	}
	// An allocation from before networks were recorded names none; any
	// network name adopts it, and it is being released anyway.
	network := cmp.Or(f.network, "skein")
	var cr api.CheckResponse
	code, err := s.call(cctx, http.MethodPost, api.PathCheck, api.ReleaseRequest{Owner: f.owner, Network: network}, &cr)
	switch {
	case code == http.StatusNotFound:
		return "skipped: the agent no longer holds it"
	case err != nil:
		return "failed: " + err.Error()
	case cr.HeldBy != "":
		return "skipped: network " + cr.HeldBy + " holds it now"
	case cr.Published:
		return "skipped: the agent published it meanwhile"
	case !slices.Equal(cr.IPs, f.IPs):
		return fmt.Sprintf("skipped: the owner now holds %v", cr.IPs)
	}
	var rr api.ReleaseResponse
	if _, err := s.call(cctx, http.MethodPost, api.PathRelease, api.ReleaseRequest{Owner: f.owner, Network: network}, &rr); err != nil {
		return "failed: " + err.Error()
	}
	return fmt.Sprintf("released: %v freed by the agent", rr.Released)
}
