package policy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/skeinnet/skein/api"
)

// Input is everything the compiler looks at: the cluster's endpoints and
// namespaces, and the four policy kinds. Compile never modifies it.
type Input struct {
	Endpoints       []api.Endpoint
	Namespaces      []api.Namespace
	NetworkPolicies []api.NetworkPolicy
	ANPs            []api.AdminNetworkPolicy
	BANPs           []api.BaselineAdminNetworkPolicy
	CNPs            []api.ClusterNetworkPolicy
	// Nodes are optional: their addresses let Trace recognize a host talking
	// to its own endpoints, which no policy filters, and they are what the
	// nodes peers of admin policies select (by label, underlay address).
	Nodes []api.Node
	// Node limits the program to the endpoints of one node (the agent); ""
	// compiles every endpoint (trace, matrix). Selector sets always cover
	// the whole cluster.
	Node string
	// Namespace, when set, further limits the program to the endpoints of
	// one namespace (a namespace's matrix); selector sets still cover the
	// whole cluster.
	Namespace string
	// VXLAN, when set, makes the table accept VXLAN packets only from the
	// other nodes' underlay addresses (backend vxlan).
	VXLAN *VXLANFilter
	// Quarantines stand for stored policies that do not decode or
	// validate: the pods they name are isolated.
	Quarantines []Quarantine
}

// AddPolicy appends o to the list of its kind and reports whether o is a
// policy of one of the four kinds.
func (in *Input) AddPolicy(o api.Object) bool {
	switch p := o.(type) {
	case *api.NetworkPolicy:
		in.NetworkPolicies = append(in.NetworkPolicies, *p)
	case *api.AdminNetworkPolicy:
		in.ANPs = append(in.ANPs, *p)
	case *api.BaselineAdminNetworkPolicy:
		in.BANPs = append(in.BANPs, *p)
	case *api.ClusterNetworkPolicy:
		in.CNPs = append(in.CNPs, *p)
	default:
		return false
	}
	return true
}

// Quarantine isolates the pods a stored policy names when the policy does
// not decode or validate: dropping it would fail open (a deny-all that
// isolates nothing). Its pods get a rule ahead of every AdminNetworkPolicy
// that denies all new connections both ways; replies of established ones
// still pass, as for any isolated pod.
type Quarantine struct {
	// Target is what can be read of the policy (api.ReadPolicyTarget).
	Target api.PolicyTarget
	// Reason is why the policy is invalid.
	Reason string
}

// VXLANFilter admits VXLAN (UDP Port) only from Peers: a host outside the
// cluster must not inject packets into the overlay.
type VXLANFilter struct {
	Port  uint16       `json:"port"`
	Peers []netip.Addr `json:"peers"` // sorted
}

const (
	ingress = "ingress"
	egress  = "egress"
)

// namedPort is a port given by name; proto 0 (admin policies) matches the
// name on any protocol.
type namedPort struct {
	name  string
	proto Protocol
}

// ruleTmpl is a policy rule compiled as far as it can be without knowing the
// endpoint it applies to: only ingress named ports wait for the endpoint.
type ruleTmpl struct {
	action Action
	origin Origin
	// peers are set names, "" for any address; empty matches nothing.
	peers []string
	// anyPort: the rule has no port list and matches every port.
	anyPort bool
	ports   []PortMatch
	named   []namedPort
	// peerPorts[i][j] names the set of named port named[j] on peers[i]
	// (egress only); "" when the peer can have no named port.
	peerPorts [][]string
}

// compiler holds the state of one Compile call.
type compiler struct {
	in       *Input
	ix       *index
	sets     map[string]*setDef
	warnings []string
	// src maps an index in Program.Endpoints to its index in in.Endpoints.
	src []int
}

// setDef defines a set; its elements are computed only if a rule uses it.
type setDef struct {
	kind     SetKind
	desc     string
	pods     *podPeer           // SetAddrs and SetAddrPorts; nil with SetAddrPorts = all pods
	nodes    *api.LabelSelector // SetAddrs of a nodes peer: node underlay addresses
	port     namedPort
	prefixes []netip.Prefix // SetCIDRs
}

