package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/nstest"
)

// TestApplierListsBackDualStack: the kernel takes the dual-stack table
// (IPv6 sets, interval sets and concatenations, the IPv6 base chains) and
// lists back what the render says.
func TestApplierListsBackDualStack(t *testing.T) {
	ns := nstest.New(t)
	c := newConn(t, ns)
	pools := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16"), netip.MustParsePrefix("fd00::/48")}
	a := NewApplierWith(ApplierConfig{Conn: c, PodCIDRs: pools})
	ctx := t.Context()
	p := Compile(dualStack(applierInput(t, "")))
	if err := a.Apply(ctx, p); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	rs := Render(p)
	rs.PodCIDRs = pools
	if d := cmp.Diff(expectTable(rs), listTable(t, c)); d != "" {
		t.Errorf("table (-want +got):\n%s", d)
	}
	obs, err := a.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := a.Stats()
	if st.Rebuilds != 1 || obs.Rules != st.Rules || obs.Chains != st.Chains || obs.Sets != st.Sets || obs.Elements != st.Elements {
		t.Errorf("stats %+v, observed %+v", st, obs)
	}
	if text := nftList(t, ns); text != "" {
		t.Logf("nft list table inet skein:\n%s", text)
		// The base chains read back as the render writes them (docs/policy.md
		// shows the render): with one pool per family inline, no set lookup.
		// (from_pod6 is left out: nft lists the NA target as a raw payload.)
		for _, name := range []string{"prerouting", UntrackChain, UntrackInChain, Prerouting6Chain, UntrackChain6, UntrackInChain6} {
			if want, got := chainBody(rs.String(), name), chainBody(text, name); want == "" || want != got {
				t.Errorf("chain %s: render\n%s\nkernel\n%s", name, want, got)
			}
		}
		for _, want := range []string{
			"ip daddr 10.0.0.0/16 goto untrack_in",
			"iifname . ip6 saddr vmap @ep_addrs6",
			"ip6 daddr != fd00::/48 return",
			"ip6 saddr @p-",
			"ip6 daddr . meta l4proto . th dport @n-",
			"fd00:0:0:1::1",
			"meta nfproto ipv6 goto prerouting6",
			"icmpv6 type nd-router-advert goto router6_drop",
			"udp sport 547 goto router6_drop",
			"icmpv6 type nd-redirect goto router6_drop",
			"ip6 saddr fe80::/10 return",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("nft listing lacks %q", want)
			}
		}
	}
	if err := a.Apply(ctx, Compile(dualStack(applierInput(t, "")))); err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.Rebuilds != 1 || st.Updates != 1 || st.LastOps != 0 {
		t.Errorf("second apply: stats %+v, want one rebuild then an empty update", st)
	}
}

// TestApplyElementsIPv6: remote dual-stack endpoints come and go on a node
// whose own endpoint is IPv4 only. The first IPv6 address rebuilds the
// table with IPv6 (an IPv6 element has no set to go to before); every
// later change is an element update; the table always lists what a full
// render of the program says.
func TestApplyElementsIPv6(t *testing.T) {
	ns := nstest.New(t)
	c := newConn(t, ns)
	a := NewApplier(c, nil)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(11, 12))

	in := withPolicies(t, Input{Node: "n1"}, walkPolicies)
	in.Endpoints = []api.Endpoint{{Namespace: "x", Name: "a", Labels: map[string]string{"pod": "a"}, IPs: []netip.Addr{netip.MustParseAddr("10.0.1.1")},
		Node: "n1", ContainerID: "local", IfName: "eth0", HostIface: "sk00000000001"}}
	x := NewIncremental(in)
	if err := a.Apply(ctx, x.Program()); err != nil {
		t.Fatal(err)
	}
	if Render(x.Program()).IPv6 {
		t.Fatal("IPv4-only program renders with IPv6")
	}
	rebuilt := false
	for step := range 60 {
		i := rng.IntN(8)
		ep := api.Endpoint{
			Namespace: []string{"x", "y", "z"}[rng.IntN(3)], Name: fmt.Sprintf("r%d", i),
			Labels: map[string]string{"pod": "b", "role": []string{"client", "server"}[rng.IntN(2)]},
			Ports:  modelPorts()[:rng.IntN(3)],
			IPs: []netip.Addr{
				netip.AddrFrom4([4]byte{10, 0, 2, byte(1 + i)}),
				netip.AddrFrom16([16]byte{0: 0xfd, 7: 2, 15: byte(1 + i)}),
			},
			Node: "n2", ContainerID: fmt.Sprintf("c%d", i), IfName: "eth0",
		}
		ch, full := x.PutEndpoint(EndpointKey(&ep), &ep)
		if full {
			t.Fatalf("step %d: a remote endpoint recompiled", step)
		}
		if err := a.ApplyElements(ctx, x.Program(), []SetChanges{ch}); err != nil {
			t.Fatalf("step %d: ApplyElements: %v", step, err)
		}
		want := Render(x.Program())
		if d := cmp.Diff(expectTable(want), listTable(t, c)); d != "" {
			t.Fatalf("step %d: table != render of the program (-want +got):\n%s", step, d)
		}
		if want.IPv6 {
			rebuilt = true
		}
	}
	if !rebuilt {
		t.Fatal("no remote endpoint brought an IPv6 address into a set")
	}
	if st := a.Stats(); st.Rebuilds != 2 || st.Patches != 0 || st.Failures != 0 {
		t.Errorf("stats %+v: want two rebuilds (the first apply, the first IPv6 address), then element updates only", st)
	}
}

// chainBody returns the rules of chain name in an nft listing, one per line
// and trimmed, with counters zeroed and the nfproto tests nft folds into
// the payload matches that follow left out.
func chainBody(listing, name string) string {
	_, rest, ok := strings.Cut(listing, "\tchain "+name+" {\n")
	if !ok {
		return ""
	}
	body, _, _ := strings.Cut(rest, "\t}\n")
	counter := regexp.MustCompile(`counter packets \d+ bytes \d+`)
	var out []string
	for _, l := range strings.Split(body, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "type filter hook") {
			continue
		}
		l = counter.ReplaceAllString(l, "counter")
		l = strings.NewReplacer(" meta nfproto ipv4 ", " ", " meta nfproto ipv6 ", " ").Replace(l)
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}
