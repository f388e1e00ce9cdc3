package main

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/policy"
)

// TestBenchPoliciesDecode checks that every kind of policy the phase writes
// passes the validation the agents apply when they load it (an invalid one
// would be reported and ignored, and the bench would measure nothing).
func TestBenchPoliciesDecode(t *testing.T) {
	t.Parallel()
	var nps []api.NetworkPolicy
	for _, i := range []int{0, 1, 99, 100, 101, 5050, 9999} {
		nps = append(nps, benchPolicy(i))
	}
	nps = append(nps, probePolicy(0), probePolicy(7))
	for _, np := range nps {
		b, err := json.Marshal(np)
		if err != nil {
			t.Fatal(err)
		}
		o, err := api.DecodePolicy(api.KindNetworkPolicy, b)
		if err != nil {
			t.Errorf("%s/%s: %v", np.Namespace, np.Name, err)
			continue
		}
		if o.GetNamespace() != np.Namespace || o.GetName() != np.Name {
			t.Errorf("decoded %s/%s, want %s/%s", o.GetNamespace(), o.GetName(), np.Namespace, np.Name)
		}
	}
}

func TestServerPolicies(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 99, 100, 101, 1000, 10000} {
		want := 0
		for i := range n {
			if benchPolicy(i).Namespace == polNamespace {
				want++
			}
		}
		if got := serverPolicies(n); got != want {
			t.Errorf("serverPolicies(%d) = %d, want %d", n, got, want)
		}
	}
}

// TestBenchClusterCompiles compiles a small version of the phase's cluster
// and checks that the server is isolated with the client allowed, and that
// the server's sets reach the fake endpoints of the selected team.
func TestBenchClusterCompiles(t *testing.T) {
	t.Parallel()
	var addrs []netip.Addr
	a := netip.MustParseAddr("10.244.8.0")
	for range polFakeNamespaces * polFakePerNS {
		addrs = append(addrs, a)
		a = a.Next()
	}
	cli := netip.MustParseAddr("10.244.0.2")
	srv := netip.MustParseAddr("10.244.0.66")
	in := policy.Input{
		Endpoints: append(fakeEndpoints(addrs),
			api.Endpoint{Namespace: polNamespace, Name: polClientApp, Labels: map[string]string{polLabelKey: polClientApp}, IPs: []netip.Addr{cli}, Node: "h1", ContainerID: "c", IfName: "eth0", HostIface: "skc"},
			api.Endpoint{Namespace: polNamespace, Name: polServerApp, Labels: map[string]string{polLabelKey: polServerApp}, IPs: []netip.Addr{srv}, Node: "h2", ContainerID: "s", IfName: "eth0", HostIface: "sks"}),
		Namespaces: fakeNamespaces(),
	}
	for i := range 200 {
		in.NetworkPolicies = append(in.NetworkPolicies, benchPolicy(i))
	}
	p := policy.Compile(in)
	if len(p.Warnings) > 0 {
		t.Errorf("warnings: %v", p.Warnings)
	}
	allowed := func(from netip.Addr, port int) string {
		v, err := policy.Trace(p, policy.Peer{IP: from}, policy.Peer{IP: srv}, port, api.ProtocolTCP)
		if err != nil {
			t.Fatalf("trace %s → %s:%d: %v", from, srv, port, err)
		}
		if v.Allowed {
			return "ALLOW"
		}
		return "DENY"
	}
	got := map[string]string{
		"client → iperf3":                 allowed(cli, iperfPort),
		"client → rr":                     allowed(cli, rrPort),
		"client → other port":             allowed(cli, 9),
		"team-0 fake pod → iperf3":        allowed(addrs[0], iperfPort),
		"team-1 fake pod → iperf3":        allowed(addrs[polFakePerNS], iperfPort),
		"team-2 fake pod (no policy yet)": allowed(addrs[2*polFakePerNS], iperfPort),
	}
	want := map[string]string{
		"client → iperf3":                 "ALLOW",
		"client → rr":                     "ALLOW",
		"client → other port":             "DENY",
		"team-0 fake pod → iperf3":        "ALLOW",
		"team-1 fake pod → iperf3":        "ALLOW",
		"team-2 fake pod (no policy yet)": "DENY",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("verdicts (-want +got):\n%s", d)
	}
}

func TestPoolBlocks(t *testing.T) {
	t.Parallel()
	got := poolBlocks(netip.MustParsePrefix("10.244.0.0/24"), 26)
	want := []netip.Prefix{
		netip.MustParsePrefix("10.244.0.0/26"), netip.MustParsePrefix("10.244.0.64/26"),
		netip.MustParsePrefix("10.244.0.128/26"), netip.MustParsePrefix("10.244.0.192/26"),
	}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
		t.Errorf("poolBlocks (-want +got):\n%s", d)
	}
	if n := len(poolBlocks(netip.MustParsePrefix("10.244.0.0/16"), 26)); n != 1024 {
		t.Errorf("a /16 of /26 blocks: %d, want 1024", n)
	}
	if got := poolBlocks(netip.MustParsePrefix("10.244.0.0/24"), 20); got != nil {
		t.Errorf("blocks larger than the pool: %v, want none", got)
	}
	addrs := blockAddrs(netip.MustParsePrefix("10.244.0.64/26"))
	if len(addrs) != 64 || addrs[0] != netip.MustParseAddr("10.244.0.64") || addrs[63] != netip.MustParseAddr("10.244.0.127") {
		t.Errorf("blockAddrs: %d addresses %v … %v", len(addrs), addrs[0], addrs[len(addrs)-1])
	}
}

func TestNftElementAdds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		line string
		want []netip.Addr
	}{
		{"add element inet skein sel_abc { 10.244.0.7 }", []netip.Addr{netip.MustParseAddr("10.244.0.7")}},
		{`add element inet skein ep_addrs { "sk0123" . 10.244.1.2 }`, []netip.Addr{netip.MustParseAddr("10.244.1.2")}},
		{"delete element inet skein sel_abc { 10.244.0.7 }", nil},
		{"add set inet skein sel_abc { type ipv4_addr; }", nil},
		{"# new generation 4 by process 5484 (nft)", nil},
	}
	for _, tc := range tests {
		got := nftElementAdds(tc.line)
		if d := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
			t.Errorf("nftElementAdds(%q) (-want +got):\n%s", tc.line, d)
		}
	}
}
