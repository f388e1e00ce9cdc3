package policy

import (
	"net/netip"
	"strings"
	"testing"
)

// TestRenderGoldenDualStack renders the applier test program with
// dual-stack pods: IPv6 twins of every peer set, an IPv6 twin after every
// rule that matches addresses, the IPv6 base chains.
func TestRenderGoldenDualStack(t *testing.T) {
	t.Parallel()
	golden(t, Render(Compile(dualStack(applierInput(t, "")))).String())
}

// TestRenderIPv6Shape checks the rules of the twin families: an IPv4-only
// program has no IPv6 (TestRenderGolden pins that its table is as before),
// and in a dual-stack one each address family's set holds that family only
// and each rule that looks up an IPv4 set is followed by the same rule on
// the IPv6 twin.
func TestRenderIPv6Shape(t *testing.T) {
	t.Parallel()
	v4 := Render(applierProgram(t, ""))
	if v4.IPv6 || strings.Contains(v4.String(), "ip6") || strings.Contains(v4.String(), v6SetSuffix) {
		t.Errorf("IPv4-only program rendered with IPv6")
	}
	if !render(applierProgram(t, ""), true).IPv6 {
		t.Errorf("render with an IPv6 pool: no IPv6")
	}
	rs := Render(Compile(dualStack(applierInput(t, ""))))
	if !rs.IPv6 {
		t.Fatal("dual-stack program rendered without IPv6")
	}
	sets := map[string]*NFTSet{}
	for i := range rs.Sets {
		s := &rs.Sets[i]
		sets[s.Name] = s
		for _, p := range s.Prefixes {
			if p.Addr().Is6() != s.V6 {
				t.Errorf("set %s (IPv6 %v) holds %s", s.Name, s.V6, p)
			}
		}
		for _, ap := range s.AddrPorts {
			if ap.Addr.Is6() != s.V6 {
				t.Errorf("set %s (IPv6 %v) holds %s", s.Name, s.V6, ap)
			}
		}
	}
	v6Elems := 0
	for _, c := range rs.Chains {
		for i, r := range c.Rules {
			if (r.Set == "" && r.PortSet == "") || r.V6 {
				continue
			}
			if sets[r.Set+r.PortSet] == nil || sets[V6SetName(r.Set+r.PortSet)] == nil {
				t.Errorf("chain %s rule %q: a set or its IPv6 twin is missing", c.Name, r)
			}
			v6Elems += len(sets[V6SetName(r.Set+r.PortSet)].Prefixes) + len(sets[V6SetName(r.Set+r.PortSet)].AddrPorts)
			want := r
			want.V6 = true
			if want.Set != "" {
				want.Set = V6SetName(r.Set)
			}
			if want.PortSet != "" {
				want.PortSet = V6SetName(r.PortSet)
			}
			// Drops come as log, drop, log twin, drop twin.
			next := i + 1
			if r.Verdict == VerdictLog || r.Verdict == VerdictDrop {
				next++
			}
			if next >= len(c.Rules) || c.Rules[next] != want {
				t.Errorf("chain %s rule %q: no IPv6 twin %q after it", c.Name, r, want)
			}
		}
	}
	if v6Elems == 0 {
		t.Errorf("no IPv6 element in any set a rule looks up")
	}
	var addrs6 int
	for _, a := range rs.Addrs {
		if a.Addr.Is6() {
			addrs6++
		}
	}
	if addrs6 == 0 {
		t.Errorf("no IPv6 anti-spoofing element")
	}
	for _, want := range []string{
		"meta nfproto ipv6 goto " + Prerouting6Chain,
		"icmpv6 type nd-router-advert goto " + Router6Chain,
		"iifname . ip6 saddr vmap @" + EndpointAddrs6,
	} {
		if !strings.Contains(rs.String(), want) {
			t.Errorf("dual-stack ruleset lacks %q", want)
		}
	}
}

// TestHasIPv6 names what turns IPv6 on: an endpoint address or a set
// element (an ipBlock, a node).
func TestHasIPv6(t *testing.T) {
	t.Parallel()
	v6 := netip.MustParseAddr("fd00::1")
	for _, tc := range []struct {
		name string
		p    Program
		want bool
	}{
		{"none", Program{Endpoints: []EndpointProgram{{IPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}}}, false},
		{"IPv4-mapped endpoint", Program{Endpoints: []EndpointProgram{{IPs: []netip.Addr{netip.MustParseAddr("::ffff:10.0.0.1")}}}}, false},
		{"endpoint", Program{Endpoints: []EndpointProgram{{IPs: []netip.Addr{v6}}}}, true},
		{"ipBlock", Program{Sets: map[string]Set{"c": {Kind: SetCIDRs, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}}}, true},
		{"named port", Program{Sets: map[string]Set{"n": {Kind: SetAddrPorts, AddrPorts: []AddrPort{{Addr: v6, Proto: TCP, Port: 80}}}}}, true},
	} {
		if got := hasIPv6(&tc.p); got != tc.want {
			t.Errorf("%s: hasIPv6 = %v, want %v", tc.name, got, tc.want)
		}
	}
}
