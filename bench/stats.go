package main

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of xs:
// the smallest value such that at least p % of the samples are ≤ it. With
// few samples a high percentile is the maximum. It returns 0 for no samples.
func percentile[T cmp.Ordered](xs []T, p float64) T {
	var zero T
	if len(xs) == 0 {
		return zero
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// median returns the median of xs (the mean of the two middle values for an
// even count), 0 for no samples.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// ratios returns a[i]/b[i] for each round where both are positive.
func ratios(a, b []float64) []float64 {
	var out []float64
	for i := range min(len(a), len(b)) {
		if a[i] > 0 && b[i] > 0 {
			out = append(out, a[i]/b[i])
		}
	}
	return out
}

// durStats summarizes durations.
type durStats struct {
	N             int
	P50, P99, Max time.Duration
	Min           time.Duration
}

// summarize returns the count, p50, p99, min and max of ds.
func summarize(ds []time.Duration) durStats {
	if len(ds) == 0 {
		return durStats{}
	}
	return durStats{
		N:   len(ds),
		P50: percentile(ds, 50),
		P99: percentile(ds, 99),
		Min: slices.Min(ds),
		Max: slices.Max(ds),
	}
}
