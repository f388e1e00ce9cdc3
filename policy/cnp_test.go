package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/skeinnet/skein/api"
)

// cnp returns a ClusterNetworkPolicy of tier on namespace x's pods with one
// ingress rule; protocols is a YAML flow list or "".
func cnp(name, tier string, priority int, action, from, protocols string) string {
	s := fmt.Sprintf(`
kind: ClusterNetworkPolicy
metadata: {name: %s}
spec:
  tier: %s
  priority: %d
  subject: {namespaces: {matchLabels: {ns: x}}}
  ingress:
  - name: %s-rule
    action: %s
    from: [%s]
`, name, tier, priority, name, action, from)
	if protocols != "" {
		s += "    protocols: " + protocols + "\n"
	}
	return s
}

// banp returns a BaselineAdminNetworkPolicy on namespace x's pods with one
// ingress rule.
func banp(name, action, from string) string {
	return fmt.Sprintf(`
kind: BaselineAdminNetworkPolicy
metadata: {name: %s}
spec:
  subject: {namespaces: {matchLabels: {ns: x}}}
  ingress:
  - {name: %s-rule, action: %s, from: [%s]}
`, name, name, action, from)
}

func TestClusterNetworkPolicies(t *testing.T) {
	t.Parallel()
	runSemantics(t, []semanticsCase{
		{
			name: "Admin tier: lower priority value wins",
			docs: cnp("deny-y", "Admin", 10, "Deny", fromY, "") + "---" + cnp("accept-y", "Admin", 20, "Accept", fromY, ""),
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: false, rule: `ClusterNetworkPolicy deny-y (Admin tier, priority 10) ingress rule 0 "deny-y-rule": Deny`},
				{from: "z/a", to: "x/a", port: 80, allowed: true, rule: "default allow"},
			},
		},
		{
			name:   "Admin tier: equal priorities by name",
			docs:   cnp("b-deny", "Admin", 10, "Deny", fromY, "") + "---" + cnp("a-accept", "Admin", 10, "Accept", fromY, ""),
			probes: []probe{{from: "y/a", to: "x/a", port: 80, allowed: true, rule: "a-accept"}},
		},
		{
			name: "Admin Accept overrides NetworkPolicy isolation",
			docs: denyAllIngressX + "---" + cnp("accept-y", "Admin", 10, "Accept", fromY, ""),
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: true, rule: "accept-y"},
				{from: "z/a", to: "x/a", port: 80, allowed: false, rule: "isolated for ingress by NetworkPolicy x/deny-all"},
			},
		},
		{
			name: "Admin Pass goes to the NetworkPolicy tier",
			docs: cnp("pass-y", "Admin", 5, "Pass", fromY, "") + "---" + cnp("deny-all", "Admin", 10, "Deny", fromAll, "") + `---
metadata: {name: allow-80, namespace: x}
spec: {podSelector: {}, ingress: [{ports: [{port: 80}]}]}`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: true, rule: "NetworkPolicy x/allow-80"},
				{from: "y/a", to: "x/a", port: 81, allowed: false, rule: "isolated for ingress by NetworkPolicy x/allow-80"},
				{from: "z/a", to: "x/a", port: 80, allowed: false, rule: "deny-all"},
			},
		},
		{
			name: "Baseline tier applies only where no NetworkPolicy isolates",
			docs: cnp("base-deny", "Baseline", 10, "Deny", fromAll, "") + `---
metadata: {name: allow-y, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]}]`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: true, rule: "NetworkPolicy x/allow-y"},
				{from: "z/a", to: "x/a", port: 80, allowed: false, rule: "isolated"},
				{from: "y/a", to: "x/b", port: 80, allowed: false, rule: "ClusterNetworkPolicy base-deny (Baseline tier, priority 10)"},
			},
		},
		{
			name: "Baseline Pass leaves the tier: default allow, later Baseline rules unused",
			docs: cnp("pass-y", "Baseline", 1, "Pass", fromY, "") + "---" + cnp("deny-all", "Baseline", 2, "Deny", fromAll, "") +
				"---" + banp("default", "Deny", fromAll),
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: true, rule: "pass-y"},
				{from: "z/a", to: "x/a", port: 80, allowed: false, rule: "ClusterNetworkPolicy deny-all"},
			},
		},
		{
			name:   "Baseline CNPs come before BaselineAdminNetworkPolicies",
			docs:   banp("default", "Deny", fromY) + "---" + cnp("accept-y", "Baseline", 1000, "Accept", fromY, ""),
			probes: []probe{{from: "y/a", to: "x/a", port: 80, allowed: true, rule: "ClusterNetworkPolicy accept-y"}},
		},
		{
			name:   "ANP and Admin CNP: priority first",
			docs:   anp("deny-y", 20, "Deny", fromY) + "---" + cnp("accept-y", "Admin", 10, "Accept", fromY, ""),
			probes: []probe{{from: "y/a", to: "x/a", port: 80, allowed: true, rule: "ClusterNetworkPolicy accept-y"}},
		},
		{
			name:   "ANP and Admin CNP at equal priority: the ANP first",
			docs:   cnp("a-accept-y", "Admin", 10, "Accept", fromY, "") + "---" + anp("z-deny-y", 10, "Deny", fromY),
			probes: []probe{{from: "y/a", to: "x/a", port: 80, allowed: false, rule: "AdminNetworkPolicy z-deny-y"}},
		},
		{
			name: "protocols: number, range, named port",
			docs: cnp("ports", "Admin", 1, "Deny", fromAll,
				`[{tcp: {destinationPort: {number: 80}}}, {udp: {destinationPort: {range: {start: 80, end: 81}}}}, {destinationNamedPort: serve-81-sctp}]`),
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: false, rule: "ports"},
				{from: "y/a", to: "x/a", port: 81, allowed: true},
				{from: "y/a", to: "x/a", port: 81, proto: "UDP", allowed: false, rule: "ports"},
				{from: "y/a", to: "x/a", port: 80, proto: "SCTP", allowed: true},
				{from: "y/a", to: "x/a", port: 81, proto: "SCTP", allowed: false, rule: "ports"},
			},
		},
		{
			name: "domainNames peer matches nothing",
			docs: `
kind: ClusterNetworkPolicy
metadata: {name: dns}
spec:
  tier: Admin
  priority: 1
  subject: {namespaces: {}}
  egress: [{action: Deny, to: [{domainNames: [example.com]}]}]`,
			probes: []probe{{from: "x/a", to: "y/a", port: 80, allowed: true}},
			warn:   "ClusterNetworkPolicy dns egress rule 0: peer 0",
		},
	})
}

