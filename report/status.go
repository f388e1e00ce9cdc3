package report

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/probe"
	"github.com/skeinnet/skein/store"
)

// StaleAfter is how old a status record may get before the agent
// counts as stuck: agents refresh it every 10 s, so this leaves room for
// clock skew between hosts.
const StaleAfter = 90 * time.Second

// Cluster is what `skein status` prints (and -o json|yaml gives).
type Cluster struct {
	Backend  api.Backend `json:"backend,omitempty"`
	Rev      int64       `json:"rev"`
	Checked  time.Time   `json:"checked"`
	Healthy  bool        `json:"healthy"`
	Problems []string    `json:"problems,omitempty"`
	Nodes    []Node      `json:"nodes"`
	// Kube is the Kubernetes sync (skein-kube), when one runs or ran.
	Kube *Kube `json:"kube,omitempty"`
}

// Node is one node's line of `skein status`.
type Node struct {
	Name       string     `json:"name"`
	UnderlayIP netip.Addr `json:"underlayIP,omitzero"`
	Alive      bool       `json:"alive"`
	// Ready is nil when the node published no status.
	Ready     *bool       `json:"ready"`
	Version   string      `json:"version,omitempty"`
	Backend   api.Backend `json:"backend,omitempty"`
	Blocks    []string    `json:"blocks"`
	Endpoints int         `json:"endpoints"`
	// Peers is "up/total" peers (VXLAN) or sessions (BGP), as far as known.
	Peers string `json:"peers,omitempty"`
	// Links is the agent's own view of its links, when it answered.
	Links map[string]api.Link `json:"links,omitempty"`
	// LinkStates is the node's side of its link to each other node:
	// observed (Links) when the agent answered, else as its status record
	// reports it.
	LinkStates map[string]string `json:"linkStates,omitempty"`
	// AgentState is "up" or "agent down, data path kept".
	AgentState string `json:"agentState"`
	// reported is LinkStates from the status record alone.
	reported map[string]string
	// Sessions maps peer nodes to the state of the node's BGP session with
	// them, as its status record reports.
	Sessions   map[string]string `json:"sessions,omitempty"`
	LastSync   time.Time         `json:"lastSync,omitzero"`
	PolicySync time.Time         `json:"policySync,omitzero"`
	Updated    time.Time         `json:"updated,omitzero"`
	LastError  string            `json:"lastError,omitempty"`
	// InvalidPolicies are stored policies the agent cannot decode, and
	// what it enforces instead (quarantine or their last valid value).
	InvalidPolicies []api.InvalidPolicy `json:"invalidPolicies,omitempty"`
	DebugAddr       string              `json:"debugAddr,omitempty"`
	// Unpublished counts the node's endpoint changes made while it could not
	// reach etcd and not yet written there; UnpublishedSince is the oldest.
	Unpublished      int       `json:"unpublished,omitempty"`
	UnpublishedSince time.Time `json:"unpublishedSince,omitzero"`
	// EtcdReachable is the agent's own view of etcd, when known.
	EtcdReachable *bool `json:"etcdReachable,omitempty"`
	// WireGuard is the node's WireGuard device and peers (encryption on).
	WireGuard *WireGuard `json:"wireguard,omitempty"`
	// Agent says whether the debug endpoint answered: "ok", "not asked",
	// "no address", or why not.
	Agent    string   `json:"agent"`
	Healthy  bool     `json:"healthy"`
	Problems []string `json:"problems,omitempty"`
}

// AgentProbe is what asking one agent's debug endpoint gave.
type AgentProbe struct {
	Addr     string
	Topology *api.Topology
	Err      string
}

// Input is everything the report is computed from.
type Input struct {
	// Inv is etcd at one revision.
	Inv store.Inventory
	// Probes are the agents' answers by node; nil when none was asked.
	Probes map[string]AgentProbe
	// Now is when the report is made, to judge ages against.
	Now time.Time
}

// ProbeAgents asks every node's debug endpoint for its topology, each within
// timeout and all at once (up to probe.MaxParallel); failures are recorded, never
// fatal.
func ProbeAgents(ctx context.Context, inv store.Inventory, timeout time.Duration) map[string]AgentProbe {
	return probe.Each(ctx, inv, timeout, func(msg string) AgentProbe { return AgentProbe{Err: msg} },
		func(ctx context.Context, hc *http.Client, name string, _ api.Node, addr string) AgentProbe {
			p := AgentProbe{Addr: addr}
			var t api.Topology
			if err := probe.Get(ctx, hc, addr, "/debug/topology", &t); err != nil {
				p.Err = err.Error()
			} else if t.Node.Name != name {
				// A loopback address reaches whichever agent runs here.
				p.Err = fmt.Sprintf("%s answered as node %q (its debug address is not reachable from here)", addr, t.Node.Name)
			} else {
				p.Topology = &t
			}
			return p
		})
}

