package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// fixtureReport is a report with every phase filled in, as one run would.
func fixtureReport() *Report {
	ms := func(xs ...float64) []time.Duration {
		var out []time.Duration
		for _, x := range xs {
			out = append(out, time.Duration(x*float64(time.Millisecond)))
		}
		return out
	}
	us := func(xs ...int) []time.Duration {
		var out []time.Duration
		for _, x := range xs {
			out = append(out, time.Duration(x)*time.Microsecond)
		}
		return out
	}
	return &Report{
		Machine:  Machine{Kernel: "6.18.0", CPU: "Test CPU", Commit: "abc123", GoVersion: "go1.26", Iperf: "iperf 3.12", NProc: 2, LoadStart: "0.1 / 0.2 / 0.3", LoadEnd: "1.0 / 0.5 / 0.3"},
		Settings: Settings{Rounds: 3, IperfSeconds: 5, RRCount: 2000, CNICount: 4, Joins: 3, Restarts: 3, IdleWindow: 30 * time.Second},
		Started:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Took:     4*time.Minute + 30*time.Second,
		Dataplane: &DataplaneResult{
			Paths: []PathResult{
				{Key: pathBare, Name: "bare", Gbps: []float64{20, 10, 16}, RR: us(25, 27, 30), RRP50: []float64{25, 27, 30}, Retrans: []int{100, 50, 70}},
				{Key: pathHand, Name: "hand", Gbps: []float64{16, 8.5, 13}, RR: us(35, 37, 40), RRP50: []float64{35, 37, 40}, Retrans: []int{0, 1, 2},
					CPU: map[string]float64{"nftables rules": 0, "conntrack": 0.1, "hook dispatch": 3.4, "bridge netfilter": 25.5}},
				{Key: pathSkein, Name: "skein", Base: pathHand, Gbps: []float64{15, 9.5, 0}, RR: us(36, 38), RRP50: []float64{36, 38, 0}, Retrans: []int{0, 0, 0}, Err: "iperf3: boom"},
				{Key: "skein+x", Name: "skein + x", Base: pathSkein, Gbps: []float64{18, 9.5, 15}, RR: us(30, 31, 33), RRP50: []float64{30, 31, 33}, Retrans: []int{3, 3, 3}},
			},
			Notes: []string{"a note"},
		},
		Agents: &AgentStats{Window: 30 * time.Second, Agents: []AgentUsage{
			{Host: "h1", Containers: 1, RSSBytes: 20 << 20, RSSEndBytes: 21 << 20, PeakRSSBytes: 22 << 20, ThreadsAtIdle: 8, IdleCPUPct: 0.1, CPUTicks: 3},
			{Host: "h2", Containers: 1, RSSBytes: 36 << 20, RSSEndBytes: 30 << 20, PeakRSSBytes: 37 << 20, ThreadsAtIdle: 9, IdleCPUPct: 0.2, CPUTicks: 6},
		}},
		CNI: &CNIResult{
			Plugins: []CNIPlugin{
				{Name: skeinPluginName, Add: ms(20, 22, 21, 30), Del: ms(30, 31, 29, 40), Version: ms(6, 6.5)},
				{Name: refPlugins, Add: ms(40, 41, 39, 60), Del: ms(45, 44, 46, 70), Version: ms(7, 7.5)},
			},
			AgentVerbs: []VerbTime{{Verb: "allocate", Mean: 3 * time.Millisecond, N: 4}},
		},
		Ready: &ReadyResult{Host: "h1", Agent: ms(30, 25, 160), External: ms(50, 45, 180)},
		Join:  &JoinResult{Converge: ms(4, 12, 8), First: ms(1, 0, 2), Peers: []int{2, 3, 4}, RealTime: true},
		Policy: &PolicyResult{
			Endpoints: 10002,
			Probes:    3,
			Levels: []PolicyLevel{
				{Policies: 0, Gbps: []float64{10, 8, 12}, RRP50: []float64{50, 60, 40}, RR: us(40, 50, 60), Ready: ms(300, 310), AgentCPU: []float64{0.5, 1, 0.7},
					Apply: ms(70, 80, 90), Delete: ms(71, 81, 91), Agents: []AgentMem{{Host: "h1", RSSBytes: 60 << 20, PeakRSSBytes: 61 << 20}, {Host: "h2", RSSBytes: 62 << 20, PeakRSSBytes: 63 << 20}},
					Chains: 2, Rules: 6, Sets: 3, Elements: 1, Decode: 0, CompileNode: ms(5)[0]},
				{Policies: 1000, SelectingServer: 10, Gbps: []float64{9.9, 8.4, 11}, RRP50: []float64{52, 60, 44}, RR: us(44, 52, 60), Ready: ms(400, 410),
					Apply: ms(200, 210, 250), Delete: ms(190, 200, 240), Chains: 3, Rules: 67, Sets: 14, Elements: 10003, NftApply: ms(3)[0], Decode: ms(70)[0], CompileNode: ms(15)[0]},
				{Policies: 10000, SelectingServer: 100, Gbps: []float64{9.4, 8.0, 11.5}, RRP50: []float64{50, 66, 40}, RR: us(40, 50, 66), Err: "iperf3: boom",
					Apply: ms(900, 1000, 1100), Delete: ms(950, 1050, 1150), Rules: 607, Decode: ms(700)[0], CompileNode: ms(40)[0]},
			},
			CompilePolicies: 1000, CompileEndpoints: 10002, Compile: ms(100, 120, 110), CompileNode: ms(15, 16, 15), CompileSets: 1261, CompileRules: 39620,
			NewEndpoint: ms(900, 1000, 80), NewEndpointLevel: 10000,
		},
		BGP: &BGPResult{
			Dataplane: &DataplaneResult{Paths: []PathResult{
				{Key: pathRouted, Name: "routed", Gbps: []float64{14, 12, 13}, RR: us(35, 40), RRP50: []float64{35, 40, 38}},
				{Key: pathRoutedNft, Name: "routed + nft", Base: pathRouted, Gbps: []float64{13, 12, 12}, RR: us(40, 45), RRP50: []float64{40, 45, 42}},
				{Key: pathSkeinBGP, Name: "skein bgp", Base: pathRouted, Gbps: []float64{13.8, 11.5, 0}, RR: us(41, 46), RRP50: []float64{41, 46, 0}, Err: "iperf3: boom"},
				{Key: pathSkeinDirect, Name: "skein direct", Base: pathRouted, Gbps: []float64{12.6, 10.8, 13}, RR: us(36, 41), RRP50: []float64{36, 41, 39}},
			}},
			ContainerMTU: 1500,
			Restart:      &BGPRestart{Host: "h2", Interval: 20 * time.Millisecond, Sent: 600, Received: 600, Restart: ms(100)[0], Resynced: ms(6300)[0], PingSpan: ms(14000)[0]},
			Joins:        3,
			MeshJoin:     &JoinResult{Converge: ms(1100, 1500, 1900), First: ms(1000, 1100, 1200), Peers: []int{2, 3, 4}},
			BIRDJoin:     &JoinResult{Converge: ms(1600, 2100, 1300), First: ms(1600, 2100, 1300), Peers: []int{2, 3, 4}},
			MeshJoin6:    &JoinResult{Converge: ms(1200, 1400, 1700), First: ms(1100, 1200, 1300), Peers: []int{2, 3, 4}},
			Timers:       BGPTimers{Hold: 9 * time.Second, Keepalive: 3 * time.Second, ConnectRetry: 5 * time.Second, RestartTime: 120 * time.Second, StaleRoute: time.Minute},
			Notes:        []string{"a bgp note"},
		},
		DropLog: &DataplaneResult{Paths: []PathResult{
			{Key: "log-off", Name: "log off", Gbps: []float64{20, 21, 19}, RR: us(30, 31, 32), RRP50: []float64{30, 31, 32}, Conn: us(90, 100, 110), ConnP50: []float64{90, 100, 110}},
			{Key: "log-on", Name: "log on", Base: "log-off", Gbps: []float64{20.2, 20.8, 19.1}, RR: us(30, 32, 31), RRP50: []float64{30, 32, 31}, Conn: us(95, 99, 120), ConnP50: []float64{95, 99, 120}},
		}, Notes: []string{"a drop-log note"}},
	}
}

