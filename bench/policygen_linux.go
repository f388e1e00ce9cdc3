package main

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
)

// The synthetic cluster of the policy phase, pure: fake namespaces and
// endpoints, the policies of each level, and the parsing of `nft monitor`.

// Shape of the synthetic cluster.
const (
	// polNamespace holds the measured client and server pods.
	polNamespace = "bench"
	// polFakeNode owns the fake endpoints and their blocks; no agent runs it.
	polFakeNode       = "bench-fake"
	polFakeNamespaces = 100
	polFakePerNS      = 100
	polTeams          = 10
	polApps           = 10
	// polServerEvery: policy i selects the server when i % polServerEvery == 0.
	polServerEvery = 100
	polLabelKey    = "app"
	polServerApp   = "server"
	polClientApp   = "client"
)

// polFakeNamespace names fake namespace n.
func polFakeNamespace(n int) string { return fmt.Sprintf("fake-%02d", n) }

// polTeam names team t, the label of a group of fake namespaces.
func polTeam(t int) string { return fmt.Sprintf("team-%d", t) }

// fakeNamespaces returns the fake namespaces, each labelled with its team.
func fakeNamespaces() []api.Namespace {
	out := make([]api.Namespace, 0, polFakeNamespaces)
	for n := range polFakeNamespaces {
		out = append(out, api.Namespace{Name: polFakeNamespace(n), Labels: map[string]string{"team": polTeam(n % polTeams)}})
	}
	return out
}

// fakeEndpoints returns one endpoint of the fake node per address, spread
// over the fake namespaces, with app, tier and a named port.
func fakeEndpoints(addrs []netip.Addr) []api.Endpoint {
	out := make([]api.Endpoint, 0, len(addrs))
	for k, a := range addrs {
		n, i := k/polFakePerNS, k%polFakePerNS
		out = append(out, api.Endpoint{
			Namespace:   polFakeNamespace(n % polFakeNamespaces),
			Name:        fmt.Sprintf("pod-%05d", k),
			Labels:      map[string]string{polLabelKey: fmt.Sprintf("app-%d", i%polApps), "tier": fmt.Sprintf("t%d", i%3)},
			Ports:       []api.NamedPort{{Name: "http", Port: 8000 + i%polApps, Protocol: api.ProtocolTCP}},
			IPs:         []netip.Addr{a},
			Node:        polFakeNode,
			ContainerID: fmt.Sprintf("fake-%05d", k),
			IfName:      lab.ContainerIface,
			HostIface:   fmt.Sprintf("skf%05d", k),
		})
	}
	return out
}

func tcpPort(p int32) api.NetworkPolicyPort {
	proto := api.ProtocolTCP
	v := api.FromInt(p)
	return api.NetworkPolicyPort{Protocol: &proto, Port: &v}
}

func matchApp(app string) *api.LabelSelector {
	return &api.LabelSelector{MatchLabels: map[string]string{polLabelKey: app}}
}

// serverPolicies returns how many of the first n policies select the server.
func serverPolicies(n int) int { return (n + polServerEvery - 1) / polServerEvery }