// Build grades every node; it is pure so tests can feed it.
func Build(in Input) Cluster {
	inv := in.Inv
	rep := Cluster{Rev: inv.Rev, Checked: in.Now.UTC(), Nodes: []Node{}}
	if inv.Cluster == nil {
		rep.Problems = append(rep.Problems, "no cluster configuration (run `skein cluster init`)")
	} else {
		rep.Backend = inv.Cluster.Backend
	}
	for _, e := range inv.Errors {
		rep.Problems = append(rep.Problems, "undecodable record in etcd: "+e)
	}
	names := map[string]bool{}
	for n := range inv.Nodes {
		names[n] = true
	}
	for n := range inv.Alive {
		names[n] = true
	}
	for n := range inv.Status {
		names[n] = true
	}
	blocksOf := map[string][]string{}
	for _, b := range inv.Blocks {
		blocksOf[b.Node] = append(blocksOf[b.Node], b.CIDR.String())
	}
	endpointsOf := map[string]int{}
	for _, ep := range inv.Endpoints {
		endpointsOf[ep.Node]++
	}
	expectedPeers := len(inv.Nodes) - 1
	for name := range names {
		nr := Node{Name: name, Alive: inv.Alive[name], Blocks: blocksOf[name], Endpoints: endpointsOf[name], Agent: "not asked"}
		nr.AgentState = api.AgentState(nr.Alive)
		sort.Strings(nr.Blocks)
		if nr.Blocks == nil {
			nr.Blocks = []string{}
		}
		problem := func(format string, args ...any) { nr.Problems = append(nr.Problems, fmt.Sprintf(format, args...)) }
		n, registered := inv.Nodes[name]
		if registered {
			nr.UnderlayIP, nr.Version, nr.DebugAddr = n.UnderlayIP, n.Version, n.DebugAddr
		} else {
			problem("no node record (heartbeat without registration)")
		}
		st, hasStatus, err := probe.Status(inv, name)
		switch {
		case err != nil:
			problem("%v", err)
		case hasStatus:
			ready := st.Ready
			nr.Ready = &ready
			nr.Backend = st.Backend
			nr.LastSync, nr.PolicySync, nr.Updated, nr.LastError = st.LastSync, st.PolicySync, st.Updated, st.LastError
			if st.Version != "" {
				nr.Version = st.Version
			}
			if st.DebugAddr != "" {
				nr.DebugAddr = st.DebugAddr
			}
			nr.Peers = fmt.Sprintf("%d/%d", st.PeersUp, st.Peers)
			nr.Unpublished, nr.UnpublishedSince = st.Unpublished, st.UnpublishedSince
			nr.reported = reportedLinks(st, bgpSessions(inv, st.BGP))
			reachable := !st.EtcdUnreachable
			nr.EtcdReachable = &reachable
			if st.Backend == api.BackendBGP {
				nr.Sessions = bgpSessions(inv, st.BGP)
				var down []string
				for _, n := range st.BGP {
					if n.State != api.BGPEstablished {
						down = append(down, n.Name+" "+n.State)
					}
				}
				if len(down) > 0 {
					problem("BGP sessions not established: %s", strings.Join(down, ", "))
				}
			} else {
				if st.Peers < expectedPeers && registered {
					problem("programs %d of %d peers", st.Peers, expectedPeers)
				}
				if st.PeersUp < st.Peers {
					problem("%d of %d peers fully programmed", st.PeersUp, st.Peers)
				}
			}
			var wgProblems []string
			nr.WireGuard, wgProblems = wireguardOf(st)
			for _, p := range wgProblems {
				problem("%s", p)
			}
			if !st.Ready {
				problem("not ready")
			}
			if st.LastError != "" {
				problem("last error: %s", st.LastError)
			}
			if st.PolicyError != "" {
				problem("policy: %s", st.PolicyError)
			}
			nr.InvalidPolicies = st.InvalidPolicies
			for _, p := range st.InvalidPolicies {
				problem("invalid stored policy %s", p)
			}
			if age := in.Now.Sub(st.Updated); nr.Alive && age > StaleAfter {
				problem("status not refreshed for %s (agent stuck, or clocks apart)", age.Round(time.Second))
			}
		case nr.Alive:
			problem("heartbeat but no status record")
		}
		if !nr.Alive {
			problem("no heartbeat: %s (agent stopped or cut off from etcd; its containers and its peers keep their routes until `skein node delete`)", api.AgentDownDataPathKept)
		}
		if p, ok := in.Probes[name]; ok {
			nr.Agent = "ok"
			if p.Err != "" {
				nr.Agent = p.Err
			} else if t := p.Topology; t != nil {
				if o := t.Offline; o != nil {
					// The agent's own view is fresher than its status record,
					// which it cannot write while etcd is away.
					nr.Unpublished, nr.UnpublishedSince = o.Unpublished, o.Oldest
					reachable := o.Etcd.Reachable
					nr.EtcdReachable = &reachable
				}
				nr.Links = map[string]api.Link{}
				up, total := 0, 0
				var bad []string
				for _, tn := range t.Nodes {
					if tn.Self {
						continue
					}
					nr.Links[tn.Name] = tn.Link
					total++
					if tn.Link.State == api.LinkUp {
						up++
					} else {
						bad = append(bad, tn.Name+" "+tn.Link.State)
					}
				}
				nr.Peers = fmt.Sprintf("%d/%d", up, total)
				if len(bad) > 0 {
					sort.Strings(bad)
					problem("links not up: %s", strings.Join(bad, ", "))
				}
				if !t.Ready && hasStatus && st.Ready {
					problem("agent reports not ready: %s", t.Reason)
				}
			}
		}
		nr.LinkStates = maps.Clone(nr.reported)
		for peer, l := range nr.Links {
			if nr.LinkStates == nil {
				nr.LinkStates = map[string]string{}
			}
			nr.LinkStates[peer] = l.State
		}
		if nr.EtcdReachable != nil && !*nr.EtcdReachable {
			problem("agent cannot reach etcd: new containers start from its own blocks only, and are published when etcd is back")
		}
		if nr.Unpublished > 0 {
			problem("%d endpoint change(s) not yet in etcd (oldest %s ago): other nodes' policy does not know them yet", nr.Unpublished, in.Now.Sub(nr.UnpublishedSince).Round(time.Second))
		}
		nr.Healthy = len(nr.Problems) == 0
		rep.Nodes = append(rep.Nodes, nr)
	}
	sort.Slice(rep.Nodes, func(i, j int) bool { return rep.Nodes[i].Name < rep.Nodes[j].Name })
	rep.Kube = BuildKube(inv.Other[api.KubeStatusKey], in.Now)
	rep.Healthy = len(rep.Problems) == 0 && (rep.Kube == nil || rep.Kube.Healthy)
	for _, nr := range rep.Nodes {
		rep.Healthy = rep.Healthy && nr.Healthy
	}
	return rep
}

