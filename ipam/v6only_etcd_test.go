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

// TestV6OnlyEtcd: with an IPv6 pool alone, every attachment gets one IPv6
// address and no IPv4 one, from an IPv6 block claimed in etcd; the node
// has an IPv6 VTEP address and no IPv4 one; exhaustion, release, GC and a
// restart from the state files work as in a dual-stack cluster.
func TestV6OnlyEtcd(t *testing.T) {
	ctx := t.Context()
	_, cl := startEtcd(t, ctx)
	pool := api.Pool{CIDR: netip.MustParsePrefix("fd00:60::/125"), BlockSize: 125} // one block: the VTEP address and 7 for pods
	dir := t.TempDir()
	cfg := ipam.Config{Node: "n1", Pools: []api.Pool{pool}, Store: cl, StateDir: dir, Cooldown: -1}
	d, err := ipam.NewDual(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d.V4() != nil {
		t.Errorf("V4() = %v in an IPv6-only cluster, want nil", d.V4())
	}
	if got := d.VTEPAddr(); got.IsValid() {
		t.Errorf("VTEPAddr = %s, want none (no IPv4 pool)", got)
	}
	if got, want := d.VTEPAddr6(), netip.MustParseAddr("fd00:60::"); got != want {
		t.Errorf("VTEPAddr6 = %s, want %s", got, want)
	}
	if got, want := d.HomeBlock(), pool.CIDR; got != want {
		t.Errorf("HomeBlock = %s, want %s", got, want)
	}
	owner := func(i int) api.Owner { return api.Owner{ContainerID: "c" + string(rune('a'+i)), IfName: "eth0"} }
	seen := map[netip.Addr]api.Owner{d.VTEPAddr6(): {ContainerID: "the VTEP"}}
	for i := range 7 {
		ips, existing, err := d.Allocate(ctx, "net", owner(i), "")
		if err != nil || existing {
			t.Fatalf("Allocate(%s) = %v, %t, %v", owner(i), ips, existing, err)
		}
		if len(ips) != 1 || !ips[0].Is6() || !pool.CIDR.Contains(ips[0]) {
			t.Fatalf("Allocate(%s) = %v, want one IPv6 address of %s and nothing else", owner(i), ips, pool.CIDR)
		}
		if o, dup := seen[ips[0]]; dup {
			t.Fatalf("%s given to %s and %s", ips[0], o, owner(i))
		}
		seen[ips[0]] = owner(i)
		again, existing, err := d.Allocate(ctx, "net", owner(i), "")
		if err != nil || !existing || len(again) != 1 || again[0] != ips[0] {
			t.Fatalf("repeated Allocate(%s) = %v, %t, %v; want %v, existing", owner(i), again, existing, err, ips)
		}
	}
	if owners := blockOwners(t, ctx, cl); owners[pool.CIDR] != "n1" || len(owners) != 1 {
		t.Errorf("blocks in etcd: %v, want only %s claimed by n1", owners, pool.CIDR)
	}
	if ips, _, err := d.Allocate(ctx, "net", owner(7), ""); !errors.Is(err, ipam.ErrExhausted) {
		t.Fatalf("Allocate with the pool exhausted = %v, %v; want ErrExhausted", ips, err)
	}
	if ents, err := os.ReadDir(filepath.Join(dir, ipam.StateDirV6)); err != nil || len(ents) == 0 {
		t.Errorf("IPv6 state dir %s: %d entries, %v", ipam.StateDirV6, len(ents), err)
	}

	// Release, then GC of everything but owner 1 and 2.
	held := d.Lookup(owner(0))
	freed, err := d.Release(ctx, "net", owner(0))
	if err != nil || len(freed) != 1 || freed[0] != held[0] {
		t.Fatalf("Release = %v, %v; want %v", freed, err, held)
	}
	stale, err := d.Stale("net", []api.Owner{owner(1), owner(2)})
	if err != nil || len(stale) != 4 {
		t.Fatalf("Stale = %v, %v; want the 4 other owners", stale, err)
	}
	for _, al := range stale {
		if _, err := d.Release(ctx, "net", al.Owner); err != nil {
			t.Fatal(err)
		}
	}
	if got := d.Stats().Used; got != 2 {
		t.Errorf("used after GC = %d, want 2", got)
	}

	// A restart finds both remaining attachments where they were.
	want1, want2 := d.Lookup(owner(1)), d.Lookup(owner(2))
	d2, err := ipam.NewDual(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := d2.Lookup(owner(1)); len(got) != 1 || got[0] != want1[0] {
		t.Errorf("after restart %s holds %v, want %v", owner(1), got, want1)
	}
	if got := d2.Lookup(owner(2)); len(got) != 1 || got[0] != want2[0] {
		t.Errorf("after restart %s holds %v, want %v", owner(2), got, want2)
	}
	if al, err := d2.Get(owner(1)); err != nil || al.IP != want1[0] {
		t.Errorf("Get(%s) = %v, %v; want %s", owner(1), al, err, want1[0])
	}
}
