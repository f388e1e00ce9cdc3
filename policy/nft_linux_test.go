package policy

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/nstest"
)

// newConn returns an nftables connection bound to ns, with the socket
// options the agent uses.
func newConn(t *testing.T, ns *nstest.NS) *nftables.Conn {
	t.Helper()
	c, err := NewConn(nftables.WithNetNSFd(ns.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// listed is table inet skein as read back from the kernel, in the same
// terms as a Ruleset.
type listed struct {
	Chains map[string]int // chain → number of rules
	Sets   map[string][]string
}

func listTable(t *testing.T, c *nftables.Conn) listed {
	t.Helper()
	out := listed{Chains: map[string]int{}, Sets: map[string][]string{}}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatalf("list chains: %v", err)
	}
	for _, ch := range chains {
		if ch.Table.Name != TableName {
			continue
		}
		rules, err := c.GetRules(table, ch)
		if err != nil {
			t.Fatalf("rules of %s: %v", ch.Name, err)
		}
		out.Chains[ch.Name] = len(rules)
	}
	if len(out.Chains) == 0 {
		return out
	}
	sets, err := c.GetSets(table)
	if err != nil {
		t.Fatalf("list sets: %v", err)
	}
	for _, s := range sets {
		elems, err := c.GetSetElements(s)
		if err != nil {
			t.Fatalf("elements of %s: %v", s.Name, err)
		}
		var texts []string
		for _, e := range elems {
			texts = append(texts, elementText(s, e))
		}
		slices.Sort(texts)
		out.Sets[s.Name] = texts
	}
	return out
}

func elementText(s *nftables.Set, e nftables.SetElement) string {
	switch {
	case s.Name == EndpointAddrs || s.Name == EndpointAddrs6 || s.Name == NATargets6:
		a, _ := netip.AddrFromSlice(e.Key[16:])
		text := string(bytes.TrimRight(e.Key[:16], "\x00")) + " . " + a.String()
		if s.IsMap {
			text += " : " + verdictText(e.Val)
		}
		return text
	case s.IsMap:
		return string(bytes.TrimRight(e.Key, "\x00")) + " : " + verdictText(e.Val)
	case len(e.Key) == 12 || len(e.Key) == 24:
		n := len(e.Key) - 8
		a, _ := netip.AddrFromSlice(e.Key[:n])
		return fmt.Sprintf("%s . %s . %d", a, Protocol(e.Key[n]), binary.BigEndian.Uint16(e.Key[n+4:n+6]))
	}
	a, _ := netip.AddrFromSlice(e.Key)
	if e.IntervalEnd {
		return "end " + a.String()
	}
	return a.String()
}

// verdictText decodes a verdict map value as the library returns it: the
// nested NFTA_VERDICT_CODE and NFTA_VERDICT_CHAIN attributes.
func verdictText(b []byte) string {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return "bad verdict: " + err.Error()
	}
	ad.ByteOrder = binary.BigEndian
	var code int32
	var chain string
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_VERDICT_CODE:
			code = int32(ad.Uint32())
		case unix.NFTA_VERDICT_CHAIN:
			chain = ad.String()
		}
	}
	switch code {
	case unix.NFT_JUMP:
		return "jump " + chain
	case unix.NFT_GOTO:
		return "goto " + chain
	case 1: // NF_ACCEPT
		return "accept"
	}
	return fmt.Sprintf("verdict %d %s", code, chain)
}

func keyAddr(b []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(b)
	return a
}

// verdictOf renders an element's verdict as verdictText does.
func verdictOf(v *expr.Verdict) string {
	switch v.Kind {
	case expr.VerdictGoto:
		return "goto " + v.Chain
	case expr.VerdictJump:
		return "jump " + v.Chain
	case expr.VerdictAccept:
		return "accept"
	}
	return fmt.Sprintf("verdict %d %s", v.Kind, v.Chain)
}

