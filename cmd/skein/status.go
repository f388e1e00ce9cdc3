package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// Exit statuses of skein beyond 0 (success) and 1 (the command failed).
const (
	// exitUnhealthy: `skein status` or `skein topology` found the network
	// unhealthy, or `skein ipam check` found problems.
	exitUnhealthy = 2
)

// statusStaleAfter is how old a status record may get before the agent
// counts as stuck: agents refresh it every 10 s, so this leaves room for
// clock skew between hosts.
const statusStaleAfter = 90 * time.Second

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
func unhealthyExit(rep clusterReport) error {
	if rep.Healthy {
		return nil
	}
	n := len(rep.Problems)
	for _, nr := range rep.Nodes {
		n += len(nr.Problems)
	}
	if rep.Kube != nil {
		n += len(rep.Kube.Problems)
	}
	// The verdict and each problem are in the output (stdout, after the table; `healthy` in JSON).
	return &exitError{code: exitUnhealthy, err: fmt.Errorf("unhealthy: %d problem(s)", n), said: true}
}

// clusterReport is what `skein status` prints (and -o json|yaml gives).
type clusterReport struct {
	Backend  api.Backend  `json:"backend,omitempty"`
	Rev      int64        `json:"rev"`
	Checked  time.Time    `json:"checked"`
	Healthy  bool         `json:"healthy"`
	Problems []string     `json:"problems,omitempty"`
	Nodes    []nodeReport `json:"nodes"`
	// Kube is the Kubernetes sync (skein-kube), when one runs or ran.
	Kube *kubeReport `json:"kube,omitempty"`
}

// nodeReport is one node's line of `skein status`.
type nodeReport struct {
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
	// Agent says whether the debug endpoint answered: "ok", "not asked",
	// "no address", or why not.
	Agent    string   `json:"agent"`
	Healthy  bool     `json:"healthy"`
	Problems []string `json:"problems,omitempty"`
}

// agentProbe is what asking one agent's debug endpoint gave.
type agentProbe struct {
	Addr     string
	Topology *api.Topology
	Err      string
}

// statusInput is everything the report is computed from.
type statusInput struct {
	inv    store.Inventory
	probes map[string]agentProbe
	now    time.Time
}

func gatherStatus(cmd *cobra.Command, g *globalFlags, af *agentFlags) (clusterReport, error) {
	in, err := readStatusInput(cmd, g, af)
	if err != nil {
		return clusterReport{}, err
	}
	return buildReport(in), nil
}

func readStatusInput(cmd *cobra.Command, g *globalFlags, af *agentFlags) (statusInput, error) {
	cl, ctx, done, err := g.open(cmd)
	if err != nil {
		return statusInput{}, err
	}
	defer done()
	inv, err := cl.Inventory(ctx)
	if err != nil {
		return statusInput{}, err
	}
	in := statusInput{inv: inv, probes: map[string]agentProbe{}}
	if af.query {
		in.probes = probeAgents(cmd.Context(), inv, af.timeout)
	}
	in.now = time.Now()
	return in, nil
}

// decodeStatus decodes node's status record; ok is false when it has none,
// err is set when it does not decode.
func decodeStatus(inv store.Inventory, node string) (st api.NodeStatus, ok bool, err error) {
	raw, ok := inv.Status[node]
	if !ok {
		return st, false, nil
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, false, fmt.Errorf("status record of %s: %w", node, err)
	}
	return st, true, nil
}

// agentAddr returns where node's debug endpoint listens, seen from another
// host: an unspecified host part means the node's underlay address. It is
// empty when the agent serves none.
func agentAddr(n api.Node, st api.NodeStatus) string {
	addr := st.DebugAddr
	if addr == "" {
		addr = n.DebugAddr
	}
	if addr == "" || addr == "off" {
		return ""
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		if !n.UnderlayIP.IsValid() {
			return ""
		}
		host = n.UnderlayIP.String()
	}
	return net.JoinHostPort(host, port)
}

