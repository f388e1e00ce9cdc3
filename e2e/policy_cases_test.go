//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// The static policy cases of TestPolicy (policy_test.go).

// polCase is a static case: policies, the ports probed, the truth table,
// and trace answers expected under it.
type polCase struct {
	name     string
	policies string
	probes   []polPort
	want     polWant
	// want6 is the IPv6 truth table where it differs from want: a case
	// that names addresses (ipBlock, networks) names those of one family.
	want6  polWant
	traces []polTrace
	// traces6, when set, replaces traces over IPv6.
	traces6 []polTrace
	// dualStack cases need a dual-stack lab: they name IPv6 addresses.
	dualStack bool
	extra     func(t *testing.T)
}

// polNP, polANP and polBANP render one YAML document of each kind around
// spec (written unindented), each ending with a document separator.
func polNP(ns, name, spec string) string {
	return fmt.Sprintf("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: %s, name: %s}\nspec:\n%s\n---\n", ns, name, polIndent(spec))
}

func polANP(name string, priority int, spec string) string {
	return fmt.Sprintf("apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: %s}\nspec:\n  priority: %d\n%s\n---\n", name, priority, polIndent(spec))
}

func polBANP(name, spec string) string {
	return fmt.Sprintf("apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\nmetadata: {name: %s}\nspec:\n%s\n---\n", name, polIndent(spec))
}

// polCNP renders a ClusterNetworkPolicy (v1beta1) of tier around spec.
func polCNP(name, tier string, priority int, spec string) string {
	return fmt.Sprintf("apiVersion: policy.networking.k8s.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: %s}\nspec:\n  tier: %s\n  priority: %d\n%s\n---\n", name, tier, priority, polIndent(spec))
}

func polIndent(s string) string {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n")
}

const polDenyIngressX = "podSelector: {}" // policyTypes defaults to [Ingress], no rules: deny all ingress

// polCases are the static cases for s's lab (those naming IPv6 addresses
// only when it is dual-stack).
func polCases(ctx context.Context, s *polSuite) []polCase {
	var out []polCase
	for _, c := range polAllCases(ctx, s) {
		if !c.dualStack || s.dual {
			out = append(out, c)
		}
	}
	return out
}

