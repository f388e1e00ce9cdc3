package policy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/skeinnet/skein/api"
)

// modelNamespaces and modelPods are the upstream e2e model: namespaces x, y,
// z labelled ns=<name>, pods a, b, c labelled pod=<name> in each.
var (
	modelNamespaces = []string{"x", "y", "z"}
	modelPods       = []string{"a", "b", "c"}
)

// modelPorts are the container ports every model pod serves.
func modelPorts() []api.NamedPort {
	var out []api.NamedPort
	for _, port := range []int{80, 81} {
		for _, proto := range []string{"TCP", "UDP", "SCTP"} {
			out = append(out, api.NamedPort{Name: fmt.Sprintf("serve-%d-%s", port, strings.ToLower(proto)), Port: port, Protocol: proto})
		}
	}
	return out
}

// modelIP returns the address of pod p in namespace ns: 10.0.<ns>.<pod>,
// x=1 y=2 z=3, a=1 b=2 c=3.
func modelIP(ns, p string) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 0, ns[0] - 'x' + 1, p[0] - 'a' + 1})
}

// modelIP6 returns the IPv6 address of pod p in namespace ns:
// fd00:0:0:<ns>::<pod>, numbered as modelIP.
func modelIP6(ns, p string) netip.Addr {
	return netip.AddrFrom16([16]byte{0: 0xfd, 7: ns[0] - 'x' + 1, 15: p[0] - 'a' + 1})
}

// dualStack gives every endpoint of in (a model) its IPv6 address too.
func dualStack(in Input) Input {
	for i := range in.Endpoints {
		ep := &in.Endpoints[i]
		ep.IPs = append(ep.IPs, modelIP6(ep.Namespace, ep.Name))
	}
	return in
}

// model returns the upstream e2e cluster, pods spread over nodes n1 and n2.
func model() Input {
	var in Input
	for _, ns := range modelNamespaces {
		in.Namespaces = append(in.Namespaces, api.Namespace{Name: ns, Labels: map[string]string{"ns": ns}})
		for i, p := range modelPods {
			in.Endpoints = append(in.Endpoints, api.Endpoint{
				Namespace: ns,
				Name:      p,
				Labels:    map[string]string{"pod": p},
				Ports:     modelPorts(),
				IPs:       []netip.Addr{modelIP(ns, p)},
				Node:      fmt.Sprintf("n%d", i%2+1),
				HostIface: fmt.Sprintf("sk%s%s", ns, p),
			})
		}
	}
	return in
}

// withPolicies decodes YAML documents (separated by "---") into in, without
// validation, so that invalid objects reach the compiler too.
func withPolicies(t testing.TB, in Input, docs string) Input {
	t.Helper()
	for _, doc := range strings.Split(docs, "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var tm api.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("decode %q: %v", doc, err)
		}
		var err error
		switch tm.Kind {
		case api.KindNetworkPolicy, "":
			var np api.NetworkPolicy
			err = yaml.Unmarshal([]byte(doc), &np)
			if np.Namespace == "" {
				np.Namespace = "x"
			}
			in.NetworkPolicies = append(in.NetworkPolicies, np)
		case api.KindAdminNetworkPolicy:
			var anp api.AdminNetworkPolicy
			err = yaml.Unmarshal([]byte(doc), &anp)
			in.ANPs = append(in.ANPs, anp)
		case api.KindBaselineAdminNetworkPolicy:
			var banp api.BaselineAdminNetworkPolicy
			err = yaml.Unmarshal([]byte(doc), &banp)
			in.BANPs = append(in.BANPs, banp)
		case api.KindClusterNetworkPolicy:
			var cnp api.ClusterNetworkPolicy
			err = yaml.Unmarshal([]byte(doc), &cnp)
			in.CNPs = append(in.CNPs, cnp)
		default:
			t.Fatalf("unknown kind %q", tm.Kind)
		}
		if err != nil {
			t.Fatalf("decode %q: %v", doc, err)
		}
	}
	return in
}

// probe is one expected verdict.
type probe struct {
	from, to string // "ns/name" or an IP
	port     int
	proto    string // "" = TCP
	allowed  bool
	rule     string // substring of Verdict.Rule; optional
}

func (pr probe) String() string {
	proto := pr.proto
	if proto == "" {
		proto = "TCP"
	}
	return fmt.Sprintf("%s -> %s %s/%d", pr.from, pr.to, proto, pr.port)
}

