package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/skeinnet/skein/api"
)

// adminPolicy is what ANPs, BANPs and CNPs share, seen by the compiler.
// CNPs are converted to the ANP rule shape (see cnpAdmin).
type adminPolicy struct {
	kind     string
	name     string
	tier     string // TierAdmin or TierBaseline
	priority int32
	// pass: Pass is a valid action (not in a BANP).
	pass    bool
	subject api.AdminNetworkPolicySubject
	ingress []api.AdminNetworkPolicyIngressRule
	egress  []api.AdminNetworkPolicyEgressRule
}

// Origin tiers of admin policy rules.
const (
	TierAdmin    = "Admin"
	TierBaseline = "Baseline"
)

// kindRank orders kinds within a tier at equal priority: the older kind
// first (AdminNetworkPolicy before ClusterNetworkPolicy in the Admin tier).
func kindRank(kind string) int {
	if kind == KindCNP {
		return 1
	}
	return 0
}

// compileAdminTier appends the Admin tier: AdminNetworkPolicies and Admin
// tier ClusterNetworkPolicies together, by ascending priority, then
// AdminNetworkPolicy before ClusterNetworkPolicy, then by name (upstream
// leaves the order of equal priorities undefined; this one is
// deterministic).
func (c *compiler) compileAdminTier(p *Program, local map[int]int) {
	pols := make([]adminPolicy, 0, len(c.in.ANPs))
	for _, a := range c.in.ANPs {
		pols = append(pols, adminPolicy{KindANP, a.Name, TierAdmin, a.Spec.Priority, true, a.Spec.Subject, a.Spec.Ingress, a.Spec.Egress})
	}
	for i := range c.in.CNPs {
		if cnp := &c.in.CNPs[i]; cnp.Spec.Tier == api.TierAdmin {
			pols = append(pols, cnpAdmin(cnp))
		}
	}
	slices.SortStableFunc(pols, func(a, b adminPolicy) int {
		return cmp.Or(cmp.Compare(a.priority, b.priority), cmp.Compare(kindRank(a.kind), kindRank(b.kind)), strings.Compare(a.name, b.name))
	})
	for i := range pols {
		c.admin(p, local, &pols[i], func(ep *EndpointProgram) (*[]Rule, *[]Rule) {
			return &ep.Ingress.ANP, &ep.Egress.ANP
		})
	}
}

// compileBaselineTier appends the Baseline tier: Baseline tier
// ClusterNetworkPolicies by priority then name, then
// BaselineAdminNetworkPolicies by name. Upstream allows a single BANP named
// "default"; Skein applies them all.
func (c *compiler) compileBaselineTier(p *Program, local map[int]int) {
	var pols []adminPolicy
	for i := range c.in.CNPs {
		if cnp := &c.in.CNPs[i]; cnp.Spec.Tier == api.TierBaseline {
			pols = append(pols, cnpAdmin(cnp))
		}
	}
	slices.SortStableFunc(pols, func(a, b adminPolicy) int {
		return cmp.Or(cmp.Compare(a.priority, b.priority), strings.Compare(a.name, b.name))
	})
	banps := make([]adminPolicy, len(c.in.BANPs))
	for i, b := range c.in.BANPs {
		banps[i] = adminPolicy{KindBANP, b.Name, TierBaseline, 0, false, b.Spec.Subject, b.Spec.Ingress, b.Spec.Egress}
	}
	slices.SortStableFunc(banps, func(a, b adminPolicy) int { return strings.Compare(a.name, b.name) })
	pols = append(pols, banps...)
	for i := range pols {
		c.admin(p, local, &pols[i], func(ep *EndpointProgram) (*[]Rule, *[]Rule) {
			return &ep.Ingress.BANP, &ep.Egress.BANP
		})
	}
}

func (c *compiler) admin(p *Program, local map[int]int, a *adminPolicy, tier func(*EndpointProgram) (*[]Rule, *[]Rule)) {
	subj, ok := c.adminSubject(a)
	if !ok {
		return
	}
	subj = subjects(subj, local)
	if len(subj) == 0 {
		return
	}
	in := make([]ruleTmpl, 0, len(a.ingress))
	for j, r := range a.ingress {
		if t, ok := c.adminRule(a, ingress, j, r.Name, r.Action, ingressPeers(r.From), r.Ports); ok {
			in = append(in, t)
		}
	}
	out := make([]ruleTmpl, 0, len(a.egress))
	for j, r := range a.egress {
		if t, ok := c.adminRule(a, egress, j, r.Name, r.Action, r.To, r.Ports); ok {
			out = append(out, t)
		}
	}
	for _, l := range subj {
		inRules, outRules := tier(&p.Endpoints[l])
		for j := range in {
			*inRules = c.expand(*inRules, &in[j], l, ingress)
		}
		for j := range out {
			*outRules = c.expand(*outRules, &out[j], l, egress)
		}
	}
}

