package policy

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"github.com/skeinnet/skein/api"
)

// Peer is one end of a traced connection: an endpoint by namespace and name,
// or a bare address (an endpoint's address resolves to that endpoint).
type Peer struct {
	Namespace string
	Name      string
	IP        netip.Addr
}

// ParsePeer parses "namespace/name" or an IP address.
func ParsePeer(s string) (Peer, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return Peer{IP: ip}, nil
	}
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return Peer{}, fmt.Errorf("peer %q: want NAMESPACE/NAME or an IP address", s)
	}
	return Peer{Namespace: ns, Name: name}, nil
}

// String returns "ns/name" or the address.
func (p Peer) String() string {
	if p.Name != "" {
		return p.Namespace + "/" + p.Name
	}
	return p.IP.String()
}

// Decision is the outcome of one direction of a connection.
type Decision struct {
	Allowed bool `json:"allowed"`
	// Tier is "quarantine" (an invalid stored policy), "ANP" (the Admin
	// tier: AdminNetworkPolicies and Admin ClusterNetworkPolicies), "NP",
	// "BANP" (the Baseline tier: Baseline ClusterNetworkPolicies and
	// BaselineAdminNetworkPolicies) or "default".
	Tier string `json:"tier"`
	// Origin is the deciding rule; nil for defaults and NP isolation.
	Origin *Origin `json:"origin,omitempty"`
	// Text explains the decision in one line.
	Text string `json:"text"`
}

// Verdict is the outcome of a connection: allowed iff the source's egress and
// the destination's ingress both allow it.
type Verdict struct {
	Allowed bool `json:"allowed"`
	// Rule names the deciding policy and rule (for a denial, the one that
	// denied; for an allowed connection, the rules that allowed it).
	Rule    string    `json:"rule"`
	Egress  *Decision `json:"egress,omitempty"`
	Ingress *Decision `json:"ingress,omitempty"`
	Steps   []string  `json:"steps"`
}

// evaluator evaluates rules against a program's sets, with lookup
// structures built on first use.
type evaluator struct {
	p      *Program
	addrs  map[string]map[netip.Addr]bool
	aports map[string]map[AddrPort]bool
	byIP   map[netip.Addr]*EndpointProgram
	byKey  map[string]*EndpointProgram
}

func newEvaluator(p *Program) *evaluator {
	ev := &evaluator{
		p:      p,
		addrs:  map[string]map[netip.Addr]bool{},
		aports: map[string]map[AddrPort]bool{},
		byIP:   map[netip.Addr]*EndpointProgram{},
		byKey:  map[string]*EndpointProgram{},
	}
	for i := range p.Endpoints {
		ep := &p.Endpoints[i]
		if _, ok := ev.byKey[ep.Key()]; !ok {
			ev.byKey[ep.Key()] = ep
		}
		for _, ip := range ep.IPs {
			if _, ok := ev.byIP[ip]; !ok {
				ev.byIP[ip] = ep
			}
		}
	}
	return ev
}

