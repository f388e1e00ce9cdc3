package main

import (
	"bufio"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The data-plane rows differ in what the kernel does per packet, which
// throughput ratios show only through this machine's noise (other work
// shares its two cores). CPU samples of the netfilter parts during each
// row's iperf3 run, per GB moved, price those parts directly: a sample
// lands in a function only while the CPU runs it, whatever else runs.

// cpuParts names the kernel functions of each netfilter part the profile
// reports, in report order.
var cpuParts = []struct {
	name string
	re   *regexp.Regexp
}{
	{"nftables rules", regexp.MustCompile(`^(nft_|__nft_|nf_tables_)`)},
	{"conntrack", regexp.MustCompile(`^(nf_conntrack|__nf_conntrack|nf_ct_|__nf_ct_|ipv4_conntrack|ipv6_conntrack|nf_confirm|__nf_confirm|nf_nat_)`)},
	{"hook dispatch", regexp.MustCompile(`^(nf_hook_slow|nf_hook_slow_list)$`)},
	{"bridge netfilter", regexp.MustCompile(`^br_nf_`)},
}

// cpuPart returns the part a kernel function belongs to, or "".
func cpuPart(sym string) string {
	for _, p := range cpuParts {
		if p.re.MatchString(sym) {
			return p.name
		}
	}
	return ""
}

// profWindow is one iperf3 run: its row, its CLOCK_MONOTONIC interval in
// seconds, and the GB it moved.
type profWindow struct {
	path       string
	start, end float64
	gb         float64
}

// attributeSamples reads `perf script -F time,ip,sym` output and returns,
// per row, the CPU milliseconds per GB moved of each part (hz: the sampling
// frequency per CPU, so one sample is 1000/hz ms). Samples outside every
// window, and rows that moved nothing, are left out.
func attributeSamples(r io.Reader, windows []profWindow, hz int) (map[string]map[string]float64, error) {
	ws := slices.Clone(windows)
	slices.SortFunc(ws, func(a, b profWindow) int {
		switch {
		case a.start < b.start:
			return -1
		case a.start > b.start:
			return 1
		}
		return 0
	})
	samples := map[string]map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// "  10273.705500:  ffffffff81fda641 nft_meta_get_eval"
		tf, rest, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok {
			continue
		}
		t, err := strconv.ParseFloat(tf, 64)
		if err != nil {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 2 {
			continue
		}
		part := cpuPart(f[1])
		if part == "" {
			continue
		}
		i, _ := slices.BinarySearchFunc(ws, t, func(w profWindow, t float64) int {
			switch {
			case w.end < t:
				return -1
			case w.start > t:
				return 1
			}
			return 0
		})
		if i >= len(ws) || t < ws[i].start || t > ws[i].end {
			continue
		}
		if samples[ws[i].path] == nil {
			samples[ws[i].path] = map[string]int{}
		}
		samples[ws[i].path][part]++
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	gb := map[string]float64{}
	for _, w := range ws {
		gb[w.path] += w.gb
	}
	out := map[string]map[string]float64{}
	for path, g := range gb {
		if g <= 0 {
			continue
		}
		out[path] = map[string]float64{}
		for _, p := range cpuParts {
			out[path][p.name] = float64(samples[path][p.name]) * 1000 / float64(hz) / g
		}
	}
	return out, nil
}