func polAllCases(ctx context.Context, s *polSuite) []polCase {
	ip := func(key string) string { return s.byKey[key].c.IP.String() }
	ip6 := func(key string) string { return s.byKey[key].c.IP6.String() }
	is := func(p *polPod, key string) bool { return p.key() == key }
	// closedByIPBlocks is the IPv4 truth table of IPBlockExcept6 and the
	// IPv6 one of IPBlockExcept: their x and z admit only ipBlocks and y/a
	// sends only to one, all of the other family, so over this one x and z
	// admit nothing and y/a reaches nothing.
	closedByIPBlocks := func(from, to *polPod, _ polPort) bool {
		return to.ns != "x" && to.ns != "z" && !is(from, "y/a")
	}
	ipBlockExcept := func(from, to *polPod, _ polPort) bool {
		if to.ns == "x" && (is(from, "y/b") || is(from, "x/c")) {
			return false
		}
		return !is(from, "y/a") || is(to, "z/c")
	}
	return []polCase{
		{
			name:     "DefaultDenyIngressX",
			policies: polNP("x", "deny-ingress", polDenyIngressX),
			probes:   []polPort{tcp80, udp80},
			want:     func(_, to *polPod, _ polPort) bool { return to.ns != "x" },
			traces: []polTrace{
				{"x/b", "x/a", tcp80, false, `isolated for ingress by NetworkPolicy x/deny-ingress`},
				{"x/a", "y/a", tcp80, true, `default allow`},
			},
			extra: func(t *testing.T) {
				s.testHostToPod(ctx, t)
				s.testRemoteHostToPod(ctx, t, s.byKey["x/a"], false, `isolated for ingress by NetworkPolicy x/deny-ingress`)
			},
		},
		{
			name: "AllowXAFromNamespaceY",
			policies: polNP("x", "deny-ingress", polDenyIngressX) + polNP("x", "allow-a-from-y", `
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}`),
			// No ports in the rule: every port and protocol.
			probes: []polPort{tcp80, udp81},
			want: func(from, to *polPod, _ polPort) bool {
				return to.ns != "x" || (to.name == "a" && from.ns == "y")
			},
			traces: []polTrace{
				{"y/c", "x/a", udp81, true, `NetworkPolicy x/allow-a-from-y ingress rule 0`},
				{"z/c", "x/a", tcp80, false, `isolated for ingress by NetworkPolicy x/(allow-a-from-y, x/)?deny-ingress`},
			},
		},
		{
			// namespaceSelector {} + podSelector: pods b everywhere; a
			// podSelector alone: pods b of the policy's own namespace.
			name: "AllowFromPodsBAllNamespaces",
			policies: polNP("x", "from-b", `
podSelector: {}
ingress:
- from:
  - namespaceSelector: {}
    podSelector: {matchLabels: {pod: b}}`) + polNP("y", "from-local-b", `
podSelector: {}
ingress:
- from:
  - podSelector: {matchLabels: {pod: b}}`),
			probes: []polPort{tcp80},
			want: func(from, to *polPod, _ polPort) bool {
				switch to.ns {
				case "x":
					return from.name == "b"
				case "y":
					return is(from, "y/b")
				}
				return true
			},
		},
		{
			// Egress deny-all must list Egress; replies to connections
			// into y (SYN-ACKs, UDP echoes) still leave y.
			name: "EgressDenyAllY",
			policies: polNP("y", "deny-egress", `
podSelector: {}
policyTypes: [Egress]`),
			probes: []polPort{tcp80, udp80},
			want:   func(from, _ *polPod, _ polPort) bool { return from.ns != "y" },
			traces: []polTrace{{"y/a", "z/a", udp80, false, `isolated for egress by NetworkPolicy y/deny-egress`}},
			extra:  func(t *testing.T) { s.testPodToHosts(ctx, t, s.byKey["y/a"], false) },
		},
		{
			// Named ports resolve against the destination pod, name and
			// protocol: TCP + serve-81-udp matches nothing.
			name: "NamedPorts",
			policies: polNP("x", "named-81", `
podSelector: {}
ingress:
- ports:
  - port: serve-81-tcp`) + polNP("y", "named-mismatch", `
podSelector: {matchLabels: {pod: c}}
ingress:
- ports:
  - protocol: TCP
    port: serve-81-udp`) + polNP("z", "a-egress-named", `
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- ports:
  - protocol: UDP
    port: serve-80-udp`),
			probes: all4,
			want: func(from, to *polPod, pp polPort) bool {
				egressOK := !is(from, "z/a") || pp == udp80
				ingressOK := true
				switch {
				case to.ns == "x":
					ingressOK = pp == tcp81
				case is(to, "y/c"):
					ingressOK = false
				}
				return egressOK && ingressOK
			},
			traces: []polTrace{{"y/a", "x/b", tcp81, true, `NetworkPolicy x/named-81 ingress rule 0`}},
		},
		{
			// endPort ranges are inclusive at both ends.
			name: "EndPortRanges",
			policies: polNP("x", "range-80-81", `
podSelector: {}
ingress:
- ports:
  - {protocol: TCP, port: 80, endPort: 81}`) + polNP("y", "range-81-85-from-z", `
podSelector: {}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: z}}
  ports:
  - {port: 81, endPort: 85}`) + polNP("z", "range-70-80", `
podSelector: {}
ingress:
- ports:
  - {protocol: TCP, port: 70, endPort: 80}`),
			probes: []polPort{tcp80, tcp81, udp80},
			want: func(from, to *polPod, pp polPort) bool {
				switch to.ns {
				case "x":
					return pp.proto == "TCP"
				case "y":
					return pp == tcp81 && from.ns == "z" // ports AND peers of one rule
				}
				return pp == tcp80
			},
		},
		{
			// ipBlock matches pod addresses too; except carves out. The
			// blocks are IPv4: they open nothing over IPv6.
			name: "IPBlockExcept",
			policies: polNP("x", "ipblock", fmt.Sprintf(`
podSelector: {}
ingress:
- from:
  - ipBlock:
      cidr: %s
      except: [%s/32, %s/32]`, s.pool(4), ip("y/b"), ip("x/c"))) + polNP("y", "a-egress-ip", fmt.Sprintf(`
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - ipBlock: {cidr: %s/32}`, ip("z/c"))) + polNP("z", "from-anywhere", `
podSelector: {}
ingress:
- from:
  - ipBlock: {cidr: 0.0.0.0/31}
  - ipBlock: {cidr: 0.0.0.0/0}`),
			probes: []polPort{tcp80},
			want:   ipBlockExcept,
			want6:  closedByIPBlocks,
		},
		{
			// IPBlockExcept's IPv6 twin: the same table over IPv6, and the
			// IPv6 blocks (::/0 included) open nothing over IPv4.
			name:      "IPBlockExcept6",
			dualStack: true,
			policies: polNP("x", "ipblock6", fmt.Sprintf(`
podSelector: {}
ingress:
- from:
  - ipBlock:
      cidr: %s
      except: [%s/128, %s/128]`, s.pool(6), ip6("y/b"), ip6("x/c"))) + polNP("y", "a-egress-ip6", fmt.Sprintf(`
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - ipBlock: {cidr: %s/128}`, ip6("z/c"))) + polNP("z", "from-anywhere6", `
podSelector: {}
ingress:
- from:
  - ipBlock: {cidr: "::/127"}
  - ipBlock: {cidr: "::/0"}`),
			probes: []polPort{tcp80},
			want:   closedByIPBlocks,
			want6:  ipBlockExcept,
			traces: []polTrace{{"y/b", "x/a", tcp80, false, `isolated for ingress by NetworkPolicy x/ipblock6`}},
			traces6: []polTrace{
				{"y/b", "x/a", tcp80, false, `isolated for ingress by NetworkPolicy x/ipblock6`},
				{"y/c", "x/a", tcp80, true, `NetworkPolicy x/ipblock6 ingress rule 0`},
			},
		},
		{
			// One rule with a block of each family, each with its own
			// except: each except holds for its family only (y/b is cut
			// out of IPv4, x/c out of IPv6). y/a's egress goes to z/c's
			// IPv4 address and z/b's IPv6 one.
			name:      "IPBlockBothFamilies",
			dualStack: true,
			policies: polNP("x", "ipblock-both", fmt.Sprintf(`
podSelector: {}
ingress:
- from:
  - ipBlock: {cidr: %s, except: [%s/32]}
  - ipBlock: {cidr: %s, except: [%s/128]}`, s.pool(4), ip("y/b"), s.pool(6), ip6("x/c"))) + polNP("y", "a-egress-both", fmt.Sprintf(`
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - ipBlock: {cidr: %s/32}
  - ipBlock: {cidr: %s/128}`, ip("z/c"), ip6("z/b"))),
			probes: []polPort{tcp80, udp81},
			want: func(from, to *polPod, _ polPort) bool {
				return !(to.ns == "x" && is(from, "y/b")) && (!is(from, "y/a") || is(to, "z/c"))
			},
			want6: func(from, to *polPod, _ polPort) bool {
				return !(to.ns == "x" && is(from, "x/c")) && (!is(from, "y/a") || is(to, "z/b"))
			},
			traces:  []polTrace{{"y/b", "x/a", udp81, false, `isolated for ingress by NetworkPolicy x/ipblock-both`}},
			traces6: []polTrace{{"y/b", "x/a", udp81, true, `NetworkPolicy x/ipblock-both ingress rule 0`}},
		},
		{
			name: "UDPOnlyDoesNotOpenTCP",
			policies: polNP("x", "udp-only", `
podSelector: {}
ingress:
- ports:
  - protocol: UDP`),
			probes: []polPort{tcp80, udp81},
			want:   func(_, to *polPod, pp polPort) bool { return to.ns != "x" || pp.proto == "UDP" },
		},
		{
			// NotIn and DoesNotExist match a pod or namespace without the
			// key; In selects the subjects.
			name: "SelectorOperators",
			policies: polNP("x", "ops", `
podSelector:
  matchExpressions: [{key: pod, operator: In, values: [a, b]}]
ingress:
- from:
  - namespaceSelector:
      matchExpressions: [{key: team, operator: NotIn, values: [blue]}]
    podSelector:
      matchExpressions: [{key: pod, operator: NotIn, values: [c]}]
  - podSelector:
      matchExpressions: [{key: pod, operator: DoesNotExist}]`),
			probes: []polPort{tcp80},
			want: func(from, to *polPod, _ polPort) bool {
				return to.ns != "x" || to.name == "c" || from.name != "c"
			},
		},
		{
			// Without policyTypes, a policy with egress rules is
			// [Ingress, Egress]: z/b also loses all ingress.
			name: "PolicyTypesDefaulting",
			policies: polNP("z", "b-egress-no-types", `
podSelector: {matchLabels: {pod: b}}
egress:
- to:
  - podSelector: {}`),
			probes: []polPort{tcp80},
			want: func(from, to *polPod, _ polPort) bool {
				return !is(to, "z/b") && (!is(from, "z/b") || to.ns == "z")
			},
			traces: []polTrace{{"z/a", "z/b", tcp80, false, `isolated for ingress by NetworkPolicy z/b-egress-no-types`}},
		},
		{
			// x/a's egress denies y/b although y/b's ingress names x/a.
			name: "BothEndsMustAllow",
			policies: polNP("x", "a-egress-z", `
podSelector: {matchLabels: {pod: a}}
policyTypes: [Egress]
egress:
- to:
  - namespaceSelector: {matchLabels: {ns: z}}`) + polNP("y", "b-from-x-a", `
podSelector: {matchLabels: {pod: b}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: x}}
    podSelector: {matchLabels: {pod: a}}`),
			probes: []polPort{tcp80, udp80},
			want: func(from, to *polPod, _ polPort) bool {
				return (!is(from, "x/a") || to.ns == "z") && (!is(to, "y/b") || is(from, "x/a"))
			},
			traces: []polTrace{{"x/a", "y/b", tcp80, false, `isolated for egress by NetworkPolicy x/a-egress-z`}},
		},
		{
			name: "ANPDenyOverNPAllow",
			policies: polNP("x", "allow-all", `
podSelector: {}
ingress:
- {}`) + polANP("deny-y-to-x", 10, `
subject: {namespaces: {matchLabels: {ns: x}}}
ingress:
- name: no-y
  action: Deny
  from:
  - namespaces: {matchLabels: {ns: y}}`),
			probes: []polPort{tcp80},
			want:   func(from, to *polPod, _ polPort) bool { return to.ns != "x" || from.ns != "y" },
			traces: []polTrace{
				{"y/a", "x/c", tcp80, false, `AdminNetworkPolicy deny-y-to-x .*ingress rule 0.*no-y`},
				{"z/a", "x/c", tcp80, true, `NetworkPolicy x/allow-all ingress rule 0`},
			},
		},
		{
			// Admin egress rules by port range, named port and network,
			// in order; what they leave goes to NP (none) and the BANP.
			name: "ANPEgressPortsAndNetworks",
			policies: polANP("y-a-egress", 40, fmt.Sprintf(`
subject:
  pods:
    namespaceSelector: {matchLabels: {ns: y}}
    podSelector: {matchLabels: {pod: a}}
egress:
- name: no-udp
  action: Deny
  to:
  - namespaces: {}
  ports:
  - portRange: {protocol: UDP, start: 80, end: 81}
- name: z-81
  action: Allow
  to:
  - pods:
      namespaceSelector: {matchLabels: {ns: z}}
      podSelector: {}
  ports:
  - namedPort: serve-81-tcp
- name: not-x-b
  action: Deny
  to:
  - networks: [%s/32]`, ip("x/b"))) + polBANP("default", `
subject:
  pods:
    namespaceSelector: {matchLabels: {ns: y}}
    podSelector: {matchLabels: {pod: a}}
egress:
- name: no-z
  action: Deny
  to:
  - namespaces: {matchLabels: {ns: z}}`),
			probes: []polPort{tcp80, tcp81, udp81},
			want: func(from, to *polPod, pp polPort) bool {
				switch {
				case !is(from, "y/a"):
					return true
				case pp.proto == "UDP" || is(to, "x/b"):
					return false
				case to.ns == "z":
					return pp == tcp81
				}
				return true
			},
			// not-x-b names x/b's IPv4 address: over IPv6, x/b is
			// reached like any pod outside z.
			want6: func(from, to *polPod, pp polPort) bool {
				switch {
				case !is(from, "y/a"):
					return true
				case pp.proto == "UDP":
					return false
				case to.ns == "z":
					return pp == tcp81
				}
				return true
			},
			traces: []polTrace{
				{"y/a", "z/c", tcp81, true, `AdminNetworkPolicy y-a-egress .*egress rule 1.*z-81`},
				{"y/a", "z/c", tcp80, false, `BaselineAdminNetworkPolicy default egress rule 0.*no-z`},
				{"y/a", "x/b", tcp81, false, `AdminNetworkPolicy y-a-egress .*egress rule 2.*not-x-b`},
			},
			traces6: []polTrace{
				{"y/a", "z/c", tcp81, true, `AdminNetworkPolicy y-a-egress .*egress rule 1.*z-81`},
				{"y/a", "z/c", tcp80, false, `BaselineAdminNetworkPolicy default egress rule 0.*no-z`},
				{"y/a", "x/b", tcp81, true, `default allow`},
			},
		},
		{
			// Pass skips the rest of the ANP tier (the priority-20 Deny)
			// and leaves y's traffic to the NetworkPolicies.
			name: "ANPPassToNP",
			policies: polANP("pass-y", 5, `
subject: {namespaces: {matchLabels: {ns: x}}}
ingress:
- name: pass-y
  action: Pass
  from:
  - namespaces: {matchLabels: {ns: y}}`) + polANP("deny-yz", 20, `
subject: {namespaces: {matchLabels: {ns: x}}}
ingress:
- action: Deny
  from:
  - namespaces:
      matchExpressions: [{key: ns, operator: In, values: [y, z]}]`) + polNP("x", "only-y-a", `
podSelector: {}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
    podSelector: {matchLabels: {pod: a}}`),
			probes: []polPort{tcp80},
			want: func(from, to *polPod, _ polPort) bool {
				return to.ns != "x" || is(from, "y/a")
			},
			traces: []polTrace{
				{"y/a", "x/b", tcp80, true, `NetworkPolicy x/only-y-a ingress rule 0`},
				{"y/b", "x/b", tcp80, false, `isolated for ingress by NetworkPolicy x/only-y-a`},
				{"z/b", "x/b", tcp80, false, `AdminNetworkPolicy deny-yz`},
			},
		},
		{
			// Equal priorities: Skein orders by name, so tie-a (Allow)
			// decides before tie-b (Deny), and an ANP Allow skips the
			// NetworkPolicy tier (x's deny-ingress).
			name: "ANPEqualPriorityByName",
			policies: polANP("tie-b", 30, `
subject: {namespaces: {matchLabels: {ns: x}}}
ingress:
- action: Deny
  from:
  - namespaces: {matchLabels: {ns: y}}`) + polANP("tie-a", 30, `
subject: {namespaces: {matchLabels: {ns: x}}}
ingress:
- action: Allow
  from:
  - namespaces: {matchLabels: {ns: y}}`) + polNP("x", "deny-ingress", polDenyIngressX),
			probes: []polPort{tcp80},
			want:   func(from, to *polPod, _ polPort) bool { return to.ns != "x" || from.ns == "y" },
			traces: []polTrace{{"y/b", "x/a", tcp80, true, `AdminNetworkPolicy tie-a `}},
		},
		{
			// The baseline decides only for pods no NetworkPolicy selects.
			name: "BANPOnlyWhereNoNP",
			policies: polBANP("default", `
subject: {namespaces: {}}
ingress:
- name: no-z
  action: Deny
  from:
  - namespaces: {matchLabels: {ns: z}}`) + polNP("y", "allow-all", `
podSelector: {}
ingress:
- {}`) + polNP("x", "a-allow-all", `
podSelector: {matchLabels: {pod: a}}
ingress:
- {}`),
			probes: []polPort{tcp80},
			want: func(from, to *polPod, _ polPort) bool {
				return from.ns != "z" || to.ns == "y" || is(to, "x/a")
			},
			traces: []polTrace{
				{"z/a", "x/b", tcp80, false, `BaselineAdminNetworkPolicy default .*no-z`},
				{"z/a", "x/a", tcp80, true, `NetworkPolicy x/a-allow-all ingress rule 0`},
			},
		},
		{
			// Both ClusterNetworkPolicy tiers with the older kinds: at equal
			// priority the ANP decides before the Admin CNP (z denied
			// though a CNP accepts it); y passes to the NetworkPolicy tier,
			// which isolates only x/a; for x/b and x/c the Baseline tier
			// decides: y/b passes out of it (allowed), the rest of y is
			// denied by the next Baseline CNP.
			name: "CNPTiersPassAndBaseline",
			policies: polCNP("cnp-pass-y", "Admin", 5, `
subject: {namespaces: {matchLabels: {ns: x}}}
ingress:
- name: pass-y
  action: Pass
  from:
  - namespaces: {matchLabels: {ns: y}}`) + polCNP("cnp-accept-z", "Admin", 5, `
subject: {namespaces: {matchLabels: {ns: x}}}
ingress:
- action: Accept
  from:
  - namespaces: {matchLabels: {ns: z}}`) + polANP("anp-deny-z", 5, `
subject: {namespaces: {matchLabels: {ns: x}}}
ingress:
- name: no-z
  action: Deny
  from:
  - namespaces: {matchLabels: {ns: z}}`) + polNP("x", "a-from-y-a", `
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
    podSelector: {matchLabels: {pod: a}}`) + polCNP("base-pass-y-b", "Baseline", 1, `
subject: {namespaces: {matchLabels: {ns: x}}}
ingress:
- name: pass-y-b
  action: Pass
  from:
  - pods:
      namespaceSelector: {matchLabels: {ns: y}}
      podSelector: {matchLabels: {pod: b}}`) + polCNP("base-deny-y", "Baseline", 2, `
subject: {namespaces: {matchLabels: {ns: x}}}
ingress:
- action: Deny
  from:
  - namespaces: {matchLabels: {ns: y}}
  protocols:
  - tcp: {destinationPort: {range: {start: 80, end: 81}}}`),
			probes: []polPort{tcp80, udp80},
			want: func(from, to *polPod, pp polPort) bool {
				if to.ns != "x" {
					return true
				}
				switch from.ns {
				case "z":
					return false
				case "y":
					if to.name == "a" {
						return from.name == "a"
					}
					return from.name == "b" || pp.proto == "UDP"
				}
				return to.name != "a"
			},
			traces: []polTrace{
				{"z/a", "x/b", tcp80, false, `AdminNetworkPolicy anp-deny-z .*no-z`},
				{"y/a", "x/a", tcp80, true, `NetworkPolicy x/a-from-y-a ingress rule 0`},
				{"y/b", "x/c", tcp80, true, `ClusterNetworkPolicy base-pass-y-b \(Baseline tier, priority 1\) ingress rule 0`},
				{"y/c", "x/c", tcp80, false, `ClusterNetworkPolicy base-deny-y \(Baseline tier, priority 2\) ingress rule 0`},
			},
		},
		{
			// A nodes egress peer: y/a may not reach port 8088 of the nodes
			// labelled with the test's zone. Pods are untouched; the node
			// sets follow a relabel of the node record.
			name: "CNPNodesPeer",
			policies: polCNP("no-zone-e2e", "Admin", 1, `
subject:
  pods:
    namespaceSelector: {matchLabels: {ns: y}}
    podSelector: {matchLabels: {pod: a}}
egress:
- name: no-nodes
  action: Deny
  to:
  - nodes: {matchLabels: {e2e-zone: locked}}
  protocols:
  - tcp: {destinationPort: {number: 8088}}`),
			probes: []polPort{tcp80},
			want:   func(_, _ *polPod, _ polPort) bool { return true },
			extra:  func(t *testing.T) { s.testNodesPeer(ctx, t, s.byKey["y/a"]) },
		},
	}
}

