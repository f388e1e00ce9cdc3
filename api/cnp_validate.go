package api

// maxCNPItems is the upstream MaxItems of a CNP's rules, peers and
// protocols (ANP allowed 100).
const maxCNPItems = 25

// ValidateClusterNetworkPolicy checks cnp per the upstream v1beta1 schema and
// its CEL rules. DomainNames peers are refused: Skein does not resolve names.
// It returns FieldErrors or nil.
func ValidateClusterNetworkPolicy(cnp *ClusterNetworkPolicy) error {
	var e errs
	e.meta(cnp.ObjectMeta, false, dnsSubdomainMsg)
	s := &cnp.Spec
	switch s.Tier {
	case TierAdmin, TierBaseline:
	case "":
		e.add("spec.tier", "required value: supported values: %q, %q", TierAdmin, TierBaseline)
	default:
		e.add("spec.tier", "unsupported value %q: supported values: %q, %q", s.Tier, TierAdmin, TierBaseline)
	}
	if s.Priority < 0 || s.Priority > 1000 {
		e.add("spec.priority", "invalid value %d: must be between 0 and 1000, inclusive", s.Priority)
	}
	e.subject(s.Subject)
	if len(s.Ingress) > maxCNPItems {
		e.add("spec.ingress", "must have at most %d rules", maxCNPItems)
	}
	if len(s.Egress) > maxCNPItems {
		e.add("spec.egress", "must have at most %d rules", maxCNPItems)
	}
	for i, r := range s.Ingress {
		p := idx("spec.ingress", i)
		e.cnpRule(p, r.Name, r.Action, r.Protocols)
		e.peerCount(p+".from", len(r.From), maxCNPItems)
		for j, peer := range r.From {
			pp := idx(p+".from", j)
			e.onePeer(pp, peer.Namespaces != nil, peer.Pods != nil)
			e.selector(peer.Namespaces, pp+".namespaces")
			e.namespacedPod(peer.Pods, pp+".pods")
		}
	}
	for i, r := range s.Egress {
		p := idx("spec.egress", i)
		e.cnpRule(p, r.Name, r.Action, r.Protocols)
		e.peerCount(p+".to", len(r.To), maxCNPItems)
		noNamedPorts := false
		for j, peer := range r.To {
			pp := idx(p+".to", j)
			e.onePeer(pp, peer.Namespaces != nil, peer.Pods != nil, peer.Nodes != nil, peer.Networks != nil, peer.DomainNames != nil)
			e.selector(peer.Namespaces, pp+".namespaces")
			e.namespacedPod(peer.Pods, pp+".pods")
			e.selector(peer.Nodes, pp+".nodes")
			if peer.Networks != nil {
				e.networks(pp+".networks", peer.Networks)
			}
			if peer.DomainNames != nil {
				e.add(pp+".domainNames", "domain name peers are not supported by skein")
			}
			noNamedPorts = noNamedPorts || peer.Nodes != nil || peer.Networks != nil || peer.DomainNames != nil
		}
		if noNamedPorts {
			for k, proto := range r.Protocols {
				if proto.DestinationNamedPort != "" {
					e.add(idx(p+".protocols", k)+".destinationNamedPort", "may not be set when a peer is networks, nodes or domainNames: they have no named ports")
				}
			}
		}
	}
	return e.list.asError()
}

// subject checks a CNP or ANP subject: exactly one of its fields.
func (e *errs) subject(subj AdminNetworkPolicySubject) {
	switch {
	case subj.Namespaces == nil && subj.Pods == nil:
		e.add("spec.subject", "must specify exactly one of namespaces or pods")
	case subj.Namespaces != nil && subj.Pods != nil:
		e.add("spec.subject", "may specify only one of namespaces or pods")
	}
	e.selector(subj.Namespaces, "spec.subject.namespaces")
	e.namespacedPod(subj.Pods, "spec.subject.pods")
}

// peerCount checks the number of peers of a rule.
func (e *errs) peerCount(path string, n, limit int) {
	if n == 0 {
		e.add(path, "required value: must have at least one peer")
	} else if n > limit {
		e.add(path, "must have at most %d peers", limit)
	}
}

func (e *errs) cnpRule(path, name string, action ClusterNetworkPolicyRuleAction, protos []ClusterNetworkPolicyProtocol) {
	if len(name) > 100 {
		e.add(path+".name", "must be no more than 100 characters")
	}
	switch action {
	case CNPActionAccept, CNPActionDeny, CNPActionPass:
	case "":
		e.add(path+".action", "required value: supported values: \"Accept\", \"Deny\", \"Pass\"")
	default:
		e.add(path+".action", "unsupported value %q: supported values: \"Accept\", \"Deny\", \"Pass\"", action)
	}
	if protos == nil {
		return
	}
	if len(protos) == 0 {
		e.add(path+".protocols", "must have at least one entry when present")
	} else if len(protos) > maxCNPItems {
		e.add(path+".protocols", "must have at most %d entries", maxCNPItems)
	}
	for i, pr := range protos {
		p := idx(path+".protocols", i)
		n := 0
		for _, l := range []struct {
			field string
			port  *ClusterNetworkPolicyProtocolPort
		}{{"tcp", pr.TCP}, {"udp", pr.UDP}, {"sctp", pr.SCTP}} {
			if l.port == nil {
				continue
			}
			n++
			e.cnpPort(p+"."+l.field, l.port)
		}
		if pr.DestinationNamedPort != "" {
			n++
			if msg := portNameMsg(pr.DestinationNamedPort); msg != "" {
				e.add(p+".destinationNamedPort", "%s", msg)
			}
		}
		if n != 1 {
			e.add(p, "must specify exactly one of tcp, udp, sctp or destinationNamedPort")
		}
	}
}

func (e *errs) cnpPort(path string, pp *ClusterNetworkPolicyProtocolPort) {
	d := pp.DestinationPort
	if d == nil {
		e.add(path+".destinationPort", "required value: give a number or a range (1-65535 for every port)")
		return
	}
	path += ".destinationPort"
	switch {
	case d.Number != 0 && d.Range != nil:
		e.add(path, "may specify only one of number or range")
	case d.Number == 0 && d.Range == nil:
		e.add(path, "must specify exactly one of number or range")
	case d.Range != nil:
		r := d.Range
		e.portNumber(path+".range.start", int64(r.Start))
		e.portNumber(path+".range.end", int64(r.End))
		if r.Start >= r.End {
			e.add(path+".range", "start (%d) must be less than end (%d)", r.Start, r.End)
		}
	default:
		e.portNumber(path+".number", int64(d.Number))
	}
}
