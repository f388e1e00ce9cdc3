package ipam

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/skeinnet/skein/api"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func pfxs(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, pfx(s))
	}
	return out
}

func pool(cidr string, size int) api.Pool { return api.Pool{CIDR: pfx(cidr), BlockSize: size} }

func TestPoolBlocks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		pool api.Pool
		want []netip.Prefix
	}{
		{"slash28 in slash30", pool("10.0.0.0/28", 30), pfxs("10.0.0.0/30", "10.0.0.4/30", "10.0.0.8/30", "10.0.0.12/30")},
		{"one block", pool("10.1.2.0/24", 24), pfxs("10.1.2.0/24")},
		{"crosses octets", pool("10.0.0.0/23", 24), pfxs("10.0.0.0/24", "10.0.1.0/24")},
		{"top of space", pool("255.255.255.0/29", 30), pfxs("255.255.255.0/30", "255.255.255.4/30")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if d := cmp.Diff(tc.want, poolBlocks(tc.pool), cmpopts.EquateComparable(netip.Prefix{})); d != "" {
				t.Errorf("poolBlocks() mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestBlockAt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pool      api.Pool
		i         uint64
		want      netip.Prefix
		wantCount uint64
	}{
		{pool("10.244.0.0/16", 26), 0, pfx("10.244.0.0/26"), 1024},
		{pool("10.244.0.0/16", 26), 5, pfx("10.244.1.64/26"), 1024},
		{pool("10.244.0.0/16", 26), 1023, pfx("10.244.255.192/26"), 1024},
		{pool("10.0.0.0/8", 30), 1<<22 - 1, pfx("10.255.255.252/30"), 1 << 22},
		{pool("fd00:10:244::/56", 122), 0, pfx("fd00:10:244::/122"), 1 << 62},
		{pool("fd00:10:244::/56", 122), 5, pfx("fd00:10:244::140/122"), 1 << 62},
		// i<<6 crosses the 64-bit half: the carry lands in the upper half.
		{pool("fd00:10:244::/56", 122), 1 << 58, pfx("fd00:10:244:1::/122"), 1 << 62},
		{pool("fd00::/112", 120), 255, pfx("fd00::ff00/120"), 256},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%d#%d", tc.pool.CIDR, tc.pool.BlockSize, tc.i), func(t *testing.T) {
			t.Parallel()
			if got := blockAt(tc.pool, tc.i); got != tc.want {
				t.Errorf("blockAt() = %s, want %s", got, tc.want)
			}
			if got := blockCount(tc.pool); got != tc.wantCount {
				t.Errorf("blockCount() = %d, want %d", got, tc.wantCount)
			}
		})
	}
}

func TestSpreadStart(t *testing.T) {
	t.Parallel()
	// Fixed values: a node must search in the same order across restarts and
	// versions, so a change of hash is a visible change here.
	tests := []struct {
		node string
		n    uint64
		want uint64
	}{
		{"n1", 1024, 192},
		{"n2", 1024, 473},
		{"node-a", 4, 3},
		{"node-b", 4, 2},
		{"node-b", 8, 6},
		{"anything", 1, 0},
	}
	for _, tc := range tests {
		if got := spreadStart(tc.node, tc.n); got != tc.want {
			t.Errorf("spreadStart(%q, %d) = %d, want %d", tc.node, tc.n, got, tc.want)
		}
	}
}

func TestSpreadStartSpreads(t *testing.T) {
	t.Parallel()
	// 50 nodes over the 1024 blocks of a /16 of /26 blocks must mostly start
	// on different blocks, or they all race for the same ones.
	seen := make(map[uint64]bool)
	for i := range 50 {
		seen[spreadStart(fmt.Sprintf("node-%d", i), 1024)] = true
	}
	if len(seen) < 45 {
		t.Errorf("50 nodes start on only %d distinct blocks, want at least 45", len(seen))
	}
}