// testNodesPeer labels the node record of a host other than from's with
// e2e-zone=locked (CNPNodesPeer denies from's egress to such nodes on
// 8088), checks probe and trace to every host, then moves the label to
// another host and checks again: the nodes set follows node records.
func (s *polSuite) testNodesPeer(ctx context.Context, t *testing.T, from *polPod) {
	cl := labStore(ctx, t, s.l)
	setZone := func(host, zone string) {
		t.Helper()
		n, err := cl.GetNode(ctx, host)
		if err != nil {
			t.Fatalf("get node %s: %v", host, err)
		}
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		if zone == "" {
			delete(n.Labels, "e2e-zone")
		} else {
			n.Labels["e2e-zone"] = zone
		}
		if err := cl.PutNode(ctx, n); err != nil {
			t.Fatalf("label node %s: %v", host, err)
		}
	}
	var others []string
	for _, h := range s.l.Hosts() {
		if h.Name != from.c.Host {
			others = append(others, h.Name)
		}
	}
	defer func() {
		for _, h := range others {
			setZone(h, "")
		}
	}()
	for _, locked := range others {
		for _, h := range others {
			zone := "open"
			if h == locked {
				zone = "locked"
			}
			setZone(h, zone)
		}
		s.expectPodToHosts(ctx, t, from, locked)
	}
}

