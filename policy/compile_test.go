package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinnet/skein/api"
)

// semanticsCase is one rule of reference/netpol-semantics.md: policies on
// the model cluster and the verdicts they must give.
type semanticsCase struct {
	name   string
	docs   string
	mutate func(*Input)
	probes []probe
	// warn is a substring expected in Program.Warnings.
	warn string
}

func runSemantics(t *testing.T, cases []semanticsCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := withPolicies(t, model(), tc.docs)
			if tc.mutate != nil {
				tc.mutate(&in)
			}
			p := Compile(in)
			check(t, p, tc.probes)
			if tc.warn != "" && !strings.Contains(strings.Join(p.Warnings, "\n"), tc.warn) {
				t.Errorf("warnings %q, want one containing %q", p.Warnings, tc.warn)
			}
		})
	}
}

const denyAllIngressX = `
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress]}
`

func TestSemantics(t *testing.T) {
	t.Parallel()
	runSemantics(t, []semanticsCase{
		{
			name: "1 no policy allows everything",
			probes: []probe{
				{from: "x/a", to: "y/b", port: 80, allowed: true, rule: "no policy selects y/b for ingress: default allow"},
				{from: "192.0.2.9", to: "x/a", port: 81, proto: "UDP", allowed: true},
			},
		},
		{
			name: "1 isolation is per pod and direction",
			docs: `
metadata: {name: a-ingress, namespace: x}
spec: {podSelector: {matchLabels: {pod: a}}, policyTypes: [Ingress]}`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: false, rule: "x/a is isolated for ingress by NetworkPolicy x/a-ingress"},
				{from: "x/b", to: "x/a", port: 80, allowed: false},
				{from: "x/a", to: "y/a", port: 80, allowed: true}, // egress of x/a is not isolated
				{from: "y/a", to: "x/b", port: 80, allowed: true}, // x/b is not selected
				{from: "x/a", to: "x/b", port: 81, allowed: true},
			},
		},
		{
			name: "2 both ends must agree",
			docs: `
metadata: {name: deny-egress, namespace: x}
spec: {podSelector: {matchLabels: {pod: a}}, policyTypes: [Egress]}
---
metadata: {name: allow-from-x-a, namespace: "y"}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}]}]`,
			probes: []probe{
				{from: "x/a", to: "y/b", port: 80, allowed: false, rule: "x/a is isolated for egress by NetworkPolicy x/deny-egress"},
				{from: "x/b", to: "y/b", port: 80, allowed: false, rule: "y/b is isolated for ingress"},
				{from: "y/b", to: "x/a", port: 80, allowed: true},
			},
		},
		{
			name: "3 additive: deny-all plus allow-from-y gives y",
			docs: denyAllIngressX + `
---
metadata: {name: allow-y, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]}]`,
			probes: []probe{
				{from: "y/c", to: "x/a", port: 80, allowed: true, rule: "NetworkPolicy x/allow-y ingress rule 0: Allow"},
				{from: "z/c", to: "x/a", port: 80, allowed: false, rule: "by NetworkPolicy x/allow-y, x/deny-all and no rule allows it"},
				{from: "x/b", to: "x/a", port: 80, allowed: false},
			},
		},
		{
			name: "3 additive: allow-all takes precedence over a narrower policy",
			docs: `
metadata: {name: narrow, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}], ports: [{port: 80}]}]
---
metadata: {name: allow-all, namespace: x}
spec:
  podSelector: {}
  ingress: [{}]`,
			probes: []probe{
				{from: "z/c", to: "x/a", port: 81, proto: "UDP", allowed: true, rule: "x/allow-all"},
				{from: "x/b", to: "x/a", port: 80, allowed: true},
			},
		},
		{
			name: "4 empty podSelector selects only the policy's namespace",
			docs: `
metadata: {name: deny-all, namespace: "y"}
spec: {podSelector: {}}`,
			probes: []probe{
				{from: "x/a", to: "y/a", port: 80, allowed: false},
				{from: "x/a", to: "y/c", port: 80, allowed: false},
				{from: "y/a", to: "x/a", port: 80, allowed: true},
				{from: "y/a", to: "z/b", port: 80, allowed: true},
			},
		},
		{
			name: "5 egress rules without policyTypes also deny ingress",
			docs: `
metadata: {name: egress-only, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  egress: [{to: [{namespaceSelector: {matchLabels: {ns: "y"}}}]}]`,
			probes: []probe{
				{from: "x/a", to: "y/b", port: 80, allowed: true},
				{from: "x/a", to: "z/b", port: 80, allowed: false, rule: "isolated for egress"},
				{from: "y/b", to: "x/a", port: 80, allowed: false, rule: "isolated for ingress"},
			},
		},
		{
			name: "5 empty spec is default-deny-ingress only",
			docs: `
metadata: {name: empty, namespace: x}
spec: {podSelector: {}}`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: false},
				{from: "x/a", to: "y/a", port: 80, allowed: true},
			},
		},
		{
			name: "5 deny-all-egress needs Egress listed",
			docs: `
metadata: {name: deny-egress, namespace: x}
spec: {podSelector: {}, policyTypes: [Egress]}`,
			probes: []probe{
				{from: "x/a", to: "y/a", port: 80, allowed: false},
				{from: "y/a", to: "x/a", port: 80, allowed: true},
			},
		},
		{
			name: "5 rules of a direction not in policyTypes are ignored",
			docs: `
metadata: {name: ingress-type, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress: [{}]
  egress: [{to: [{podSelector: {matchLabels: {pod: a}}}]}]`,
			probes: []probe{
				{from: "x/a", to: "z/c", port: 80, allowed: true}, // egress not isolated
				{from: "z/c", to: "x/a", port: 80, allowed: true},
			},
		},
		{
			name: "6 absent ingress with type Ingress denies all, one empty rule allows all",
			docs: `
metadata: {name: none, namespace: x}
spec: {podSelector: {matchLabels: {pod: a}}, policyTypes: [Ingress], ingress: []}
---
metadata: {name: all, namespace: x}
spec: {podSelector: {matchLabels: {pod: b}}, policyTypes: [Ingress], ingress: [{}]}
---
metadata: {name: all-from-any-port-80, namespace: x}
spec: {podSelector: {matchLabels: {pod: c}}, policyTypes: [Ingress], ingress: [{from: [], ports: [{port: 80}]}]}`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: false},
				{from: "y/a", to: "x/b", port: 81, proto: "SCTP", allowed: true},
				{from: "203.0.113.1", to: "x/b", port: 80, allowed: true},
				{from: "203.0.113.1", to: "x/c", port: 80, allowed: true},
				{from: "y/a", to: "x/c", port: 81, allowed: false},
			},
		},
		{
			name: "7 an empty peer is invalid and matches nothing",
			docs: `
metadata: {name: empty-peer, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{}]}]`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: false},
				{from: "x/b", to: "x/a", port: 80, allowed: false},
			},
			warn: "must specify a peer",
		},
		{
			name: "7 ipBlock with a selector in one peer is invalid",
			docs: `
metadata: {name: mixed-peer, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0}, podSelector: {}}]}]`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: false},
				{from: "198.51.100.1", to: "x/a", port: 80, allowed: false},
			},
			warn: "ipBlock together with a selector",
		},
	})
}

