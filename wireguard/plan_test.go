package wireguard

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

func mustKey(t testing.TB) Key {
	t.Helper()
	k, err := RotateKey(t.TempDir() + "/k")
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

func TestMakeRoutesPeersAndFailsClosed(t *testing.T) {
	ka, kb, kc := mustKey(t), mustKey(t), mustKey(t)
	blk := func(s string) []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix(s)} }
	ul := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	nodes := []Node{
		{Name: "a", Key: ka.String(), Underlay: ul("10.0.0.1"), Blocks: blk("10.244.0.0/26")},
		{Name: "b", Key: kb.String(), Underlay: ul("10.0.0.2"), Blocks: blk("10.244.0.64/26")},
		{Name: "c", Underlay: ul("10.0.0.3"), Blocks: blk("10.244.0.128/26")},                   // no key
		{Name: "d", Key: "not-a-key", Underlay: ul("10.0.0.4"), Blocks: blk("10.244.0.192/26")}, // bad key
		{Name: "e", Key: kc.String(), Blocks: blk("10.244.1.0/26")},                             // no underlay
		{Name: "f", Key: kb.String(), Underlay: ul("10.0.0.6"), Blocks: blk("10.244.1.64/26")},  // b's key
	}
	p := Make("a", 51822, nodes)
	if len(p.Peers) != 0 {
		t.Fatalf("peers = %+v, want none: b shares its key with f, so neither is trusted", p.Peers)
	}
	nodes = nodes[:5]
	p = Make("a", 51822, nodes)
	if len(p.Peers) != 1 || p.Peers[0].Node != "b" || p.Peers[0].PublicKey != kb ||
		p.Peers[0].Endpoint != netip.MustParseAddrPort("10.0.0.2:51822") || p.Peers[0].AllowedIPs[0] != blk("10.244.0.64/26")[0] {
		t.Fatalf("peers = %+v, want b at 10.0.0.2:51822 with its block", p.Peers)
	}
	if len(p.Tunnel) != 1 || p.Tunnel[0] != blk("10.244.0.64/26")[0] {
		t.Errorf("tunnel = %v, want b's block only", p.Tunnel)
	}
	want := map[string]string{"c": "no WireGuard key published", "d": "published WireGuard key is invalid", "e": "no underlay address"}
	for n, why := range want {
		if p.Refused[n] != why {
			t.Errorf("refused[%s] = %q, want %q", n, p.Refused[n], why)
		}
	}
	if len(p.Blocked) != 3 {
		t.Errorf("blocked = %+v, want the blocks of c, d and e", p.Blocked)
	}
	for _, b := range p.Blocked {
		for _, tb := range p.Tunnel {
			if b.Block == tb {
				t.Errorf("%s both tunnelled and blocked", b.Block)
			}
		}
	}
}

// TestPlannerMatchesMake: after every change of a random sequence (new
// nodes, new blocks, keys published, shared, taken back, the local node's
// own key changed, nodes deleted), the planner's entries give the plan Make
// gives from scratch, and the nodes it reports changed are exactly those
// whose entries differ from before.
func TestPlannerMatchesMake(t *testing.T) {
	keys := []string{"", "not-a-key"}
	for range 4 {
		keys = append(keys, mustKey(t).String())
	}
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"self", "a", "b", "c", "d", "e"}
	nodes := map[string]Node{}
	pl := NewPlanner("self", 51822)
	for step := range 2000 {
		name := names[rng.IntN(len(names))]
		before := pl.Entries()
		var changed []string
		if rng.IntN(6) == 0 {
			delete(nodes, name)
			changed = pl.Delete(name)
		} else {
			n := Node{Name: name, Key: keys[rng.IntN(len(keys))]}
			if rng.IntN(5) > 0 {
				n.Underlay = netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + rng.IntN(3))})
			}
			for range rng.IntN(3) {
				n.Blocks = append(n.Blocks, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(rng.IntN(8)), 0}), 26))
			}
			nodes[name] = n
			changed = pl.Set(n)
		}
		all := make([]Node, 0, len(nodes))
		for _, n := range nodes {
			all = append(all, n)
		}
		want := Make("self", 51822, all)
		if got := PlanOf(pl.Entries()); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d (%s): incremental plan\n%+v\nwant\n%+v", step, name, got, want)
		}
		var differ []string
		after := pl.Entries()
		for _, n := range names {
			b, hadB := before[n]
			a, hasA := after[n]
			if hadB != hasA || (hadB && !a.equal(b)) {
				differ = append(differ, n)
			}
		}
		slices.Sort(differ)
		if !slices.Equal(changed, differ) && !(len(changed) == 0 && len(differ) == 0) {
			t.Fatalf("step %d (%s): reported changed %v, entries that changed %v", step, name, changed, differ)
		}
	}
}

// TestPlannerChangeCostsOneNode: at 1 000 nodes a change to one node's
// blocks re-plans that node alone, a key copied onto a second node re-plans
// just the two (both refused), and handing it back frees both.
func TestPlannerChangeCostsOneNode(t *testing.T) {
	pl, nodes := simulated(t, 1000)
	n := nodes[500]
	n.Blocks = append(n.Blocks, netip.MustParsePrefix("10.250.0.0/26"))
	if got := pl.Set(n); !slices.Equal(got, []string{"n500"}) {
		t.Errorf("new block of n500 re-planned %v, want [n500]", got)
	}
	if got := pl.Set(n); len(got) != 0 {
		t.Errorf("an unchanged node re-planned %v, want nothing", got)
	}
	copied := nodes[7]
	copied.Key = nodes[9].Key
	if got := pl.Set(copied); !slices.Equal(got, []string{"n7", "n9"}) {
		t.Errorf("n7 taking n9's key re-planned %v, want [n7 n9]", got)
	}
	for _, name := range []string{"n7", "n9"} {
		if e := pl.Entries()[name]; e.Peer != nil || e.Refused != "WireGuard key shared with another node" {
			t.Errorf("%s = %+v, want refused for a shared key", name, e)
		}
	}
	if got := pl.Set(nodes[7]); !slices.Equal(got, []string{"n7", "n9"}) {
		t.Errorf("n7 back to its own key re-planned %v, want [n7 n9]", got)
	}
	if got := pl.Delete("n3"); !slices.Equal(got, []string{"n3"}) || len(pl.Entries()) != 998 {
		t.Errorf("deleting n3 re-planned %v (%d entries), want [n3] and 998", got, len(pl.Entries()))
	}
}

// BenchmarkPlannerChange is the pure cost of one node's change at 1 000
// nodes (before, every change re-planned all of them: 0.65 ms, 1.5 MB).
func BenchmarkPlannerChange(b *testing.B) {
	pl, nodes := simulated(b, 1000)
	extra := netip.MustParsePrefix("10.250.0.0/26")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		n := nodes[i%len(nodes)]
		if i%2 == 0 {
			n.Blocks = append(slices.Clone(n.Blocks), extra)
		}
		pl.Set(n)
	}
}

// simulated plans n nodes for n0, each with its own key, a TEST-NET-1
// underlay address (192.0.2.0/24, routed nowhere in any test) and one
// block.
func simulated(tb testing.TB, n int) (*Planner, []Node) {
	tb.Helper()
	pl := NewPlanner("n0", 51822)
	nodes := make([]Node, n)
	for i := range nodes {
		nodes[i] = Node{Name: fmt.Sprintf("n%d", i), Key: mustKey(tb).String(),
			Underlay: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}),
			Blocks:   []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 26)}}
		pl.Set(nodes[i])
	}
	return pl, nodes
}