// maxProbes bounds the agents asked at once.
const maxProbes = 16

// probeAgents asks every node's debug endpoint for its topology, each within
// timeout and all at once (up to maxProbes); failures are recorded, never
// fatal.
func probeAgents(ctx context.Context, inv store.Inventory, timeout time.Duration) map[string]agentProbe {
	return probeEach(ctx, inv, timeout, func(msg string) agentProbe { return agentProbe{Err: msg} },
		func(hc *http.Client, name string, _ api.Node, addr string) agentProbe {
			p := agentProbe{Addr: addr}
			var t api.Topology
			if err := agentGet(ctx, hc, addr, "/debug/topology", &t); err != nil {
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

// probeEach runs probe against every node's debug address, all at once (up
// to maxProbes), each with an HTTP client bounded by timeout; a node without
// an address gets failed("no address").
func probeEach[P any](ctx context.Context, inv store.Inventory, timeout time.Duration, failed func(msg string) P,
	probe func(hc *http.Client, name string, n api.Node, addr string) P) map[string]P {
	// No proxy from the environment: debug endpoints are on the hosts' own networks.
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: timeout}
	out := map[string]P{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxProbes)
	for name, n := range inv.Nodes {
		st, _, _ := decodeStatus(inv, name) // a bad record falls back to the node record
		addr := agentAddr(n, st)
		if addr == "" {
			out[name] = failed("no address")
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			p := probe(hc, name, n, addr)
			mu.Lock()
			out[name] = p
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// agentGet GETs http://addr+path and decodes the JSON answer into v.
func agentGet(ctx context.Context, hc *http.Client, addr, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return shortNetErr(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s%s: %s", addr, path, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(v); err != nil {
		return fmt.Errorf("%s%s: decode: %w", addr, path, err)
	}
	return nil
}

// shortNetErr trims the URL noise from an HTTP client error.
func shortNetErr(err error) error {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.HasPrefix(msg, "Get ") {
		return fmt.Errorf("%s", msg[i+2:])
	}
	return err
}

// buildReport grades every node; it is pure so tests can feed it.
func buildReport(in statusInput) clusterReport {
	inv := in.inv
	rep := clusterReport{Rev: inv.Rev, Checked: in.now.UTC(), Nodes: []nodeReport{}}
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
		nr := nodeReport{Name: name, Alive: inv.Alive[name], Blocks: blocksOf[name], Endpoints: endpointsOf[name], Agent: "not asked"}
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
		st, hasStatus, err := decodeStatus(inv, name)
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
					if n.State != "Established" {
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
			if age := in.now.Sub(st.Updated); nr.Alive && age > statusStaleAfter {
				problem("status not refreshed for %s (agent stuck, or clocks apart)", age.Round(time.Second))
			}
		case nr.Alive:
			problem("heartbeat but no status record")
		}
		if !nr.Alive {
			problem("no heartbeat: %s (agent stopped or cut off from etcd; its containers and its peers keep their routes until `skein node delete`)", api.AgentDownDataPathKept)
		}
		if p, ok := in.probes[name]; ok {
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
			problem("%d endpoint change(s) not yet in etcd (oldest %s ago): other nodes' policy does not know them yet", nr.Unpublished, in.now.Sub(nr.UnpublishedSince).Round(time.Second))
		}
		nr.Healthy = len(nr.Problems) == 0
		rep.Nodes = append(rep.Nodes, nr)
	}
	sort.Slice(rep.Nodes, func(i, j int) bool { return rep.Nodes[i].Name < rep.Nodes[j].Name })
	rep.Kube = buildKubeReport(inv.Other[api.KubeStatusKey], in.now)
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
		if state == "Established" {
			out[peer] = api.LinkUp
		}
	}
	return out
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

func renderStatus(tw *tabwriter.Writer, rep clusterReport, wide bool) {
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
	renderKube(tw, rep.Kube, rep.Checked)
}