func TestRenderGolden(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := fixtureReport().render(&buf); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", t.Name()+".golden")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./bench -run %s -update)", err, t.Name())
	}
	if d := cmp.Diff(string(want), buf.String()); d != "" {
		t.Errorf("render() mismatch (-want +got):\n%s", d)
	}
}

// TestTargetRows checks each verdict against the fixture's numbers.
func TestTargetRows(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*Report)
		want   []string // "what: measured: verdict"
	}{
		{
			name:   "fixture",
			mutate: func(*Report) {},
			want: []string{
				// skein/hand per round: 0.94, 1.12 (round 3 failed) → median 1.03.
				"Skein VXLAN TCP throughput (no policy): 1.03 × hand-built: met",
				// p50 21 ms vs 40 ms.
				"CNI ADD p50 (skein-cni): 0.53 × (21.0 ms vs 40.0 ms): met",
				// p50 30 ms vs 45 ms.
				"CNI DEL p50 (skein-cni): 0.67 × (30.0 ms vs 45.0 ms): met",
				"Node join → route on every host, p99: 12.0 ms (n=3): met",
				"Agent start → ready, p99: 160.0 ms (n=3; from exec: 180.0 ms): not met",
				"Agent RSS: 36.0 MB (max of agents): not met",
				"Agent idle CPU: 0.20 % (max of agents): met",
				// 9.4/10, 8.0/8, 11.5/12 → median 0.958.
				"Policy: TCP throughput with 10 000 NetworkPolicies: 0.96 × no policy: met",
				// 50/50, 60/66, 40/40 → median 1.
				"Policy: request/response rate (1 / RR p50) with 10 000 NetworkPolicies: 1.00 × no policy (p50 50 vs 50 µs): met",
				"Policy apply → enforced on every host, p99 (10 000 policies loaded): 1100.0 ms (n=3): not met",
				"New endpoint → its IP in the sets of another host, p99 (10 000 policies loaded): 1000.0 ms (n=3): not met",
				"Full policy compile, 1 000 policies × 10 002 endpoints: 110.0 ms (median of 3, max 120.0 ms): met",
				// 13.8/14, 11.5/12 (round 3 failed) → median 0.97.
				"BGP routed TCP throughput: 0.97 × hand-built: met",
				// 12.6/14, 10.8/12, 13/13 → median 0.90.
				"VXLAN direct-routing TCP throughput (same subnet): 0.90 × hand-built: not met",
				"BGP node join → routes on every host, p99 (node mesh): 1900.0 ms (n=3): not met",
				"Pings lost across a BGP agent restart: 0 of 600: met",
			},
		},
		{
			name:   "phases missing",
			mutate: func(r *Report) { *r = Report{} },
			want: []string{
				"Skein VXLAN TCP throughput (no policy): : not measured",
				"CNI ADD p50 (skein-cni): : not measured",
				"CNI DEL p50 (skein-cni): : not measured",
				"Node join → route on every host, p99: : not measured",
				"Agent start → ready, p99: : not measured",
				"Agent RSS: : not measured",
				"Agent idle CPU: : not measured",
				"Policy: TCP throughput with the most NetworkPolicies: : not measured",
				"Policy: request/response rate (1 / RR p50) with the most NetworkPolicies: : not measured",
				"Policy apply → enforced on every host, p99: : not measured",
				"New endpoint → its IP in the sets of another host, p99: : not measured",
				"Full policy compile, 1 000 policies × 10 000 endpoints: : not measured",
				"BGP routed TCP throughput: : not measured",
				"VXLAN direct-routing TCP throughput (same subnet): : not measured",
				"BGP node join → routes on every host, p99 (node mesh): : not measured",
				"Pings lost across a BGP agent restart: : not measured",
			},
		},
		{
			name: "everything met",
			mutate: func(r *Report) {
				r.Dataplane.Paths[2].Gbps = []float64{19, 9.5, 15}
				r.Ready.Agent = ms3(30, 25, 40)
				r.Agents.Agents[1].RSSBytes = 30 << 20
				top := &r.Policy.Levels[2]
				top.Apply, r.Policy.NewEndpoint = ms3(150, 160, 200), ms3(50, 60, 100)
				r.BGP.MeshJoin.Converge = ms3(800, 900, 1000)
				r.BGP.Dataplane.Paths[2].Gbps = []float64{12, 12, 13}
				r.BGP.Dataplane.Paths[3].Gbps = []float64{14, 12, 13}
			},
			want: []string{
				"Skein VXLAN TCP throughput (no policy): 1.15 × hand-built: met",
				"CNI ADD p50 (skein-cni): 0.53 × (21.0 ms vs 40.0 ms): met",
				"CNI DEL p50 (skein-cni): 0.67 × (30.0 ms vs 45.0 ms): met",
				"Node join → route on every host, p99: 12.0 ms (n=3): met",
				"Agent start → ready, p99: 40.0 ms (n=3; from exec: 180.0 ms): met",
				"Agent RSS: 30.0 MB (max of agents): met",
				"Agent idle CPU: 0.20 % (max of agents): met",
				"Policy: TCP throughput with 10 000 NetworkPolicies: 0.96 × no policy: met",
				"Policy: request/response rate (1 / RR p50) with 10 000 NetworkPolicies: 1.00 × no policy (p50 50 vs 50 µs): met",
				"Policy apply → enforced on every host, p99 (10 000 policies loaded): 200.0 ms (n=3): met",
				"New endpoint → its IP in the sets of another host, p99 (10 000 policies loaded): 100.0 ms (n=3): met",
				"Full policy compile, 1 000 policies × 10 002 endpoints: 110.0 ms (median of 3, max 120.0 ms): met",
				// 12/14, 12/12, 13/13 → median 1.
				"BGP routed TCP throughput: 1.00 × hand-built: met",
				"VXLAN direct-routing TCP throughput (same subnet): 1.00 × hand-built: met",
				"BGP node join → routes on every host, p99 (node mesh): 1000.0 ms (n=3): met",
				"Pings lost across a BGP agent restart: 0 of 600: met",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := fixtureReport()
			tc.mutate(r)
			var got []string
			for _, row := range r.targetRows() {
				verdict := notMeasured
				switch {
				case row.ok && row.met:
					verdict = "met"
				case row.ok:
					verdict = "not met"
				}
				got = append(got, strings.Join([]string{row.what, row.measured, verdict}, ": "))
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("targetRows() mismatch (-want +got):\n%s", d)
			}
		})
	}
}

// TestBGPLostPing checks that one lost ping fails the restart target.
func TestBGPLostPing(t *testing.T) {
	t.Parallel()
	r := fixtureReport()
	r.BGP.Restart.Received = 599
	rows := r.bgpTargets()
	got := rows[len(rows)-1]
	if got.measured != "1 of 600" || got.met || !got.ok {
		t.Errorf("restart target = %+v, want 1 of 600, measured and not met", got)
	}
}

func TestCount(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n    int
		want string
	}{{0, "0"}, {999, "999"}, {1000, "1 000"}, {10002, "10 002"}, {1234567, "1 234 567"}, {-1000, "-1 000"}} {
		if got := count(tc.n); got != tc.want {
			t.Errorf("count(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func ms3(a, b, c int) []time.Duration {
	return []time.Duration{time.Duration(a) * time.Millisecond, time.Duration(b) * time.Millisecond, time.Duration(c) * time.Millisecond}
}
