package main

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	ms := func(n ...int) []time.Duration {
		var out []time.Duration
		for _, x := range n {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		name string
		xs   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample", ms(7), 99, 7 * time.Millisecond},
		{"p50 of odd count is the middle", ms(5, 1, 3), 50, 3 * time.Millisecond},
		{"p50 of even count is the lower middle (nearest rank)", ms(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{"p99 of ten is the maximum", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"p90 of ten is the ninth", ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 90, 9 * time.Millisecond},
		{"p99 of two hundred is the 198th", ms(seq(200)...), 99, 198 * time.Millisecond},
		{"p100 is the maximum", ms(3, 1, 2), 100, 3 * time.Millisecond},
		{"tiny p is the minimum", ms(3, 1, 2), 0.1, 1 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := append([]time.Duration(nil), tc.xs...)
			if got := percentile(tc.xs, tc.p); got != tc.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tc.xs, tc.p, got, tc.want)
			}
			if d := cmp.Diff(in, tc.xs); d != "" {
				t.Errorf("percentile changed its input (-before +after):\n%s", d)
			}
		})
	}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = n - i
	}
	return out
}

func TestMedian(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		xs   []float64
		want float64
	}{
		{"empty", nil, 0},
		{"one", []float64{0.8}, 0.8},
		{"odd", []float64{0.9, 0.7, 0.8}, 0.8},
		{"even averages the middle two", []float64{1, 0.25, 0.5, 0.75}, 0.625},
		{"outlier does not move it", []float64{0.8, 0.82, 0.81, 0.1, 5}, 0.81},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := median(tc.xs); got != tc.want {
				t.Errorf("median(%v) = %v, want %v", tc.xs, got, tc.want)
			}
		})
	}
}

func TestRatios(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a, b []float64
		want []float64
	}{
		{"per round", []float64{8, 9, 10}, []float64{10, 10, 20}, []float64{0.8, 0.9, 0.5}},
		{"failed rounds (0) are skipped on either side", []float64{8, 0, 10}, []float64{10, 10, 0}, []float64{0.8}},
		{"shorter side bounds the rounds", []float64{8, 9}, []float64{10}, []float64{0.8}},
		{"nothing", nil, []float64{1}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if d := cmp.Diff(tc.want, ratios(tc.a, tc.b)); d != "" {
				t.Errorf("ratios() mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	got := summarize([]time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond, 10 * time.Millisecond})
	want := durStats{N: 4, P50: 2 * time.Millisecond, P99: 10 * time.Millisecond, Min: time.Millisecond, Max: 10 * time.Millisecond}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("summarize() mismatch (-want +got):\n%s", d)
	}
	if d := cmp.Diff(durStats{}, summarize(nil)); d != "" {
		t.Errorf("summarize(nil) mismatch (-want +got):\n%s", d)
	}
}

func TestParseSample(t *testing.T) {
	t.Parallel()
	type sample struct {
		Name   string
		Labels map[string]string
		Value  float64
		OK     bool
	}
	tests := []struct {
		line string
		want sample
	}{
		{`skein_cni_request_duration_seconds_sum{result="ok",verb="allocate"} 0.0123`,
			sample{"skein_cni_request_duration_seconds_sum", map[string]string{"result": "ok", "verb": "allocate"}, 0.0123, true}},
		{`go_goroutines 42`, sample{"go_goroutines", map[string]string{}, 42, true}},
		{`# HELP go_goroutines Number of goroutines.`, sample{}},
		{``, sample{}},
		{`broken{a="b" x`, sample{}},
	}
	for _, tc := range tests {
		t.Run(tc.line, func(t *testing.T) {
			t.Parallel()
			var got sample
			got.Name, got.Labels, got.Value, got.OK = parseSample(tc.line)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("parseSample() mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestVerbMeans(t *testing.T) {
	t.Parallel()
	before := verbTotals{"allocate": {0.010, 2}, "release": {0.5, 10}}
	after := verbTotals{"allocate": {0.040, 5}, "release": {0.5, 10}, "commit": {0.006, 3}}
	want := []VerbTime{
		{Verb: "allocate", Mean: 10 * time.Millisecond, N: 3},
		{Verb: "commit", Mean: 2 * time.Millisecond, N: 3},
	}
	if d := cmp.Diff(want, verbMeans(before, after), cmp.Comparer(func(a, b time.Duration) bool {
		return (a - b).Abs() < time.Microsecond
	})); d != "" {
		t.Errorf("verbMeans() mismatch (-want +got):\n%s", d)
	}
}

func TestEffect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		rs   []float64
		want string
	}{
		{"none", nil, "—"},
		{"clearly faster", []float64{1.1, 1.2, 0.98, 1.15, 1.3}, "faster"},
		{"clearly slower", []float64{0.8, 0.9, 0.85}, "slower"},
		{"big median, rounds disagree", []float64{1.4, 1.5, 0.7, 0.8, 1.2}, "no clear effect"},
		{"consistent but small", []float64{1.02, 1.03, 1.01}, "no clear effect"},
		{"two of three rounds is enough", []float64{1.2, 1.1, 0.9}, "faster"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := effect(tc.rs); got != tc.want {
				t.Errorf("effect(%v) = %q, want %q", tc.rs, got, tc.want)
			}
		})
	}
}