// expectTable returns what listTable should find for rs.
func expectTable(rs *Ruleset) listed {
	out := listed{Chains: map[string]int{
		"prerouting": len(basePrerouting(rs.PodCIDRs)), "forward": len(baseForward),
		UntrackChain: len(untrackRules(rs.PodCIDRs, false, false)), UntrackInChain: len(untrackRules(rs.PodCIDRs, false, true)),
	}, Sets: map[string][]string{}}
	for _, c := range rs.Chains {
		out.Chains[c.Name] = len(c.Rules)
	}
	if rs.IPv6 {
		out.Chains["prerouting"]++
		for _, c := range base6Chains(rs.PodCIDRs) {
			out.Chains[c.name] = len(c.rules)
		}
	}
	for _, s := range rs.Sets {
		var texts []string
		for _, e := range peerElements(&s) {
			texts = append(texts, elementText(peerSet(&s), e))
		}
		slices.Sort(texts)
		out.Sets[s.Name] = texts
	}
	var texts []string
	for _, v6 := range []bool{false, true} {
		if v6 && !rs.IPv6 {
			break
		}
		texts = nil
		for _, e := range ifaceAddrElements(ofFamily(rs.Addrs, v6, ifaceAddrOf), v6) {
			texts = append(texts, fmt.Sprintf("%s . %s : %s", bytes.TrimRight(e.Key[:16], "\x00"), keyAddr(e.Key[16:]), verdictOf(e.VerdictData)))
		}
		slices.Sort(texts)
		out.Sets[addrsMap(v6).Name] = texts
		if v6 {
			texts = nil
			for _, e := range ifaceAddrKeys(ofFamily(rs.Addrs, v6, ifaceAddrOf)) {
				texts = append(texts, elementText(naTargets6(), e))
			}
			slices.Sort(texts)
			out.Sets[NATargets6] = texts
		}
		texts = nil
		for _, e := range addrElements(ofFamily(rs.Tracked, v6, addrOf)) {
			texts = append(texts, elementText(trackedSet(v6), e))
		}
		slices.Sort(texts)
		out.Sets[trackedSet(v6).Name] = texts
		texts = nil
		for _, e := range prefixElements(ofFamily(rs.PodCIDRs, v6, prefixAddrOf)) {
			texts = append(texts, elementText(podCIDRSet(v6), e))
		}
		slices.Sort(texts)
		out.Sets[podCIDRSet(v6).Name] = texts
	}
	out.Sets[DropLogSet] = nil // empty until a drop is logged
	if rs.IPv6 {
		out.Sets[DropLogSet6] = nil
	}
	for name, m := range map[string]map[string]string{EgressDispatch: rs.EgressDispatch, IngressDispatch: rs.IngressDispatch} {
		texts = nil
		for iface, chain := range m {
			texts = append(texts, iface+" : jump "+chain)
		}
		slices.Sort(texts)
		out.Sets[name] = texts
	}
	return out
}

// nftList returns `nft list table inet skein` in ns, or "" without nft.
func nftList(t *testing.T, ns *nstest.NS) string {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		return ""
	}
	out, err := exec.Command("ip", "netns", "exec", ns.Name, "nft", "list", "table", "inet", TableName).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list table: %v\n%s", err, out)
	}
	return string(out)
}

func TestApplierListsBack(t *testing.T) {
	ns := nstest.New(t)
	c := newConn(t, ns)
	a := NewApplier(c, nil)
	ctx := context.Background()
	p := applierProgram(t, "")
	if err := a.Apply(ctx, p); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	rs := Render(p)
	if d := cmp.Diff(expectTable(rs), listTable(t, c)); d != "" {
		t.Errorf("table (-want +got):\n%s", d)
	}
	obs, err := a.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := a.Stats()
	if st.Rebuilds != 1 || st.Updates != 0 || obs.Rules != st.Rules || obs.Chains != st.Chains || obs.Sets != st.Sets || obs.Elements != st.Elements {
		t.Errorf("stats %+v, observed %+v", st, obs)
	}
	if text := nftList(t, ns); text != "" {
		t.Logf("nft list table inet skein:\n%s", text)
		for _, want := range []string{
			"ct state established,related,untracked accept",
			"tcp flags ! syn accept comment",
			"ip daddr @pod_cidrs goto untrack_in",
			"ip daddr @tracked_addrs return",
			"notrack comment",
			"iifname vmap @egress_dispatch",
			"oifname vmap @ingress_dispatch",
			"ip daddr . meta l4proto . th dport @n-",
			"udp dport 1000-2000",
			"type filter hook prerouting priority raw; policy accept;",
			"iifname . ip saddr vmap @ep_addrs",
			// The anti-spoofing drop is a wildcard match an admin can read.
			`iifname "sk*" iifname != "skein.*" counter packets 0 bytes 0 drop comment`,
		} {
			if !strings.Contains(text, want) {
				t.Errorf("nft listing lacks %q", want)
			}
		}
	}

	// Applying the same program again changes nothing.
	if err := a.Apply(ctx, applierProgram(t, "")); err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); st.Rebuilds != 1 || st.Updates != 1 || st.LastOps != 0 || st.Patches != 0 {
		t.Errorf("second apply: stats %+v, want one rebuild then an empty update", st)
	}

	if err := a.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if got := listTable(t, c); len(got.Chains) != 0 {
		t.Errorf("after Delete: %+v", got)
	}
}

