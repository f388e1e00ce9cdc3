// Package reconcile holds the two halves every Skein reconciler shares: Diff,
// a pure comparison of desired and actual state keyed by comparable keys, and
// Loop, a level-triggered driver that coalesces change signals, retries
// failures with exponential backoff and resyncs periodically.
//
// Events never carry operations: whoever notices a change calls Loop.Trigger,
// and the next Sync recomputes the whole desired state and diffs it against
// what the kernel (or another backend) reports.
package reconcile

import "slices"

// Item is one key with its value.
type Item[K comparable, V any] struct {
	Key   K
	Value V
}

// Delta is what it takes to turn have into want.
type Delta[K comparable, V any] struct {
	// Add holds wanted entries that are missing.
	Add []Item[K, V]
	// Change holds wanted entries whose actual value differs; Value is the wanted one.
	Change []Item[K, V]
	// Delete holds entries that are there but not wanted; Value is the actual one.
	Delete []Item[K, V]
}

// Diff compares want with have. Entries are in map order; call Sort for a
// deterministic order.
func Diff[K comparable, V any](want, have map[K]V, equal func(a, b V) bool) Delta[K, V] {
	var d Delta[K, V]
	for k, w := range want {
		h, ok := have[k]
		switch {
		case !ok:
			d.Add = append(d.Add, Item[K, V]{k, w})
		case !equal(w, h):
			d.Change = append(d.Change, Item[K, V]{k, w})
		}
	}
	for k, h := range have {
		if _, ok := want[k]; !ok {
			d.Delete = append(d.Delete, Item[K, V]{k, h})
		}
	}
	return d
}

// Len returns the number of operations in d.
func (d Delta[K, V]) Len() int { return len(d.Add) + len(d.Change) + len(d.Delete) }

// Sort orders each list of d by key.
func (d Delta[K, V]) Sort(cmp func(a, b K) int) {
	byKey := func(a, b Item[K, V]) int { return cmp(a.Key, b.Key) }
	slices.SortFunc(d.Add, byKey)
	slices.SortFunc(d.Change, byKey)
	slices.SortFunc(d.Delete, byKey)
}
