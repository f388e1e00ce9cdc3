package main

import (
	"math"
	"strings"
	"testing"
)

func TestAttributeSamples(t *testing.T) {
	script := strings.Join([]string{
		"  100.100000:  ffffffff81fda641 nft_meta_get_eval",
		"  100.200000:  ffffffff81fda641 nft_do_chain",
		"  100.300000:  ffffffff81fda641 nf_conntrack_in",
		"  100.400000:  ffffffff81fda641 tcp_sendmsg", // not netfilter
		"  100.500000:  ffffffff81fda641 nf_hook_slow",
		"  100.600000:  ffffffff81fda641 br_nf_pre_routing",
		"  150.000000:  ffffffff81fda641 nft_do_chain", // between windows
		"  200.500000:  ffffffff81fda641 nft_do_chain",
		"garbage line",
	}, "\n")
	windows := []profWindow{
		{path: "b", start: 200, end: 201, gb: 2},
		{path: "a", start: 100, end: 101, gb: 1},
		{path: "a", start: 300, end: 301, gb: 1},
	}
	got, err := attributeSamples(strings.NewReader(script), windows, 500)
	if err != nil {
		t.Fatal(err)
	}
	// One sample is 2 ms at 500 Hz; a moved 2 GB, b 2 GB.
	want := map[string]map[string]float64{
		"a": {"nftables rules": 2, "conntrack": 1, "hook dispatch": 1, "bridge netfilter": 1},
		"b": {"nftables rules": 1, "conntrack": 0, "hook dispatch": 0, "bridge netfilter": 0},
	}
	for path, parts := range want {
		for part, v := range parts {
			if g := got[path][part]; math.Abs(g-v) > 1e-9 {
				t.Errorf("%s %s = %v ms/GB, want %v", path, part, g, v)
			}
		}
	}
}