func TestApplierElementUpdates(t *testing.T) {
	ns := nstest.New(t)
	c := newConn(t, ns)
	a := NewApplier(c, nil)
	ctx := context.Background()
	p1 := applierProgram(t, "")
	if err := a.Apply(ctx, p1); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	// A marker only a rebuild would remove: an element added behind the
	// applier's back to a set whose desired elements do not change.
	rs1 := Render(p1)
	var marked string
	for _, s := range rs1.Sets {
		if s.Kind == SetAddrs && strings.Contains(s.Comment, "namespaces {}") {
			marked = s.Name
		}
	}
	if marked == "" {
		t.Fatalf("no all-pods set in %v", rs1.Sets)
	}
	marker := netip.MustParseAddr("10.255.255.254")
	if err := c.SetAddElements(&nftables.Set{Table: table, Name: marked, KeyType: nftables.TypeIPAddr}, addrElements([]netip.Addr{marker})); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("add marker: %v", err)
	}

	// Only elements change: a new endpoint on n1 in y (new dispatch and
	// anti-spoofing entries, a member of the y/b selector set), and y/b's
	// address and named ports change on another node.
	p2 := recompile(t, func(in *Input) {
		in.Endpoints = append(in.Endpoints, api.Endpoint{Namespace: "y", Name: "b2", Labels: map[string]string{"pod": "b"},
			IPs: []netip.Addr{netip.MustParseAddr("10.0.2.22")}, Node: "n1", HostIface: "sky00000000b2", Ports: modelPorts()})
		for i := range in.Endpoints {
			if in.Endpoints[i].Namespace == "y" && in.Endpoints[i].Name == "b" {
				in.Endpoints[i].IPs = []netip.Addr{netip.MustParseAddr("10.0.2.222")}
			}
		}
	})
	rs2 := Render(p2)
	if rs1.Structure() != rs2.Structure() {
		t.Fatalf("test program changes structure:\n%s\n---\n%s", rs1.Structure(), rs2.Structure())
	}
	if err := a.Apply(ctx, p2); err != nil {
		t.Fatalf("Apply p2: %v", err)
	}
	st := a.Stats()
	if st.Rebuilds != 1 || st.Updates != 1 || st.LastOps == 0 || st.LastKind != "elements" {
		t.Errorf("stats %+v, want 1 rebuild and 1 element update", st)
	}
	want := expectTable(rs2)
	want.Sets[marked] = append(want.Sets[marked], marker.String())
	slices.Sort(want.Sets[marked])
	if d := cmp.Diff(want, listTable(t, c)); d != "" {
		t.Errorf("table after element update (-want +got):\n%s", d)
	}

	// A structural change patches the table in place: new chains and sets
	// come, unused ones go, kept sets (and the marker) stay.
	p3 := applierProgram(t, `
---
metadata: {name: more, namespace: z}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress: [{to: [{podSelector: {matchLabels: {pod: c}}}]}]`)
	rs3 := Render(p3)
	if rs3.Structure() == rs2.Structure() {
		t.Fatal("p3 does not change structure")
	}
	if err := a.Apply(ctx, p3); err != nil {
		t.Fatalf("Apply p3: %v", err)
	}
	if st := a.Stats(); st.Rebuilds != 1 || st.Patches != 1 || st.LastKind != "patch" {
		t.Errorf("stats %+v, want a patch", st)
	}
	want = expectTable(rs3)
	want.Sets[marked] = append(want.Sets[marked], marker.String())
	slices.Sort(want.Sets[marked])
	if d := cmp.Diff(want, listTable(t, c)); d != "" {
		t.Errorf("table after patch (-want +got):\n%s", d)
	}

	// Going back deletes what p3 added.
	if err := a.Apply(ctx, p1); err != nil {
		t.Fatalf("Apply p1: %v", err)
	}
	want = expectTable(rs1)
	want.Sets[marked] = append(want.Sets[marked], marker.String())
	slices.Sort(want.Sets[marked])
	if d := cmp.Diff(want, listTable(t, c)); d != "" {
		t.Errorf("table after patching back (-want +got):\n%s", d)
	}

	// Reset (drift repair) rebuilds: the marker goes.
	a.Reset()
	if err := a.Apply(ctx, p1); err != nil {
		t.Fatalf("Apply after Reset: %v", err)
	}
	if st := a.Stats(); st.Rebuilds != 2 {
		t.Errorf("stats %+v, want a second rebuild", st)
	}
	if d := cmp.Diff(expectTable(rs1), listTable(t, c)); d != "" {
		t.Errorf("table after rebuild (-want +got):\n%s", d)
	}
}

// recompile compiles applierInput after mutate.
func recompile(t *testing.T, mutate func(*Input)) *Program {
	t.Helper()
	in := applierInput(t, "")
	mutate(&in)
	return Compile(in)
}