// TestNodesPeer: a nodes peer matches the underlay addresses of the nodes
// its selector matches, for ANPs and CNPs alike.
func TestNodesPeer(t *testing.T) {
	t.Parallel()
	nodes := []api.Node{
		{Name: "n1", UnderlayIP: netip.MustParseAddr("192.168.0.1"), Labels: map[string]string{"zone": "a"}},
		{Name: "n2", UnderlayIP: netip.MustParseAddr("192.168.0.2"), Labels: map[string]string{"zone": "b"}},
		{Name: "n3", UnderlayIP: netip.MustParseAddr("fd00::3"), Labels: map[string]string{"zone": "a"}},
	}
	withNodes := func(in *Input) { in.Nodes = nodes }
	runSemantics(t, []semanticsCase{
		{
			name: "CNP nodes peer",
			docs: `
kind: ClusterNetworkPolicy
metadata: {name: no-zone-a}
spec:
  tier: Admin
  priority: 1
  subject: {namespaces: {matchLabels: {ns: x}}}
  egress:
  - {action: Deny, to: [{nodes: {matchLabels: {zone: a}}}], protocols: [{tcp: {destinationPort: {number: 22}}}]}`,
			mutate: withNodes,
			probes: []probe{
				// x/b runs on n2; traffic to its own node is never filtered.
				{from: "x/b", to: "192.168.0.1", port: 22, allowed: false, rule: "ClusterNetworkPolicy no-zone-a"},
				{from: "x/b", to: "192.168.0.3", port: 22, allowed: true},
				{from: "x/b", to: "192.168.0.1", port: 80, allowed: true},
				{from: "y/b", to: "192.168.0.1", port: 22, allowed: true},
			},
		},
		{
			name: "ANP nodes peer, empty selector selects every node",
			docs: `
kind: AdminNetworkPolicy
metadata: {name: no-nodes}
spec:
  priority: 1
  subject: {namespaces: {}}
  egress: [{action: Deny, to: [{nodes: {}}]}]`,
			mutate: withNodes,
			probes: []probe{
				{from: "x/b", to: "192.168.0.1", port: 22, allowed: false, rule: "AdminNetworkPolicy no-nodes"},
				{from: "z/c", to: "192.168.0.2", port: 80, allowed: false, rule: "AdminNetworkPolicy no-nodes"},
				{from: "z/c", to: "192.168.0.9", port: 80, allowed: true},
				{from: "x/a", to: "y/a", port: 80, allowed: true},
			},
		},
	})
}

