package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Targets of the core issue.
const (
	targetVXLANRatio = 0.97                   // Skein VXLAN throughput ≥ this × the hand-built VXLAN pair (issue 11)
	targetCNIRatio   = 0.6                    // skein ADD p50 ≤ this × reference ADD p50
	targetCNIDel     = 0.7                    // skein DEL p50 ≤ this × reference DEL p50
	targetJoinP99    = 20 * time.Millisecond  // node join → route everywhere, p99
	targetReadyP99   = 150 * time.Millisecond // agent start → ready, p99
	targetRSSBytes   = 35 << 20               // agent RSS
	targetIdleCPUPct = 0.3                    // agent idle CPU, % of one core
)

// Names shared by the phases and the report.
const (
	refPlugins       = "bridge + host-local"
	skeinPluginName  = "skein-cni"
	pathBare         = "bare"
	pathHand         = "hand"
	pathSkein        = "skein"
	pathRouted       = "routed"     // hand-built routed pair (BGP phase)
	pathRoutedNft    = "routed+nft" // the same with a copy of Skein's nftables head
	pathSkeinBGP     = "skein-bgp"
	pathSkeinDirect  = "skein-direct" // VXLAN direct routing (BGP phase)
	notMeasured      = "not measured"
	reportTimeFormat = "2006-01-02 15:04:05 MST"
	// cniMetric is the histogram the agent keeps of its CNI API calls.
	cniMetric = "skein_cni_request_duration_seconds"
)

// Report is everything one run measured; render turns it into markdown.
type Report struct {
	Machine  Machine
	Settings Settings
	Started  time.Time
	Took     time.Duration

	Dataplane *DataplaneResult
	Agents    *AgentStats
	CNI       *CNIResult
	Ready     *ReadyResult
	Join      *JoinResult
	Policy    *PolicyResult
	BGP       *BGPResult
	Scale     *ScaleResult
	Fanout    *FanoutResult
	Kube      *KubeResult
	// DropLog prices the drop log on allowed traffic (log-on vs log-off).
	DropLog   *DataplaneResult
	WireGuard *WireGuardResult

	// Failures lists phases that did not complete, as "phase: error".
	Failures []string
}

// Machine describes where the run happened.
type Machine struct {
	Kernel, CPU, Commit, GoVersion, Iperf string
	NProc                                 int
	LoadStart, LoadEnd                    string
}

// Settings are the run's knobs, echoed in the report.
type Settings struct {
	Rounds       int
	IperfSeconds int
	RRCount      int
	CNICount     int
	Joins        int
	Restarts     int
	IdleWindow   time.Duration
}

// PathResult is one data-plane configuration measured in every round.
type PathResult struct {
	Key  string // short identifier: bare, hand, skein, skein+gro ...
	Name string // what the report calls it
	// Base is the key of the path this one is a variant of ("" for none);
	// the report gives its throughput relative to Base as well.
	Base string
	// Gbps holds the iperf3 throughput of each round; 0 marks a failed round.
	Gbps []float64
	// RR holds the request/response round-trip times of all rounds.
	RR []time.Duration
	// RRP50 holds each round's p50 round trip, in microseconds.
	RRP50 []float64
	// Retrans holds the sender's retransmits of each round.
	Retrans []int
	// Conn holds the new-connection times (connect, one round trip,
	// close) of all rounds, where a phase measures them (drop log).
	Conn []time.Duration
	// ConnP50 holds each round's p50 new-connection time, in microseconds.
	ConnP50 []float64
	// CPU is the netfilter CPU of the row's iperf3 runs, in milliseconds
	// per GB moved, by part (cpuParts); nil when not profiled.
	CPU map[string]float64
	// Err is the last error of a failed round.
	Err string
}

// DataplaneResult is the interleaved data-plane comparison.
type DataplaneResult struct {
	Paths []PathResult
	// Notes are findings worth printing under the table (device settings).
	Notes []string
}

// path returns the path with key k, or nil.
func (d *DataplaneResult) path(k string) *PathResult {
	for i := range d.Paths {
		if d.Paths[i].Key == k {
			return &d.Paths[i]
		}
	}
	return nil
}