// inSet reports whether a is in the SetAddrs or SetCIDRs set name.
func (ev *evaluator) inSet(name string, a netip.Addr) bool {
	s := ev.p.Sets[name]
	if s.Kind == SetCIDRs {
		for _, p := range s.Prefixes {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	m, ok := ev.addrs[name]
	if !ok {
		m = make(map[netip.Addr]bool, len(s.Prefixes))
		for _, p := range s.Prefixes {
			m[p.Addr()] = true
		}
		ev.addrs[name] = m
	}
	return m[a]
}

func (ev *evaluator) inPortSet(name string, ap AddrPort) bool {
	m, ok := ev.aports[name]
	if !ok {
		s := ev.p.Sets[name]
		m = make(map[AddrPort]bool, len(s.AddrPorts))
		for _, e := range s.AddrPorts {
			m[e] = true
		}
		ev.aports[name] = m
	}
	return m[ap]
}

// matches reports whether r matches a connection whose peer is peer and
// whose destination is dst, proto, port. It mirrors the nftables rule the
// applier renders from r.
func (ev *evaluator) matches(r *Rule, peer, dst netip.Addr, proto Protocol, port uint16) bool {
	if r.PeerPorts != "" {
		return ev.inPortSet(r.PeerPorts, AddrPort{Addr: dst, Proto: proto, Port: port})
	}
	if r.Peers != "" && !ev.inSet(r.Peers, peer) {
		return false
	}
	if r.Ports == nil {
		return true
	}
	for _, pm := range r.Ports {
		if pm.Matches(proto, port) {
			return true
		}
	}
	return false
}

// direction evaluates d for endpoint ep; peer is the other end.
func (ev *evaluator) direction(ep *EndpointProgram, dir string, d *Direction, peer, dst netip.Addr, proto Protocol, port uint16, steps *[]string) Decision {
	who := ep.Key()
	if d.Empty() {
		text := fmt.Sprintf("no policy selects %s for %s: default allow", who, dir)
		*steps = append(*steps, text)
		return Decision{Allowed: true, Tier: "default", Text: text}
	}
	step := func(f string, args ...any) { *steps = append(*steps, fmt.Sprintf(f, args...)) }
	ruled := func(tier string, r *Rule) Decision {
		o := r.Origin
		return Decision{Allowed: r.Action == Allow, Tier: tier, Origin: &o, Text: fmt.Sprintf("%s: %s", o, r.Action)}
	}
	passed := false
	for i := range d.ANP {
		r := &d.ANP[i]
		if !ev.matches(r, peer, dst, proto, port) {
			continue
		}
		if r.Action == Pass {
			step("%s %s: %s: Pass to the NetworkPolicy tier", who, dir, r.Origin)
			passed = true
			break
		}
		tier := "ANP"
		if r.Origin.Kind == KindQuarantine {
			tier = "quarantine"
		}
		dec := ruled(tier, r)
		step("%s %s: %s", who, dir, dec.Text)
		return dec
	}
	if len(d.ANP) > 0 && !passed {
		step("%s %s: no Admin tier rule matches", who, dir)
	}
	if d.Isolated {
		for i := range d.NP {
			r := &d.NP[i]
			if ev.matches(r, peer, dst, proto, port) {
				dec := ruled("NP", r)
				step("%s %s: %s", who, dir, dec.Text)
				return dec
			}
		}
		text := fmt.Sprintf("%s is isolated for %s by NetworkPolicy %s and no rule allows it: Deny", who, dir, strings.Join(d.IsolatedBy, ", "))
		step("%s", text)
		return Decision{Tier: "NP", Text: text}
	}
	for i := range d.BANP {
		r := &d.BANP[i]
		if !ev.matches(r, peer, dst, proto, port) {
			continue
		}
		if r.Action == Pass {
			// Only a Baseline ClusterNetworkPolicy can pass here: there is
			// no tier after this one, so the default decides.
			o := r.Origin
			text := fmt.Sprintf("%s: Pass out of the Baseline tier: default allow", o)
			step("%s %s: %s", who, dir, text)
			return Decision{Allowed: true, Tier: "BANP", Origin: &o, Text: text}
		}
		dec := ruled("BANP", r)
		step("%s %s: %s", who, dir, dec.Text)
		return dec
	}
	text := fmt.Sprintf("no rule matches %s %s: default allow", who, dir)
	step("%s", text)
	return Decision{Allowed: true, Tier: "default", Text: text}
}

// end is a resolved Peer.
type end struct {
	ep   *EndpointProgram // nil for an address outside the program
	addr netip.Addr
	name string
}

// resolve resolves p; a named endpoint by its address of family (4 or 6).
func (ev *evaluator) resolve(p Peer, family int) (end, error) {
	if p.Name != "" {
		ep, ok := ev.byKey[p.Namespace+"/"+p.Name]
		if !ok {
			return end{}, fmt.Errorf("endpoint %s not found", p)
		}
		a := firstOf(ep.IPs, family)
		if !a.IsValid() {
			return end{}, fmt.Errorf("endpoint %s has no IPv%d address", p, family)
		}
		return end{ep: ep, addr: a, name: ep.Key()}, nil
	}
	if !p.IP.IsValid() {
		return end{}, errors.New("empty peer")
	}
	a := p.IP.Unmap()
	if ep, ok := ev.byIP[a]; ok {
		return end{ep: ep, addr: a, name: ep.Key()}, nil
	}
	return end{addr: a, name: a.String()}, nil
}

// firstOf returns the first address of family (4 or 6) in ips.
func firstOf(ips []netip.Addr, family int) netip.Addr {
	for _, ip := range ips {
		if ip = ip.Unmap(); familyOf(ip) == family {
			return ip
		}
	}
	return netip.Addr{}
}

func familyOf(a netip.Addr) int {
	if a.Unmap().Is4() {
		return 4
	}
	return 6
}

// Trace decides whether from may open a connection to to on port and
// protocol proto (TCP, UDP or SCTP), evaluating the source's egress (if it is
// an endpoint of p) and the destination's ingress (likewise), and names the
// deciding rule. Traffic from an endpoint to itself is always allowed. A
// named endpoint stands for its address of the other peer's family when
// that is an address, else for its IPv4 address (TraceFamily chooses).
func Trace(p *Program, from, to Peer, port int, proto string) (Verdict, error) {
	return TraceFamily(p, 0, from, to, port, proto)
}

// TraceFamily is Trace over IPv4 (family 4) or IPv6 (6): named endpoints
// stand for their address of that family, and an address peer must be of
// it. Family 0 takes the family of an address peer, else IPv4.
func TraceFamily(p *Program, family int, from, to Peer, port int, proto string) (Verdict, error) {
	pr, err := ParseProtocol(proto)
	if err != nil {
		return Verdict{}, err
	}
	if port < 1 || port > 65535 {
		return Verdict{}, fmt.Errorf("port %d: want 1-65535", port)
	}
	for _, x := range []struct {
		what string
		p    Peer
	}{{"from", from}, {"to", to}} {
		if x.p.Name != "" || !x.p.IP.IsValid() {
			continue
		}
		switch f := familyOf(x.p.IP); {
		case family == 0:
			family = f
		case family != f:
			return Verdict{}, fmt.Errorf("%s: %s is not an IPv%d address", x.what, x.p.IP, family)
		}
	}
	switch family {
	case 0:
		family = 4
	case 4, 6:
	default:
		return Verdict{}, fmt.Errorf("address family %d: want 4 or 6", family)
	}
	ev := newEvaluator(p)
	src, err := ev.resolve(from, family)
	if err != nil {
		return Verdict{}, fmt.Errorf("from: %w", err)
	}
	dst, err := ev.resolve(to, family)
	if err != nil {
		return Verdict{}, fmt.Errorf("to: %w", err)
	}
	return ev.trace(src, dst, pr, uint16(port)), nil
}

func (ev *evaluator) trace(src, dst end, proto Protocol, port uint16) Verdict {
	var v Verdict
	if (src.ep != nil && src.ep == dst.ep) || src.addr == dst.addr {
		text := fmt.Sprintf("traffic from %s to itself is always allowed", src.name)
		return Verdict{Allowed: true, Rule: text, Steps: []string{text}}
	}
	if src.ep == nil && dst.ep != nil && slices.Contains(ev.p.NodeAddrs[dst.ep.Node], src.addr) {
		text := fmt.Sprintf("traffic to %s from its own node %s is always allowed", dst.name, dst.ep.Node)
		return Verdict{Allowed: true, Rule: text, Steps: []string{text}}
	}
	if dst.ep == nil && src.ep != nil && slices.Contains(ev.p.NodeAddrs[src.ep.Node], dst.addr) {
		text := fmt.Sprintf("traffic from %s to its own node %s is always allowed", src.name, src.ep.Node)
		return Verdict{Allowed: true, Rule: text, Steps: []string{text}}
	}
	if src.ep != nil {
		d := ev.direction(src.ep, egress, &src.ep.Egress, dst.addr, dst.addr, proto, port, &v.Steps)
		v.Egress = &d
		if !d.Allowed {
			v.Rule = d.Text
			return v
		}
	} else {
		v.Steps = append(v.Steps, fmt.Sprintf("%s is not an endpoint: no egress policy", src.name))
	}
	if dst.ep != nil {
		d := ev.direction(dst.ep, ingress, &dst.ep.Ingress, src.addr, dst.addr, proto, port, &v.Steps)
		v.Ingress = &d
		if !d.Allowed {
			v.Rule = d.Text
			return v
		}
	} else {
		v.Steps = append(v.Steps, fmt.Sprintf("%s is not an endpoint: no ingress policy", dst.name))
	}
	v.Allowed = true
	var texts []string
	for _, d := range []*Decision{v.Egress, v.Ingress} {
		if d != nil && d.Tier != "default" {
			texts = append(texts, d.Text)
		}
	}
	switch {
	case len(texts) > 0:
		v.Rule = strings.Join(texts, "; ")
	case v.Ingress != nil:
		v.Rule = v.Ingress.Text
	case v.Egress != nil:
		v.Rule = v.Egress.Text
	default:
		v.Rule = "neither end is an endpoint: no policy applies"
	}
	return v
}

// Cell is one entry of a reachability matrix: the type the /ui's matrix
// view and `skein policy matrix -o json` share.
type Cell = api.MatrixCell

// Matrix traces every ordered pair of p's endpoints (itself included) on
// every port and protocol, in order: protocol, port, from, to, over IPv4.
func Matrix(p *Program, ports []int, protos []string) ([]Cell, error) {
	return MatrixFamily(p, 4, ports, protos)
}

// MatrixFamily is Matrix over IPv4 (family 4) or IPv6 (6): each endpoint
// stands for its address of that family; endpoints without one are left
// out.
func MatrixFamily(p *Program, family int, ports []int, protos []string) ([]Cell, error) {
	if family != 4 && family != 6 {
		return nil, fmt.Errorf("address family %d: want 4 or 6", family)
	}
	prs := make([]Protocol, len(protos))
	for i, s := range protos {
		pr, err := ParseProtocol(s)
		if err != nil {
			return nil, err
		}
		prs[i] = pr
	}
	for _, port := range ports {
		if port < 1 || port > 65535 {
			return nil, fmt.Errorf("port %d: want 1-65535", port)
		}
	}
	ev := newEvaluator(p)
	var ends []end
	for i := range p.Endpoints {
		ep := &p.Endpoints[i]
		if a := firstOf(ep.IPs, family); a.IsValid() {
			ends = append(ends, end{ep: ep, addr: a, name: ep.Key()})
		}
	}
	cells := make([]Cell, 0, len(prs)*len(ports)*len(ends)*len(ends))
	for _, pr := range prs {
		for _, port := range ports {
			for _, src := range ends {
				for _, dst := range ends {
					v := ev.trace(src, dst, pr, uint16(port))
					c := Cell{From: src.name, To: dst.name, Port: port, Protocol: pr.String(), Allowed: v.Allowed, Rule: v.Rule}
					if family == 6 {
						c.Family = 6
					}
					cells = append(cells, c)
				}
			}
		}
	}
	return cells, nil
}

// WriteTruthTable prints cells as upstream e2e truth tables: one table per
// protocol and port, rows are sources, columns destinations, "." allowed and
// "X" denied.
func WriteTruthTable(w io.Writer, cells []Cell) error {
	type key struct {
		proto  string
		port   int
		family int
	}
	var keys []key
	tables := map[key]map[[2]string]bool{}
	var names []string
	seen := map[string]bool{}
	for _, c := range cells {
		k := key{c.Protocol, c.Port, c.Family}
		if tables[k] == nil {
			tables[k] = map[[2]string]bool{}
			keys = append(keys, k)
		}
		tables[k][[2]string{c.From, c.To}] = c.Allowed
		for _, n := range []string{c.From, c.To} {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s/%d", k.proto, k.port)
		if k.family == 6 {
			b.WriteString(" over IPv6")
		}
		b.WriteString("\n-")
		for _, n := range names {
			b.WriteString("\t" + n)
		}
		b.WriteByte('\n')
		for _, from := range names {
			b.WriteString(from)
			for _, to := range names {
				mark := "?"
				if allowed, ok := tables[k][[2]string{from, to}]; ok {
					mark = "X"
					if allowed {
						mark = "."
					}
				}
				b.WriteString("\t" + mark)
			}
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
