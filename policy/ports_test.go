package policy

import (
	"net/netip"
	"testing"

	"github.com/skeinnet/skein/api"
)

func TestSemanticsIPBlock(t *testing.T) {
	t.Parallel()
	runSemantics(t, []semanticsCase{
		{
			name: "11 ipBlock with except",
			docs: `
metadata: {name: cidr, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress]
  ingress: [{from: [{ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.128/25, 192.0.2.7/32]}}]}]`,
			probes: []probe{
				{from: "192.0.2.1", to: "x/a", port: 80, allowed: true},
				{from: "192.0.2.6", to: "x/a", port: 80, allowed: true},
				{from: "192.0.2.7", to: "x/a", port: 80, allowed: false},
				{from: "192.0.2.8", to: "x/a", port: 80, allowed: true},
				{from: "192.0.2.200", to: "x/a", port: 80, allowed: false},
				{from: "198.51.100.1", to: "x/a", port: 80, allowed: false},
			},
		},
		{
			name: "11 ipBlock matches pod IPs",
			docs: `
metadata: {name: egress-cidr, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 10.0.2.2/32}}]}]`,
			probes: []probe{
				{from: "x/a", to: "y/b", port: 80, allowed: true, rule: "x/egress-cidr egress rule 0"},
				{from: "x/a", to: "y/c", port: 80, allowed: false},
			},
		},
		{
			name: "11 an excepted IP included by another peer is allowed",
			docs: `
metadata: {name: union, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {cidr: 10.0.0.0/16, except: [10.0.2.0/24]}
    - ipBlock: {cidr: 10.0.2.3/32}`,
			probes: []probe{
				{from: "x/a", to: "y/b", port: 80, allowed: false},
				{from: "x/a", to: "y/c", port: 80, allowed: true},
				{from: "x/a", to: "z/c", port: 80, allowed: true},
			},
		},
		{
			name: "11 0.0.0.0/0 admits pods, 0.0.0.0/31 matches no pod",
			docs: `
metadata: {name: all-by-ip, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0}}]}]
---
metadata: {name: tiny, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/31}}]}]`,
			probes: []probe{
				{from: "z/c", to: "x/a", port: 80, allowed: true},
				{from: "255.255.255.254", to: "x/a", port: 80, allowed: true},
				{from: "z/c", to: "x/b", port: 80, allowed: false},
			},
		},
		{
			name: "11 a bad CIDR is ignored, never allow-all",
			docs: `
metadata: {name: bad, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: not-a-cidr}}]}]`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: false},
			},
			warn: `invalid ipBlock "not-a-cidr"`,
		},
	})
}

