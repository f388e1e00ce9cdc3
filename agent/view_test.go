package agent

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

func TestVTEPMAC(t *testing.T) {
	a, b := vtepMAC("node-1"), vtepMAC("node-1")
	if a.String() != b.String() {
		t.Errorf("VTEP MAC not stable: %s vs %s", a, b)
	}
	if vtepMAC("node-2").String() == a.String() {
		t.Error("two nodes share a VTEP MAC")
	}
	if a[0]&0x01 != 0 || a[0]&0x02 == 0 {
		t.Errorf("%s is not a locally administered unicast MAC", a)
	}
}

func TestVXLANPeers(t *testing.T) {
	mac := func(n string) api.MAC { return vtepMAC(n) }
	snap := store.Snapshot{
		Nodes: map[string]api.Node{
			"a": {Name: "a", UnderlayIP: netip.MustParseAddr("10.0.0.1"), VTEPIP: netip.MustParseAddr("10.244.0.0"), VTEPMAC: mac("a")},
			"b": {Name: "b", UnderlayIP: netip.MustParseAddr("10.0.0.2"), VTEPIP: netip.MustParseAddr("10.244.1.0"), VTEPMAC: mac("b")},
			"c": {Name: "c", UnderlayIP: netip.MustParseAddr("10.1.0.3"), VTEPIP: netip.MustParseAddr("10.244.2.0"), VTEPMAC: mac("c")},
			// Registered before it got a VTEP: not a peer yet.
			"d": {Name: "d", UnderlayIP: netip.MustParseAddr("10.0.0.4")},
		},
		Blocks: map[netip.Prefix]api.Block{
			netip.MustParsePrefix("10.244.0.0/26"):  {Node: "a"},
			netip.MustParsePrefix("10.244.1.64/26"): {Node: "b"},
			netip.MustParsePrefix("10.244.1.0/26"):  {Node: "b"},
			netip.MustParsePrefix("10.244.2.0/26"):  {Node: "c"},
		},
		Alive: map[string]bool{"b": true}, // liveness must not matter
	}
	got := vxlanPeers("a", onLink{netip.MustParsePrefix("10.0.0.0/24")}, snap)
	type row struct {
		Node, Underlay string
		Blocks         []netip.Prefix
		Same           bool
	}
	var rows []row
	for _, p := range got {
		rows = append(rows, row{p.Node, p.UnderlayIP.String(), p.Blocks, p.SameSubnet})
	}
	want := []row{
		{"b", "10.0.0.2", []netip.Prefix{netip.MustParsePrefix("10.244.1.0/26"), netip.MustParsePrefix("10.244.1.64/26")}, true},
		{"c", "10.1.0.3", []netip.Prefix{netip.MustParsePrefix("10.244.2.0/26")}, false},
	}
	if d := cmp.Diff(want, rows, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
		t.Errorf("vxlanPeers mismatch (-want +got):\n%s", d)
	}
}