func (c *compiler) adminSubject(a *adminPolicy) ([]int, bool) {
	s := a.subject
	switch {
	case s.Namespaces != nil && s.Pods == nil:
		return c.ix.pods(podPeer{nsSel: s.Namespaces, podSel: selectAll}), true
	case s.Pods != nil && s.Namespaces == nil:
		pods := *s.Pods
		return c.ix.pods(podPeer{nsSel: &pods.NamespaceSelector, podSel: &pods.PodSelector}), true
	}
	c.warnf("%s %s: subject must set exactly one of namespaces and pods: ignored (selects nothing)", a.kind, a.name)
	return nil, false
}

// ingressPeers widens ingress peers to the egress peer type.
func ingressPeers(from []api.AdminNetworkPolicyIngressPeer) []api.AdminNetworkPolicyEgressPeer {
	out := make([]api.AdminNetworkPolicyEgressPeer, len(from))
	for i, f := range from {
		out[i] = api.AdminNetworkPolicyEgressPeer{Namespaces: f.Namespaces, Pods: f.Pods}
	}
	return out
}

func (c *compiler) adminRule(a *adminPolicy, dir string, j int, name string, action api.AdminNetworkPolicyRuleAction, peers []api.AdminNetworkPolicyEgressPeer, ports *[]api.AdminNetworkPolicyPort) (ruleTmpl, bool) {
	where := fmt.Sprintf("%s %s %s rule %d", a.kind, a.name, dir, j)
	t := ruleTmpl{origin: Origin{Kind: a.kind, Name: a.name, Priority: a.priority, Direction: dir, Index: j, RuleName: name}}
	if a.kind == KindCNP {
		t.origin.Tier = a.tier
	}
	switch {
	case action == api.ActionAllow:
		t.action = Allow
	case action == api.ActionDeny:
		t.action = Deny
	case action == api.ActionPass && a.pass:
		t.action = Pass
	default:
		c.warnf("%s: action %q: rule ignored", where, action)
		return t, false
	}
	if len(peers) == 0 {
		c.warnf("%s: no peers: matches nothing", where)
	}
	for k, peer := range peers {
		names, err := c.adminPeer(peer)
		if err != nil {
			c.warnf("%s: peer %d: %v: ignored (matches nothing)", where, k, err)
			continue
		}
		t.peers = append(t.peers, names...)
	}
	t.anyPort = ports == nil || len(*ports) == 0
	if ports != nil {
		for k, port := range *ports {
			pm, np, err := adminPort(port)
			if err != nil {
				c.warnf("%s: port %d: %v: ignored (matches nothing)", where, k, err)
				continue
			}
			if np.name != "" {
				t.named = append(t.named, np)
			} else {
				t.ports = append(t.ports, pm)
			}
		}
	}
	if dir == egress {
		c.peerPortSets(&t)
	}
	return t, true
}

func (c *compiler) adminPeer(peer api.AdminNetworkPolicyEgressPeer) ([]string, error) {
	n := 0
	for _, set := range []bool{peer.Namespaces != nil, peer.Pods != nil, peer.Nodes != nil, peer.Networks != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("must set exactly one of namespaces, pods, nodes and networks")
	}
	switch {
	case peer.Namespaces != nil:
		return []string{c.podSet(podPeer{nsSel: peer.Namespaces, podSel: selectAll})}, nil
	case peer.Pods != nil:
		pods := *peer.Pods
		return []string{c.podSet(podPeer{nsSel: &pods.NamespaceSelector, podSel: &pods.PodSelector})}, nil
	case peer.Nodes != nil:
		return []string{c.nodeSet(peer.Nodes)}, nil
	}
	var names []string
	for _, cidr := range peer.Networks {
		name, ok := c.cidrSet(string(cidr), nil)
		if !ok {
			return nil, fmt.Errorf("invalid network %q", cidr)
		}
		names = append(names, name)
	}
	return names, nil
}

func adminPort(p api.AdminNetworkPolicyPort) (PortMatch, namedPort, error) {
	n := 0
	for _, set := range []bool{p.PortNumber != nil, p.NamedPort != nil, p.PortRange != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return PortMatch{}, namedPort{}, fmt.Errorf("must set exactly one of portNumber, namedPort and portRange")
	}
	switch {
	case p.NamedPort != nil:
		if *p.NamedPort == "" {
			return PortMatch{}, namedPort{}, fmt.Errorf("empty port name")
		}
		return PortMatch{}, namedPort{name: *p.NamedPort}, nil
	case p.PortNumber != nil:
		proto, err := ParseProtocol(p.PortNumber.Protocol)
		if err != nil {
			return PortMatch{}, namedPort{}, err
		}
		if p.PortNumber.Port < 1 || p.PortNumber.Port > 65535 {
			return PortMatch{}, namedPort{}, fmt.Errorf("port %d", p.PortNumber.Port)
		}
		return PortMatch{Proto: proto, From: uint16(p.PortNumber.Port), To: uint16(p.PortNumber.Port)}, namedPort{}, nil
	}
	proto, err := ParseProtocol(p.PortRange.Protocol)
	if err != nil {
		return PortMatch{}, namedPort{}, err
	}
	r := p.PortRange
	if r.Start < 1 || r.End > 65535 || r.End < r.Start {
		return PortMatch{}, namedPort{}, fmt.Errorf("port range %d-%d", r.Start, r.End)
	}
	return PortMatch{Proto: proto, From: uint16(r.Start), To: uint16(r.End)}, namedPort{}, nil
}
