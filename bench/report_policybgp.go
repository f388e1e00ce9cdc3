package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The policy and BGP sections of the report: their results, target rows
// and markdown.

// Targets of the policy issue.
const (
	targetPolicyRatio    = 0.95                   // throughput and RR rate at the top level ≥ this × no policy
	targetPolicyApplyP99 = 200 * time.Millisecond // policy apply → enforced on every host, p99
	targetNewEndpointP99 = 100 * time.Millisecond // new endpoint → in the sets of another host, p99
	targetCompile        = time.Second            // full compile of 1 000 policies × 10 000 endpoints
)

// Targets of the BGP issue.
const (
	targetBGPRatio   = 0.97        // routed throughput ≥ this × hand-built routing
	targetBGPJoinP99 = time.Second // node join → routes on every host, p99, node mesh
)

// PolicyResult is the policy phase: an allowed cross-host flow at several
// numbers of NetworkPolicies, and the control-plane times.
type PolicyResult struct {
	// Endpoints is the number of endpoint records in the cluster.
	Endpoints int
	// Levels are ordered by number of policies; the first has none.
	Levels []PolicyLevel
	// Probes is the number of timed applies per level.
	Probes int
	// CompilePolicies × CompileEndpoints is what Compile and CompileNode
	// compiled, in the bench's process: every endpoint's program, and the
	// server node's share (what its agent compiles).
	CompilePolicies, CompileEndpoints int
	Compile, CompileNode              []time.Duration
	CompileSets, CompileRules         int
	// NewEndpoint holds, per new container, the time from its endpoint
	// record to its address in a set on the other host, measured with
	// NewEndpointLevel policies.
	NewEndpoint      []time.Duration
	NewEndpointLevel int
}

// PolicyLevel is one number of policies, measured in every round.
type PolicyLevel struct {
	Policies int
	// SelectingServer is how many of them select the flow's destination.
	SelectingServer int
	// Gbps, RRP50 (µs) per round, RR pooled, as in PathResult.
	Gbps  []float64
	RRP50 []float64
	RR    []time.Duration
	Err   string
	// AgentCPU holds, per round, the CPU both agents used while the flow
	// was measured, in % of one core.
	AgentCPU []float64
	// Ready holds each agent's start → ready time with this state loaded
	// (first visit).
	Ready []time.Duration
	// Apply and Delete hold the times from a policy write to every agent
	// enforcing it (first visit).
	Apply, Delete []time.Duration
	// Agents holds the agents' memory after loading the level.
	Agents []AgentMem
	// The server host's nftables table, from its agent, and the duration
	// of the agent's last nftables apply.
	Chains, Rules, Sets, Elements int
	NftApply                      time.Duration
	// Decode and CompileNode are, in the bench's process on what the
	// agents load, the decoding of every stored policy and the compile of
	// the server node's program: what an agent does on every change.
	Decode, CompileNode time.Duration
}

// AgentMem is one agent's memory.
type AgentMem struct {
	Host                   string
	RSSBytes, PeakRSSBytes int64
}

// BGPResult is the BGP phase.
type BGPResult struct {
	// Dataplane holds the hand-built routed pair and Skein's BGP path.
	Dataplane    *DataplaneResult
	ContainerMTU int
	Restart      *BGPRestart
	// Joins is the number of joins per lab.
	Joins              int
	MeshJoin, BIRDJoin *JoinResult
	Timers             BGPTimers
	Notes              []string
}

// BGPRestart is the pings across an agent restart.
type BGPRestart struct {
	Host           string
	Interval       time.Duration
	Sent, Received int
	// Restart is lab.RestartAgent (stop, start, ready); Resynced is from
	// the same start to the speaker synced again (sessions Established, no
	// routes of the previous run kept); PingSpan is how long pings ran.
	Restart, Resynced, PingSpan time.Duration
	Note                        string
}

// BGPTimers are the speaker's defaults (package bgp).
type BGPTimers struct {
	Hold, Keepalive, ConnectRetry, RestartTime, StaleRoute time.Duration
}

