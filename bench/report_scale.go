package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Targets of issue 9 (incremental control plane), at 1 000 nodes.
const (
	targetScaleNodes     = 1000
	targetScaleSync      = 5 * time.Second
	targetScaleJoin      = 50 * time.Millisecond
	targetScaleChangeCPU = 0.005 // CPU-seconds per remote endpoint change
	targetScaleRSSBytes  = 100 << 20
	targetScaleIdlePct   = 0.5
	targetScaleNewEPP99  = 100 * time.Millisecond // at targetScalePolicies
	targetScaleReady     = 300 * time.Millisecond // at targetScalePolicies
	targetScalePolicies  = 10000
	scaleSVGName         = "scale.svg"
)

// ScaleResult is the scale phase: one real agent measured while simulated
// nodes are written into its lab's etcd.
type ScaleResult struct {
	Host             string
	EndpointsPerNode int
	Changes          int // endpoint puts of the CPU figure
	ChangeRate       int // their pace, per second
	IdleWindow       time.Duration
	SyncTimeout      time.Duration
	Steps            []ScaleStep
}

// ScaleStep is one node count (and policy count) measured.
type ScaleStep struct {
	Nodes, Policies int
	// Sync is from the first write to the last simulated block routed, or
	// to the timeout when !SyncDone (SyncRoutes of them routed by then).
	// Policy steps do not sync (their agent starts on the synced cluster).
	Sync       time.Duration
	SyncDone   bool
	SyncRoutes int
	SyncCPU    float64 // agent CPU-seconds during the sync
	WriteTime  time.Duration
	Joins      []time.Duration
	// ChangeCPU is agent CPU-seconds per remote endpoint put, net of the
	// idle rate; ChangeCPURaw without that correction.
	ChangeCPU, ChangeCPURaw float64
	// ChangeLagged: the agent was still busy when the window closed, so
	// ChangeCPU is a lower bound.
	ChangeLagged    bool
	RSS             int64
	IdlePct         float64
	NewEndpoint     []time.Duration
	Ready, ReadyExt time.Duration // policy steps: agent's own, from exec
	Err             string
}

// top returns the node step at targetScaleNodes (or the largest) and the
// policy step at targetScalePolicies, if measured.
func (s *ScaleResult) top() (nodes, pol *ScaleStep) {
	for i := range s.Steps {
		st := &s.Steps[i]
		if st.Policies == 0 && (nodes == nil || st.Nodes >= nodes.Nodes) {
			nodes = st
		}
		if st.Policies == targetScalePolicies {
			pol = st
		}
	}
	return nodes, pol
}

func (r *Report) scaleTargets() []target {
	var rows []target
	var n, p *ScaleStep
	if r.Scale != nil {
		n, p = r.Scale.top()
	}
	at := func(st *ScaleStep) string {
		if st.Policies > 0 {
			return fmt.Sprintf(" at %s nodes, %s policies", count(st.Nodes), count(st.Policies))
		}
		return fmt.Sprintf(" at %s nodes", count(st.Nodes))
	}
	ok := func(st *ScaleStep) bool { return st != nil && st.Err == "" }
	// Only the targetScaleNodes step decides; a smaller one is shown but
	// not judged met.
	full := func(st *ScaleStep) bool { return st != nil && st.Nodes >= targetScaleNodes }

	t := target{what: "Scale: sync of all remote blocks", goal: "≤ " + secs(targetScaleSync) + " at 1 000 nodes"}
	if n != nil && n.Sync > 0 {
		t.measured, t.ok = syncText(n)+at(n), true
		t.met = n.SyncDone && n.Sync <= targetScaleSync && full(n)
	}
	rows = append(rows, t)
	t = target{what: "Scale: join → route, p99", goal: "≤ " + ms(targetScaleJoin) + " at 1 000 nodes"}
	if n != nil && len(n.Joins) > 0 {
		v := percentile(n.Joins, 99)
		t.measured, t.met, t.ok = ms(v)+at(n), v <= targetScaleJoin && full(n), true
	}
	rows = append(rows, t)
	t = target{what: "Scale: CPU per remote endpoint change", goal: fmt.Sprintf("≤ %.0f ms at 1 000 nodes", targetScaleChangeCPU*1000)}
	if ok(n) && n.ChangeCPURaw > 0 {
		t.measured, t.met, t.ok = changeText(n)+at(n), n.ChangeCPU <= targetScaleChangeCPU && full(n) && !n.ChangeLagged, true
	}
	rows = append(rows, t)
	t = target{what: "Scale: agent RSS after sync", goal: fmt.Sprintf("≤ %d MB at 1 000 nodes", targetScaleRSSBytes>>20)}
	if n != nil && n.RSS > 0 {
		t.measured, t.met, t.ok = mb(n.RSS)+at(n), n.RSS <= targetScaleRSSBytes && full(n), true
	}
	rows = append(rows, t)
	t = target{what: "Scale: agent idle CPU", goal: fmt.Sprintf("≤ %.1f %% of a core at 1 000 nodes", targetScaleIdlePct)}
	if ok(n) || (n != nil && n.RSS > 0) {
		t.measured, t.met, t.ok = fmt.Sprintf("%.2f %%", n.IdlePct)+at(n), n.IdlePct <= targetScaleIdlePct && full(n), true
	}
	rows = append(rows, t)
	t = target{what: "Scale: new endpoint → remote sets, p99", goal: "≤ " + ms(targetScaleNewEPP99) + " at 10 000 policies"}
	if p != nil && len(p.NewEndpoint) > 0 {
		v := percentile(p.NewEndpoint, 99)
		t.measured, t.met, t.ok = ms(v)+at(p), v <= targetScaleNewEPP99 && full(p), true
	}
	rows = append(rows, t)
	t = target{what: "Scale: agent start → ready", goal: "≤ " + ms(targetScaleReady) + " at 10 000 policies"}
	if p != nil && p.Ready > 0 {
		t.measured, t.met, t.ok = ms(p.Ready)+at(p), p.Ready <= targetScaleReady && full(p), true
	}
	return append(rows, t)
}

