package policy

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/skeinnet/skein/api"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// golden compares got with testdata/<test name>.golden.
func golden(t *testing.T, got string) {
	t.Helper()
	path := filepath.Join("testdata", t.Name()+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, d)
	}
}

// TestRenderGolden renders the applier test program: every kind of set,
// tier, verdict and port match.
func TestRenderGolden(t *testing.T) {
	t.Parallel()
	golden(t, Render(applierProgram(t, "")).String())
}

func TestRenderSharesChains(t *testing.T) {
	t.Parallel()
	rs := Render(applierProgram(t, ""))
	// x/c and y/c... all endpoints of n1 in namespaces without an egress
	// policy share one egress chain (the baseline's).
	seen := map[string]int{}
	for _, c := range rs.EgressDispatch {
		seen[c]++
	}
	shared := false
	for _, n := range seen {
		if n > 1 {
			shared = true
		}
	}
	if !shared {
		t.Errorf("no shared chain in %v", rs.EgressDispatch)
	}
}

func TestDiffRulesets(t *testing.T) {
	t.Parallel()
	have := Render(applierProgram(t, ""))
	if d := DiffRulesets(have, have); d.Len() != 0 {
		t.Errorf("diff of a ruleset with itself: %+v", d)
	}
	in := applierInput(t, `
---
metadata: {name: more, namespace: z}
spec: {podSelector: {}, policyTypes: [Egress], egress: [{to: [{podSelector: {matchLabels: {pod: c}}}]}]}`)
	in.Endpoints[0].IPs = []netip.Addr{netip.MustParseAddr("10.0.1.100")} // x/a
	want := Render(Compile(in))
	d := DiffRulesets(have, want)
	if !d.Structural() {
		t.Fatalf("diff %+v is not structural", d)
	}
	// Applying the diff to have's description gives want's.
	got := applyDiff(have, d)
	if diff := cmp.Diff(want.String(), got.String()); diff != "" {
		t.Errorf("have + diff != want (-want +got):\n%s", diff)
	}
	// Deleted chains that others goto come last.
	for i, name := range d.DelChains {
		for _, later := range d.DelChains[i+1:] {
			for _, c := range have.Chains {
				if c.Name != later {
					continue
				}
				for _, r := range c.Rules {
					if r.Target == name {
						t.Errorf("chain %s is deleted before %s, which jumps to it", name, later)
					}
				}
			}
		}
	}
}

// applyDiff is a model of what the kernel does with a TableDiff.
func applyDiff(have *Ruleset, d *TableDiff) *Ruleset {
	out := &Ruleset{EgressDispatch: map[string]string{}, IngressDispatch: map[string]string{}}
	delSets := map[string]bool{}
	for _, n := range d.DelSets {
		delSets[n] = true
	}
	var sets []NFTSet
	for _, s := range have.Sets {
		if delSets[s.Name] {
			continue
		}
		if add, del := d.AddAddrs[s.Name], d.DelAddrs[s.Name]; add != nil || del != nil {
			addrs := addrsOf(s.Prefixes)
			addrs, _ = diffSlices(del, addrs)
			addrs = append(addrs, add...)
			s.Prefixes = nil
			for _, a := range addrs {
				s.Prefixes = append(s.Prefixes, netip.PrefixFrom(a, 32))
			}
			sortPrefixes(s.Prefixes)
		}
		if add, del := d.AddAddrPorts[s.Name], d.DelAddrPorts[s.Name]; add != nil || del != nil {
			aps, _ := diffSlices(del, s.AddrPorts)
			s.AddrPorts = sortAddrPorts(append(aps, add...))
		}
		sets = append(sets, s)
	}
	sets = append(sets, d.AddSets...)
	sortSets(sets)
	out.Sets = sets
	delChains := map[string]bool{}
	for _, n := range d.DelChains {
		delChains[n] = true
	}
	for _, c := range have.Chains {
		if !delChains[c.Name] {
			out.Chains = append(out.Chains, c)
		}
	}
	out.Chains = append(out.Chains, d.AddChains...)
	sortChains(out.Chains)
	addrs, _ := diffSlices(d.DelIfaceAddrs, have.Addrs)
	out.Addrs = sortIfaceAddrs(append(addrs, d.AddIfaceAddrs...))
	out.Tracked = moveSorted(have.Tracked, d.AddTracked, d.DelTracked, netip.Addr.Compare)
	for _, m := range []struct {
		have, add, del, out map[string]string
	}{{have.EgressDispatch, d.AddEgress, d.DelEgress, out.EgressDispatch}, {have.IngressDispatch, d.AddIngress, d.DelIngress, out.IngressDispatch}} {
		for k, v := range m.have {
			if _, gone := m.del[k]; !gone {
				m.out[k] = v
			}
		}
		for k, v := range m.add {
			m.out[k] = v
		}
	}
	return out
}

// TestTrackedFollowsSelection: an endpoint that a policy comes to select
// (or stops selecting) changes the tracked set and its dispatch entries,
// elements only, when its chain exists already.
func TestTrackedFollowsSelection(t *testing.T) {
	t.Parallel()
	a, b := netip.MustParseAddr("10.0.1.1"), netip.MustParseAddr("10.0.1.2")
	in := func(bSelected bool) Input {
		lb := map[string]string{"pod": "b"}
		if bSelected {
			lb["isolated"] = "yes"
		}
		return withPolicies(t, Input{
			Namespaces: []api.Namespace{{Name: "x"}},
			Endpoints: []api.Endpoint{
				{Namespace: "x", Name: "a", Labels: map[string]string{"pod": "a", "isolated": "yes"}, IPs: []netip.Addr{a}, Node: "n1", HostIface: "sk0000000000a"},
				{Namespace: "x", Name: "b", Labels: lb, IPs: []netip.Addr{b}, Node: "n1", HostIface: "sk0000000000b"},
			},
			Node: "n1",
		}, `
metadata: {name: deny, namespace: x}
spec: {podSelector: {matchLabels: {isolated: "yes"}}}`)
	}
	off, on := Render(Compile(in(false))), Render(Compile(in(true)))
	if d := cmp.Diff([]netip.Addr{a}, off.Tracked, cmpopts.EquateComparable(netip.Addr{})); d != "" {
		t.Errorf("tracked with only a selected (-want +got):\n%s", d)
	}
	for _, tc := range []struct {
		name         string
		have, want   *Ruleset
		add, del     []netip.Addr
		addIn, delIn int
	}{
		{"b becomes selected", off, on, []netip.Addr{b}, nil, 1, 0},
		{"b no longer selected", on, off, nil, []netip.Addr{b}, 0, 1},
	} {
		d := DiffRulesets(tc.have, tc.want)
		if d.Structural() {
			t.Errorf("%s: diff is structural: %+v", tc.name, d)
		}
		if !slices.Equal(d.AddTracked, tc.add) || !slices.Equal(d.DelTracked, tc.del) {
			t.Errorf("%s: tracked +%v -%v, want +%v -%v", tc.name, d.AddTracked, d.DelTracked, tc.add, tc.del)
		}
		if len(d.AddIngress) != tc.addIn || len(d.DelIngress) != tc.delIn {
			t.Errorf("%s: ingress dispatch +%v -%v, want %d added, %d deleted", tc.name, d.AddIngress, d.DelIngress, tc.addIn, tc.delIn)
		}
	}
}