// policyTop returns the level without policies and the one with the most,
// or nils.
func (p *PolicyResult) policyTop() (none, top *PolicyLevel) {
	for i := range p.Levels {
		lv := &p.Levels[i]
		if lv.Policies == 0 && none == nil {
			none = lv
		}
		if top == nil || lv.Policies > top.Policies {
			top = lv
		}
	}
	if top == none {
		top = nil
	}
	return none, top
}

// vsNone returns the median per-round ratios of lv's throughput and RR rate
// (1 / p50) to none's.
func (lv *PolicyLevel) vsNone(none *PolicyLevel) (tput, rr float64, tok, rok bool) {
	if r := ratios(lv.Gbps, none.Gbps); len(r) > 0 {
		tput, tok = median(r), true
	}
	if r := ratios(none.RRP50, lv.RRP50); len(r) > 0 {
		rr, rok = median(r), true
	}
	return tput, rr, tok, rok
}

func (r *Report) policyTargets() []target {
	p := r.Policy
	tput := target{what: "Policy: TCP throughput with the most NetworkPolicies", goal: fmt.Sprintf("≥ %.2f × no policy", targetPolicyRatio)}
	rr := target{what: "Policy: request/response rate (1 / RR p50) with the most NetworkPolicies", goal: fmt.Sprintf("≥ %.2f × no policy", targetPolicyRatio)}
	apply := target{what: "Policy apply → enforced on every host, p99", goal: "≤ " + ms(targetPolicyApplyP99)}
	newEP := target{what: "New endpoint → its IP in the sets of another host, p99", goal: "≤ " + ms(targetNewEndpointP99)}
	comp := target{what: "Full policy compile, 1 000 policies × 10 000 endpoints", goal: "≤ " + ms(targetCompile)}
	if p != nil {
		if none, top := p.policyTop(); none != nil && top != nil {
			t, q, tok, rok := top.vsNone(none)
			if tok {
				tput.what = fmt.Sprintf("Policy: TCP throughput with %s NetworkPolicies", count(top.Policies))
				tput.measured, tput.met, tput.ok = fmt.Sprintf("%.2f × no policy", t), t >= targetPolicyRatio, true
			}
			if rok {
				rr.what = fmt.Sprintf("Policy: request/response rate (1 / RR p50) with %s NetworkPolicies", count(top.Policies))
				rr.measured, rr.met, rr.ok = fmt.Sprintf("%.2f × no policy (p50 %s vs %s µs)", q, us(percentile(top.RR, 50)), us(percentile(none.RR, 50))), q >= targetPolicyRatio, true
			}
		}
		var worst *PolicyLevel
		for i := range p.Levels {
			lv := &p.Levels[i]
			if len(lv.Apply) > 0 && (worst == nil || lv.Policies > worst.Policies) {
				worst = lv
			}
		}
		if worst != nil {
			v := percentile(worst.Apply, 99)
			apply.what = fmt.Sprintf("Policy apply → enforced on every host, p99 (%s policies loaded)", count(worst.Policies))
			apply.measured, apply.met, apply.ok = fmt.Sprintf("%s (n=%d)", ms(v), len(worst.Apply)), v <= targetPolicyApplyP99, true
		}
		if len(p.NewEndpoint) > 0 {
			v := percentile(p.NewEndpoint, 99)
			newEP.what = fmt.Sprintf("New endpoint → its IP in the sets of another host, p99 (%s policies loaded)", count(p.NewEndpointLevel))
			newEP.measured, newEP.met, newEP.ok = fmt.Sprintf("%s (n=%d)", ms(v), len(p.NewEndpoint)), v <= targetNewEndpointP99, true
		}
		if len(p.Compile) > 0 {
			v := percentile(p.Compile, 50)
			comp.what = fmt.Sprintf("Full policy compile, %s policies × %s endpoints", count(p.CompilePolicies), count(p.CompileEndpoints))
			comp.measured, comp.met, comp.ok = fmt.Sprintf("%s (median of %d, max %s)", ms(v), len(p.Compile), ms(slices.Max(p.Compile))), v <= targetCompile, true
		}
	}
	return []target{tput, rr, apply, newEP, comp}
}