func TestSemanticsPeers(t *testing.T) {
	t.Parallel()
	const head = `
metadata: {name: peers, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress:
  - from:
`
	runSemantics(t, []semanticsCase{
		{
			name: "8 podSelector alone: pods of the policy's namespace",
			docs: head + `    - podSelector: {matchLabels: {pod: b}}`,
			probes: []probe{
				{from: "x/b", to: "x/a", port: 80, allowed: true},
				{from: "y/b", to: "x/a", port: 80, allowed: false},
				{from: "x/c", to: "x/a", port: 80, allowed: false},
			},
		},
		{
			name: "8 empty podSelector alone: all pods of the policy's namespace",
			docs: head + `    - podSelector: {}`,
			probes: []probe{
				{from: "x/b", to: "x/a", port: 80, allowed: true},
				{from: "x/c", to: "x/a", port: 80, allowed: true},
				{from: "y/b", to: "x/a", port: 80, allowed: false},
				{from: "10.0.1.200", to: "x/a", port: 80, allowed: false}, // not a pod
			},
		},
		{
			name: "8 namespaceSelector alone: all pods of matching namespaces",
			docs: head + `    - namespaceSelector: {matchLabels: {ns: "y"}}`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: true},
				{from: "y/c", to: "x/a", port: 80, allowed: true},
				{from: "x/b", to: "x/a", port: 80, allowed: false},
				{from: "z/b", to: "x/a", port: 80, allowed: false},
			},
		},
		{
			name: "8 empty namespaceSelector: all pods everywhere, no external address",
			docs: head + `    - namespaceSelector: {}`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: true},
				{from: "z/c", to: "x/a", port: 80, allowed: true},
				{from: "x/b", to: "x/a", port: 80, allowed: true},
				{from: "192.0.2.1", to: "x/a", port: 80, allowed: false},
			},
		},
		{
			name: "8 both selectors in one peer are ANDed",
			docs: head + `    - namespaceSelector: {matchLabels: {ns: "y"}}
      podSelector: {matchLabels: {pod: b}}`,
			probes: []probe{
				{from: "y/b", to: "x/a", port: 80, allowed: true},
				{from: "y/a", to: "x/a", port: 80, allowed: false},
				{from: "x/b", to: "x/a", port: 80, allowed: false},
			},
		},
		{
			name: "8 two peers are ORed",
			docs: head + `    - namespaceSelector: {matchLabels: {ns: "y"}}
    - podSelector: {matchLabels: {pod: b}}`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: true},
				{from: "x/b", to: "x/a", port: 80, allowed: true},
				{from: "z/b", to: "x/a", port: 80, allowed: false},
				{from: "x/c", to: "x/a", port: 80, allowed: false},
			},
		},
		{
			name: "8 both selectors empty: all pods cluster-wide",
			docs: head + `    - namespaceSelector: {}
      podSelector: {}`,
			probes: []probe{
				{from: "z/c", to: "x/a", port: 80, allowed: true},
				{from: "203.0.113.7", to: "x/a", port: 80, allowed: false},
			},
		},
		{
			name: "9 NotIn matches pods without the key",
			docs: head + `    - namespaceSelector: {}
      podSelector: {matchExpressions: [{key: tier, operator: NotIn, values: [db]}]}`,
			mutate: func(in *Input) {
				setLabel(in, "y/b", "tier", "db")
				setLabel(in, "y/c", "tier", "web")
			},
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: true}, // key absent
				{from: "y/b", to: "x/a", port: 80, allowed: false},
				{from: "y/c", to: "x/a", port: 80, allowed: true},
			},
		},
		{
			name: "9 In, Exists, DoesNotExist and matchLabels are ANDed",
			docs: head + `    - namespaceSelector: {matchExpressions: [{key: ns, operator: In, values: ["y", z]}]}
      podSelector:
        matchLabels: {pod: b}
        matchExpressions: [{key: tier, operator: Exists}, {key: legacy, operator: DoesNotExist}]`,
			mutate: func(in *Input) {
				setLabel(in, "y/b", "tier", "db")
				setLabel(in, "z/b", "tier", "db")
				setLabel(in, "z/b", "legacy", "true")
				setLabel(in, "y/c", "tier", "db")
			},
			probes: []probe{
				{from: "y/b", to: "x/a", port: 80, allowed: true},
				{from: "z/b", to: "x/a", port: 80, allowed: false}, // legacy exists
				{from: "y/c", to: "x/a", port: 80, allowed: false}, // pod != b
				{from: "x/b", to: "x/a", port: 80, allowed: false}, // ns x not in (y,z)
			},
		},
		{
			name: "9 invalid operator matches nothing",
			docs: head + `    - podSelector: {matchExpressions: [{key: pod, operator: Equals, values: [b]}]}`,
			probes: []probe{
				{from: "x/b", to: "x/a", port: 80, allowed: false},
			},
		},
		{
			name: "10 the metadata.name label survives a relabel",
			docs: head + `    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}`,
			mutate: func(in *Input) {
				for i := range in.Namespaces {
					if in.Namespaces[i].Name == "y" {
						in.Namespaces[i].Labels = map[string]string{"team": "blue"}
					}
				}
			},
			probes: []probe{
				{from: "y/c", to: "x/a", port: 80, allowed: true},
				{from: "z/c", to: "x/a", port: 80, allowed: false},
			},
		},
		{
			name: "10 an endpoint's namespace without a Namespace object has the name label",
			docs: head + `    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}`,
			mutate: func(in *Input) {
				in.Namespaces = nil
			},
			probes: []probe{
				{from: "y/c", to: "x/a", port: 80, allowed: true},
				{from: "z/c", to: "x/a", port: 80, allowed: false},
			},
		},
	})
}

