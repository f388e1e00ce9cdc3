package main

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/skeinnet/skein/api"
)

// TestSimNodesUnroutableAndDistinct: simulated underlay addresses stay in
// the benchmarking range, and no two nodes share an underlay address, VTEP
// MAC, block or endpoint address.
func TestSimNodesUnroutableAndDistinct(t *testing.T) {
	t.Parallel()
	ul := netip.MustParsePrefix(scaleUnderlay)
	pool := netip.MustParsePrefix(scalePodCIDR)
	taken := map[netip.Prefix]bool{netip.MustParsePrefix("10.67.255.192/26"): true}
	const n, per = 1100, 50
	blocks, err := freeBlocks(pool, scaleBlockBits, n, taken)
	if err != nil {
		t.Fatal(err)
	}
	under, macs, addrs, keys := map[netip.Addr]bool{}, map[string]bool{}, map[netip.Addr]bool{}, map[string]bool{}
	for i, bl := range blocks {
		if taken[bl] {
			t.Fatalf("block %s was taken", bl)
		}
		idx := i
		if i >= 1000 {
			idx = scaleJoinBase + i // the joins' indexes
		}
		kvs, err := simNodeKVs(idx, per, bl)
		if err != nil {
			t.Fatal(err)
		}
		if len(kvs) != per+2 || !strings.HasPrefix(kvs[0].Key, "blocks/") || !strings.HasPrefix(kvs[len(kvs)-1].Key, "nodes/") {
			t.Fatalf("node %d: keys %d, first %s, last %s; want block first, node last", idx, len(kvs), kvs[0].Key, kvs[len(kvs)-1].Key)
		}
		var node api.Node
		if err := json.Unmarshal([]byte(kvs[len(kvs)-1].Value), &node); err != nil {
			t.Fatal(err)
		}
		if !ul.Contains(node.UnderlayIP) || under[node.UnderlayIP] {
			t.Fatalf("node %s: underlay %s outside %s or repeated", node.Name, node.UnderlayIP, ul)
		}
		under[node.UnderlayIP] = true
		if macs[node.VTEPMAC.String()] || node.VTEPMAC[0]&1 != 0 {
			t.Fatalf("node %s: VTEP MAC %s repeated or multicast", node.Name, node.VTEPMAC)
		}
		macs[node.VTEPMAC.String()] = true
		if !bl.Contains(node.VTEPIP) {
			t.Fatalf("node %s: VTEP %s outside its block %s", node.Name, node.VTEPIP, bl)
		}
		for _, kv := range kvs[1 : len(kvs)-1] {
			var ep api.Endpoint
			if err := json.Unmarshal([]byte(kv.Value), &ep); err != nil {
				t.Fatal(err)
			}
			if keys[kv.Key] || len(ep.IPs) != 1 || !bl.Contains(ep.IPs[0]) || ep.IPs[0] == node.VTEPIP || addrs[ep.IPs[0]] {
				t.Fatalf("endpoint %s: %v repeated, outside %s or the VTEP address", kv.Key, ep.IPs, bl)
			}
			keys[kv.Key], addrs[ep.IPs[0]] = true, true
		}
	}
}

func TestSimNodeKVsRejectsFullBlock(t *testing.T) {
	t.Parallel()
	if _, err := simNodeKVs(0, 63, netip.MustParsePrefix("10.64.0.0/26")); err == nil || !strings.Contains(err.Error(), "at most 62") {
		t.Fatalf("63 endpoints in a /26: err %v, want one naming the limit", err)
	}
}

func TestFreeBlocksPoolTooSmall(t *testing.T) {
	t.Parallel()
	if _, err := freeBlocks(netip.MustParsePrefix("10.64.0.0/24"), 26, 5, nil); err == nil {
		t.Fatal("5 /26 blocks from a /24: no error")
	}
}
