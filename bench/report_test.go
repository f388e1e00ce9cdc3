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
				{Key: pathHand, Name: "hand", Gbps: []float64{16, 8.5, 13}, RR: us(35, 37, 40), RRP50: []float64{35, 37, 40}, Retrans: []int{0, 1, 2}},
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
				// skein/bare per round: 0.75, 0.95 (round 3 failed) → median 0.85.
				"Skein VXLAN TCP throughput: 0.85 × bare: not met",
				// p50 21 ms vs 40 ms.
				"CNI ADD p50 (skein-cni): 0.53 × (21.0 ms vs 40.0 ms): met",
				"Node join → route on every host, p99: 12.0 ms (n=3): met",
				"Agent start → ready, p99: 160.0 ms (n=3; from exec: 180.0 ms): not met",
				"Agent RSS: 36.0 MB (max of agents): not met",
				"Agent idle CPU: 0.20 % (max of agents): met",
			},
		},
		{
			name:   "phases missing",
			mutate: func(r *Report) { *r = Report{} },
			want: []string{
				"Skein VXLAN TCP throughput: : not measured",
				"CNI ADD p50 (skein-cni): : not measured",
				"Node join → route on every host, p99: : not measured",
				"Agent start → ready, p99: : not measured",
				"Agent RSS: : not measured",
				"Agent idle CPU: : not measured",
			},
		},
		{
			name: "everything met",
			mutate: func(r *Report) {
				r.Dataplane.Paths[2].Gbps = []float64{19, 9.5, 15}
				r.Ready.Agent = ms3(30, 25, 40)
				r.Agents.Agents[1].RSSBytes = 30 << 20
			},
			want: []string{
				"Skein VXLAN TCP throughput: 0.95 × bare: met",
				"CNI ADD p50 (skein-cni): 0.53 × (21.0 ms vs 40.0 ms): met",
				"Node join → route on every host, p99: 12.0 ms (n=3): met",
				"Agent start → ready, p99: 40.0 ms (n=3; from exec: 180.0 ms): met",
				"Agent RSS: 30.0 MB (max of agents): met",
				"Agent idle CPU: 0.20 % (max of agents): met",
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

func ms3(a, b, c int) []time.Duration {
	return []time.Duration{time.Duration(a) * time.Millisecond, time.Duration(b) * time.Millisecond, time.Duration(c) * time.Millisecond}
}