func (r *Report) bgpTargets() []target {
	g := r.BGP
	tput := target{what: "BGP routed TCP throughput", goal: fmt.Sprintf("≥ %.2f × hand-built routing", targetBGPRatio)}
	join := target{what: "BGP node join → routes on every host, p99 (node mesh)", goal: "≤ " + ms(targetBGPJoinP99)}
	lost := target{what: "Pings lost across a BGP agent restart", goal: "0"}
	direct := target{what: "VXLAN direct-routing TCP throughput (same subnet)", goal: fmt.Sprintf("≥ %.2f × hand-built routing", targetBGPRatio)}
	if g != nil {
		if g.Dataplane != nil {
			if p := g.Dataplane.path(pathSkeinBGP); p != nil {
				if v, ok := g.Dataplane.ratioTo(p, pathRouted); ok {
					tput.measured, tput.met, tput.ok = fmt.Sprintf("%.2f × hand-built", v), v >= targetBGPRatio, true
				}
			}
			if p := g.Dataplane.path(pathSkeinDirect); p != nil {
				if v, ok := g.Dataplane.ratioTo(p, pathRouted); ok {
					direct.measured, direct.met, direct.ok = fmt.Sprintf("%.2f × hand-built", v), v >= targetBGPRatio, true
				}
			}
		}
		if g.MeshJoin != nil && len(g.MeshJoin.Converge) > 0 {
			v := percentile(g.MeshJoin.Converge, 99)
			join.measured, join.met, join.ok = fmt.Sprintf("%s (n=%d)", ms(v), len(g.MeshJoin.Converge)), v <= targetBGPJoinP99, true
		}
		if rs := g.Restart; rs != nil && rs.Sent > 0 {
			n := rs.Sent - rs.Received
			lost.goal = fmt.Sprintf("0 (ping every %s)", ms(rs.Interval))
			lost.measured, lost.met, lost.ok = fmt.Sprintf("%d of %d", n, rs.Sent), n == 0, true
		}
	}
	return []target{tput, direct, join, lost}
}