func setLabel(in *Input, key, k, v string) {
	for i := range in.Endpoints {
		ep := &in.Endpoints[i]
		if ep.Namespace+"/"+ep.Name == key {
			labels := map[string]string{k: v}
			for lk, lv := range ep.Labels {
				labels[lk] = lv
			}
			labels[k] = v
			ep.Labels = labels
		}
	}
}

// TestHostTraffic covers rule 15: a host reaches its own containers through
// OUTPUT, which no policy filters; other hosts go through FORWARD.
func TestHostTraffic(t *testing.T) {
	t.Parallel()
	in := withPolicies(t, model(), denyAllIngressX)
	in.Nodes = []api.Node{
		{Name: "n1", UnderlayIP: netip.MustParseAddr("192.168.0.1")},
		{Name: "n2", UnderlayIP: netip.MustParseAddr("192.168.0.2")},
	}
	p := Compile(in)
	check(t, p, []probe{
		{from: "192.168.0.1", to: "x/a", port: 80, allowed: true, rule: "from its own node n1"}, // x/a is on n1
		{from: "192.168.0.2", to: "x/a", port: 80, allowed: false},
		{from: "192.168.0.2", to: "x/b", port: 80, allowed: true}, // x/b is on n2
	})
}

// TestDynamic covers rule 17: the program follows every kind of change.
func TestDynamic(t *testing.T) {
	t.Parallel()
	base := withPolicies(t, model(), `
metadata: {name: allow-web, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}, podSelector: {matchLabels: {app: web}}}]}]`)
	probes := func(allowed bool) []probe {
		return []probe{{from: "y/b", to: "x/a", port: 80, allowed: allowed}}
	}
	check(t, Compile(base), probes(false))

	relabeled := base
	relabeled.Endpoints = append([]api.Endpoint(nil), base.Endpoints...)
	setLabel(&relabeled, "y/b", "app", "web")
	check(t, Compile(relabeled), probes(false)) // namespace not blue yet
	relabeled.Namespaces = append([]api.Namespace(nil), base.Namespaces...)
	relabeled.Namespaces[1].Labels = map[string]string{"team": "blue"}
	check(t, Compile(relabeled), probes(true))

	// The replaced policy's old rule is gone: UpdatePolicy replaces.
	replaced := withPolicies(t, relabeled, "")
	replaced.NetworkPolicies = withPolicies(t, Input{}, `
metadata: {name: allow-web, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {}}]}]`).NetworkPolicies
	check(t, Compile(replaced), probes(false))

	deleted := relabeled
	deleted.NetworkPolicies = nil
	check(t, Compile(deleted), probes(true))

	// A deleted pod leaves the sets.
	gone := relabeled
	gone.Endpoints = nil
	for _, ep := range relabeled.Endpoints {
		if ep.Namespace+"/"+ep.Name != "y/b" {
			gone.Endpoints = append(gone.Endpoints, ep)
		}
	}
	p := Compile(gone)
	for name, s := range p.Sets {
		for _, pf := range s.Prefixes {
			if pf.Addr() == modelIP("y", "b") {
				t.Errorf("set %s (%s) still holds deleted pod y/b", name, s.Desc)
			}
		}
	}
}