// benchPolicy returns policy i of the phase. Every polServerEvery-th one
// selects the server and allows, on the iperf3 and request/response ports
// and a port of its own, the client and every pod of one team's namespaces;
// the others select fake pods (ingress from another app and from the
// non-t2 pods of a team, on a port and a named port; egress to an ipBlock
// with an exception, and DNS).
func benchPolicy(i int) api.NetworkPolicy {
	np := api.NetworkPolicy{
		TypeMeta:   api.TypeMeta{APIVersion: api.NetworkingV1, Kind: api.KindNetworkPolicy},
		ObjectMeta: api.ObjectMeta{Name: fmt.Sprintf("np-%05d", i)},
	}
	if i%polServerEvery == 0 {
		k := i / polServerEvery
		np.Namespace = polNamespace
		np.Spec = api.NetworkPolicySpec{
			PodSelector: *matchApp(polServerApp),
			PolicyTypes: []string{api.PolicyTypeIngress},
			Ingress: []api.NetworkPolicyIngressRule{{
				From: []api.NetworkPolicyPeer{
					{PodSelector: matchApp(polClientApp)},
					{NamespaceSelector: &api.LabelSelector{MatchLabels: map[string]string{"team": polTeam(k % polTeams)}}},
				},
				Ports: []api.NetworkPolicyPort{tcpPort(iperfPort), tcpPort(rrPort), tcpPort(int32(10000 + k))},
			}},
		}
		return np
	}
	app := (i / polServerEvery) % polApps
	np.Namespace = polFakeNamespace(i % polFakeNamespaces)
	udp := api.ProtocolUDP
	dns := api.FromInt(53)
	named := api.FromString("http")
	tcp := api.ProtocolTCP
	np.Spec = api.NetworkPolicySpec{
		PodSelector: *matchApp(fmt.Sprintf("app-%d", app)),
		PolicyTypes: []string{api.PolicyTypeIngress, api.PolicyTypeEgress},
		Ingress: []api.NetworkPolicyIngressRule{{
			From: []api.NetworkPolicyPeer{
				{PodSelector: matchApp(fmt.Sprintf("app-%d", (app+1)%polApps))},
				{
					NamespaceSelector: &api.LabelSelector{MatchLabels: map[string]string{"team": polTeam(i % polTeams)}},
					PodSelector: &api.LabelSelector{MatchExpressions: []api.LabelSelectorRequirement{
						{Key: "tier", Operator: api.LabelSelectorOpNotIn, Values: []string{"t2"}},
					}},
				},
			},
			Ports: []api.NetworkPolicyPort{tcpPort(80), {Protocol: &tcp, Port: &named}},
		}},
		Egress: []api.NetworkPolicyEgressRule{
			{To: []api.NetworkPolicyPeer{{IPBlock: &api.IPBlock{CIDR: "10.0.0.0/8", Except: []string{fmt.Sprintf("10.%d.0.0/16", i%250)}}}}},
			{Ports: []api.NetworkPolicyPort{{Protocol: &udp, Port: &dns}}},
		},
	}
	return np
}

// probePolicy is the policy whose apply and delete are timed: it selects
// every pod of the bench namespace (so it changes the program on both
// hosts) and allows the client on a port of its own.
func probePolicy(s int) api.NetworkPolicy {
	return api.NetworkPolicy{
		TypeMeta:   api.TypeMeta{APIVersion: api.NetworkingV1, Kind: api.KindNetworkPolicy},
		ObjectMeta: api.ObjectMeta{Namespace: polNamespace, Name: fmt.Sprintf("probe-%d", s)},
		Spec: api.NetworkPolicySpec{
			PodSelector: api.LabelSelector{},
			PolicyTypes: []string{api.PolicyTypeIngress},
			Ingress: []api.NetworkPolicyIngressRule{{
				From:  []api.NetworkPolicyPeer{{PodSelector: matchApp(polClientApp)}},
				Ports: []api.NetworkPolicyPort{tcpPort(int32(20000 + s))},
			}},
		},
	}
}

// poolBlocks returns the blocks of size bits in pool, in address order.
func poolBlocks(pool netip.Prefix, bits int) []netip.Prefix {
	pool = pool.Masked()
	if bits < pool.Bits() || bits > 32 || !pool.Addr().Is4() {
		return nil
	}
	var out []netip.Prefix
	step := uint32(1) << (32 - bits)
	a4 := pool.Addr().As4()
	base := uint32(a4[0])<<24 | uint32(a4[1])<<16 | uint32(a4[2])<<8 | uint32(a4[3])
	for i := range uint32(1) << (bits - pool.Bits()) {
		v := base + i*step
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), bits))
	}
	return out
}

// blockAddrs returns every address of block b.
func blockAddrs(b netip.Prefix) []netip.Addr {
	var out []netip.Addr
	for a := b.Masked().Addr(); b.Contains(a); a = a.Next() {
		out = append(out, a)
	}
	return out
}

// ipv4RE finds IPv4 addresses in `nft monitor` lines.
var ipv4RE = regexp.MustCompile(`\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b`)

// nftElementAdds returns the addresses of an `nft monitor` line that adds
// set elements.
func nftElementAdds(line string) []netip.Addr {
	if !strings.HasPrefix(line, "add element ") {
		return nil
	}
	var out []netip.Addr
	for _, s := range ipv4RE.FindAllString(line, -1) {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a)
		}
	}
	return out
}
