package policy

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/skeinnet/skein/api"
)

// bigCluster returns 100 namespaces of 100 endpoints each spread over 100
// nodes, and 10 NetworkPolicies per namespace (1 000), each selecting one
// app label, allowing ingress from another app in its namespace and from a
// labelled set of namespaces on a numeric and a named port, and egress to
// the cluster CIDR except a block plus DNS; and 5 admin policies.
func bigCluster() Input {
	const namespaces, perNS = 100, 100
	var in Input
	for n := range namespaces {
		name := fmt.Sprintf("ns-%d", n)
		in.Namespaces = append(in.Namespaces, api.Namespace{Name: name, Labels: map[string]string{"team": fmt.Sprintf("team-%d", n%10)}})
		for i := range perNS {
			k := n*perNS + i
			in.Endpoints = append(in.Endpoints, api.Endpoint{
				Namespace: name,
				Name:      fmt.Sprintf("pod-%d", i),
				Labels:    map[string]string{"app": fmt.Sprintf("app-%d", i%10), "tier": fmt.Sprintf("t%d", i%3)},
				Ports:     []api.NamedPort{{Name: "http", Port: 8000 + i%10, Protocol: "TCP"}},
				IPs:       []netip.Addr{netip.AddrFrom4([4]byte{10, byte(k >> 16), byte(k >> 8), byte(k)})},
				Node:      fmt.Sprintf("node-%d", k%100),
				HostIface: fmt.Sprintf("sk%011x", k),
			})
		}
		for j := range 10 {
			tcp := "TCP"
			udp := "UDP"
			in.NetworkPolicies = append(in.NetworkPolicies, api.NetworkPolicy{
				ObjectMeta: api.ObjectMeta{Namespace: name, Name: fmt.Sprintf("np-%d", j)},
				Spec: api.NetworkPolicySpec{
					PodSelector: api.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app-%d", j)}},
					PolicyTypes: []string{api.PolicyTypeIngress, api.PolicyTypeEgress},
					Ingress: []api.NetworkPolicyIngressRule{{
						From: []api.NetworkPolicyPeer{
							{PodSelector: &api.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app-%d", (j+1)%10)}}},
							{
								NamespaceSelector: &api.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("team-%d", j)}},
								PodSelector: &api.LabelSelector{MatchExpressions: []api.LabelSelectorRequirement{
									{Key: "tier", Operator: api.LabelSelectorOpNotIn, Values: []string{"t2"}},
								}},
							},
						},
						Ports: []api.NetworkPolicyPort{
							{Protocol: &tcp, Port: ptr(api.FromInt(80))},
							{Protocol: &tcp, Port: ptr(api.FromString("http"))},
						},
					}},
					Egress: []api.NetworkPolicyEgressRule{
						{To: []api.NetworkPolicyPeer{{IPBlock: &api.IPBlock{CIDR: "10.0.0.0/8", Except: []string{fmt.Sprintf("10.%d.0.0/16", j)}}}}},
						{Ports: []api.NetworkPolicyPort{{Protocol: &udp, Port: ptr(api.FromInt(53))}}},
					},
				},
			})
		}
	}
	for a := range 5 {
		in.ANPs = append(in.ANPs, api.AdminNetworkPolicy{
			ObjectMeta: api.ObjectMeta{Name: fmt.Sprintf("anp-%d", a)},
			Spec: api.AdminNetworkPolicySpec{
				Priority: int32(a),
				Subject:  api.AdminNetworkPolicySubject{Namespaces: &api.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("team-%d", a)}}},
				Ingress: []api.AdminNetworkPolicyIngressRule{{
					Action: api.ActionDeny,
					From:   []api.AdminNetworkPolicyIngressPeer{{Namespaces: &api.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("team-%d", a+5)}}}},
				}},
			},
		})
	}
	return in
}

func ptr[T any](v T) *T { return &v }

// BenchmarkCompile1000x10000 is the target: a full compile of 1 000
// policies over 10 000 endpoints in at most one second.
func BenchmarkCompile1000x10000(b *testing.B) {
	in := bigCluster()
	b.ResetTimer()
	var p *Program
	for b.Loop() {
		p = Compile(in)
	}
	b.StopTimer()
	rules := 0
	for _, ep := range p.Endpoints {
		rules += len(ep.Ingress.ANP) + len(ep.Ingress.NP) + len(ep.Egress.NP)
	}
	b.ReportMetric(float64(len(p.Sets)), "sets")
	b.ReportMetric(float64(rules), "rules")
}