// TestIncrementalNodesPeer: nodes joining, leaving and changing labels move
// the elements of nodes peer sets, without a recompile, and the program
// stays equal to a full compile.
func TestIncrementalNodesPeer(t *testing.T) {
	t.Parallel()
	in := withPolicies(t, model(), `
kind: ClusterNetworkPolicy
metadata: {name: no-zone-a}
spec:
  tier: Baseline
  priority: 1
  subject: {namespaces: {}}
  egress: [{action: Deny, to: [{nodes: {matchLabels: {zone: a}}}]}]`)
	in.Node = "n1"
	for i := range in.Endpoints {
		ep := &in.Endpoints[i]
		ep.ContainerID, ep.IfName = ep.Namespace+ep.Name, "eth0" // Incremental keys by these
	}
	node := func(name, ip, zone string) api.Node {
		return api.Node{Name: name, UnderlayIP: netip.MustParseAddr(ip), Labels: map[string]string{"zone": zone}}
	}
	x := NewIncremental(in)
	set := ""
	for name, s := range x.Program().Sets {
		if strings.HasPrefix(s.Desc, "nodes ") {
			set = name
		}
	}
	if set == "" {
		t.Fatalf("no nodes set in %v", x.Program().Sets)
	}
	steps := []struct {
		name  string
		nodes []api.Node
		want  string
	}{
		{"join", []api.Node{node("n1", "192.168.0.1", "a"), node("n2", "192.168.0.2", "b")}, "add " + set + " 192.168.0.1/32"},
		{"relabel", []api.Node{node("n1", "192.168.0.1", "b"), node("n2", "192.168.0.2", "a")}, "add " + set + " 192.168.0.2/32\ndel " + set + " 192.168.0.1/32"},
		{"unrelated change", []api.Node{node("n1", "192.168.0.1", "b"), node("n2", "192.168.0.2", "a"), node("n3", "192.168.0.3", "c")}, ""},
		{"leave", []api.Node{node("n1", "192.168.0.1", "b")}, "del " + set + " 192.168.0.2/32"},
	}
	compiles := x.Compiles()
	for _, st := range steps {
		ch, full := x.SetNodes(st.nodes, nil)
		if full {
			t.Fatalf("%s: SetNodes recompiled", st.name)
		}
		if got := ch.String(); got != st.want {
			t.Errorf("%s: changes\n%s\nwant\n%s", st.name, got, st.want)
		}
		want := in
		want.Nodes = st.nodes
		if d := gocmp.Diff(Compile(want), x.Program(), cmpopts.EquateEmpty(), netipOpts); d != "" {
			t.Errorf("%s: program differs from a full compile (-want +got):\n%s", st.name, d)
		}
	}
	if x.Compiles() != compiles {
		t.Errorf("node changes recompiled %d times", x.Compiles()-compiles)
	}
}
