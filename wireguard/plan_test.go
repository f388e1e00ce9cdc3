package wireguard

import (
	"net/netip"
	"testing"
)

func mustKey(t *testing.T) Key {
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
