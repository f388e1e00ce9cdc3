package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSelectRows(t *testing.T) {
	t.Parallel()
	paths := []dpPath{
		{key: pathBare}, {key: pathHand}, {key: "hand-alt", base: pathHand},
		{key: pathSkein, base: pathHand}, {key: "skein+gro", base: pathSkein}, {key: "skein+nobrnf", base: pathSkein},
	}
	tests := []struct {
		name string
		keep map[string]bool
		want []string
	}{
		{"all", nil, []string{pathBare, pathHand, "hand-alt", pathSkein, "skein+gro", "skein+nobrnf"}},
		{"a setting pulls in its base chain and bare", set("skein+gro"), []string{pathBare, pathHand, pathSkein, "skein+gro"}},
		{"bare alone", set("bare"), []string{pathBare}},
		{"unknown rows are ignored", set("nope,hand-alt"), []string{pathBare, pathHand, "hand-alt"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, p := range selectRows(paths, tc.keep) {
				got = append(got, p.key)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("selectRows() mismatch (-want +got):\n%s", d)
			}
		})
	}
}