// check traces every probe on p.
func check(t *testing.T, p *Program, probes []probe) {
	t.Helper()
	for _, pr := range probes {
		from, err := ParsePeer(pr.from)
		if err != nil {
			t.Fatal(err)
		}
		to, err := ParsePeer(pr.to)
		if err != nil {
			t.Fatal(err)
		}
		proto := pr.proto
		if proto == "" {
			proto = "TCP"
		}
		v, err := Trace(p, from, to, pr.port, proto)
		if err != nil {
			t.Errorf("Trace(%s): %v", pr, err)
			continue
		}
		if v.Allowed != pr.allowed {
			t.Errorf("Trace(%s) allowed = %v, want %v; rule: %s\nsteps:\n  %s", pr, v.Allowed, pr.allowed, v.Rule, strings.Join(v.Steps, "\n  "))
			continue
		}
		if pr.rule != "" && !strings.Contains(v.Rule, pr.rule) {
			t.Errorf("Trace(%s) rule = %q, want it to contain %q", pr, v.Rule, pr.rule)
		}
	}
}

// truth renders the expected reachability of the model pods on one port and
// protocol in WriteTruthTable's format.
func truth(t *testing.T, proto string, port int, allowed func(from, to string) bool) string {
	t.Helper()
	var cells []Cell
	for _, fns := range modelNamespaces {
		for _, fp := range modelPods {
			for _, tns := range modelNamespaces {
				for _, tp := range modelPods {
					from, to := fns+"/"+fp, tns+"/"+tp
					cells = append(cells, Cell{From: from, To: to, Port: port, Protocol: proto, Allowed: from == to || allowed(from, to)})
				}
			}
		}
	}
	var b strings.Builder
	if err := WriteTruthTable(&b, cells); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// matrixTable renders Matrix(p) on one port and protocol.
func matrixTable(t *testing.T, p *Program, proto string, port int) string {
	t.Helper()
	return matrixTableFamily(t, p, 4, proto, port)
}

// matrixTableFamily renders MatrixFamily(p, family) on one port and
// protocol, as truth renders its tables (without the family).
func matrixTableFamily(t *testing.T, p *Program, family int, proto string, port int) string {
	t.Helper()
	cells, err := MatrixFamily(p, family, []int{port}, []string{proto})
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != len(modelNamespaces)*len(modelPods)*len(modelNamespaces)*len(modelPods) {
		t.Fatalf("IPv%d matrix has %d cells, want one per pair of model pods", family, len(cells))
	}
	for i := range cells {
		if cells[i].Family != 0 && cells[i].Family != 6 || (cells[i].Family == 6) != (family == 6) {
			t.Fatalf("IPv%d matrix cell %+v", family, cells[i])
		}
		cells[i].Family = 0
	}
	var b strings.Builder
	if err := WriteTruthTable(&b, cells); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func ns(s string) string  { return s[:strings.IndexByte(s, '/')] }
func pod(s string) string { return s[strings.IndexByte(s, '/')+1:] }

// netipOpts compares net/netip values, whose fields are unexported.
var netipOpts = gocmp.Options{
	gocmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	gocmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
}

// applierProgram compiles applierInput.
func applierProgram(t *testing.T, extra string) *Program {
	t.Helper()
	return Compile(applierInput(t, extra))
}

// applierInput is the model on node n1 with policies that use every kind of
// set, rule and tier, plus extra policies.
func applierInput(t *testing.T, extra string) Input {
	t.Helper()
	in := withPolicies(t, model(), `
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
metadata: {name: web, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{namespaceSelector: {matchLabels: {ns: "y"}}, podSelector: {matchLabels: {pod: b}}}, {ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}]
    ports: [{port: serve-80-tcp}, {protocol: UDP, port: 1000, endPort: 2000}]
  egress:
  - to: [{namespaceSelector: {}}]
    ports: [{port: serve-81-udp, protocol: UDP}]
---
kind: AdminNetworkPolicy
metadata: {name: guard}
spec:
  priority: 5
  subject: {namespaces: {matchLabels: {ns: z}}}
  ingress:
  - {action: Pass, from: [{namespaces: {matchLabels: {ns: "y"}}}]}
  - {action: Deny, from: [{namespaces: {}}], ports: [{portNumber: {port: 81, protocol: TCP}}]}
---
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  egress:
  - {action: Deny, to: [{networks: [192.0.2.0/24]}]}
`+extra)
	in.Node = "n1"
	return in
}

func sortPrefixes(ps []netip.Prefix) { slices.SortFunc(ps, comparePrefix) }

func sortAddrPorts(aps []AddrPort) []AddrPort {
	slices.SortFunc(aps, func(a, b AddrPort) int {
		return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port))
	})
	return aps
}

func sortSets(sets []NFTSet) {
	slices.SortFunc(sets, func(a, b NFTSet) int { return strings.Compare(a.Name, b.Name) })
}

func sortChains(chains []NFTChain) {
	slices.SortFunc(chains, func(a, b NFTChain) int { return strings.Compare(a.Name, b.Name) })
}

func sortIfaceAddrs(ias []IfaceAddr) []IfaceAddr {
	slices.SortFunc(ias, func(a, b IfaceAddr) int {
		return cmp.Or(strings.Compare(a.Iface, b.Iface), a.Addr.Compare(b.Addr))
	})
	return ias
}