// bgpSessions maps each neighbour that is a node (by name, else by
// underlay address) to its session state.
func bgpSessions(inv store.Inventory, neighbors []api.BGPNeighbor) map[string]string {
	byIP := map[netip.Addr]string{}
	for name, n := range inv.Nodes {
		byIP[n.UnderlayIP] = name
	}
	out := map[string]string{}
	for _, n := range neighbors {
		node := n.Name
		if _, ok := inv.Nodes[node]; !ok {
			node = byIP[n.Address]
		}
		if node != "" {
			out[node] = n.State
		}
	}
	return out
}

// reportedLinks is a node's side of each link as its status record says:
// its Links, else (older agents) its BGP sessions.
func reportedLinks(st api.NodeStatus, sessions map[string]string) map[string]string {
	if len(st.Links) > 0 {
		return st.Links
	}
	if len(sessions) == 0 {
		return nil
	}
	out := make(map[string]string, len(sessions))
	for peer, state := range sessions {
		out[peer] = api.LinkDown
		if state == api.BGPEstablished {
			out[peer] = api.LinkUp
		}
	}
	return out
}

// ProblemCount counts the cluster's problems and every node's.
func (r Cluster) ProblemCount() int {
	n := len(r.Problems)
	for _, nr := range r.Nodes {
		n += len(nr.Problems)
	}
	if r.Kube != nil {
		n += len(r.Kube.Problems)
	}
	return n
}