func TestCompileNodeFilter(t *testing.T) {
	t.Parallel()
	in := withPolicies(t, model(), denyAllIngressX)
	in.Node = "n1"
	p := Compile(in)
	var got []string
	for _, ep := range p.Endpoints {
		got = append(got, ep.Key())
	}
	want := []string{"x/a", "x/c", "y/a", "y/c", "z/a", "z/c"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("endpoints of n1 (-want +got):\n%s", d)
	}
}

func TestSetsNamedBySelector(t *testing.T) {
	t.Parallel()
	docs := `
metadata: {name: one, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}, podSelector: {matchExpressions: [{key: pod, operator: In, values: [b, a]}]}}]}]
---
metadata: {name: two, namespace: z}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {matchExpressions: [{key: pod, operator: In, values: [a, b, a]}]}, namespaceSelector: {matchLabels: {ns: "y"}}}]}]`
	in := withPolicies(t, model(), docs)
	p := Compile(in)
	if len(p.Sets) != 1 {
		t.Fatalf("got %d sets, want 1 shared set: %v", len(p.Sets), p.Sets)
	}
	var name string
	for n := range p.Sets {
		name = n
	}
	// Churn changes elements, not the name.
	in.Endpoints = in.Endpoints[:4]
	p2 := Compile(in)
	if _, ok := p2.Sets[name]; !ok {
		t.Errorf("set %s renamed after endpoint churn: %v", name, p2.Sets)
	}
	want := Set{Kind: SetAddrs, Desc: "pods {pod in (a,b)} in namespaces {ns=y}", Prefixes: []netip.Prefix{
		netip.MustParsePrefix("10.0.2.1/32"), netip.MustParsePrefix("10.0.2.2/32"),
	}}
	if d := cmp.Diff(want, p.Sets[name], netipOpts); d != "" {
		t.Errorf("set (-want +got):\n%s", d)
	}
}

