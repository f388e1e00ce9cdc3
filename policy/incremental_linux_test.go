package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/nstest"
)

// TestApplyElementsFollowsIncremental: remote endpoints come and go; each
// change reaches the kernel through ApplyElements alone (element batches, no
// rebuild, no patch of chains), queued two or three at a time as the
// Reconciler would, and the table in the namespace always lists what a full
// render of the incremental program says.
func TestApplyElementsFollowsIncremental(t *testing.T) {
	ns := nstest.New(t)
	c := newConn(t, ns)
	a := NewApplier(c, nil)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(9, 10))

	in := withPolicies(t, Input{Node: "n1"}, walkPolicies)
	in.Endpoints = []api.Endpoint{{Namespace: "x", Name: "a", Labels: map[string]string{"pod": "a"}, IPs: []netip.Addr{netip.MustParseAddr("10.0.1.1")},
		Node: "n1", ContainerID: "local", IfName: "eth0", HostIface: "sk00000000001"}}
	x := NewIncremental(in)
	if err := a.Apply(ctx, x.Program()); err != nil {
		t.Fatal(err)
	}
	var queued []SetChanges
	for step := range 120 {
		i := rng.IntN(12)
		ep := api.Endpoint{
			Namespace: []string{"x", "y", "z"}[rng.IntN(3)], Name: fmt.Sprintf("r%d", i),
			Labels: map[string]string{"pod": "b", "role": []string{"client", "server"}[rng.IntN(2)]},
			Ports:  modelPorts()[:rng.IntN(3)],
			IPs:    []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 2, byte(1 + rng.IntN(8))})},
			Node:   "n2", ContainerID: fmt.Sprintf("c%d", i), IfName: "eth0",
		}
		var ch SetChanges
		var full bool
		if rng.IntN(4) == 0 {
			ch, full = x.PutEndpoint(EndpointKey(&ep), nil)
		} else {
			ch, full = x.PutEndpoint(EndpointKey(&ep), &ep)
		}
		if full {
			t.Fatalf("step %d: a remote endpoint recompiled", step)
		}
		queued = append(queued, ch)
		if rng.IntN(3) > 0 {
			continue
		}
		if err := a.ApplyElements(ctx, x.Program(), queued); err != nil {
			t.Fatalf("step %d: ApplyElements: %v", step, err)
		}
		queued = nil
		if d := cmp.Diff(expectTable(Render(x.Program())), listTable(t, c)); d != "" {
			t.Fatalf("step %d: table != render of the program (-want +got):\n%s", step, d)
		}
	}
	if st := a.Stats(); st.Rebuilds != 1 || st.Patches != 0 || st.Failures != 0 {
		t.Errorf("stats %+v: want one rebuild (the first apply), then element updates only", st)
	}
}

// TestApplyElementsMovesVXLANPeers: nodes joining and leaving reach the
// VXLAN filter's set as element updates, without a rebuild of the table.
func TestApplyElementsMovesVXLANPeers(t *testing.T) {
	ns := nstest.New(t)
	c := newConn(t, ns)
	a := NewApplier(c, nil)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(11, 12))
	in := withPolicies(t, Input{Node: "n1", VXLAN: &VXLANFilter{Port: 4789, Peers: []netip.Addr{}}}, walkPolicies)
	in.Endpoints = []api.Endpoint{{Namespace: "x", Name: "a", Labels: map[string]string{"pod": "a"}, IPs: []netip.Addr{netip.MustParseAddr("10.0.1.1")},
		Node: "n1", ContainerID: "local", IfName: "eth0", HostIface: "sk00000000001"}}
	x := NewIncremental(in)
	if err := a.Apply(ctx, x.Program()); err != nil {
		t.Fatal(err)
	}
	// The overlay's own packets skip conntrack, in (prerouting) and out.
	if got := listTable(t, c).Chains; got["prerouting"] != len(basePrerouting(nil))+1 || got["output"] != 1 {
		t.Errorf("chains %v: want the VXLAN notrack rule in prerouting and output", got)
	}
	peersSet := &nftables.Set{Table: table, Name: VXLANPeers, KeyType: nftables.TypeIPAddr}
	for step := range 40 {
		nodes, f := randomNodes(rng)
		if f == nil {
			f = &VXLANFilter{Port: 4789, Peers: []netip.Addr{}}
		}
		ch, full := x.SetNodes(nodes, f)
		if full {
			t.Fatalf("step %d: a node change recompiled", step)
		}
		if err := a.ApplyElements(ctx, x.Program(), []SetChanges{ch}); err != nil {
			t.Fatalf("step %d: ApplyElements: %v", step, err)
		}
		elems, err := c.GetSetElements(peersSet)
		if err != nil {
			t.Fatalf("step %d: elements of %s: %v", step, VXLANPeers, err)
		}
		var got []string
		for _, e := range elems {
			got = append(got, netip.AddrFrom4([4]byte(e.Key)).String())
		}
		var want []string
		for _, p := range f.Peers {
			want = append(want, p.String())
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("step %d: %s = %v, want %v", step, VXLANPeers, got, want)
		}
	}
	if st := a.Stats(); st.Rebuilds != 1 || st.Failures != 0 {
		t.Errorf("stats %+v: want the first apply's rebuild only", st)
	}
	// What skein status shows of the table is what the kernel holds, the
	// VXLAN filter's chains, rules, sets and peers included.
	obs, err := a.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := a.Stats(); obs.Chains != st.Chains || obs.Rules != st.Rules || obs.Sets != st.Sets || obs.Elements != st.Elements {
		t.Errorf("stats %+v, observed %+v", st, obs)
	}
}
