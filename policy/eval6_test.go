package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/skeinnet/skein/api"
)

// TestTraceFamily traces over IPv6: named endpoints stand for their IPv6
// address when asked or when the other peer is an IPv6 address, and the
// decision follows the IPv6 sets.
func TestTraceFamily(t *testing.T) {
	t.Parallel()
	// x/a may reach y only over IPv4: its egress allows an IPv4 block.
	in := withPolicies(t, dualStack(model()), `
metadata: {name: a-v4-only, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 10.0.2.0/24}}]}]`)
	p := Compile(in)
	xa, yb := Peer{Namespace: "x", Name: "a"}, Peer{Namespace: "y", Name: "b"}
	for _, tc := range []struct {
		name     string
		family   int
		from, to Peer
		allowed  bool
	}{
		{"named, default IPv4", 0, xa, yb, true},
		{"named, IPv6", 6, xa, yb, false},
		{"to an IPv6 address", 0, xa, Peer{IP: modelIP6("y", "b")}, false},
		{"from an IPv6 address to a named endpoint", 0, Peer{IP: modelIP6("x", "a")}, yb, false},
		{"IPv4 addresses", 0, Peer{IP: modelIP("x", "a")}, Peer{IP: modelIP("y", "b")}, true},
	} {
		v, err := TraceFamily(p, tc.family, tc.from, tc.to, 80, "TCP")
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if v.Allowed != tc.allowed {
			t.Errorf("%s: allowed %v, want %v (%s)", tc.name, v.Allowed, tc.allowed, v.Rule)
		}
	}
	if v, err := Trace(p, xa, Peer{IP: modelIP6("y", "b")}, 80, "TCP"); err != nil || v.Allowed || !strings.Contains(v.Rule, "isolated for egress") {
		t.Errorf("Trace to an IPv6 address: %+v, %v; want the isolation deny", v, err)
	}
	for _, tc := range []struct {
		name     string
		family   int
		from, to Peer
		want     string
	}{
		{"mixed addresses", 0, Peer{IP: modelIP("x", "a")}, Peer{IP: modelIP6("y", "b")}, "is not an IPv4 address"},
		{"IPv4 address, IPv6 asked", 6, Peer{IP: modelIP("x", "a")}, yb, "is not an IPv6 address"},
		{"bad family", 5, xa, yb, "address family 5"},
	} {
		if _, err := TraceFamily(p, tc.family, tc.from, tc.to, 80, "TCP"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	v4only := Compile(model())
	if _, err := TraceFamily(v4only, 6, xa, yb, 80, "TCP"); err == nil || !strings.Contains(err.Error(), "endpoint x/a has no IPv6 address") {
		t.Errorf("IPv6 trace of an IPv4-only endpoint: err = %v", err)
	}
	if _, err := MatrixFamily(p, 5, []int{80}, []string{"TCP"}); err == nil {
		t.Errorf("MatrixFamily 5: no error")
	}
	cells, err := MatrixFamily(v4only, 6, []int{80}, []string{"TCP"})
	if err != nil || len(cells) != 0 {
		t.Errorf("IPv6 matrix of IPv4-only endpoints: %d cells, %v; want none", len(cells), err)
	}
}

// TestHostTraffic6 is TestHostTraffic over IPv6: a node's IPv6 VTEP address
// (its only IPv6 address when the underlay is IPv4) is its own, so traffic
// between it and the node's containers is never filtered, while another
// node's is.
func TestHostTraffic6(t *testing.T) {
	t.Parallel()
	in := withPolicies(t, dualStack(model()), denyAllIngressX+"\n---\n"+`
metadata: {name: deny-egress, namespace: x}
spec: {podSelector: {}, policyTypes: [Egress]}`)
	in.Nodes = []api.Node{
		{Name: "n1", UnderlayIP: netip.MustParseAddr("192.168.0.1"), VTEPIP: netip.MustParseAddr("10.0.9.1"), VTEPIP6: netip.MustParseAddr("fd00:9::1")},
		{Name: "n2", UnderlayIP: netip.MustParseAddr("192.168.0.2"), VTEPIP: netip.MustParseAddr("10.0.9.2"), VTEPIP6: netip.MustParseAddr("fd00:9::2")},
	}
	check(t, Compile(in), []probe{
		{from: "fd00:9::1", to: "x/a", port: 80, allowed: true, rule: "from its own node n1"}, // x/a is on n1
		{from: "fd00:9::2", to: "x/a", port: 80, allowed: false},
		{from: "x/a", to: "fd00:9::1", port: 80, allowed: true, rule: "to its own node n1"},
		{from: "x/a", to: "fd00:9::2", port: 80, allowed: false},
		{from: "10.0.9.1", to: "x/a", port: 80, allowed: true, rule: "from its own node n1"},
	})
}
