package policy

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/skeinnet/skein/api"
)

// walkPolicies select by pod labels, namespace labels, named ports in both
// directions and admin tiers, so every kind of pod set is exercised.
const walkPolicies = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: client}}}]
  - from: [{namespaceSelector: {matchLabels: {team: blue}}, podSelector: {}}]
    ports: [{port: serve-80-tcp}]
  egress:
  - to: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}]
    ports: [{port: serve-81-udp, protocol: UDP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: all-b, namespace: y}
spec:
  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {matchExpressions: [{key: team, operator: Exists}]}}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: deny-red}
spec:
  priority: 5
  subject: {namespaces: {}}
  ingress:
  - {action: Deny, from: [{namespaces: {matchLabels: {team: red}}}]}
  egress:
  - {action: Allow, to: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {role: client}}}}], ports: [{namedPort: serve-80-tcp}]}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress:
  - {action: Deny, from: [{pods: {namespaceSelector: {matchLabels: {ns: z}}, podSelector: {matchLabels: {role: client}}}}]}
`

// TestIncrementalRandomWalk changes endpoints (remote and local: new,
// relabelled, readdressed, re-ported, deleted, sharing addresses), namespace
// labels and policies at random, and checks after every step that the
// incremental program equals Compile from scratch, and that the changes it
// reported, applied to the previous program's sets, give the new ones.
func TestIncrementalRandomWalk(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	base := withPolicies(t, Input{Node: "n1", VXLAN: &VXLANFilter{Port: 4789, Peers: []netip.Addr{}}}, walkPolicies)
	nss := map[string]api.Namespace{}
	for _, ns := range []string{"x", "y", "z"} {
		nss[ns] = api.Namespace{Name: ns, Labels: map[string]string{"ns": ns}}
	}
	eps := map[string]api.Endpoint{}
	input := func() Input {
		in := base
		in.Namespaces = slices.Collect(maps.Values(nss))
		slices.SortFunc(in.Namespaces, func(a, b api.Namespace) int { return compareStrings(a.Name, b.Name) })
		for _, k := range slices.Sorted(maps.Keys(eps)) {
			in.Endpoints = append(in.Endpoints, eps[k])
		}
		return in
	}
	randomEndpoint := func(i int) api.Endpoint {
		labels := map[string]string{"pod": []string{"a", "b", "c"}[rng.IntN(3)]}
		if rng.IntN(2) == 0 {
			labels["role"] = "client"
		}
		var ports []api.NamedPort
		if rng.IntN(2) == 0 {
			ports = modelPorts()[:1+rng.IntN(6)]
		}
		return api.Endpoint{
			Namespace:   []string{"x", "y", "z", "w"}[rng.IntN(4)],
			Name:        fmt.Sprintf("p%d", i),
			Labels:      labels,
			Ports:       ports,
			IPs:         []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(1 + rng.IntN(20))})}, // shared now and then
			Node:        []string{"n1", "n2", "n2", "n3", "n3"}[rng.IntN(5)],
			ContainerID: fmt.Sprintf("c%d", i),
			IfName:      "eth0",
			HostIface:   fmt.Sprintf("sk%011d", i),
		}
	}
	x := NewIncremental(input())
	incremental := 0
	for step := range 1500 {
		prev := x.Program()
		var ch SetChanges
		full := true
		switch r := rng.IntN(20); {
		case r < 16:
			i := rng.IntN(30)
			key := fmt.Sprintf("k%d", i)
			if old, ok := eps[key]; ok && rng.IntN(3) == 0 {
				delete(eps, key)
				ch, full = x.PutEndpoint(EndpointKey(&old), nil)
			} else {
				ep := randomEndpoint(i)
				if ok && ep.Node != old.Node { // one key, one node, as in the store
					ep.Node = old.Node
				}
				eps[key] = ep
				ch, full = x.PutEndpoint(EndpointKey(&ep), &ep)
			}
		case r < 18:
			ns := []string{"x", "y", "z"}[rng.IntN(3)]
			l := map[string]string{"ns": ns}
			if t := rng.IntN(3); t > 0 {
				l["team"] = []string{"", "blue", "red"}[t]
			}
			nss[ns] = api.Namespace{Name: ns, Labels: l}
			x.SetNamespaces(input().Namespaces)
		case r < 19:
			// Nodes come and go: the VXLAN filter's peers move, no rule.
			base.Nodes, base.VXLAN = randomNodes(rng)
			prevVX := prev.VXLAN
			ch, full = x.SetNodes(base.Nodes, base.VXLAN)
			switch {
			case full:
			case base.VXLAN == nil: // no filter before or after
				if ch.Len() != 0 {
					t.Fatalf("step %d: no filter, yet changes %q", step, ch)
				}
			default:
				peers := moveSorted(prevVX.Peers, ch.AddVXLAN, ch.DelVXLAN, netip.Addr.Compare)
				if !slices.Equal(peers, base.VXLAN.Peers) && len(peers)+len(base.VXLAN.Peers) > 0 {
					t.Fatalf("step %d: previous filter + changes = %v, want %v", step, peers, base.VXLAN.Peers)
				}
			}
			ch = SetChanges{} // no set element moved
		default:
			in := input()
			x.SetPolicies(in.NetworkPolicies, in.ANPs, in.BANPs, in.CNPs)
		}
		want := Compile(input())
		if d := gocmp.Diff(want, x.Program(), cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); d != "" {
			t.Fatalf("step %d: incremental program != Compile (-compile +incremental):\n%s", step, d)
		}
		if !full {
			incremental++
			moved := applySetChanges(prev.Sets, ch)
			if d := gocmp.Diff(want.Sets, moved, cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); d != "" {
				t.Fatalf("step %d: previous sets + changes != Compile's sets (-compile +moved):\n%s\nchanges:\n%s", step, d, ch)
			}
			if prev == x.Program() && ch.Len() > 0 {
				t.Fatalf("step %d: changes reported but the program was not replaced", step)
			}
		}
	}
	if incremental < 500 {
		t.Fatalf("only %d incremental steps: the walk does not exercise the remote path", incremental)
	}
	t.Logf("%d incremental steps, %d full compiles", incremental, x.Compiles())
}

// randomNodes draws a few nodes and the VXLAN filter made of their underlay
// addresses (nil now and then: no filter, which recompiles).
func randomNodes(rng *rand.Rand) ([]api.Node, *VXLANFilter) {
	var nodes []api.Node
	f := &VXLANFilter{Port: 4789, Peers: []netip.Addr{}}
	for i := range 6 {
		if rng.IntN(2) == 0 {
			continue
		}
		ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i)})
		nodes = append(nodes, api.Node{Name: fmt.Sprintf("n%d", i), UnderlayIP: ip})
		f.Peers = append(f.Peers, ip)
	}
	if rng.IntN(8) == 0 {
		return nodes, nil
	}
	return nodes, f
}

// applySetChanges returns a copy of sets moved by ch.
func applySetChanges(sets map[string]Set, ch SetChanges) map[string]Set {
	out := maps.Clone(sets)
	for name, s := range out {
		s.Prefixes = moveSorted(s.Prefixes, ch.AddPrefixes[name], ch.DelPrefixes[name], comparePrefix)
		s.AddrPorts = moveSorted(s.AddrPorts, ch.AddPorts[name], ch.DelPorts[name], compareAddrPort)
		out[name] = s
	}
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestIncrementalUnselectedEndpointCostsNothing: a remote endpoint that no
// used selector matches changes no set and compiles nothing.
func TestIncrementalUnselectedEndpointCostsNothing(t *testing.T) {
	in := withPolicies(t, Input{Node: "n1"}, walkPolicies)
	in.Endpoints = []api.Endpoint{{Namespace: "x", Name: "a", Labels: map[string]string{"pod": "a"}, IPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, Node: "n1", ContainerID: "c1", IfName: "eth0", HostIface: "sk00000000001"}}
	x := NewIncremental(in)
	before := x.Program()
	ep := api.Endpoint{Namespace: "q", Name: "lonely", Labels: map[string]string{"pod": "z"}, IPs: []netip.Addr{netip.MustParseAddr("10.9.9.9")}, Node: "n7", ContainerID: "c9", IfName: "eth0"}
	ch, full := x.PutEndpoint(EndpointKey(&ep), &ep)
	if full || ch.Len() != 0 || x.Program() != before || x.Compiles() != 1 {
		t.Fatalf("unselected remote endpoint: full=%v changes=%q compiles=%d, program replaced=%v; want nothing", full, ch, x.Compiles(), x.Program() != before)
	}
	ep.Namespace, ep.Labels = "x", map[string]string{"role": "client"}
	ch, full = x.PutEndpoint(EndpointKey(&ep), &ep)
	if full || ch.Len() == 0 {
		t.Fatalf("endpoint moved to x and labelled role=client: full=%v changes=%q, want set elements added", full, ch)
	}
}

// BenchmarkIncrementalRemoteEndpoint is the agent's cost for one endpoint
// started or relabelled on another node, in bigCluster (10 000 endpoints,
// 1 000 NetworkPolicies), compared with BenchmarkCompileNode's full compile.
func BenchmarkIncrementalRemoteEndpoint(b *testing.B) {
	in := bigCluster()
	in.Node = "node-1"
	for i := range in.Endpoints {
		in.Endpoints[i].ContainerID = fmt.Sprintf("c%d", i)
		in.Endpoints[i].IfName = "eth0"
	}
	x := NewIncremental(in)
	ep := in.Endpoints[2] // on node-2
	b.ResetTimer()
	for i := range b.N {
		ep.Labels = map[string]string{"app": fmt.Sprintf("app-%d", i%10), "tier": "t0"}
		if _, full := x.PutEndpoint(EndpointKey(&ep), &ep); full {
			b.Fatal("remote endpoint recompiled")
		}
	}
}