// expectPodToHosts dials port 8088 of every host from pod from until only
// host locked refuses (bounded by polEnforceWait), and checks that trace
// agrees on each host.
func (s *polSuite) expectPodToHosts(ctx context.Context, t *testing.T, from *polPod, locked string) {
	t.Helper()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, h := range s.l.Hosts() {
		ln, err := s.l.Listen(ctx, h.Name, "tcp4", "0.0.0.0:8088")
		if err != nil {
			t.Fatalf("listen in %s: %v", h.Name, err)
		}
		lns = append(lns, ln)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	deadline := time.Now().Add(polEnforceWait)
	for {
		var wrong []string
		for _, h := range s.l.Hosts() {
			dctx, cancel := context.WithTimeout(ctx, polProbeTimeout)
			c, err := s.l.Dial(dctx, from.c.Name, "tcp4", netip.AddrPortFrom(h.UnderlayIP, 8088).String())
			cancel()
			if c != nil {
				c.Close()
			}
			if want := h.Name != locked; (err == nil) != want {
				wrong = append(wrong, fmt.Sprintf("%s (%s): err=%v, want allowed=%v", h.Name, h.UnderlayIP, err, want))
			}
		}
		if len(wrong) == 0 {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Errorf("%s -> hosts with %s locked: %s", from.key(), locked, strings.Join(wrong, "; "))
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, h := range s.l.Hosts() {
		tr := polTrace{from.key(), h.UnderlayIP.String(), polPort{"TCP", 8088}, true, `.`}
		switch {
		case h.Name == from.c.Host:
			tr.rule = `to its own node`
		case h.Name == locked:
			tr.allowed, tr.rule = false, `ClusterNetworkPolicy no-zone-e2e \(Admin tier, priority 1\) egress rule 0 "no-nodes"`
		}
		s.expectTrace(ctx, t, tr)
	}
}