func (r *Report) policy(b *strings.Builder) {
	b.WriteString("## 6. Network policy\n\n")
	p := r.Policy
	if p == nil || len(p.Levels) == 0 {
		b.WriteString(notMeasured + ".\n\n")
		return
	}
	fmt.Fprintf(b, "A VXLAN lab of its own, a client container on one host and a server container on the other, and %s endpoint\n", count(p.Endpoints))
	b.WriteString("records (10 000 of a fake node, in 100 namespaces, with addresses from blocks claimed for it). Every 100th\n")
	b.WriteString("NetworkPolicy selects the server and allows the client and every pod of one of ten namespace groups on the\n")
	b.WriteString("measured ports, so with 10 000 policies the server's sets hold all 10 000 fake addresses; the others select\n")
	b.WriteString("fake pods by other labels. Levels change with the agents stopped, written to etcd in transactions, and the\n")
	b.WriteString("agents started again (\"start → ready\": the whole state loaded, compiled and enforced). Each round measures\n")
	fmt.Fprintf(b, "every level once, ascending and descending in turn (%d rounds); ratios are per round against no policy,\n", len(p.Levels[0].Gbps))
	b.WriteString("median over rounds (RR rate: no-policy p50 over this level's p50).\n\n")
	none, _ := p.policyTop()
	b.WriteString("| NetworkPolicies | selecting the server | TCP Gbit/s (median) | vs none (range; effect) | RR p50 µs | RR p99 µs | RR rate vs none | server host: chains / rules / sets / elements | agent start → ready | agent RSS (VmHWM) | agents' CPU while measured |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for i := range p.Levels {
		lv := &p.Levels[i]
		var good []float64
		for _, g := range lv.Gbps {
			if g > 0 {
				good = append(good, g)
			}
		}
		tput := "—"
		if len(good) > 0 {
			tput = fmt.Sprintf("%.1f", median(good))
		}
		vt, vr := "—", "—"
		if none != nil && lv != none {
			if t, q, tok, rok := lv.vsNone(none); tok || rok {
				if tok {
					rs := ratios(lv.Gbps, none.Gbps)
					vt = fmt.Sprintf("%.2f (%.2f – %.2f; %s)", t, slices.Min(rs), slices.Max(rs), effect(rs))
				}
				if rok {
					vr = fmt.Sprintf("%.2f", q)
				}
			}
		}
		rr50, rr99 := "—", "—"
		if len(lv.RR) > 0 {
			rr50, rr99 = us(percentile(lv.RR, 50)), us(percentile(lv.RR, 99))
		}
		var ready, rss []string
		for _, d := range lv.Ready {
			ready = append(ready, ms(d))
		}
		for _, a := range lv.Agents {
			rss = append(rss, fmt.Sprintf("%s (%s)", mb(a.RSSBytes), mb(a.PeakRSSBytes)))
		}
		cpu := "—"
		if len(lv.AgentCPU) > 0 {
			cpu = fmt.Sprintf("%.1f %%", median(lv.AgentCPU))
		}
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s | %d / %d / %d / %d | %s | %s | %s |\n", count(lv.Policies), lv.SelectingServer, tput, vt, rr50, rr99, vr,
			lv.Chains, lv.Rules, lv.Sets, lv.Elements, orDash(strings.Join(ready, ", ")), orDash(strings.Join(rss, ", ")), cpu)
	}
	b.WriteString("\nAgent columns list the client's host, then the server's; the agents' CPU is both together, median over\n")
	b.WriteString("rounds, in % of one core. \"effect\" as in section 1: a median at least 5 % off 1\n")
	b.WriteString("with two thirds of the rounds agreeing, else noise. An established flow never reaches the policy rules\n")
	b.WriteString("(`ct state established,related accept` comes first), so only each connection's first packet pays for them.\n\n")

	b.WriteString("Per round (Gbit/s; RR p50 µs in parentheses):\n\n| policies |")
	rounds := 0
	for _, lv := range p.Levels {
		rounds = max(rounds, len(lv.Gbps))
	}
	for i := range rounds {
		fmt.Fprintf(b, " round %d |", i+1)
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", rounds) + "\n")
	for _, lv := range p.Levels {
		fmt.Fprintf(b, "| %s |", count(lv.Policies))
		for i := range rounds {
			cell := "—"
			if i < len(lv.Gbps) && lv.Gbps[i] > 0 {
				cell = fmt.Sprintf("%.1f", lv.Gbps[i])
				if i < len(lv.RRP50) && lv.RRP50[i] > 0 {
					cell += fmt.Sprintf(" (%.0f)", lv.RRP50[i])
				}
			}
			fmt.Fprintf(b, " %s |", cell)
		}
		b.WriteString("\n")
	}
	for _, lv := range p.Levels {
		if lv.Err != "" {
			fmt.Fprintf(b, "\n- %s policies: a round failed: %s\n", count(lv.Policies), lv.Err)
		}
	}

	b.WriteString("\n### Apply → enforced\n\n")
	fmt.Fprintf(b, "At each level's first visit, %d times: a policy selecting both pods is written (`store.PutPolicy`), then\n", p.Probes)
	b.WriteString("deleted. Clock starts just before the write and stops when the last of the two agents enforces a program\n")
	b.WriteString("compiled after it: its `/debug/policy` desired version has moved and its applied version caught up, at\n")
	b.WriteString("the agent's own time of that nftables commit (polled every 5 ms). The last columns time, in the bench's\n")
	b.WriteString("process on what the agents load: decoding every stored policy (`api.DecodePolicy`; an agent decodes\n")
	b.WriteString("them all at start, then only those that changed) and compiling a node's program (every change).\n\n")
	b.WriteString("| policies loaded | apply p50 | apply p99 | apply max | delete p50 | delete p99 | n | agent's last nftables apply | decode all policies | compile the node's program |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, lv := range p.Levels {
		if len(lv.Apply) == 0 {
			continue
		}
		a, d := summarize(lv.Apply), summarize(lv.Delete)
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %d | %s | %s | %s |\n", count(lv.Policies), ms(a.P50), ms(a.P99), ms(a.Max), ms(d.P50), ms(d.P99), a.N, ms(lv.NftApply), ms(lv.Decode), ms(lv.CompileNode))
	}
	b.WriteString("\n")
	if len(p.NewEndpoint) > 0 {
		s := summarize(p.NewEndpoint)
		fmt.Fprintf(b, "**New endpoint → remote sets** (%s policies loaded): %d client-labelled containers added one by one on the\n", count(p.NewEndpointLevel), s.N)
		b.WriteString("client's host (`lab.AddContainer`); clock starts at the endpoint record (its `created` stamp or the bench's\n")
		b.WriteString("etcd watch, whichever is earlier) and stops when `nft monitor` in the server's host shows its address\n")
		b.WriteString("added to a set.\n\n")
		fmt.Fprintf(b, "| p50 | p99 | min | max | n |\n|---|---|---|---|---|\n| %s | %s | %s | %s | %d |\n\n", ms(s.P50), ms(s.P99), ms(s.Min), ms(s.Max), s.N)
	}
	if len(p.Compile) > 0 {
		c, n := summarize(p.Compile), summarize(p.CompileNode)
		fmt.Fprintf(b, "**Compile** (`policy.Compile` in the bench's process, on what the agents load at %s policies × %s endpoints):\n", count(p.CompilePolicies), count(p.CompileEndpoints))
		fmt.Fprintf(b, "every endpoint's program (as trace and matrix do) %s median, %s max of %d; one node's share (what its agent\n", ms(c.P50), ms(c.Max), c.N)
		fmt.Fprintf(b, "compiles) %s median. The full program has %d sets and %d rules.\n\n", ms(n.P50), p.CompileSets, p.CompileRules)
	}
}

