package policy

import (
	"fmt"
	"testing"
)

// anp returns an AdminNetworkPolicy on namespace x's pods with one ingress rule.
func anp(name string, priority int, action, from string) string {
	return fmt.Sprintf(`
kind: AdminNetworkPolicy
metadata: {name: %s}
spec:
  priority: %d
  subject: {namespaces: {matchLabels: {ns: x}}}
  ingress:
  - name: %s-rule
    action: %s
    from: [%s]
`, name, priority, name, action, from)
}

const (
	fromY   = `{namespaces: {matchLabels: {ns: "y"}}}`
	fromZ   = `{namespaces: {matchLabels: {ns: z}}}`
	fromAll = `{namespaces: {}}`
)

func TestAdminPolicies(t *testing.T) {
	t.Parallel()
	runSemantics(t, []semanticsCase{
		{
			name: "lower priority value wins",
			docs: anp("deny-y", 10, "Deny", fromY) + "---" + anp("allow-y", 20, "Allow", fromY),
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: false, rule: `AdminNetworkPolicy deny-y (priority 10) ingress rule 0 "deny-y-rule": Deny`},
				{from: "z/a", to: "x/a", port: 80, allowed: true, rule: "no rule matches x/a ingress: default allow"},
			},
		},
		{
			name: "lower priority value wins, swapped",
			docs: anp("deny-y", 30, "Deny", fromY) + "---" + anp("allow-y", 20, "Allow", fromY),
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: true, rule: "AdminNetworkPolicy allow-y (priority 20)"},
			},
		},
		{
			name: "equal priorities: ascending name decides",
			docs: anp("b-deny", 10, "Deny", fromY) + "---" + anp("a-allow", 10, "Allow", fromY),
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: true, rule: "a-allow"},
			},
		},
		{
			name: "equal priorities: ascending name decides, renamed",
			docs: anp("a-deny", 10, "Deny", fromY) + "---" + anp("b-allow", 10, "Allow", fromY),
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: false, rule: "a-deny"},
			},
		},
		{
			name: "ANP Allow overrides NetworkPolicy isolation",
			docs: denyAllIngressX + "---" + anp("allow-y", 10, "Allow", fromY),
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: true, rule: "allow-y"},
				{from: "z/a", to: "x/a", port: 80, allowed: false, rule: "isolated for ingress by NetworkPolicy x/deny-all"},
			},
		},
		{
			name: "ANP Deny beats a NetworkPolicy allow",
			docs: `
metadata: {name: allow-all, namespace: x}
spec: {podSelector: {}, ingress: [{}]}
---` + anp("deny-z", 10, "Deny", fromZ),
			probes: []probe{
				{from: "z/a", to: "x/a", port: 80, allowed: false, rule: "deny-z"},
				{from: "y/a", to: "x/a", port: 80, allowed: true, rule: "NetworkPolicy x/allow-all ingress rule 0"},
			},
		},
		{
			name: "Pass skips the remaining ANP rules to the NetworkPolicy tier",
			docs: anp("pass-y", 5, "Pass", fromY) + "---" + anp("deny-all", 10, "Deny", fromAll) + `---
metadata: {name: allow-80, namespace: x}
spec: {podSelector: {}, ingress: [{ports: [{port: 80}]}]}`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: true, rule: "NetworkPolicy x/allow-80"},
				{from: "y/a", to: "x/a", port: 81, allowed: false, rule: "isolated for ingress by NetworkPolicy x/allow-80"},
				{from: "z/a", to: "x/a", port: 80, allowed: false, rule: "deny-all"},
			},
		},
		{
			name: "Pass without NetworkPolicy reaches the baseline",
			docs: anp("pass-y", 5, "Pass", fromY) + `---
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress:
  - {name: deny-y, action: Deny, from: [` + fromY + `]}`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: false, rule: `BaselineAdminNetworkPolicy default ingress rule 0 "deny-y": Deny`},
				{from: "y/a", to: "z/a", port: 80, allowed: false, rule: "BaselineAdminNetworkPolicy default"},
				{from: "z/a", to: "x/a", port: 80, allowed: true},
			},
		},
		{
			name: "baseline rules: first match wins",
			docs: `
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {matchLabels: {ns: x}}}
  ingress:
  - {action: Allow, from: [` + fromY + `]}
  - {action: Deny, from: [` + fromAll + `]}`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: true, rule: "BaselineAdminNetworkPolicy default ingress rule 0: Allow"},
				{from: "z/a", to: "x/a", port: 80, allowed: false, rule: "BaselineAdminNetworkPolicy default ingress rule 1: Deny"},
				{from: "x/b", to: "x/a", port: 80, allowed: false},
				{from: "192.0.2.1", to: "x/a", port: 80, allowed: true}, // not a pod
			},
		},
		{
			name: "NetworkPolicy isolation applies before the baseline",
			docs: `
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress:
  - {action: Allow, from: [` + fromAll + `]}
---
metadata: {name: only-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]`,
			probes: []probe{
				{from: "x/b", to: "x/a", port: 80, allowed: true, rule: "NetworkPolicy x/only-b"},
				{from: "y/a", to: "x/a", port: 80, allowed: false, rule: "isolated for ingress by NetworkPolicy x/only-b"},
				{from: "y/a", to: "x/b", port: 80, allowed: true, rule: "BaselineAdminNetworkPolicy default ingress rule 0: Allow"},
			},
		},
		{
			name: "egress networks match pod addresses",
			docs: `
kind: AdminNetworkPolicy
metadata: {name: no-y-net}
spec:
  priority: 1
  subject: {pods: {namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}}
  egress:
  - {action: Deny, to: [{networks: [10.0.2.0/24]}]}`,
			probes: []probe{
				{from: "x/a", to: "y/c", port: 80, allowed: false, rule: "no-y-net (priority 1) egress rule 0: Deny"},
				{from: "x/a", to: "z/c", port: 80, allowed: true},
				{from: "x/b", to: "y/c", port: 80, allowed: true}, // not a subject
				{from: "x/a", to: "10.0.2.77", port: 80, allowed: false},
			},
		},
		{
			name: "ports: numbers, ranges and named ports",
			docs: `
kind: AdminNetworkPolicy
metadata: {name: ports}
spec:
  priority: 1
  subject: {namespaces: {matchLabels: {ns: x}}}
  ingress:
  - action: Deny
    from: [` + fromAll + `]
    ports:
    - {namedPort: serve-80-tcp}
    - {portRange: {protocol: UDP, start: 1000, end: 2000}}
    - {portNumber: {protocol: SCTP, port: 81}}`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: false},
				{from: "y/a", to: "x/a", port: 80, proto: "UDP", allowed: true}, // serve-80-tcp is TCP
				{from: "y/a", to: "x/a", port: 81, allowed: true},
				{from: "y/a", to: "x/a", port: 1000, proto: "UDP", allowed: false},
				{from: "y/a", to: "x/a", port: 2000, proto: "UDP", allowed: false},
				{from: "y/a", to: "x/a", port: 2001, proto: "UDP", allowed: true},
				{from: "y/a", to: "x/a", port: 81, proto: "SCTP", allowed: false},
			},
		},
		{
			name: "egress named port resolves on the peer",
			docs: `
kind: AdminNetworkPolicy
metadata: {name: egress-named}
spec:
  priority: 1
  subject: {namespaces: {matchLabels: {ns: x}}}
  egress:
  - {action: Deny, to: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: c}}}}], ports: [{namedPort: serve-81-udp}]}`,
			probes: []probe{
				{from: "x/a", to: "y/c", port: 81, proto: "UDP", allowed: false},
				{from: "x/a", to: "y/b", port: 81, proto: "UDP", allowed: true},
				{from: "x/a", to: "y/c", port: 81, allowed: true},
			},
		},
		{
			name: "Pass in a baseline is invalid and ignored",
			docs: `
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress:
  - {action: Pass, from: [` + fromAll + `]}`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: true},
			},
			warn: `action "Pass": rule ignored`,
		},
	})
}
