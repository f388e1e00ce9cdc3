package reconcile

import (
	"cmp"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
)

func TestDiff(t *testing.T) {
	t.Parallel()
	eq := func(a, b int) bool { return a == b }
	tests := []struct {
		name       string
		want, have map[string]int
		delta      Delta[string, int]
	}{
		{name: "both empty"},
		{
			name:  "converge from empty",
			want:  map[string]int{"a": 1, "b": 2},
			delta: Delta[string, int]{Add: []Item[string, int]{{"a", 1}, {"b", 2}}},
		},
		{
			name:  "remove all",
			have:  map[string]int{"a": 1, "b": 2},
			delta: Delta[string, int]{Delete: []Item[string, int]{{"a", 1}, {"b", 2}}},
		},
		{
			name: "equal",
			want: map[string]int{"a": 1, "b": 2},
			have: map[string]int{"a": 1, "b": 2},
		},
		{
			name: "mixed",
			want: map[string]int{"a": 1, "b": 3, "d": 4},
			have: map[string]int{"a": 1, "b": 2, "c": 9},
			delta: Delta[string, int]{
				Add:    []Item[string, int]{{"d", 4}},
				Change: []Item[string, int]{{"b", 3}},
				Delete: []Item[string, int]{{"c", 9}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := Diff(tc.want, tc.have, eq)
			got.Sort(cmp.Compare[string])
			if d := gocmp.Diff(tc.delta, got); d != "" {
				t.Errorf("Diff() mismatch (-want +got):\n%s", d)
			}
			if got.Len() != tc.delta.Len() {
				t.Errorf("Len() = %d, want %d", got.Len(), tc.delta.Len())
			}
		})
	}
}

// TestDiffUsesEqual checks that values are compared with the given function,
// not with ==, so that slice-valued types work.
func TestDiffUsesEqual(t *testing.T) {
	t.Parallel()
	want := map[int][]byte{1: []byte("x")}
	have := map[int][]byte{1: []byte("x")}
	calls := 0
	d := Diff(want, have, func(a, b []byte) bool { calls++; return string(a) == string(b) })
	if d.Len() != 0 || calls != 1 {
		t.Errorf("Diff() = %+v after %d equal calls, want empty after 1", d, calls)
	}
}
