package policy

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/skeinnet/skein/api"
)

// TestNodeAddrsIPv6Underlay: a node on a dual-stack underlay is known by
// both its underlay addresses (and both VTEP addresses), an IPv6-only node
// by its one, so a nodes peer and "from its own node" cover traffic the
// host sends over IPv6.
func TestNodeAddrsIPv6Underlay(t *testing.T) {
	addr := netip.MustParseAddr
	nodes := []api.Node{
		{Name: "dual", UnderlayIP: addr("10.0.0.1"), UnderlayIP6: addr("fd00::1"), VTEPIP: addr("10.244.0.0"), VTEPIP6: addr("fd00:10::"), Labels: map[string]string{"zone": "a"}},
		{Name: "v6", UnderlayIP: addr("fd00::2"), UnderlayIP6: addr("fd00::2"), Labels: map[string]string{"zone": "a"}},
	}
	got := nodeAddrs(nodes)
	want := map[string][]netip.Addr{
		"dual": {addr("10.0.0.1"), addr("10.244.0.0"), addr("fd00::1"), addr("fd00:10::")},
		"v6":   {addr("fd00::2")},
	}
	for name, w := range want {
		if !slices.Equal(got[name], w) {
			t.Errorf("nodeAddrs[%s] = %v, want %v", name, got[name], w)
		}
	}
	sel := &api.LabelSelector{MatchLabels: map[string]string{"zone": "a"}}
	peers := nodeAddrsOf(sel, nodes)
	wantPeers := []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32"), netip.MustParsePrefix("fd00::1/128"), netip.MustParsePrefix("fd00::2/128")}
	if !slices.Equal(peers, wantPeers) {
		t.Errorf("nodeAddrsOf = %v, want %v", peers, wantPeers)
	}
}