// Compile turns policies, endpoints and namespaces into a Program. It is pure
// and deterministic: equal inputs give equal programs.
//
// Order of evaluation per endpoint and direction: the Admin tier
// (AdminNetworkPolicies and Admin tier ClusterNetworkPolicies) by ascending
// priority, at equal priority AdminNetworkPolicies first, then by ascending
// name (upstream leaves that order undefined), their rules in order, first
// match wins; Pass jumps to the NetworkPolicy tier. NetworkPolicies: if any
// selects the endpoint for the direction, the endpoint is isolated and only
// what one of their rules allows passes; the Baseline tier never sees an
// isolated endpoint's traffic. The Baseline tier: Baseline tier
// ClusterNetworkPolicies by priority then name, then
// BaselineAdminNetworkPolicies by name, rules in order, first match wins;
// Pass leaves the tier (allow). Nothing matched: allow.
//
// Parts of policies the API server would reject (a peer with no selector, a
// peer mixing ipBlock with a selector, an unknown protocol, a bad CIDR) match
// nothing and are listed in Program.Warnings; they never widen a rule.
func Compile(in Input) *Program {
	p, _ := compile(in)
	return p
}

// compile is Compile that also returns the definitions of the sets the
// program uses, which Incremental needs to move set elements on its own.
func compile(in Input) (*Program, map[string]*setDef) {
	c := &compiler{in: &in, ix: newIndex(in.Endpoints, in.Namespaces), sets: map[string]*setDef{}}
	p := &Program{Sets: map[string]Set{}, VXLAN: in.VXLAN, NodeAddrs: nodeAddrs(in.Nodes)}

	local := map[int]int{} // endpoint index → index in p.Endpoints
	for _, i := range c.ix.order {
		ep := &in.Endpoints[i]
		if (in.Node != "" && ep.Node != in.Node) || (in.Namespace != "" && ep.Namespace != in.Namespace) {
			continue
		}
		local[i] = len(p.Endpoints)
		c.src = append(c.src, i)
		p.Endpoints = append(p.Endpoints, EndpointProgram{
			Namespace: ep.Namespace,
			Name:      ep.Name,
			Node:      ep.Node,
			HostIface: ep.HostIface,
			IPs:       slices.Clone(ep.IPs),
		})
	}
	if len(p.Endpoints) == 0 {
		return p, nil
	}

	c.compileQuarantines(p, local)
	c.compileAdminTier(p, local)
	c.compileNPs(p, local)
	c.compileBaselineTier(p, local)

	for i := range p.Endpoints {
		ep := &p.Endpoints[i]
		ep.Ingress.NP = dedupe(ep.Ingress.NP)
		ep.Egress.NP = dedupe(ep.Egress.NP)
	}
	used := c.materialize(p)
	p.Warnings = c.warnings
	return p, used
}

// nodeAddrs returns each node's underlay and VTEP addresses of both
// families, nil for none. The IPv6 VTEP address counts: on an IPv4 underlay
// it is the address the host reaches its own containers from over IPv6; on
// an IPv6 or dual-stack underlay the IPv6 underlay address is the host's too.
func nodeAddrs(nodes []api.Node) map[string][]netip.Addr {
	var out map[string][]netip.Addr
	for _, n := range nodes {
		for _, a := range []netip.Addr{n.UnderlayIP, n.VTEPIP, n.UnderlayIP6, n.VTEPIP6} {
			if a.IsValid() && !slices.Contains(out[n.Name], a) {
				if out == nil {
					out = map[string][]netip.Addr{}
				}
				out[n.Name] = append(out[n.Name], a)
			}
		}
	}
	return out
}

func (c *compiler) warnf(format string, args ...any) {
	c.warnings = append(c.warnings, fmt.Sprintf(format, args...))
}

