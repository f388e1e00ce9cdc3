package ipam_test

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/ipam"
)

// TestDualStackEtcd: with an IPv4 and an IPv6 pool, every attachment gets
// one address of each family from blocks of each family claimed in etcd;
// when IPv6 runs out the attachment gets nothing (its IPv4 address is given
// back), release and GC free both, and a restart keeps both.
func TestDualStackEtcd(t *testing.T) {
	ctx := t.Context()
	_, cl := startEtcd(t, ctx)
	pools := []api.Pool{
		{CIDR: netip.MustParsePrefix("10.50.0.0/24"), BlockSize: 28},
		// One /126 block: its first address is the VTEP address, 3 for pods.
		{CIDR: netip.MustParsePrefix("fd00:50::/126"), BlockSize: 126},
	}
	dir := t.TempDir()
	cfg := ipam.Config{Node: "n1", Pools: pools, Store: cl, StateDir: dir, Cooldown: -1}
	d, err := ipam.NewDual(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := d.VTEPAddr6(), netip.MustParseAddr("fd00:50::"); got != want {
		t.Errorf("VTEPAddr6 = %s, want %s", got, want)
	}
	owner := func(i int) api.Owner { return api.Owner{ContainerID: "c" + string(rune('a'+i)), IfName: "eth0"} }
	seen := map[netip.Addr]api.Owner{}
	for i := range 3 {
		ips, existing, err := d.Allocate(ctx, "net", owner(i), "")
		if err != nil || existing {
			t.Fatalf("Allocate(%s) = %v, %t, %v", owner(i), ips, existing, err)
		}
		if len(ips) != 2 || !ips[0].Is4() || !ips[1].Is6() || !pools[0].CIDR.Contains(ips[0]) || !pools[1].CIDR.Contains(ips[1]) {
			t.Fatalf("Allocate(%s) = %v, want one IPv4 address of %s and one IPv6 of %s", owner(i), ips, pools[0].CIDR, pools[1].CIDR)
		}
		for _, ip := range ips {
			if o, dup := seen[ip]; dup {
				t.Fatalf("%s given to %s and %s", ip, o, owner(i))
			}
			seen[ip] = owner(i)
		}
		again, existing, err := d.Allocate(ctx, "net", owner(i), "")
		if err != nil || !existing || len(again) != 2 || again[0] != ips[0] || again[1] != ips[1] {
			t.Fatalf("repeated Allocate(%s) = %v, %t, %v; want %v, existing", owner(i), again, existing, err, ips)
		}
	}
	owners := blockOwners(t, ctx, cl)
	for _, b := range []string{"fd00:50::/126"} {
		if owners[netip.MustParsePrefix(b)] != "n1" {
			t.Errorf("block %s not claimed by n1 in etcd: %v", b, owners)
		}
	}
	v4Blocks := 0
	for b, n := range owners {
		if b.Addr().Is4() && n == "n1" {
			v4Blocks++
		}
	}
	if v4Blocks != 1 {
		t.Errorf("n1 holds %d IPv4 blocks in etcd, want 1: %v", v4Blocks, owners)
	}

	// IPv6 is exhausted: the fourth attachment gets nothing at all.
	before := d.V4().Stats().Used
	if ips, _, err := d.Allocate(ctx, "net", owner(3), ""); !errors.Is(err, ipam.ErrExhausted) {
		t.Fatalf("Allocate with IPv6 exhausted = %v, %v; want ErrExhausted", ips, err)
	}
	if got := d.Lookup(owner(3)); len(got) != 0 {
		t.Errorf("after the failed Allocate %s holds %v, want nothing", owner(3), got)
	}
	if got := d.V4().Stats().Used; got != before {
		t.Errorf("IPv4 addresses used = %d after the failed Allocate, want %d (the IPv4 address given back)", got, before)
	}

	// Each family keeps its own state: IPv6 in its own directory.
	if ents, err := os.ReadDir(filepath.Join(dir, ipam.StateDirV6)); err != nil || len(ents) == 0 {
		t.Errorf("IPv6 state dir %s: %d entries, %v", ipam.StateDirV6, len(ents), err)
	}

	// Release frees both families.
	freed, err := d.Release(ctx, "net", owner(0))
	if err != nil || len(freed) != 2 || !freed[0].Is4() || !freed[1].Is6() {
		t.Fatalf("Release = %v, %v; want its IPv4 and IPv6 address", freed, err)
	}
	ips, _, err := d.Allocate(ctx, "net", owner(3), "")
	if err != nil || len(ips) != 2 {
		t.Fatalf("Allocate after a release = %v, %v", ips, err)
	}

	// GC: one stale entry per owner; releasing it frees both families.
	stale, err := d.Stale("net", []api.Owner{owner(1), owner(2)})
	if err != nil || len(stale) != 1 || stale[0].Owner != owner(3) {
		t.Fatalf("Stale = %v, %v; want only %s", stale, err, owner(3))
	}

	// A restart reads both state files back.
	d2, err := ipam.NewDual(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if got, want := d2.Lookup(owner(i)), d.Lookup(owner(i)); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("after restart %s holds %v, want %v", owner(i), got, want)
		}
	}
	if got := d2.Stats(); got.Used != 6 {
		t.Errorf("after restart %d addresses used, want 6 (3 attachments × 2 families)", got.Used)
	}

	// An IPv4-only config on the same etcd and dir leaves IPv6 alone.
	d4, err := ipam.NewDual(ctx, ipam.Config{Node: "n2", Pools: pools[:1], Store: cl, StateDir: t.TempDir(), Cooldown: -1})
	if err != nil {
		t.Fatal(err)
	}
	if ips, _, err := d4.Allocate(ctx, "net", owner(0), ""); err != nil || len(ips) != 1 || !ips[0].Is4() {
		t.Errorf("IPv4-only Allocate = %v, %v; want one IPv4 address", ips, err)
	}
	if d4.V6() != nil || d4.VTEPAddr6().IsValid() {
		t.Errorf("IPv4-only allocator has an IPv6 side")
	}
}