func TestApplierFailureKeepsOldTable(t *testing.T) {
	ns := nstest.New(t)
	c := newConn(t, ns)
	a := NewApplier(c, nil)
	ctx := context.Background()
	p1 := applierProgram(t, "")
	if err := a.Apply(ctx, p1); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	before := listTable(t, c)

	// The kernel rejects the batch at its last message: a jump to a chain
	// that does not exist.
	a.beforeFlush = func(c *nftables.Conn, tb *nftables.Table) {
		ch := c.AddChain(&nftables.Chain{Table: tb, Name: "broken"})
		c.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: "no-such-chain"}}})
	}
	p2 := applierProgram(t, `
---
metadata: {name: more, namespace: z}
spec: {podSelector: {}, policyTypes: [Egress]}`)
	if err := a.Apply(ctx, p2); err == nil {
		t.Fatal("Apply with a broken batch succeeded")
	} else {
		t.Logf("Apply error (expected): %v", err)
	}
	if st := a.Stats(); st.Failures != 1 || st.LastError == "" {
		t.Errorf("stats %+v, want one failure", st)
	}
	if d := cmp.Diff(before, listTable(t, c)); d != "" {
		t.Errorf("table changed by a failed apply (-before +after):\n%s", d)
	}

	// The retry (a rebuild, since the state is unknown) succeeds.
	a.beforeFlush = nil
	if err := a.Apply(ctx, p2); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if st := a.Stats(); st.Rebuilds != 2 || st.LastKind != "rebuild" {
		t.Errorf("stats %+v, want the retry to rebuild", st)
	}
	if d := cmp.Diff(expectTable(Render(p2)), listTable(t, c)); d != "" {
		t.Errorf("table after retry (-want +got):\n%s", d)
	}
}

// TestApplierLargeSets rebuilds a table whose sets hold 10 000 addresses in
// one batch, then updates elements.
func TestApplierLargeSets(t *testing.T) {
	if testing.Short() {
		t.Skip("large table")
	}
	ns := nstest.New(t)
	c := newConn(t, ns)
	a := NewApplier(c, nil)
	ctx := context.Background()
	in := bigCluster()
	in.Node = "node-7"
	// A set of all 10 000 pod addresses.
	in.NetworkPolicies = append(in.NetworkPolicies, api.NetworkPolicy{
		ObjectMeta: api.ObjectMeta{Namespace: "ns-7", Name: "from-all"},
		Spec: api.NetworkPolicySpec{
			PodSelector: api.LabelSelector{},
			Ingress:     []api.NetworkPolicyIngressRule{{From: []api.NetworkPolicyPeer{{NamespaceSelector: &api.LabelSelector{}}}}},
		},
	})
	p := Compile(in)
	if err := a.Apply(ctx, p); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	st := a.Stats()
	t.Logf("rebuild of %d sets, %d rules, %d elements: %v", st.Sets, st.Rules, st.Elements, st.LastDuration)
	obs, err := a.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if obs.Elements != st.Elements || obs.Rules != st.Rules {
		t.Errorf("observed %+v, stats %+v", obs, st)
	}
	if st.Elements < 10000 {
		t.Errorf("%d elements, want more than 10 000", st.Elements)
	}
	in.Endpoints = append(in.Endpoints, api.Endpoint{Namespace: "ns-7", Name: "new", Labels: map[string]string{"app": "app-8", "tier": "t0"},
		IPs: []netip.Addr{netip.MustParseAddr("10.200.0.1")}, Node: "node-9", HostIface: "skfffffffffff"})
	if err := a.Apply(ctx, Compile(in)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	st = a.Stats()
	if st.Rebuilds != 1 || st.Updates != 1 || st.LastOps != 4 {
		t.Errorf("stats %+v, want an element update of 4 operations (the new pod joins 4 sets)", st)
	}
	t.Logf("element update of %d ops: %v", st.LastOps, st.LastDuration)

	// A new policy patches the table: the big sets stay.
	in.NetworkPolicies = append(in.NetworkPolicies, api.NetworkPolicy{
		ObjectMeta: api.ObjectMeta{Namespace: "ns-17", Name: "new"},
		Spec: api.NetworkPolicySpec{
			PodSelector: api.LabelSelector{},
			Ingress:     []api.NetworkPolicyIngressRule{{From: []api.NetworkPolicyPeer{{PodSelector: &api.LabelSelector{}}}}},
		},
	})
	if err := a.Apply(ctx, Compile(in)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	st = a.Stats()
	if st.Rebuilds != 1 || st.Patches != 1 {
		t.Errorf("stats %+v, want a patch", st)
	}
	t.Logf("patch of %d ops: %v", st.LastOps, st.LastDuration)
	obs, err = a.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if obs.Elements != st.Elements || obs.Rules != st.Rules || obs.Chains != st.Chains || obs.Sets != st.Sets {
		t.Errorf("observed %+v, stats %+v", obs, st)
	}
}