func TestSemanticsPorts(t *testing.T) {
	t.Parallel()
	runSemantics(t, []semanticsCase{
		{
			name: "12 protocol defaults to TCP, numeric port must equal",
			docs: `
metadata: {name: p80, namespace: x}
spec: {podSelector: {}, ingress: [{ports: [{port: 80}]}]}`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: true},
				{from: "y/a", to: "x/a", port: 81, allowed: false},
				{from: "y/a", to: "x/a", port: 80, proto: "UDP", allowed: false},
			},
		},
		{
			name: "12 a port entry without port matches every port of its protocol",
			docs: `
metadata: {name: any-udp, namespace: x}
spec: {podSelector: {}, ingress: [{ports: [{protocol: UDP}]}]}`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 81, proto: "UDP", allowed: true},
				{from: "y/a", to: "x/a", port: 5353, proto: "UDP", allowed: true},
				{from: "y/a", to: "x/a", port: 80, allowed: false},
			},
		},
		{
			name: "12 endPort is an inclusive range",
			docs: `
metadata: {name: range, namespace: x}
spec: {podSelector: {}, ingress: [{ports: [{port: 80, endPort: 81}]}]}`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 79, allowed: false},
				{from: "y/a", to: "x/a", port: 80, allowed: true},
				{from: "y/a", to: "x/a", port: 81, allowed: true},
				{from: "y/a", to: "x/a", port: 82, allowed: false},
			},
		},
		{
			name: "12 ingress named port resolves on the selected pod",
			docs: `
metadata: {name: named, namespace: x}
spec: {podSelector: {}, ingress: [{ports: [{port: web}]}]}`,
			mutate: func(in *Input) {
				setPorts(in, "x/a", api.NamedPort{Name: "web", Port: 8080, Protocol: "TCP"})
				setPorts(in, "x/b", api.NamedPort{Name: "web", Port: 9090, Protocol: "TCP"})
			},
			probes: []probe{
				{from: "y/a", to: "x/a", port: 8080, allowed: true},
				{from: "y/a", to: "x/a", port: 9090, allowed: false},
				{from: "y/a", to: "x/b", port: 9090, allowed: true},
				{from: "y/a", to: "x/b", port: 8080, allowed: false},
				{from: "y/a", to: "x/c", port: 8080, allowed: false}, // no such name
			},
		},
		{
			name: "12 egress named port resolves on each peer pod",
			docs: `
metadata: {name: named-egress, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{namespaceSelector: {matchLabels: {ns: "y"}}}], ports: [{port: web}]}]`,
			mutate: func(in *Input) {
				setPorts(in, "y/a", api.NamedPort{Name: "web", Port: 8080, Protocol: "TCP"})
				setPorts(in, "y/b", api.NamedPort{Name: "web", Port: 9090, Protocol: "TCP"})
				setPorts(in, "z/a", api.NamedPort{Name: "web", Port: 8080, Protocol: "TCP"})
			},
			probes: []probe{
				{from: "x/a", to: "y/a", port: 8080, allowed: true},
				{from: "x/a", to: "y/a", port: 9090, allowed: false},
				{from: "x/a", to: "y/b", port: 9090, allowed: true},
				{from: "x/a", to: "y/b", port: 8080, allowed: false},
				{from: "x/a", to: "z/a", port: 8080, allowed: false}, // not a peer
			},
		},
		{
			name: "12 named port with the wrong protocol or an unknown name matches nothing",
			docs: `
metadata: {name: wrong, namespace: x}
spec:
  podSelector: {}
  ingress: [{ports: [{port: serve-81-udp}, {protocol: UDP, port: serve-80-tcp}, {port: nope}]}]`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 81, proto: "UDP", allowed: false},
				{from: "y/a", to: "x/a", port: 81, allowed: false},
				{from: "y/a", to: "x/a", port: 80, proto: "UDP", allowed: false},
				{from: "y/a", to: "x/a", port: 80, allowed: false},
			},
		},
		{
			name: "12 named port never matches an ipBlock destination",
			docs: `
metadata: {name: named-cidr, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0}}], ports: [{port: serve-80-tcp}]}]`,
			probes: []probe{
				{from: "x/a", to: "y/a", port: 80, allowed: false},
				{from: "x/a", to: "192.0.2.1", port: 80, allowed: false},
			},
		},
		{
			name: "12 egress numeric port to a peer",
			docs: `
metadata: {name: egress-81, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{namespaceSelector: {matchLabels: {ns: z}}}], ports: [{protocol: UDP, port: 81}]}]`,
			probes: []probe{
				{from: "x/a", to: "z/a", port: 81, proto: "UDP", allowed: true},
				{from: "x/a", to: "z/a", port: 80, proto: "UDP", allowed: false},
				{from: "x/a", to: "y/a", port: 81, proto: "UDP", allowed: false},
			},
		},
		{
			name: "12 egress named port to any destination resolves on every pod",
			docs: `
metadata: {name: named-any, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{ports: [{port: serve-81-udp, protocol: UDP}]}]`,
			probes: []probe{
				{from: "x/a", to: "z/c", port: 81, proto: "UDP", allowed: true},
				{from: "x/a", to: "z/c", port: 80, proto: "UDP", allowed: false},
				{from: "x/a", to: "192.0.2.1", port: 81, proto: "UDP", allowed: false},
			},
		},
		{
			name: "13 an SCTP-only rule does not open TCP",
			docs: `
metadata: {name: sctp, namespace: x}
spec: {podSelector: {}, ingress: [{ports: [{protocol: SCTP, port: 80}]}]}`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, proto: "SCTP", allowed: true},
				{from: "y/a", to: "x/a", port: 80, allowed: false},
				{from: "y/a", to: "x/a", port: 80, proto: "UDP", allowed: false},
			},
		},
		{
			name: "13 a UDP-only rule does not open TCP",
			docs: `
metadata: {name: udp, namespace: x}
spec: {podSelector: {}, ingress: [{ports: [{protocol: UDP, port: 81}]}]}`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 81, proto: "UDP", allowed: true},
				{from: "y/a", to: "x/a", port: 81, allowed: false},
			},
		},
		{
			name: "13 an unknown protocol matches nothing",
			docs: `
metadata: {name: icmp, namespace: x}
spec: {podSelector: {}, ingress: [{ports: [{protocol: ICMP}]}]}`,
			probes: []probe{
				{from: "y/a", to: "x/a", port: 80, allowed: false},
			},
			warn: `protocol "ICMP"`,
		},
		{
			name: "14 traffic to self is always allowed",
			docs: denyAllIngressX + `
---
metadata: {name: deny-egress, namespace: x}
spec: {podSelector: {}, policyTypes: [Egress]}`,
			probes: []probe{
				{from: "x/a", to: "x/a", port: 80, allowed: true, rule: "itself"},
				{from: "x/a", to: "10.0.1.1", port: 81, proto: "UDP", allowed: true},
				{from: "x/a", to: "x/b", port: 80, allowed: false},
			},
		},
		{
			name: "17 a namespace that does not exist yet matches once it appears",
			docs: `
metadata: {name: from-w, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: w}}}]}]`,
			mutate: func(in *Input) {
				in.Namespaces = append(in.Namespaces, api.Namespace{Name: "w", Labels: map[string]string{"ns": "w"}})
				in.Endpoints = append(in.Endpoints, api.Endpoint{Namespace: "w", Name: "new", IPs: []netip.Addr{netip.MustParseAddr("10.0.9.9")}, Node: "n1", HostIface: "skwnew"})
			},
			probes: []probe{
				{from: "w/new", to: "x/a", port: 80, allowed: true},
				{from: "y/a", to: "x/a", port: 80, allowed: false},
			},
		},
	})
}

func setPorts(in *Input, key string, ports ...api.NamedPort) {
	for i := range in.Endpoints {
		ep := &in.Endpoints[i]
		if ep.Namespace+"/"+ep.Name == key {
			ep.Ports = ports
		}
	}
}