// syncText is a step's sync figure, saying so when it timed out.
func syncText(st *ScaleStep) string {
	if st.SyncDone {
		return fmt.Sprintf("%.2f s", st.Sync.Seconds())
	}
	return fmt.Sprintf("> %.0f s (timed out, %d/%d routed)", st.Sync.Seconds(), st.SyncRoutes, st.Nodes)
}

func cpuMS(s float64) string { return fmt.Sprintf("%.1f ms", s*1000) }

// changeText is a step's CPU per change, "≥" when the agent had not caught up.
func changeText(st *ScaleStep) string {
	if st.ChangeLagged {
		return "≥ " + cpuMS(st.ChangeCPU) + " (still busy " + scaleCatchUpText + " after)"
	}
	return cpuMS(st.ChangeCPU)
}

// scale writes the scale section.
func (r *Report) scale(b *strings.Builder) {
	s := r.Scale
	if s == nil {
		return
	}
	b.WriteString("## 8. Scale (issue 9)\n\n")
	fmt.Fprintf(b, "One real agent (%s) in a lab of its own, measured from outside (/proc/<pid>/stat and status, routes in its\n", s.Host)
	fmt.Fprintf(b, "namespace over netlink, `nft monitor` there, /debug/topology), while simulated nodes are written into the lab's etcd\n")
	fmt.Fprintf(b, "as their agents would write them: a node record, one /26 block and %d endpoint records each, labelled like the\n", s.EndpointsPerNode)
	fmt.Fprintf(b, "policy phase's fake pods. Their underlay addresses are in %s, which no lab host routes (checked before\n", scaleUnderlay)
	fmt.Fprintf(b, "anything is written); nothing is ever sent to them. Each node step starts from no simulated node (agent stopped,\n")
	fmt.Fprintf(b, "keys deleted, agent started); the policy steps add the policy phase's NetworkPolicies on the largest step and\n")
	fmt.Fprintf(b, "restart the agent. Sync: first write → every simulated block routed over `skein.vxlan` (bounded by %s).\n", s.SyncTimeout)
	fmt.Fprintf(b, "Join: one more node + block (one transaction) → its route, from the join-watch helper's etcd watch and route\n")
	fmt.Fprintf(b, "subscription. CPU per change: %d new remote endpoints put at %d/s, the agent's CPU from the first put until it is\n", s.Changes, s.ChangeRate)
	fmt.Fprintf(b, "quiet again (at most %s after the last),\n", scaleCatchUpText)
	fmt.Fprintf(b, "minus its idle rate, divided by %d (an agent that recomputes everything coalesces changes that come faster than\n", s.Changes)
	fmt.Fprintf(b, "it recomputes, so this is the cost at that pace, lower than that of one change alone). Idle: CPU over %s, once\n", s.IdleWindow)
	fmt.Fprintf(b, "the agent is quiet, with nothing changing. New endpoint → set: from\n")
	fmt.Fprintf(b, "just before the put (so etcd's commit counts) to the address in a set of the host's nftables.\n\n")
	fmt.Fprintf(b, "![scale figures vs node count](%s)\n\n", scaleSVGName)
	b.WriteString("Targets of issue 9, judged at 1 000 nodes (and 10 000 policies); a figure measured only at fewer nodes is\n")
	b.WriteString("listed but not judged met.\n\n| target | goal | measured | |\n|---|---|---|---|\n")
	for _, t := range r.scaleTargets() {
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", t.what, t.goal, orDash(t.measured), verdict(t))
	}
	b.WriteString("\n")

	b.WriteString("| nodes | policies | sync | agent CPU in sync | join p50 | join p99 | CPU per endpoint change | RSS after sync | idle CPU | new endpoint → set p50 / p99 | start → ready (from exec) |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, st := range s.Steps {
		sync, syncCPU := "—", "—"
		if st.Policies == 0 && st.Sync > 0 {
			sync, syncCPU = syncText(&st), fmt.Sprintf("%.1f s", st.SyncCPU)
		}
		jp50, jp99 := "—", "—"
		if len(st.Joins) > 0 {
			jp50, jp99 = ms(percentile(st.Joins, 50)), ms(percentile(st.Joins, 99))
		}
		change := "—"
		if st.ChangeCPURaw > 0 {
			change = fmt.Sprintf("%s (raw %s)", changeText(&st), cpuMS(st.ChangeCPURaw))
		}
		rss, idle := "—", "—"
		if st.RSS > 0 {
			rss, idle = mb(st.RSS), fmt.Sprintf("%.2f %%", st.IdlePct)
		}
		nep := "—"
		if len(st.NewEndpoint) > 0 {
			nep = ms(percentile(st.NewEndpoint, 50)) + " / " + ms(percentile(st.NewEndpoint, 99))
		}
		ready := "—"
		if st.Ready > 0 {
			ready = fmt.Sprintf("%s (%s)", ms(st.Ready), ms(st.ReadyExt))
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", count(st.Nodes), count(st.Policies), sync, syncCPU, jp50, jp99, change, rss, idle, nep, ready)
	}
	b.WriteString("\n")
	for _, st := range s.Steps {
		if st.Err != "" {
			fmt.Fprintf(b, "- %s nodes, %s policies: **failed**: %s\n", count(st.Nodes), count(st.Policies), st.Err)
		}
	}
	b.WriteString("\n")
}

// scaleSVG draws the node steps' figures against the node count as small
// multiples, one panel per figure with its target as a dashed line, in
// plain SVG.
func (s *ScaleResult) scaleSVG() string {
	type series struct {
		title, unit string
		target      float64
		val         func(st ScaleStep) (float64, bool)
	}
	figs := []series{
		{"sync", "s", targetScaleSync.Seconds(), func(st ScaleStep) (float64, bool) { return st.Sync.Seconds(), st.Sync > 0 }},
		{"join p99", "ms", float64(targetScaleJoin) / 1e6, func(st ScaleStep) (float64, bool) {
			return float64(percentile(st.Joins, 99)) / 1e6, len(st.Joins) > 0
		}},
		{"CPU per endpoint change", "ms", targetScaleChangeCPU * 1000, func(st ScaleStep) (float64, bool) { return st.ChangeCPU * 1000, st.ChangeCPURaw > 0 }},
		{"RSS after sync", "MB", float64(targetScaleRSSBytes >> 20), func(st ScaleStep) (float64, bool) { return float64(st.RSS) / (1 << 20), st.RSS > 0 }},
		{"idle CPU", "% core", targetScaleIdlePct, func(st ScaleStep) (float64, bool) { return st.IdlePct, st.RSS > 0 }},
	}
	var steps []ScaleStep
	maxN := 0
	for _, st := range s.Steps {
		if st.Policies == 0 {
			steps = append(steps, st)
			maxN = max(maxN, st.Nodes)
		}
	}
	const pw, ph, pad, left, bottom = 260, 170, 20, 50, 30
	cols := 3
	rows := (len(figs) + cols - 1) / cols
	W, H := cols*(pw+pad)+pad, rows*(ph+pad+bottom)+pad+20
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="14" font-size="13">Skein agent vs node count (%d endpoints per node); dashed red: issue 9 target</text>`+"\n", pad, s.EndpointsPerNode)
	for k, f := range figs {
		x0 := pad + (k%cols)*(pw+pad)
		y0 := 24 + (k/cols)*(ph+pad+bottom)
		fmt.Fprintf(&b, `<g transform="translate(%d,%d)">`+"\n", x0, y0)
		fmt.Fprintf(&b, `<text x="%d" y="12">%s (%s)</text>`+"\n", left, f.title, f.unit)
		px, py, pwi, phi := left, 20, pw-left-10, ph-20
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>`+"\n", px, py, pwi, phi)
		ymax := f.target
		for _, st := range steps {
			if v, ok := f.val(st); ok {
				ymax = max(ymax, v)
			}
		}
		ymax = niceCeil(ymax * 1.1)
		xs := func(n int) float64 { return float64(px) + float64(n)/float64(max(maxN, 1))*float64(pwi) }
		ys := func(v float64) float64 { return float64(py+phi) - v/ymax*float64(phi) }
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", px-4, py+4, fmtNum(ymax))
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">0</text>`+"\n", px-4, py+phi)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="red" stroke-dasharray="4,3"/>`+"\n", px, px+pwi, ys(f.target), ys(f.target))
		var pts []string
		for _, st := range steps {
			v, ok := f.val(st)
			if !ok {
				continue
			}
			x, y := xs(st.Nodes), ys(v)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="#1f5fbf"/>`+"\n", x, y)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="9">%s</text>`+"\n", x, y-6, fmtNum(v))
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", x, py+phi+14, st.Nodes)
		}
		if len(pts) > 1 {
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="#1f5fbf" stroke-width="1.5"/>`+"\n", strings.Join(pts, " "))
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">nodes</text>`+"\n", px+pwi/2, py+phi+28)
		b.WriteString("</g>\n")
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// fmtNum prints a figure with about three significant digits.
func fmtNum(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// FanoutResult is the watch fan-out phase: N simulated watching agents on
// one etcd while endpoint records are put at Rate per second.
type FanoutResult struct {
	Rate   int
	Window time.Duration
	Steps  []FanoutStep
}

// FanoutStep is one watcher count.
type FanoutStep struct {
	Watchers, Puts int
	EtcdCPUPct     float64
	EtcdRSS        int64
	Deliveries     int
	Missed         int // deliveries a watcher should have had and did not report
	P50, P99, Max  time.Duration
	Err            string
}

// fanout writes the fan-out section.
func (r *Report) fanout(b *strings.Builder) {
	f := r.Fanout
	if f == nil {
		return
	}
	b.WriteString("## 9. Watch fan-out (issue 9)\n\n")
	fmt.Fprintf(b, "N simulated agents, each its own etcd client with one watch on the range an agent watches (the cluster prefix\n")
	fmt.Fprintf(b, "up to `status/`), in helper processes on this machine, on a one-member lab etcd with one real agent; the bench\n")
	fmt.Fprintf(b, "puts %d endpoint records per second for %s. Delay: from the record's Created stamp, taken just before the\n", f.Rate, f.Window)
	fmt.Fprintf(b, "put, to the watcher decoding it. The watchers share the machine's cores with etcd, so at high N the delay includes\n")
	fmt.Fprintf(b, "their own scheduling. What it means for a fan-out layer is in [scale.md](scale.md).\n\n")
	b.WriteString("| watchers | puts | etcd CPU | etcd RSS | deliveries | missed | delay p50 | delay p99 | max |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range f.Steps {
		if s.Err != "" {
			fmt.Fprintf(b, "| %s | failed: %s | | | | | | | |\n", count(s.Watchers), s.Err)
			continue
		}
		p50, p99, mx := "—", "—", "—"
		if s.Deliveries > 0 {
			p50, p99, mx = ms(s.P50), ms(s.P99), ms(s.Max)
		}
		fmt.Fprintf(b, "| %s | %d | %.1f %% | %s | %d | %d | %s | %s | %s |\n", count(s.Watchers), s.Puts, s.EtcdCPUPct, mb(s.EtcdRSS), s.Deliveries, s.Missed, p50, p99, mx)
	}
	b.WriteString("\n")
}

// verdict is a target row's last column.
func verdict(t target) string {
	switch {
	case t.ok && t.met:
		return "**met**"
	case t.ok:
		return "**not met**"
	}
	return notMeasured
}

// scaleCatchUpText is scaleCatchUpMax as the report says it (the bound is
// in a Linux-only file).
const scaleCatchUpText = "2 min"
