package ipam

import (
	"net/netip"
	"testing"
	"time"
)

func TestPickAddr(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	later := now.Add(time.Second)
	earlier := now.Add(-time.Second)
	tests := []struct {
		name    string
		blocks  []netip.Prefix
		used    []string
		cooling map[netip.Addr]time.Time
		want    string // "" for none
	}{
		{name: "empty block skips first address", blocks: pfxs("10.0.0.0/30"), want: "10.0.0.1"},
		{name: "lowest free", blocks: pfxs("10.0.0.0/29"), used: []string{"10.0.0.1", "10.0.0.3"}, want: "10.0.0.2"},
		{name: "last address usable", blocks: pfxs("10.0.0.0/30"), used: []string{"10.0.0.1", "10.0.0.2"}, want: "10.0.0.3"},
		{name: "full", blocks: pfxs("10.0.0.0/30"), used: []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, want: ""},
		{name: "no blocks", want: ""},
		{
			name: "cooling skipped", blocks: pfxs("10.0.0.0/30"),
			cooling: map[netip.Addr]time.Time{addr("10.0.0.1"): later}, want: "10.0.0.2",
		},
		{
			name: "cooldown over", blocks: pfxs("10.0.0.0/30"),
			cooling: map[netip.Addr]time.Time{addr("10.0.0.1"): earlier}, want: "10.0.0.1",
		},
		{
			name: "cooldown ends exactly now", blocks: pfxs("10.0.0.0/30"),
			cooling: map[netip.Addr]time.Time{addr("10.0.0.1"): now}, want: "10.0.0.1",
		},
		{
			name: "only cooling left", blocks: pfxs("10.0.0.0/30"), used: []string{"10.0.0.1", "10.0.0.2"},
			cooling: map[netip.Addr]time.Time{addr("10.0.0.3"): later}, want: "",
		},
		{
			name: "next block when first full", blocks: pfxs("10.0.0.4/30", "10.0.0.0/30"),
			used: []string{"10.0.0.5", "10.0.0.6", "10.0.0.7"}, want: "10.0.0.1",
		},
		{
			name: "block order wins over address order", blocks: pfxs("10.0.0.4/30", "10.0.0.0/30"),
			want: "10.0.0.5",
		},
		{name: "top of the address space", blocks: pfxs("255.255.255.252/30"),
			used: []string{"255.255.255.253", "255.255.255.254"}, want: "255.255.255.255"},
		{name: "ipv6 skips the block's first address", blocks: pfxs("fd00::40/122"),
			used: []string{"fd00::41"}, want: "fd00::42"},
		{name: "ipv6 last address", blocks: pfxs("fd00::ffff:ffff:ffff:fffc/126"),
			used: []string{"fd00::ffff:ffff:ffff:fffd", "fd00::ffff:ffff:ffff:fffe"}, want: "fd00::ffff:ffff:ffff:ffff"},
		{name: "ipv6 full", blocks: pfxs("fd00::/126"),
			used: []string{"fd00::1", "fd00::2", "fd00::3"}, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			used := make(map[netip.Addr]bool)
			for _, s := range tc.used {
				used[addr(s)] = true
			}
			got, ok := pickAddr(tc.blocks, used, tc.cooling, now)
			if tc.want == "" {
				if ok {
					t.Errorf("pickAddr() = %s, want none", got)
				}
				return
			}
			if !ok || got != addr(tc.want) {
				t.Errorf("pickAddr() = %s, %t; want %s", got, ok, tc.want)
			}
		})
	}
}

func TestUsableCount(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		block string
		want  int
	}{{"10.0.0.0/30", 3}, {"10.0.0.0/26", 63}, {"10.0.0.0/16", 65535}, {"fd00::/122", 63}, {"fd00::/126", 3}, {"fd00::/96", 1<<32 - 1}} {
		if got := usableCount(pfx(tc.block)); got != tc.want {
			t.Errorf("usableCount(%s) = %d, want %d", tc.block, got, tc.want)
		}
	}
}

func TestNextCoolingEnd(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	cooling := map[netip.Addr]time.Time{
		addr("10.0.0.1"): now.Add(20 * time.Second),
		addr("10.0.0.2"): now.Add(5 * time.Second),
		addr("10.0.0.3"): now.Add(-time.Second), // over
		addr("10.0.1.1"): now.Add(time.Second),  // not our block
	}
	first, n := nextCoolingEnd(pfxs("10.0.0.0/30"), cooling, now)
	if n != 2 || !first.Equal(now.Add(5*time.Second)) {
		t.Errorf("nextCoolingEnd() = %s, %d; want %s, 2", first, n, now.Add(5*time.Second))
	}
}
