package ipamaudit

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/ipam"
	"github.com/skeinnet/skein/probe"
	"github.com/skeinnet/skein/store"
)

// Kinds of IPAM findings.
const (
	// OrphanBlock: a block held by a node that has no node record.
	OrphanBlock = "orphan-block"
	// StaleEndpoint: an endpoint record of a node that has no node record.
	StaleEndpoint = "stale-endpoint"
	// EndpointOutsideBlocks: an endpoint address in none of its node's
	// blocks, so no allocation can back it.
	EndpointOutsideBlocks = "endpoint-outside-blocks"
	// EndpointNoAllocation: the node's agent holds no such address for
	// the endpoint's owner.
	EndpointNoAllocation = "endpoint-without-allocation"
	// LeakedAddress: the agent holds an address for an owner that has
	// no endpoint record, for longer than an ADD takes.
	LeakedAddress = "leaked-address"
	// DoubleClaim: one address in two endpoint records.
	DoubleClaim = "double-claim"
	// AllocationOutsideBlocks: the agent allocated from a block etcd
	// does not give it.
	AllocationOutsideBlocks = "allocation-outside-blocks"
	// BlockOutsidePools: a block in none of the cluster's pools.
	BlockOutsidePools = "block-outside-pools"
)

// Finding is one problem `skein ipam check` found.
type Finding struct {
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

// Releasable reports whether `skein ipam release` fixes f through etcd.
func (f Finding) Releasable() bool {
	switch f.Kind {
	case OrphanBlock, StaleEndpoint, EndpointOutsideBlocks, EndpointNoAllocation:
		return true
	}
	return false
}

// Unchecked is a node whose allocations could not be read.
type Unchecked struct {
	Node   string `json:"node"`
	Reason string `json:"reason"`
}

// Report is what `skein ipam check` prints.
type Report struct {
	Rev       int64       `json:"rev"`
	Findings  []Finding   `json:"findings"`
	Unchecked []Unchecked `json:"unchecked,omitempty"`
}

// AgentIPAM is the part of an agent's /debug/ipam the audit reads.
type AgentIPAM struct {
	Node        string            `json:"node"`
	Blocks      []netip.Prefix    `json:"blocks"`
	Allocations []ipam.Allocation `json:"allocations"`
}

// Probe reads every live agent's allocations from its /debug/ipam. It
// returns the allocations of the agents that answered and, for the other
// nodes, why they could not be read.
func Probe(ctx context.Context, inv store.Inventory, timeout time.Duration) (map[string]AgentIPAM, map[string]string) {
	unchecked := map[string]string{}
	live := inv
	live.Nodes = map[string]api.Node{}
	for name, n := range inv.Nodes {
		if !inv.Alive[name] {
			unchecked[name] = "no heartbeat: its allocations are only on its disk"
			continue
		}
		live.Nodes[name] = n
	}
	type answer struct {
		ipam AgentIPAM
		why  string
	}
	answers := probe.Each(ctx, live, timeout, func(string) answer { return answer{why: "the agent serves no debug endpoint"} },
		func(ctx context.Context, hc *http.Client, name string, _ api.Node, addr string) answer {
			var a AgentIPAM
			switch err := probe.Get(ctx, hc, addr, "/debug/ipam", &a); {
			case err != nil:
				return answer{why: "debug endpoint: " + err.Error()}
			case a.Node != name:
				return answer{why: fmt.Sprintf("%s answered as node %q (not reachable from here: run the check on %s)", addr, a.Node, name)}
			}
			return answer{ipam: a}
		})
	allocs := map[string]AgentIPAM{}
	for name, a := range answers {
		if a.why != "" {
			unchecked[name] = a.why
			continue
		}
		allocs[name] = a.ipam
	}
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

// Audit finds the problems; it is pure so tests can feed it. allocs
// holds the allocations of the agents that answered, unchecked why the
// others could not be read.
func Audit(inv store.Inventory, allocs map[string]AgentIPAM, unchecked map[string]string, now time.Time, grace time.Duration) Report {
	rep := Report{Rev: inv.Rev, Findings: []Finding{}}
	var pools []api.Pool
	if inv.Cluster != nil {
		pools = inv.Cluster.Pools
	}
	blocksOf := map[string][]netip.Prefix{}
	for cidr, b := range inv.Blocks {
		blocksOf[b.Node] = append(blocksOf[b.Node], cidr)
		if _, ok := inv.Nodes[b.Node]; !ok {
			rep.Findings = append(rep.Findings, Finding{
				Kind: OrphanBlock, Node: b.Node, Block: cidr,
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
			rep.Findings = append(rep.Findings, Finding{
				Kind: BlockOutsidePools, Node: b.Node, Block: cidr,
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
		base := Finding{Node: ep.Node, IPs: ep.IPs, Owner: o.String(), owner: o, modRev: modRev}
		if _, ok := inv.Nodes[ep.Node]; !ok {
			f := base
			f.Kind, f.Detail = StaleEndpoint, fmt.Sprintf("endpoint %s/%s of %s, which has no node record", ep.Namespace, ep.Name, ep.Node)
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
			f.Kind, f.IPs = EndpointOutsideBlocks, outside
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
				f.Kind, f.IPs = EndpointNoAllocation, missing
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
		rep.Findings = append(rep.Findings, Finding{
			Kind: DoubleClaim, IPs: []netip.Addr{ip},
			Detail: "claimed by " + strings.Join(who, " and "),
			Fix:    "by hand: delete the container that should not have it (CNI DEL), then check again",
		})
	}
	for node, a := range allocs {
		for _, al := range a.Allocations {
			if !slices.ContainsFunc(blocksOf[node], func(b netip.Prefix) bool { return b.Contains(al.IP) }) {
				rep.Findings = append(rep.Findings, Finding{
					Kind: AllocationOutsideBlocks, Node: node, IPs: []netip.Addr{al.IP}, Owner: al.Owner.String(), owner: al.Owner, network: al.Network,
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
			rep.Findings = append(rep.Findings, Finding{
				Kind: LeakedAddress, Node: node, IPs: []netip.Addr{al.IP}, Owner: al.Owner.String(), owner: al.Owner, network: al.Network,
				Detail: fmt.Sprintf("held since %s for %s, which has no endpoint record", al.Created.UTC().Format(time.RFC3339), pod),
				Fix:    "the runtime's CNI GC frees it; or, on " + node + ": skein ipam release --leaked",
			})
		}
	}
	for node, why := range unchecked {
		rep.Unchecked = append(rep.Unchecked, Unchecked{Node: node, Reason: why})
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
		return a.What() < b.What()
	})
	return rep
}

// What names what a finding is about: a block, an owner or addresses.
func (f Finding) What() string {
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