// compileQuarantines puts a deny-all rule per quarantine first in the ANP
// tier of the pods it names, so no policy can let their traffic through.
func (c *compiler) compileQuarantines(p *Program, local map[int]int) {
	qs := slices.Clone(c.in.Quarantines)
	slices.SortStableFunc(qs, func(a, b Quarantine) int {
		return cmp.Or(strings.Compare(a.Target.Kind, b.Target.Kind), strings.Compare(a.Target.Namespace, b.Target.Namespace), strings.Compare(a.Target.Name, b.Target.Name))
	})
	for _, q := range qs {
		t := q.Target
		for _, l := range subjects(c.quarantined(t), local) {
			ep := &p.Endpoints[l]
			for _, d := range []struct {
				rules *[]Rule
				dir   string
			}{{&ep.Ingress.ANP, ingress}, {&ep.Egress.ANP, egress}} {
				o := Origin{Kind: KindQuarantine, Namespace: t.Namespace, Name: t.Name, Direction: d.dir, PolicyKind: t.Kind, Reason: q.Reason}
				*d.rules = append(*d.rules, Rule{Action: Deny, Origin: o})
			}
		}
	}
}

// quarantined returns the endpoints (indexes into Input.Endpoints) a
// quarantine isolates: what its selector names, or, when that could not be
// read, every pod of its namespace (or of the cluster).
func (c *compiler) quarantined(t api.PolicyTarget) []int {
	if t.Namespace != "" {
		sel := t.PodSelector
		if sel == nil {
			sel = selectAll
		}
		return c.ix.pods(podPeer{scope: t.Namespace, podSel: sel})
	}
	if s := t.Subject; s != nil {
		if pods, ok := c.adminSubject(&adminPolicy{kind: t.Kind, name: t.Name, subject: *s}); ok {
			return pods
		}
	}
	return c.ix.order
}

// subjects returns the local endpoints (as indexes into p.Endpoints) that
// the endpoint indexes eps name.
func subjects(eps []int, local map[int]int) []int {
	var out []int
	for _, i := range eps {
		if l, ok := local[i]; ok {
			out = append(out, l)
		}
	}
	return out
}