// BenchmarkCompileNode is the agent's compile: one node's 100 endpoints.
func BenchmarkCompileNode(b *testing.B) {
	in := bigCluster()
	in.Node = "node-7"
	b.ResetTimer()
	for b.Loop() {
		Compile(in)
	}
}

// TestCompileBigCluster checks the benchmark's cluster compiles sensibly,
// so the benchmark measures real work.
func TestCompileBigCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("big cluster")
	}
	in := bigCluster()
	p := Compile(in)
	if len(p.Endpoints) != 10000 {
		t.Fatalf("%d endpoints", len(p.Endpoints))
	}
	if len(p.Warnings) > 0 {
		t.Fatalf("warnings: %v", p.Warnings)
	}
	// ns-3/pod-13 has app-3: np-3 allows app-4 of ns-3 and tier t0/t1 of
	// team-3 namespaces on 80 and on its http port (8003).
	check(t, p, []probe{
		{from: "ns-3/pod-14", to: "ns-3/pod-13", port: 80, allowed: true},
		{from: "ns-3/pod-14", to: "ns-3/pod-13", port: 8003, allowed: true},
		{from: "ns-3/pod-14", to: "ns-3/pod-13", port: 8004, allowed: false},
		{from: "ns-13/pod-1", to: "ns-3/pod-13", port: 80, allowed: true},
		{from: "ns-13/pod-0", to: "ns-3/pod-13", port: 80, allowed: false, rule: "isolated for egress by NetworkPolicy ns-13/np-0"}, // 10.0.1.57 is in np-0's except
		{from: "ns-13/pod-2", to: "ns-3/pod-13", port: 80, allowed: false},                                                          // tier t2
		{from: "ns-4/pod-15", to: "ns-3/pod-13", port: 80, allowed: false},
		// anp-3 denies team-8 into team-3 before any NetworkPolicy.
		{from: "ns-8/pod-4", to: "ns-3/pod-13", port: 80, allowed: false, rule: "anp-3"},
	})
}

// dualStackCluster is bigCluster with an IPv6 address on every endpoint
// and an IPv6 twin of every ipBlock.
func dualStackCluster() Input {
	in := bigCluster()
	for i := range in.Endpoints {
		ep := &in.Endpoints[i]
		a := ep.IPs[0].As4()
		ep.IPs = append(ep.IPs, netip.AddrFrom16([16]byte{0: 0xfd, 13: a[1], 14: a[2], 15: a[3]}))
	}
	for i := range in.NetworkPolicies {
		np := &in.NetworkPolicies[i]
		np.Spec.Egress[0].To = append(np.Spec.Egress[0].To, api.NetworkPolicyPeer{IPBlock: &api.IPBlock{CIDR: "fd00::/64", Except: []string{fmt.Sprintf("fd00::%x:0/112", i%10)}}})
	}
	return in
}

// BenchmarkRenderNode renders one node's program of bigCluster (IPv4
// only), and reports the rules and elements of its table.
func BenchmarkRenderNode(b *testing.B) { benchRenderNode(b, bigCluster()) }

// BenchmarkRenderNodeDualStack is BenchmarkRenderNode with dual-stack
// endpoints and ipBlocks of both families.
func BenchmarkRenderNodeDualStack(b *testing.B) { benchRenderNode(b, dualStackCluster()) }

func benchRenderNode(b *testing.B, in Input) {
	in.Node = "node-7"
	p := Compile(in)
	b.ResetTimer()
	var rs *Ruleset
	for b.Loop() {
		rs = Render(p)
	}
	_, rules, elems := rs.Counts()
	b.ReportMetric(float64(rules), "rules")
	b.ReportMetric(float64(elems), "elements")
}

// BenchmarkCompileDualStack is BenchmarkCompile1000x10000 with dual-stack
// endpoints.
func BenchmarkCompileDualStack(b *testing.B) {
	in := dualStackCluster()
	b.ResetTimer()
	for b.Loop() {
		Compile(in)
	}
}