// secs formats d in seconds ("9 s", "0.5 s").
func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + " s" }

// count formats n with a space between groups of thousands (10 000).
func count(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + " " + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// orDash returns s, or "—" when it is empty.
func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func (r *Report) bgp(b *strings.Builder) {
	b.WriteString("## 7. BGP\n\n")
	g := r.BGP
	if g == nil {
		b.WriteString(notMeasured + ".\n\n")
		return
	}
	t := g.Timers
	fmt.Fprintf(b, "Labs of their own with `--backend bgp`. GoBGP timers (package bgp defaults): hold %s, keepalive %s,\n", secs(t.Hold), secs(t.Keepalive))
	fmt.Fprintf(b, "connect retry %s, graceful-restart time %s, stale-route time %s. gobgp v3 makes its first connection\n", secs(t.ConnectRetry), secs(t.RestartTime), secs(t.StaleRoute))
	b.WriteString("to a new peer 1–2 s after the peer is added (hard-wired), which bounds a join from below.\n\n")
	if d := g.Dataplane; d != nil && len(d.Paths) > 0 {
		fmt.Fprintf(b, "**Routed data plane**, node mesh, container to container across two hosts, against a hand-built routed pair\n")
		fmt.Fprintf(b, "(the baselines' routed underlay, container MTU %d as Skein's), interleaved (%d rounds).\n\n", g.ContainerMTU, len(d.Paths[0].Gbps))
		b.WriteString("| path | TCP Gbit/s (median) | vs hand-built (range; effect) | RR p50 µs | RR p99 µs | per round Gbit/s (RR p50 µs) |\n|---|---|---|---|---|---|\n")
		for i := range d.Paths {
			p := &d.Paths[i]
			var good []float64
			for _, x := range p.Gbps {
				if x > 0 {
					good = append(good, x)
				}
			}
			tput, vs, rr50, rr99 := "—", "—", "—", "—"
			if len(good) > 0 {
				tput = fmt.Sprintf("%.1f", median(good))
			}
			if base := d.path(p.Base); base != nil {
				if rs := ratios(p.Gbps, base.Gbps); len(rs) > 0 {
					vs = fmt.Sprintf("%.2f (%.2f – %.2f; %s)", median(rs), slices.Min(rs), slices.Max(rs), effect(rs))
				}
			}
			if len(p.RR) > 0 {
				rr50, rr99 = us(percentile(p.RR, 50)), us(percentile(p.RR, 99))
			}
			var cells []string
			for j, x := range p.Gbps {
				c := "—"
				if x > 0 {
					c = fmt.Sprintf("%.1f", x)
					if j < len(p.RRP50) && p.RRP50[j] > 0 {
						c += fmt.Sprintf(" (%.0f)", p.RRP50[j])
					}
				}
				cells = append(cells, c)
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", p.Name, tput, vs, rr50, rr99, strings.Join(cells, ", "))
		}
		b.WriteString("\n")
		if s, n := d.path(pathSkeinBGP), d.path(pathRoutedNft); s != nil && n != nil {
			if v, ok := d.ratioTo(s, pathRoutedNft); ok {
				fmt.Fprintf(b, "- Skein BGP against the hand-built pair with the copy of its nftables head: %.2f ×.\n", v)
			}
		}
		for _, p := range d.Paths {
			if p.Err != "" {
				fmt.Fprintf(b, "- %s: a round failed: %s\n", p.Key, p.Err)
			}
		}
		for _, n := range g.Notes {
			fmt.Fprintf(b, "- %s\n", n)
		}
		if len(g.Notes) > 0 {
			b.WriteString("\n")
		}
		cpuTable(b, d.Paths)
	}
	if rs := g.Restart; rs != nil {
		fmt.Fprintf(b, "**Agent restart**: `ping -i %g` from the container on one host to the one on %s while that host's agent\n", rs.Interval.Seconds(), rs.Host)
		fmt.Fprintf(b, "restarts (`lab.RestartAgent`, graceful restart on): %d sent, %d received, %d lost. Stop → ready took %s;\n", rs.Sent, rs.Received, rs.Sent-rs.Received, ms(rs.Restart))
		fmt.Fprintf(b, "the speaker was synced again (sessions Established, the previous run's routes no longer kept) %s after the\n", ms(rs.Resynced))
		fmt.Fprintf(b, "restart began; pings ran %s.", ms(rs.PingSpan))
		if rs.Note != "" {
			fmt.Fprintf(b, " Note: %s.", rs.Note)
		}
		b.WriteString("\n\n")
	}
	joins := []struct {
		name string
		j    *JoinResult
	}{{"node mesh", g.MeshJoin}, {"BIRD route reflector (`--tor bird`)", g.BIRDJoin}}
	b.WriteString("**Node join → routes**: hosts join one by one (`lab.AddHost`), timed as in section 3 (the new node's record →\n")
	b.WriteString("the route to its block, learned over BGP, on every other host).\n\n")
	b.WriteString("| topology | p50 | p99 | min | max | first host p50 | n | per join ms (every host) |\n|---|---|---|---|---|---|---|---|\n")
	for _, x := range joins {
		if x.j == nil || len(x.j.Converge) == 0 {
			fmt.Fprintf(b, "| %s | — | — | — | — | — | 0 | %s |\n", x.name, notMeasured)
			continue
		}
		s, f := summarize(x.j.Converge), summarize(x.j.First)
		var per []string
		for _, d := range x.j.Converge {
			per = append(per, msNum(d))
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %d | %s |\n", x.name, ms(s.P50), ms(s.P99), ms(s.Min), ms(s.Max), ms(f.P50), s.N, strings.Join(per, ", "))
	}
	b.WriteString("\n")
}