func TestCandidateBlocks(t *testing.T) {
	t.Parallel()
	small := []api.Pool{pool("10.0.0.0/28", 30)} // blocks .0 .4 .8 .12; node-a starts at .12, node-b at .8
	two := []api.Pool{pool("10.0.0.0/28", 30), pool("10.9.0.0/29", 30)}
	tests := []struct {
		name  string
		pools []api.Pool
		taken []netip.Prefix
		node  string
		limit int
		want  []netip.Prefix
	}{
		{
			name: "nothing taken, starts at hash and wraps", pools: small, node: "node-a", limit: 8,
			want: pfxs("10.0.0.12/30", "10.0.0.0/30", "10.0.0.4/30", "10.0.0.8/30"),
		},
		{
			name: "other node starts elsewhere", pools: small, node: "node-b", limit: 8,
			want: pfxs("10.0.0.8/30", "10.0.0.12/30", "10.0.0.0/30", "10.0.0.4/30"),
		},
		{
			name: "limit", pools: small, node: "node-a", limit: 2,
			want: pfxs("10.0.0.12/30", "10.0.0.0/30"),
		},
		{
			name: "taken skipped", pools: small, node: "node-a", limit: 8,
			taken: pfxs("10.0.0.12/30", "10.0.0.4/30"),
			want:  pfxs("10.0.0.0/30", "10.0.0.8/30"),
		},
		{
			name: "all taken", pools: small, node: "node-a", limit: 8,
			taken: pfxs("10.0.0.0/30", "10.0.0.4/30", "10.0.0.8/30", "10.0.0.12/30"),
			want:  nil,
		},
		{
			name: "claim of another block size overlaps two blocks", pools: small, node: "node-a", limit: 8,
			taken: pfxs("10.0.0.8/29"),
			want:  pfxs("10.0.0.0/30", "10.0.0.4/30"),
		},
		{
			name: "smaller claim inside a block", pools: small, node: "node-a", limit: 8,
			taken: pfxs("10.0.0.1/32"),
			want:  pfxs("10.0.0.12/30", "10.0.0.4/30", "10.0.0.8/30"),
		},
		{
			name: "claims outside the pool ignored", pools: small, node: "node-a", limit: 8,
			taken: pfxs("10.1.0.0/30", "192.168.0.0/16"),
			want:  pfxs("10.0.0.12/30", "10.0.0.0/30", "10.0.0.4/30", "10.0.0.8/30"),
		},
		{
			name: "first pool full, second pool used", pools: two, node: "node-b", limit: 8,
			taken: pfxs("10.0.0.0/30", "10.0.0.4/30", "10.0.0.8/30", "10.0.0.12/30"),
			want:  pfxs("10.9.0.0/30", "10.9.0.4/30"),
		},
		{
			name: "first pool preferred, second fills the limit", pools: two, node: "node-b", limit: 3,
			taken: pfxs("10.0.0.0/30", "10.0.0.4/30", "10.0.0.8/30"),
			want:  pfxs("10.0.0.12/30", "10.9.0.0/30", "10.9.0.4/30"),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := candidateBlocks(tc.pools, tc.taken, tc.node, tc.limit)
			if d := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Prefix{})); d != "" {
				t.Errorf("candidateBlocks() mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestCandidateBlocksLargePoolIsCheap(t *testing.T) {
	t.Parallel()
	// A /8 of /30 blocks has 4M blocks; finding a few must not walk them all.
	p := []api.Pool{pool("10.0.0.0/8", 30)}
	taken := candidateBlocks(p, nil, "n1", 1000)
	got := candidateBlocks(p, taken, "n1", 3)
	if len(got) != 3 {
		t.Fatalf("candidateBlocks() = %v, want 3 blocks", got)
	}
	for _, b := range got {
		for _, tb := range taken {
			if b == tb {
				t.Errorf("candidate %s is taken", b)
			}
		}
	}
}

func TestClaimedIn(t *testing.T) {
	t.Parallel()
	taken := pfxs("10.0.0.0/30", "10.0.0.4/30", "10.1.0.0/30", "10.0.0.0/8")
	if got := claimedIn(pool("10.0.0.0/28", 30), taken); got != 2 {
		t.Errorf("claimedIn() = %d, want 2", got)
	}
}