func (c *compiler) compileNPs(p *Program, local map[int]int) {
	nps := make([]*api.NetworkPolicy, len(c.in.NetworkPolicies))
	for i := range c.in.NetworkPolicies {
		nps[i] = &c.in.NetworkPolicies[i]
	}
	slices.SortStableFunc(nps, func(a, b *api.NetworkPolicy) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	for _, np := range nps {
		sel := np.Spec.PodSelector
		subj := subjects(c.ix.pods(podPeer{scope: np.Namespace, podSel: &sel}), local)
		if len(subj) == 0 {
			continue
		}
		in, out := npTypes(np)
		ref := np.Namespace + "/" + np.Name
		if in {
			tmpls := make([]ruleTmpl, len(np.Spec.Ingress))
			for j, r := range np.Spec.Ingress {
				tmpls[j] = c.npRule(np, ingress, j, r.From, r.Ports)
			}
			for _, l := range subj {
				d := &p.Endpoints[l].Ingress
				d.Isolated = true
				d.IsolatedBy = append(d.IsolatedBy, ref)
				for j := range tmpls {
					d.NP = c.expand(d.NP, &tmpls[j], l, ingress)
				}
			}
		}
		if out {
			tmpls := make([]ruleTmpl, len(np.Spec.Egress))
			for j, r := range np.Spec.Egress {
				tmpls[j] = c.npRule(np, egress, j, r.To, r.Ports)
			}
			for _, l := range subj {
				d := &p.Endpoints[l].Egress
				d.Isolated = true
				d.IsolatedBy = append(d.IsolatedBy, ref)
				for j := range tmpls {
					d.NP = c.expand(d.NP, &tmpls[j], l, egress)
				}
			}
		}
	}
}

// npTypes applies the API server's policyTypes defaulting without touching
// np: no policyTypes means Ingress, plus Egress iff there are egress rules.
func npTypes(np *api.NetworkPolicy) (in, out bool) {
	if len(np.Spec.PolicyTypes) == 0 {
		return true, len(np.Spec.Egress) > 0
	}
	for _, t := range np.Spec.PolicyTypes {
		switch t {
		case api.PolicyTypeIngress:
			in = true
		case api.PolicyTypeEgress:
			out = true
		}
	}
	return in, out
}

func (c *compiler) npRule(np *api.NetworkPolicy, dir string, j int, peers []api.NetworkPolicyPeer, ports []api.NetworkPolicyPort) ruleTmpl {
	t := ruleTmpl{
		action: Allow,
		origin: Origin{Kind: KindNP, Namespace: np.Namespace, Name: np.Name, Direction: dir, Index: j},
	}
	where := fmt.Sprintf("NetworkPolicy %s/%s %s rule %d", np.Namespace, np.Name, dir, j)
	if len(peers) == 0 {
		t.peers = []string{""}
	}
	for k, peer := range peers {
		name, ok := c.npPeer(np.Namespace, peer)
		if !ok {
			c.warnf("%s: peer %d: %s: ignored (matches nothing)", where, k, npPeerProblem(peer))
			continue
		}
		t.peers = append(t.peers, name)
	}
	t.anyPort = len(ports) == 0
	for k, port := range ports {
		pm, np, err := npPort(port)
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
	if dir == egress {
		c.peerPortSets(&t)
	}
	return t
}

func npPeerProblem(peer api.NetworkPolicyPeer) string {
	switch {
	case peer.IPBlock != nil && (peer.PodSelector != nil || peer.NamespaceSelector != nil):
		return "ipBlock together with a selector"
	case peer.IPBlock != nil:
		return fmt.Sprintf("invalid ipBlock %q", peer.IPBlock.CIDR)
	}
	return "must specify a peer"
}

// npPeer returns the set a NetworkPolicy peer selects, or false when the
// peer is invalid.
func (c *compiler) npPeer(ns string, peer api.NetworkPolicyPeer) (string, bool) {
	if peer.IPBlock != nil {
		if peer.PodSelector != nil || peer.NamespaceSelector != nil {
			return "", false
		}
		return c.cidrSet(peer.IPBlock.CIDR, peer.IPBlock.Except)
	}
	switch {
	case peer.PodSelector == nil && peer.NamespaceSelector == nil:
		return "", false
	case peer.NamespaceSelector == nil:
		return c.podSet(podPeer{scope: ns, podSel: peer.PodSelector}), true
	case peer.PodSelector == nil:
		return c.podSet(podPeer{nsSel: peer.NamespaceSelector, podSel: selectAll}), true
	}
	return c.podSet(podPeer{nsSel: peer.NamespaceSelector, podSel: peer.PodSelector}), true
}

// npPort compiles a NetworkPolicy port: a numeric PortMatch or a named port.
func npPort(p api.NetworkPolicyPort) (PortMatch, namedPort, error) {
	proto := TCP
	if p.Protocol != nil {
		var err error
		if proto, err = ParseProtocol(*p.Protocol); err != nil {
			return PortMatch{}, namedPort{}, err
		}
	}
	switch {
	case p.Port == nil:
		if p.EndPort != nil {
			return PortMatch{}, namedPort{}, fmt.Errorf("endPort %d without port", *p.EndPort)
		}
		return PortMatch{Proto: proto}, namedPort{}, nil
	case p.Port.Type == api.TypeString:
		if p.EndPort != nil {
			return PortMatch{}, namedPort{}, fmt.Errorf("endPort with named port %q", p.Port.StrVal)
		}
		if p.Port.StrVal == "" {
			return PortMatch{}, namedPort{}, fmt.Errorf("empty port name")
		}
		return PortMatch{}, namedPort{name: p.Port.StrVal, proto: proto}, nil
	}
	from := p.Port.IntVal
	to := from
	if p.EndPort != nil {
		to = *p.EndPort
	}
	if from < 1 || from > 65535 || to < from || to > 65535 {
		if p.EndPort != nil {
			return PortMatch{}, namedPort{}, fmt.Errorf("port range %d-%d", from, to)
		}
		return PortMatch{}, namedPort{}, fmt.Errorf("port %d", from)
	}
	return PortMatch{Proto: proto, From: uint16(from), To: uint16(to)}, namedPort{}, nil
}

// peerPortSets fills t.peerPorts: for egress, a named port resolves on each
// destination pod, so each (peer, name) pair is a set of address-port triples.
func (c *compiler) peerPortSets(t *ruleTmpl) {
	if len(t.named) == 0 {
		return
	}
	t.peerPorts = make([][]string, len(t.peers))
	for i, peer := range t.peers {
		t.peerPorts[i] = make([]string, len(t.named))
		for j, np := range t.named {
			t.peerPorts[i][j] = c.addrPortSet(peer, np)
		}
	}
}

// expand appends to rules the Rules t yields on local endpoint l (ingress
// named ports resolve on the endpoint itself).
func (c *compiler) expand(rules []Rule, t *ruleTmpl, l int, dir string) []Rule {
	ports := t.ports
	if dir == ingress && len(t.named) > 0 {
		ports = slices.Clone(ports)
		epPorts := c.in.Endpoints[c.src[l]].Ports
		for _, np := range t.named {
			ports = append(ports, resolve(epPorts, np)...)
		}
	}
	for i, peer := range t.peers {
		switch {
		case t.anyPort:
			rules = append(rules, Rule{Action: t.action, Peers: peer, Origin: t.origin})
			continue
		case len(ports) > 0:
			rules = append(rules, Rule{Action: t.action, Peers: peer, Ports: slices.Clone(ports), Origin: t.origin})
		}
		if dir == egress && t.peerPorts != nil {
			for _, set := range t.peerPorts[i] {
				if set != "" {
					rules = append(rules, Rule{Action: t.action, PeerPorts: set, Origin: t.origin})
				}
			}
		}
	}
	return rules
}

// resolve returns the PortMatches of the container ports named np.name (and,
// unless np.proto is 0, of protocol np.proto).
func resolve(ports []api.NamedPort, np namedPort) []PortMatch {
	var out []PortMatch
	for _, p := range ports {
		if p.Name != np.name || p.Port < 1 || p.Port > 65535 {
			continue
		}
		proto, err := ParseProtocol(p.Protocol)
		if err != nil || (np.proto != 0 && proto != np.proto) {
			continue
		}
		out = append(out, PortMatch{Proto: proto, From: uint16(p.Port), To: uint16(p.Port)})
	}
	return out
}

// dedupe drops NP rules that repeat an earlier one's match: NP rules are a
// union, so the first of equal rules decides and the rest are dead.
func dedupe(rules []Rule) []Rule {
	if len(rules) < 2 {
		return rules
	}
	seen := make(map[string]bool, len(rules))
	out := rules[:0]
	for _, r := range rules {
		k := matchKey(&r)
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, r)
	}
	return out
}

func matchKey(r *Rule) string {
	var b strings.Builder
	b.WriteString(r.Peers)
	b.WriteByte('|')
	b.WriteString(r.PeerPorts)
	b.WriteByte('|')
	if r.Ports == nil {
		b.WriteByte('*')
	}
	for _, p := range r.Ports {
		b.WriteString(p.String())
		b.WriteByte(',')
	}
	return b.String()
}

// podSet declares the set of a pod peer and returns its name.
func (c *compiler) podSet(p podPeer) string {
	desc := p.desc()
	name := setName(SetAddrs, desc)
	if _, ok := c.sets[name]; !ok {
		c.sets[name] = &setDef{kind: SetAddrs, desc: desc, pods: &p}
	}
	return name
}

// cidrSet declares the set of an ipBlock and returns its name, or false
// when a CIDR does not parse. An ipBlock matches addresses of its own
// family only (0.0.0.0/0 is not ::/0), and except prefixes of the other
// family change nothing.
func (c *compiler) cidrSet(cidr string, except []string) (string, bool) {
	base, err := netip.ParsePrefix(cidr)
	if err != nil {
		return "", false
	}
	base = base.Masked()
	ex := make([]netip.Prefix, 0, len(except))
	for _, e := range except {
		p, err := netip.ParsePrefix(e)
		if err != nil {
			return "", false
		}
		ex = append(ex, p.Masked())
	}
	slices.SortFunc(ex, comparePrefix)
	ex = slices.Compact(ex)
	desc := "cidr " + base.String()
	if len(ex) > 0 {
		texts := make([]string, len(ex))
		for i, e := range ex {
			texts[i] = e.String()
		}
		desc += " except " + strings.Join(texts, ",")
	}
	name := setName(SetCIDRs, desc)
	if _, ok := c.sets[name]; !ok {
		c.sets[name] = &setDef{kind: SetCIDRs, desc: desc, prefixes: subtract(base, ex)}
	}
	return name, true
}

// addrPortSet declares the set of named port np on the pods of peer set
// peer ("" = all pods) and returns its name; "" when peer is an ipBlock,
// which has no named ports.
func (c *compiler) addrPortSet(peer string, np namedPort) string {
	var pods *podPeer
	on := "all pods"
	if peer != "" {
		def := c.sets[peer]
		if def.kind != SetAddrs || def.nodes != nil {
			return ""
		}
		pods = def.pods
		on = def.desc
	}
	proto := "any protocol"
	if np.proto != 0 {
		proto = np.proto.String()
	}
	desc := fmt.Sprintf("port %q/%s on %s", np.name, proto, on)
	name := setName(SetAddrPorts, desc)
	if _, ok := c.sets[name]; !ok {
		c.sets[name] = &setDef{kind: SetAddrPorts, desc: desc, pods: pods, port: np}
	}
	return name
}

// materialize computes the elements of every set a rule uses, and returns
// those sets' definitions.
func (c *compiler) materialize(p *Program) map[string]*setDef {
	used := map[string]bool{}
	mark := func(rules []Rule) {
		for i := range rules {
			if rules[i].Peers != "" {
				used[rules[i].Peers] = true
			}
			if rules[i].PeerPorts != "" {
				used[rules[i].PeerPorts] = true
			}
		}
	}
	for i := range p.Endpoints {
		for _, d := range []*Direction{&p.Endpoints[i].Ingress, &p.Endpoints[i].Egress} {
			mark(d.ANP)
			mark(d.NP)
			mark(d.BANP)
		}
	}
	for name := range used {
		def := c.sets[name]
		s := Set{Kind: def.kind, Desc: def.desc}
		switch def.kind {
		case SetCIDRs:
			s.Prefixes = def.prefixes
		case SetAddrs:
			if def.nodes != nil {
				s.Prefixes = nodeAddrsOf(def.nodes, c.in.Nodes)
				break
			}
			s.Prefixes = c.addrs(c.ix.pods(*def.pods))
		case SetAddrPorts:
			s.AddrPorts = c.addrPorts(def)
		}
		p.Sets[name] = s
	}
	defs := make(map[string]*setDef, len(used))
	for name := range used {
		defs[name] = c.sets[name]
	}
	return defs
}

func (c *compiler) addrs(eps []int) []netip.Prefix {
	var out []netip.Prefix
	for _, i := range eps {
		for _, ip := range c.ix.eps[i].IPs {
			out = append(out, onePrefix(ip))
		}
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out)
}

func (c *compiler) addrPorts(def *setDef) []AddrPort {
	eps := c.ix.order
	if def.pods != nil {
		eps = c.ix.pods(*def.pods)
	}
	var out []AddrPort
	for _, i := range eps {
		e := &c.ix.eps[i]
		for _, pm := range resolve(e.Ports, def.port) {
			for _, ip := range e.IPs {
				out = append(out, AddrPort{Addr: ip.Unmap(), Proto: pm.Proto, Port: pm.From})
			}
		}
	}
	slices.SortFunc(out, func(a, b AddrPort) int {
		return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port))
	})
	return slices.Compact(out)
}

// onePrefix returns ip as a one-address prefix of its family (a /32 or a
// /128); an IPv4-mapped IPv6 address counts as IPv4.
func onePrefix(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	return netip.PrefixFrom(ip, ip.BitLen())
}
