package policy

import (
	"net/netip"
	"slices"

	"github.com/skeinnet/skein/api"
)

// cnpAdmin converts a ClusterNetworkPolicy to the rule shape of the
// AdminNetworkPolicy, so that one compile path gives both kinds their (equal)
// semantics: Accept is Allow, each protocols entry is a port, a tcp, udp or
// sctp entry without a destination port is the range of every port.
func cnpAdmin(cnp *api.ClusterNetworkPolicy) adminPolicy {
	a := adminPolicy{
		kind:     KindCNP,
		name:     cnp.Name,
		tier:     string(cnp.Spec.Tier),
		priority: cnp.Spec.Priority,
		pass:     true,
		subject:  cnp.Spec.Subject,
		ingress:  make([]api.AdminNetworkPolicyIngressRule, len(cnp.Spec.Ingress)),
		egress:   make([]api.AdminNetworkPolicyEgressRule, len(cnp.Spec.Egress)),
	}
	for i, r := range cnp.Spec.Ingress {
		a.ingress[i] = api.AdminNetworkPolicyIngressRule{Name: r.Name, Action: cnpAction(r.Action), From: r.From, Ports: cnpPorts(r.Protocols)}
	}
	for i, r := range cnp.Spec.Egress {
		to := make([]api.AdminNetworkPolicyEgressPeer, len(r.To))
		for j, p := range r.To {
			if p.DomainNames != nil {
				continue // unsupported: an empty peer, which matches nothing
			}
			to[j] = api.AdminNetworkPolicyEgressPeer{Namespaces: p.Namespaces, Pods: p.Pods, Nodes: p.Nodes, Networks: p.Networks}
		}
		a.egress[i] = api.AdminNetworkPolicyEgressRule{Name: r.Name, Action: cnpAction(r.Action), To: to, Ports: cnpPorts(r.Protocols)}
	}
	return a
}

// cnpAction maps a CNP action to the ANP spelling; anything unknown stays
// as it is and is refused (with a warning) like a bad ANP action.
func cnpAction(a api.ClusterNetworkPolicyRuleAction) api.AdminNetworkPolicyRuleAction {
	switch a {
	case api.CNPActionAccept:
		return api.ActionAllow
	case api.CNPActionDeny:
		return api.ActionDeny
	case api.CNPActionPass:
		return api.ActionPass
	}
	return api.AdminNetworkPolicyRuleAction(a)
}

// cnpPorts maps CNP protocols to ANP ports; nil (no protocols) is every port.
// An entry that does not set exactly one field becomes an ANP port that
// does not either, so it is ignored with a warning as for ANPs.
func cnpPorts(protos []api.ClusterNetworkPolicyProtocol) *[]api.AdminNetworkPolicyPort {
	if protos == nil {
		return nil
	}
	out := make([]api.AdminNetworkPolicyPort, 0, len(protos))
	for _, pr := range protos {
		var p api.AdminNetworkPolicyPort
		for _, l := range []struct {
			proto string
			port  *api.ClusterNetworkPolicyProtocolPort
		}{{api.ProtocolTCP, pr.TCP}, {api.ProtocolUDP, pr.UDP}, {api.ProtocolSCTP, pr.SCTP}} {
			if l.port == nil {
				continue
			}
			d := l.port.DestinationPort
			switch {
			case d == nil:
				p.PortRange = &api.PortRange{Protocol: l.proto, Start: 1, End: 65535}
			case d.Range != nil && d.Number == 0:
				p.PortRange = &api.PortRange{Protocol: l.proto, Start: d.Range.Start, End: d.Range.End}
			case d.Range == nil:
				p.PortNumber = &api.Port{Protocol: l.proto, Port: d.Number}
			default: // both: invalid, matches nothing
				p.PortNumber, p.PortRange = &api.Port{Protocol: l.proto, Port: d.Number}, &api.PortRange{Protocol: l.proto}
			}
		}
		if pr.DestinationNamedPort != "" {
			name := pr.DestinationNamedPort
			p.NamedPort = &name
		}
		out = append(out, p)
	}
	return &out
}

// nodeSet declares the set of a nodes peer (the underlay addresses of the
// nodes sel matches) and returns its name.
func (c *compiler) nodeSet(sel *api.LabelSelector) string {
	desc := "nodes " + selectorText(sel)
	name := setName(SetAddrs, desc)
	if _, ok := c.sets[name]; !ok {
		c.sets[name] = &setDef{kind: SetAddrs, desc: desc, nodes: sel}
	}
	return name
}

// nodeAddrsOf returns the underlay addresses (as /32s or /128s) of the
// nodes sel matches, sorted: what a nodes peer matches. A node on a
// dual-stack underlay has two, and sends from either.
func nodeAddrsOf(sel *api.LabelSelector, nodes []api.Node) []netip.Prefix {
	var out []netip.Prefix
	for _, n := range nodes {
		if !sel.Matches(n.Labels) {
			continue
		}
		for _, a := range []netip.Addr{n.UnderlayIP, n.UnderlayIP6} {
			if a.IsValid() {
				out = append(out, onePrefix(a))
			}
		}
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out)
}