func TestSubtract(t *testing.T) {
	t.Parallel()
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	for _, tc := range []struct {
		name         string
		base         string
		except, want []netip.Prefix
	}{
		{"none", "10.0.0.0/8", nil, pfx("10.0.0.0/8")},
		{"half", "10.0.0.0/8", pfx("10.128.0.0/9"), pfx("10.0.0.0/9")},
		{"one address", "192.0.2.0/30", pfx("192.0.2.1/32"), pfx("192.0.2.0/32", "192.0.2.2/31")},
		{"all", "10.0.0.0/8", pfx("0.0.0.0/0"), nil},
		{"outside", "10.0.0.0/8", pfx("11.0.0.0/8"), pfx("10.0.0.0/8")},
		{"two", "0.0.0.0/0", pfx("0.0.0.0/1", "192.0.0.0/2"), pfx("128.0.0.0/2")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := subtract(netip.MustParsePrefix(tc.base), tc.except)
			if d := cmp.Diff(tc.want, got, netipOpts); d != "" {
				t.Errorf("subtract (-want +got):\n%s", d)
			}
		})
	}
}

func TestSelectorText(t *testing.T) {
	t.Parallel()
	sel := &api.LabelSelector{
		MatchLabels: map[string]string{"b": "2", "a": "1"},
		MatchExpressions: []api.LabelSelectorRequirement{
			{Key: "t", Operator: api.LabelSelectorOpNotIn, Values: []string{"y", "x", "y"}},
			{Key: "e", Operator: api.LabelSelectorOpExists},
			{Key: "d", Operator: api.LabelSelectorOpDoesNotExist},
		},
	}
	if got, want := selectorText(sel), "{!d,a=1,b=2,e,t notin (x,y)}"; got != want {
		t.Errorf("selectorText = %q, want %q", got, want)
	}
	if got := selectorText(&api.LabelSelector{}); got != "{}" {
		t.Errorf("empty selector = %q", got)
	}
}

func TestTraceErrors(t *testing.T) {
	t.Parallel()
	p := Compile(model())
	for _, tc := range []struct {
		from, to, proto string
		port            int
		want            string
	}{
		{"x/nope", "x/a", "TCP", 80, "endpoint x/nope not found"},
		{"x/a", "x/a", "ICMP", 80, "want TCP, UDP or SCTP"},
		{"x/a", "x/b", "TCP", 0, "want 1-65535"},
	} {
		from, _ := ParsePeer(tc.from)
		to, _ := ParsePeer(tc.to)
		_, err := Trace(p, from, to, tc.port, tc.proto)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Trace(%s, %s, %d/%s) error = %v, want %q", tc.from, tc.to, tc.port, tc.proto, err, tc.want)
		}
	}
	for _, bad := range []string{"x", "x/", "/a", "a/b/c"} {
		if _, err := ParsePeer(bad); err == nil {
			t.Errorf("ParsePeer(%q) succeeded", bad)
		}
	}
}