// ratioTo returns the median over rounds of p's throughput over base's.
func (d *DataplaneResult) ratioTo(p *PathResult, base string) (float64, bool) {
	b := d.path(base)
	if b == nil {
		return 0, false
	}
	r := ratios(p.Gbps, b.Gbps)
	if len(r) == 0 {
		return 0, false
	}
	return median(r), true
}

// AgentStats are the resource figures of the lab's first agents.
type AgentStats struct {
	Agents []AgentUsage
	Window time.Duration
}

// AgentUsage is one agent's memory and idle CPU.
type AgentUsage struct {
	Host          string
	Containers    int
	RSSBytes      int64 // VmRSS at the start of the idle window
	RSSEndBytes   int64 // VmRSS at its end
	IdleCPUPct    float64
	CPUTicks      int64 // utime+stime ticks spent in the window
	PeakRSSBytes  int64 // VmHWM at the end
	ThreadsAtIdle int
}

// CNIResult is the CNI latency comparison.
type CNIResult struct {
	Plugins []CNIPlugin
	// AgentVerbs is the skein agent's own time per API call during the
	// phase, from its request histogram.
	AgentVerbs []VerbTime
}

// VerbTime is the mean time the agent spent on one kind of API call.
type VerbTime struct {
	Verb string
	Mean time.Duration
	N    int
}

// CNIPlugin is one plugin chain's latencies through cnitool.
type CNIPlugin struct {
	Name    string
	Add     []time.Duration
	Del     []time.Duration
	Version []time.Duration // exec of the plugin binary with CNI_COMMAND=VERSION
}

// ReadyResult is agent start → ready over restarts.
type ReadyResult struct {
	Host string
	// Agent holds the agent's own figure (readyAfter: from agent.Run to ready).
	Agent []time.Duration
	// External holds the time from exec of the agent to its first 200 on /readyz.
	External []time.Duration
}

// JoinResult is node-join convergence.
type JoinResult struct {
	// Converge holds, per join, the time from the node record to the route
	// to its block on the last of the other hosts.
	Converge []time.Duration
	// First holds, per join, the same to the first host.
	First []time.Duration
	// Peers holds, per join, how many other hosts had to converge.
	Peers []int
	// RealTime reports whether the watcher ran at real-time priority.
	RealTime bool
}

// render writes the report as markdown.
func (r *Report) render(w io.Writer) error {
	var b strings.Builder
	r.header(&b)
	r.targets(&b)
	r.dataplane(&b)
	r.cni(&b)
	r.join(&b)
	r.ready(&b)
	r.agents(&b)
	r.policy(&b)
	r.bgp(&b)
	r.scale(&b)
	r.fanout(&b)
	r.kube(&b)
	r.dropLog(&b)
	r.wireguard(&b)
	r.method(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *Report) header(b *strings.Builder) {
	m := r.Machine
	fmt.Fprintf(b, "# Skein benchmarks\n\n")
	fmt.Fprintf(b, "Generated by `make bench` (`go run ./bench`): every figure below comes from one run, and each\n")
	fmt.Fprintf(b, "Skein figure is compared with a baseline measured in the same run. Absolute numbers drift from run\n")
	fmt.Fprintf(b, "to run and machine to machine; the ratios are what to read.\n\n")
	fmt.Fprintf(b, "| | |\n|---|---|\n")
	fmt.Fprintf(b, "| date | %s (run took %s) |\n", r.Started.Format(reportTimeFormat), r.Took.Round(time.Second))
	fmt.Fprintf(b, "| commit | %s |\n", m.Commit)
	fmt.Fprintf(b, "| kernel | %s |\n", m.Kernel)
	fmt.Fprintf(b, "| CPU | %s × %d |\n", m.CPU, m.NProc)
	fmt.Fprintf(b, "| tools | %s, %s |\n", m.GoVersion, m.Iperf)
	fmt.Fprintf(b, "| load average | %s at start, %s at end |\n", m.LoadStart, m.LoadEnd)
	s := r.Settings
	fmt.Fprintf(b, "| settings | %d interleaved rounds, iperf3 %d s, %d request/response round trips, %d CNI containers, %d joins, %d restarts, idle window %s |\n\n",
		s.Rounds, s.IperfSeconds, s.RRCount, s.CNICount, s.Joins, s.Restarts, s.IdleWindow)
	if len(r.Failures) > 0 {
		fmt.Fprintf(b, "**Phases that failed in this run:**\n\n")
		for _, f := range r.Failures {
			fmt.Fprintf(b, "- %s\n", f)
		}
		b.WriteString("\n")
	}
}

// target is one row of the targets table.
type target struct {
	what, goal, measured string
	met                  bool
	ok                   bool // measured at all
}

func (r *Report) targetRows() []target {
	var rows []target
	t := target{what: "Skein VXLAN TCP throughput (no policy)", goal: fmt.Sprintf("≥ %.2f × hand-built VXLAN", targetVXLANRatio)}
	if r.Dataplane != nil {
		if p := r.Dataplane.path(pathSkein); p != nil {
			if v, ok := r.Dataplane.ratioTo(p, pathHand); ok {
				t.measured, t.met, t.ok = fmt.Sprintf("%.2f × hand-built", v), v >= targetVXLANRatio, true
			}
		}
	}
	rows = append(rows, t)

	t = target{what: "CNI ADD p50 (skein-cni)", goal: fmt.Sprintf("≤ %.1f × %s", targetCNIRatio, refPlugins)}
	if r.CNI != nil {
		s, ref := r.CNI.plugin(skeinPluginName), r.CNI.plugin(refPlugins)
		if s != nil && ref != nil && len(s.Add) > 0 && len(ref.Add) > 0 {
			sp, rp := percentile(s.Add, 50), percentile(ref.Add, 50)
			v := float64(sp) / float64(rp)
			t.measured, t.met, t.ok = fmt.Sprintf("%.2f × (%s vs %s)", v, ms(sp), ms(rp)), v <= targetCNIRatio, true
		}
	}
	rows = append(rows, t)
	t = target{what: "CNI DEL p50 (skein-cni)", goal: fmt.Sprintf("≤ %.1f × %s", targetCNIDel, refPlugins)}
	if r.CNI != nil {
		s, ref := r.CNI.plugin(skeinPluginName), r.CNI.plugin(refPlugins)
		if s != nil && ref != nil && len(s.Del) > 0 && len(ref.Del) > 0 {
			sp, rp := percentile(s.Del, 50), percentile(ref.Del, 50)
			v := float64(sp) / float64(rp)
			t.measured, t.met, t.ok = fmt.Sprintf("%.2f × (%s vs %s)", v, ms(sp), ms(rp)), v <= targetCNIDel, true
		}
	}
	rows = append(rows, t)

	t = target{what: "Node join → route on every host, p99", goal: "≤ " + ms(targetJoinP99)}
	if r.Join != nil && len(r.Join.Converge) > 0 {
		p := percentile(r.Join.Converge, 99)
		t.measured, t.met, t.ok = fmt.Sprintf("%s (n=%d)", ms(p), len(r.Join.Converge)), p <= targetJoinP99, true
	}
	rows = append(rows, t)

	t = target{what: "Agent start → ready, p99", goal: "≤ " + ms(targetReadyP99)}
	if r.Ready != nil && len(r.Ready.Agent) > 0 {
		p := percentile(r.Ready.Agent, 99)
		t.measured, t.met, t.ok = fmt.Sprintf("%s (n=%d; from exec: %s)", ms(p), len(r.Ready.Agent), ms(percentile(r.Ready.External, 99))), p <= targetReadyP99, true
	}
	rows = append(rows, t)

	rss := target{what: "Agent RSS", goal: fmt.Sprintf("≤ %d MB", targetRSSBytes>>20)}
	cpu := target{what: "Agent idle CPU", goal: fmt.Sprintf("≤ %.1f %% of a core", targetIdleCPUPct)}
	if r.Agents != nil && len(r.Agents.Agents) > 0 {
		var maxRSS int64
		var maxCPU float64
		for _, a := range r.Agents.Agents {
			maxRSS = max(maxRSS, a.RSSBytes, a.RSSEndBytes)
			maxCPU = max(maxCPU, a.IdleCPUPct)
		}
		rss.measured, rss.met, rss.ok = mb(maxRSS)+" (max of agents)", maxRSS <= targetRSSBytes, true
		cpu.measured, cpu.met, cpu.ok = fmt.Sprintf("%.2f %% (max of agents)", maxCPU), maxCPU <= targetIdleCPUPct, true
	}
	rows = append(rows, rss, cpu)
	rows = append(rows, r.policyTargets()...)
	return append(rows, r.bgpTargets()...)
}

func (r *Report) targets(b *strings.Builder) {
	b.WriteString("## Targets\n\n| target | goal | measured | |\n|---|---|---|---|\n")
	for _, t := range r.targetRows() {
		verdict := notMeasured
		switch {
		case t.ok && t.met:
			verdict = "**met**"
		case t.ok:
			verdict = "**not met**"
		}
		measured := t.measured
		if !t.ok {
			measured = "—"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", t.what, t.goal, measured, verdict)
	}
	b.WriteString("\n")
}

func (r *Report) dataplane(b *strings.Builder) {
	b.WriteString("## 1. Data plane\n\n")
	d := r.Dataplane
	if d == nil {
		b.WriteString(notMeasured + ".\n\n")
		return
	}
	fmt.Fprintf(b, "One TCP stream (iperf3, %d s) and 1-byte TCP request/response, container to container. Each round measures\n", r.Settings.IperfSeconds)
	fmt.Fprintf(b, "every row once, in table order; \"vs bare\" is the median over rounds of the per-round ratio to the bare veth\n")
	fmt.Fprintf(b, "measured in the same round (%d rounds). Request/response percentiles pool all rounds (%d round trips each).\n\n", r.Settings.Rounds, r.Settings.RRCount)
	b.WriteString("| path | TCP Gbit/s (median) | vs bare | vs base row | RR p50 µs | RR p99 µs | retransmits (median) |\n|---|---|---|---|---|---|---|\n")
	for i := range d.Paths {
		p := &d.Paths[i]
		vsBare, vsBase := "—", "—"
		if v, ok := d.ratioTo(p, pathBare); ok {
			vsBare = fmt.Sprintf("%.2f", v)
		}
		if p.Base != "" {
			if v, ok := d.ratioTo(p, p.Base); ok {
				vsBase = fmt.Sprintf("%.2f × %s", v, p.Base)
			}
		}
		var good []float64
		for _, g := range p.Gbps {
			if g > 0 {
				good = append(good, g)
			}
		}
		tput := "—"
		if len(good) > 0 {
			tput = fmt.Sprintf("%.1f", median(good))
		}
		rr50, rr99 := "—", "—"
		if len(p.RR) > 0 {
			rr50, rr99 = us(percentile(p.RR, 50)), us(percentile(p.RR, 99))
		}
		var rt []float64
		for _, x := range p.Retrans {
			rt = append(rt, float64(x))
		}
		retr := "—"
		if len(rt) > 0 {
			retr = fmt.Sprintf("%.0f", median(rt))
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s |\n", p.Name, tput, vsBare, vsBase, rr50, rr99, retr)
	}
	r.settingRounds(b)
	b.WriteString("\nPer round (Gbit/s; RR p50 µs in parentheses):\n\n| path |")
	rounds := 0
	for _, p := range d.Paths {
		rounds = max(rounds, len(p.Gbps))
	}
	for i := range rounds {
		fmt.Fprintf(b, " round %d |", i+1)
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", rounds) + "\n")
	for _, p := range d.Paths {
		fmt.Fprintf(b, "| %s |", p.Key)
		for i := range rounds {
			cell := "—"
			if i < len(p.Gbps) && p.Gbps[i] > 0 {
				cell = fmt.Sprintf("%.1f", p.Gbps[i])
				if i < len(p.RRP50) && p.RRP50[i] > 0 {
					cell += fmt.Sprintf(" (%.0f)", p.RRP50[i])
				}
			}
			fmt.Fprintf(b, " %s |", cell)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	cpuTable(b, d.Paths)
	for _, p := range d.Paths {
		if p.Err != "" {
			fmt.Fprintf(b, "- %s: a round failed: %s\n", p.Key, p.Err)
		}
	}
	for _, n := range d.Notes {
		fmt.Fprintf(b, "- %s\n", n)
	}
	if len(d.Notes) > 0 {
		b.WriteString("\n")
	}
}

// plugin returns the plugin chain named name, or nil.
func (c *CNIResult) plugin(name string) *CNIPlugin {
	for i := range c.Plugins {
		if c.Plugins[i].Name == name {
			return &c.Plugins[i]
		}
	}
	return nil
}

func (r *Report) cni(b *strings.Builder) {
	b.WriteString("## 2. CNI ADD / DEL through cnitool\n\n")
	if r.CNI == nil {
		b.WriteString(notMeasured + ".\n\n")
		return
	}
	fmt.Fprintf(b, "%d containers per plugin chain, ADDs then DELs, the two chains alternating call by call; each time is the\n", r.Settings.CNICount)
	b.WriteString("wall time of one `cnitool add|del` process started inside the host namespace. The exec floor is the plugin\n")
	b.WriteString("binary alone answering `CNI_COMMAND=VERSION`.\n\n")
	b.WriteString("| plugins | ADD p50 / p99 ms | DEL p50 / p99 ms | exec floor (VERSION) p50 ms | n |\n|---|---|---|---|---|\n")
	for _, p := range r.CNI.Plugins {
		fmt.Fprintf(b, "| %s | %s / %s | %s / %s | %s | %d |\n", p.Name,
			msNum(percentile(p.Add, 50)), msNum(percentile(p.Add, 99)),
			msNum(percentile(p.Del, 50)), msNum(percentile(p.Del, 99)),
			msNum(percentile(p.Version, 50)), len(p.Add))
	}
	s, ref := r.CNI.plugin(skeinPluginName), r.CNI.plugin(refPlugins)
	if s != nil && ref != nil && len(s.Add) > 0 && len(ref.Add) > 0 && len(s.Del) > 0 && len(ref.Del) > 0 {
		fmt.Fprintf(b, "\nskein-cni / reference: ADD p50 %.2f ×, DEL p50 %.2f ×.\n",
			float64(percentile(s.Add, 50))/float64(percentile(ref.Add, 50)),
			float64(percentile(s.Del, 50))/float64(percentile(ref.Del, 50)))
	}
	if len(r.CNI.AgentVerbs) > 0 {
		b.WriteString("\nInside skein-cni's calls, the agent's own time per API request (mean over the phase, warm-up included, from\nits `" + cniMetric + "` histogram):")
		for i, v := range r.CNI.AgentVerbs {
			sep := ","
			if i == 0 {
				sep = ""
			}
			fmt.Fprintf(b, "%s %s %s (n=%d)", sep, v.Verb, ms(v.Mean), v.N)
		}
		b.WriteString(".\n")
	}
	b.WriteString("\n")
}

func (r *Report) join(b *strings.Builder) {
	b.WriteString("## 3. Node-join convergence\n\n")
	j := r.Join
	if j == nil || len(j.Converge) == 0 {
		b.WriteString(notMeasured + ".\n\n")
		return
	}
	b.WriteString("Hosts join one by one (`lab.AddHost`). A watcher process (`bench join-watch`")
	if j.RealTime {
		b.WriteString(", at real-time priority with `chrt -f`")
	}
	b.WriteString(") holds an etcd\nwatch on the node records and a netlink route subscription in every host's namespace, and stamps each\n")
	b.WriteString("event with CLOCK_MONOTONIC as it arrives. Clock starts at the first sign of the new node's record (the\n")
	b.WriteString("watcher's notification or the first route to its block on any host, whichever comes first: etcd serves\n")
	b.WriteString("the agents' watches and the watcher's in no fixed order, and under load the watcher was seen up to tens\n")
	b.WriteString("of milliseconds late). Both come after the commit, so every figure is a lower bound. Clock stops when\n")
	b.WriteString("the route to the new node's block is added on the last (\"every\") or the first other host.\n\n")
	all, first := summarize(j.Converge), summarize(j.First)
	peers := slices.Clone(j.Peers)
	slices.Sort(peers)
	fmt.Fprintf(b, "| | p50 | p99 | min | max | n |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(b, "| record → route on every other host | %s | %s | %s | %s | %d |\n", ms(all.P50), ms(all.P99), ms(all.Min), ms(all.Max), all.N)
	fmt.Fprintf(b, "| record → route on the first host | %s | %s | %s | %s | %d |\n", ms(first.P50), ms(first.P99), ms(first.Min), ms(first.Max), first.N)
	if len(peers) > 0 {
		fmt.Fprintf(b, "\nOther hosts per join: %d to %d. p99 is nearest-rank: with fewer than 100 samples it is the maximum.\n", peers[0], peers[len(peers)-1])
	}
	b.WriteString("All agents run on this machine's CPUs, so every join wakes every agent at once; the last host's time\n")
	b.WriteString("includes waiting for the CPU behind the others, which grows with the number of hosts.\n\n")
	b.WriteString("| join | other hosts | first host ms | every host ms |\n|---|---|---|---|\n")
	for i := range j.Converge {
		p := 0
		if i < len(j.Peers) {
			p = j.Peers[i]
		}
		f := "—"
		if i < len(j.First) {
			f = msNum(j.First[i])
		}
		fmt.Fprintf(b, "| %d | %d | %s | %s |\n", i+1, p, f, msNum(j.Converge[i]))
	}
	b.WriteString("\n")
}

func (r *Report) ready(b *strings.Builder) {
	b.WriteString("## 4. Agent start → ready\n\n")
	rd := r.Ready
	if rd == nil || len(rd.Agent) == 0 {
		b.WriteString(notMeasured + ".\n\n")
		return
	}
	fmt.Fprintf(b, "The agent on %s is restarted %d times (`lab.RestartAgent`: SIGTERM, wait, start). \"agent\" is the agent's own\n", rd.Host, len(rd.Agent))
	b.WriteString("figure (`readyAfter` in /debug/topology, from `agent.Run` to ready, also logged as \"agent ready\");\n")
	b.WriteString("\"from exec\" is from the bench starting the process (through `ip netns exec`) to the first 200 on /readyz,\n")
	b.WriteString("polled every 2 ms from inside the host namespace.\n\n")
	a, e := summarize(rd.Agent), summarize(rd.External)
	fmt.Fprintf(b, "| | p50 | p99 | min | max | n |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(b, "| agent (readyAfter) | %s | %s | %s | %s | %d |\n", ms(a.P50), ms(a.P99), ms(a.Min), ms(a.Max), a.N)
	if e.N > 0 {
		fmt.Fprintf(b, "| from exec | %s | %s | %s | %s | %d |\n", ms(e.P50), ms(e.P99), ms(e.Min), ms(e.Max), e.N)
	}
	b.WriteString("\n")
}

func (r *Report) agents(b *strings.Builder) {
	b.WriteString("## 5. Agent memory and idle CPU\n\n")
	s := r.Agents
	if s == nil || len(s.Agents) == 0 {
		b.WriteString(notMeasured + ".\n\n")
		return
	}
	fmt.Fprintf(b, "VmRSS from /proc/<pid>/status at the start and end of a %s idle window, right after the lab came up;\n", s.Window)
	b.WriteString("idle CPU is utime+stime from /proc/<pid>/stat over the window, in % of one core.\n\n")
	b.WriteString("| host | containers | RSS start | RSS end | peak RSS (VmHWM) | threads | idle CPU | ticks |\n|---|---|---|---|---|---|---|---|\n")
	for _, a := range s.Agents {
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %d | %.2f %% | %d |\n", a.Host, a.Containers, mb(a.RSSBytes), mb(a.RSSEndBytes), mb(a.PeakRSSBytes), a.ThreadsAtIdle, a.IdleCPUPct, a.CPUTicks)
	}
	b.WriteString("\n")
}

func (r *Report) method(b *strings.Builder) {
	b.WriteString(`## How it was measured

- Everything runs in network namespaces named ` + "`skbench*`" + ` on this machine; nothing touches the root namespace.
  Skein runs as a lab (` + "`lab.Up`" + `: an underlay bridge namespace with etcd, one namespace per host with a real
  skeind, containers wired by the real skein-cni). The bare pair and the hand-built VXLAN pair are built with
  ` + "`ip`" + ` exactly as in the baselines (underlay bridge, VXLAN device nolearning, static neighbour + FDB, routed
  containers with a /32 and gateway 169.254.1.1, container MTU 1450), with the VXLAN UDP checksum setting read
  from Skein's own device.
- iperf3 client and server, the request/response client and server, cnitool and the plugin floors run as
  separate processes started inside the namespaces, so the bench's own Go scheduling is not on the path.
  The request/response helper uses blocking sockets (no Go netpoller): one TCP connection, 1 byte each way,
  TCP_NODELAY, after 200 warm-up round trips.
- Settings rows ("Skein + ...", "hand-built ...") are applied inside the namespaces concerned (` + "`ethtool -K`" + `,
  ` + "`/sys/class/net/*/threaded`" + `, a net sysctl, or an nftables table of the bench's own) just before that row is
  measured and undone right after it, so every round measures Skein as is and each setting side by side.
- The machine has 2 vCPUs shared with other work: throughput drifts ±5–10 % between runs and 1-byte latency is
  bimodal, so read ratios of rows measured in the same round, not absolute numbers.
- The netfilter CPU tables come from ` + "`perf record -a -F 499 -k mono`" + ` running through each multi-row phase:
  samples whose kernel function is nftables' (` + "`nft_*`" + `), conntrack's (` + "`nf_conntrack*`, `nf_ct_*`, `ipv4_conntrack*`, `nf_confirm`" + `…),
  the hook dispatcher's (` + "`nf_hook_slow`" + `) or bridge netfilter's (` + "`br_nf_*`" + `) are counted when their time falls in a
  row's iperf3 run, each worth 1/499 s of one CPU, and divided by the GB that run moved. ` + "`-profile=false`" + ` skips it;
  without perf (Debian: linux-perf, which ` + "`make bench`" + ` installs) the tables are left out.
`)
}

// ms formats d in milliseconds with one decimal.
func ms(d time.Duration) string { return msNum(d) + " ms" }

// msNum formats d as a number of milliseconds with one decimal.
func msNum(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

// us formats d as a whole number of microseconds.
func us(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Microsecond)) }

// mb formats a byte count in MB (MiB) with one decimal.
func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/(1<<20)) }

// settingRounds writes, for every row with a base row, how its throughput
// compared with the base's round by round: the spread shows whether a
// median ratio is a finding or noise.
func (r *Report) settingRounds(b *strings.Builder) {
	d := r.Dataplane
	var rows []string
	for i := range d.Paths {
		p := &d.Paths[i]
		base := d.path(p.Base)
		if base == nil {
			continue
		}
		rs := ratios(p.Gbps, base.Gbps)
		if len(rs) == 0 {
			continue
		}
		wins := 0
		for _, x := range rs {
			if x > 1 {
				wins++
			}
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %.2f | %.2f – %.2f | %d of %d | %s |", p.Key, p.Base, median(rs), slices.Min(rs), slices.Max(rs), wins, len(rs), effect(rs)))
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("\nEach row against its base row, round by round (throughput ratio). \"faster\" or \"slower\" needs a median\n")
	b.WriteString("at least 5 % off 1 and the same direction in at least two thirds of the rounds; anything else is noise here.\n\n")
	b.WriteString("| row | base | median | range | rounds faster | effect |\n|---|---|---|---|---|---|\n")
	b.WriteString(strings.Join(rows, "\n") + "\n")
}

// effect classifies per-round ratios against a base row: "faster" or
// "slower" when the median is at least 5 % off 1 and at least two thirds of
// the rounds agree, "no clear effect" otherwise.
func effect(rs []float64) string {
	if len(rs) == 0 {
		return "—"
	}
	up, down := 0, 0
	for _, x := range rs {
		switch {
		case x > 1:
			up++
		case x < 1:
			down++
		}
	}
	m, need := median(rs), (2*len(rs)+2)/3
	switch {
	case m >= 1.05 && up >= need:
		return "faster"
	case m <= 0.95 && down >= need:
		return "slower"
	}
	return "no clear effect"
}

// dlDenyRules is the number of Deny rules allowed traffic walks past in
// the drop-log phase.
const dlDenyRules = 8

// dropLog writes the drop-log phase: allowed traffic through the policy
// table with and without its log rules, interleaved, as ratios.
func (r *Report) dropLog(b *strings.Builder) {
	b.WriteString("## 11. Drop logging on allowed traffic (issue 13)\n\n")
	d := r.DropLog
	if d == nil {
		b.WriteString(notMeasured + ".\n\n")
		return
	}
	on, off := d.path("log-on"), d.path("log-off")
	if on == nil || off == nil {
		b.WriteString("Not measured: a row is missing.\n\n")
		return
	}
	fmt.Fprintf(b, "Client pod → server pod through one host namespace, the server under %d AdminNetworkPolicy Deny rules (for\n", dlDenyRules)
	b.WriteString("other peers) before a NetworkPolicy Allow, enforced by Skein's compiler and applier. Each round applies the table\n")
	b.WriteString("without its log rules (`skeind --drop-log=false`) and with them (as shipped), and measures both, interleaved\n")
	fmt.Fprintf(b, "(the order alternates round by round), %d rounds; the ratios are per round.\n\n", r.Settings.Rounds)
	b.WriteString("| row | TCP Gbit/s (median) | RR p50 µs | RR p99 µs | new connection p50 µs | p99 µs |\n|---|---|---|---|---|---|\n")
	for _, p := range []*PathResult{off, on} {
		var good []float64
		for _, g := range p.Gbps {
			if g > 0 {
				good = append(good, g)
			}
		}
		tput, rr50, rr99, c50, c99 := "—", "—", "—", "—", "—"
		if len(good) > 0 {
			tput = fmt.Sprintf("%.2f", median(good))
		}
		if len(p.RR) > 0 {
			rr50, rr99 = us(percentile(p.RR, 50)), us(percentile(p.RR, 99))
		}
		if len(p.Conn) > 0 {
			c50, c99 = us(percentile(p.Conn, 50)), us(percentile(p.Conn, 99))
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", p.Name, tput, rr50, rr99, c50, c99)
	}
	tr := ratios(on.Gbps, off.Gbps)
	rr := ratios(on.RRP50, off.RRP50)
	cr := ratios(on.ConnP50, off.ConnP50)
	b.WriteString("\n| ratio log on / log off, per round | median | range | effect |\n|---|---|---|---|\n")
	for _, x := range []struct {
		name string
		rs   []float64
		// words for a ratio clearly above and below 1
		up, down string
	}{{"TCP throughput", tr, "faster", "slower"}, {"RR p50 round trip", rr, "longer (slower)", "shorter (faster)"},
		{"new connection p50", cr, "longer (slower)", "shorter (faster)"}} {
		if len(x.rs) == 0 {
			fmt.Fprintf(b, "| %s | — | — | — |\n", x.name)
			continue
		}
		e := effect(x.rs)
		switch e {
		case "faster":
			e = x.up
		case "slower":
			e = x.down
		}
		fmt.Fprintf(b, "| %s | %.3f | %.3f – %.3f | %s |\n", x.name, median(x.rs), slices.Min(x.rs), slices.Max(x.rs), e)
	}
	b.WriteString("\n")
	for _, p := range []*PathResult{off, on} {
		if p.Err != "" {
			fmt.Fprintf(b, "- %s: a round failed: %s\n", p.Key, p.Err)
		}
	}
	for _, n := range d.Notes {
		fmt.Fprintf(b, "- %s\n", n)
	}
	b.WriteString("\n")
}

// cpuTable writes where the netfilter CPU goes per row (PathResult.CPU),
// when the rows were profiled.
func cpuTable(b *strings.Builder, paths []PathResult) {
	profiled := false
	for _, p := range paths {
		profiled = profiled || p.CPU != nil
	}
	if !profiled {
		return
	}
	b.WriteString("Netfilter CPU per GB moved (perf samples of every CPU during each row's iperf3 runs, all rounds; ms of\n")
	b.WriteString("CPU per GB, lower is better). A sample lands in a function only while a CPU runs it, so these figures\n")
	b.WriteString("do not move with the machine's other load the way throughput does:\n\n| path |")
	for _, c := range cpuParts {
		fmt.Fprintf(b, " %s |", c.name)
	}
	b.WriteString(" total |\n|---|" + strings.Repeat("---|", len(cpuParts)+1) + "\n")
	for _, p := range paths {
		if p.CPU == nil {
			continue
		}
		fmt.Fprintf(b, "| %s |", p.Key)
		total := 0.0
		for _, c := range cpuParts {
			fmt.Fprintf(b, " %.1f |", p.CPU[c.name])
			total += p.CPU[c.name]
		}
		fmt.Fprintf(b, " %.1f |\n", total)
	}
	b.WriteString("\n")
}
