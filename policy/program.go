package policy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Protocol is an L4 protocol by its IP protocol number, as nftables matches
// it with `meta l4proto`.
type Protocol uint8

// The protocols a policy port can name.
const (
	TCP  Protocol = 6
	UDP  Protocol = 17
	SCTP Protocol = 132
)

// String returns the Kubernetes spelling: TCP, UDP or SCTP.
func (p Protocol) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	case SCTP:
		return "SCTP"
	}
	return "proto-" + strconv.Itoa(int(p))
}

// ParseProtocol parses a Kubernetes protocol name (case-insensitive); ""
// means TCP, the API default.
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToUpper(s) {
	case "", "TCP":
		return TCP, nil
	case "UDP":
		return UDP, nil
	case "SCTP":
		return SCTP, nil
	}
	return 0, fmt.Errorf("protocol %q: want TCP, UDP or SCTP", s)
}

// Action is what a rule does with the connections it matches.
type Action uint8

// Rule actions. NetworkPolicy rules are all Allow. Pass in the Admin tier
// hands the decision to the NetworkPolicy tier; in the Baseline tier (only
// ClusterNetworkPolicies) it leaves the tier, which allows.
const (
	Allow Action = iota
	Deny
	Pass
)

// String returns Allow, Deny or Pass.
func (a Action) String() string {
	switch a {
	case Allow:
		return "Allow"
	case Deny:
		return "Deny"
	case Pass:
		return "Pass"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// Policy kinds an Origin names. KindQuarantine is no policy: it is the
// deny-everything rule that stands in for a stored policy that does not
// decode or validate (see Quarantine).
const (
	KindANP        = "AdminNetworkPolicy"
	KindNP         = "NetworkPolicy"
	KindBANP       = "BaselineAdminNetworkPolicy"
	KindCNP        = "ClusterNetworkPolicy"
	KindQuarantine = "Quarantine"
)

// Origin says which policy rule a compiled Rule comes from.
type Origin struct {
	// Kind is KindANP, KindNP, KindBANP, KindCNP or KindQuarantine.
	Kind string `json:"kind"`
	// Tier is the tier of a ClusterNetworkPolicy: TierAdmin or TierBaseline.
	Tier string `json:"tier,omitempty"`
	// Namespace is the policy's namespace (NetworkPolicy only).
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Priority is the AdminNetworkPolicy or ClusterNetworkPolicy priority.
	Priority int32 `json:"priority,omitempty"`
	// Direction is "ingress" or "egress".
	Direction string `json:"direction"`
	// Index is the rule's position in the policy's ingress or egress list.
	Index int `json:"index"`
	// RuleName is the name of an admin policy rule, if it has one.
	RuleName string `json:"ruleName,omitempty"`
	// PolicyKind and Reason describe a quarantine (Kind KindQuarantine): the
	// kind of the invalid policy and why it is invalid.
	PolicyKind string `json:"policyKind,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// String names the policy and rule, e.g.
// `NetworkPolicy y/allow-x ingress rule 0` or
// `AdminNetworkPolicy deny-z (priority 10) egress rule 1 "no-z"`.
func (o Origin) String() string {
	var b strings.Builder
	if o.Kind == KindQuarantine {
		// `invalid stored policy NetworkPolicy x/deny-all: <error>`
		b.WriteString("invalid stored policy ")
		b.WriteString(o.PolicyKind)
		b.WriteByte(' ')
		if o.Namespace != "" {
			b.WriteString(o.Namespace)
			b.WriteByte('/')
		}
		b.WriteString(o.Name)
		b.WriteString(": ")
		b.WriteString(o.Reason)
		return b.String()
	}
	b.WriteString(o.Kind)
	b.WriteByte(' ')
	if o.Namespace != "" {
		b.WriteString(o.Namespace)
		b.WriteByte('/')
	}
	b.WriteString(o.Name)
	switch o.Kind {
	case KindANP:
		fmt.Fprintf(&b, " (priority %d)", o.Priority)
	case KindCNP:
		fmt.Fprintf(&b, " (%s tier, priority %d)", o.Tier, o.Priority)
	}
	fmt.Fprintf(&b, " %s rule %d", o.Direction, o.Index)
	if o.RuleName != "" {
		fmt.Fprintf(&b, " %q", o.RuleName)
	}
	return b.String()
}

// PortMatch matches one protocol and an inclusive destination port range.
// From == 0 matches every port of Proto.
type PortMatch struct {
	Proto Protocol `json:"proto"`
	From  uint16   `json:"from,omitempty"`
	To    uint16   `json:"to,omitempty"`
}

// Matches reports whether a packet to port of proto matches m.
func (m PortMatch) Matches(proto Protocol, port uint16) bool {
	if proto != m.Proto {
		return false
	}
	return m.From == 0 || (port >= m.From && port <= m.To)
}

// String renders m as "TCP", "TCP/80" or "TCP/80-90".
func (m PortMatch) String() string {
	switch {
	case m.From == 0:
		return m.Proto.String()
	case m.From == m.To:
		return fmt.Sprintf("%s/%d", m.Proto, m.From)
	}
	return fmt.Sprintf("%s/%d-%d", m.Proto, m.From, m.To)
}

// Rule is one compiled match with its action. A connection matches when its
// peer address is in the set Peers (or Peers is ""), its protocol and
// destination port match one of Ports (or Ports is nil), and, when PeerPorts
// is set, the (destination address, protocol, destination port) triple is in
// that set. The peer is the source for ingress and the destination for egress.
type Rule struct {
	Action Action `json:"action"`
	// Peers names a SetAddrs or SetCIDRs set in Program.Sets; "" is any address.
	Peers string `json:"peers,omitempty"`
	// Ports is nil for every protocol and port; a non-nil list is never empty.
	Ports []PortMatch `json:"ports,omitempty"`
	// PeerPorts names a SetAddrPorts set: egress named ports resolved on each
	// destination pod. Rules with PeerPorts have no Peers and no Ports.
	PeerPorts string `json:"peerPorts,omitempty"`
	Origin    Origin `json:"origin"`
}

// Direction is the compiled policy of one endpoint for one direction,
// evaluated in order: Admin tier rules in ANP (AdminNetworkPolicies and
// Admin ClusterNetworkPolicies; first match wins; Pass skips to the NP
// tier), then, if Isolated, the NP allow rules (any match allows, no match
// denies), then Baseline tier rules in BANP (Baseline ClusterNetworkPolicies
// and BaselineAdminNetworkPolicies; first match wins; Pass allows), then
// allow.
type Direction struct {
	ANP []Rule `json:"anp,omitempty"`
	// Isolated reports whether a NetworkPolicy selects the endpoint for this
	// direction; IsolatedBy lists those policies as "ns/name".
	Isolated   bool     `json:"isolated,omitempty"`
	IsolatedBy []string `json:"isolatedBy,omitempty"`
	NP         []Rule   `json:"np,omitempty"`
	BANP       []Rule   `json:"banp,omitempty"`
}

// Empty reports whether d lets everything through without looking.
func (d *Direction) Empty() bool {
	return len(d.ANP) == 0 && !d.Isolated && len(d.BANP) == 0
}

// EndpointProgram is the compiled policy of one endpoint.
type EndpointProgram struct {
	Namespace string       `json:"namespace"`
	Name      string       `json:"name"`
	Node      string       `json:"node,omitempty"`
	HostIface string       `json:"hostIface,omitempty"`
	IPs       []netip.Addr `json:"ips"`
	// Ingress governs connections to the endpoint, Egress connections from it.
	Ingress Direction `json:"ingress"`
	Egress  Direction `json:"egress"`
}

// Key returns "namespace/name".
func (e *EndpointProgram) Key() string { return e.Namespace + "/" + e.Name }

// SetKind says what a Set holds and so how nftables stores it.
type SetKind uint8

// The kinds of Set.
const (
	// SetAddrs holds pod addresses as /32 prefixes (a hash set in nftables).
	SetAddrs SetKind = iota
	// SetCIDRs holds disjoint prefixes of an ipBlock or network peer (an
	// interval set in nftables).
	SetCIDRs
	// SetAddrPorts holds (address, protocol, port) triples of named ports.
	SetAddrPorts
)

// String returns addrs, cidrs or addrports.
func (k SetKind) String() string {
	switch k {
	case SetAddrs:
		return "addrs"
	case SetCIDRs:
		return "cidrs"
	case SetAddrPorts:
		return "addrports"
	}
	return "SetKind(" + strconv.Itoa(int(k)) + ")"
}

// AddrPort is an element of a SetAddrPorts set.
type AddrPort struct {
	Addr  netip.Addr `json:"addr"`
	Proto Protocol   `json:"proto"`
	Port  uint16     `json:"port"`
}

// String renders a as "10.0.0.1 . TCP . 80".
func (a AddrPort) String() string {
	return fmt.Sprintf("%s . %s . %d", a.Addr, a.Proto, a.Port)
}

// Set is a named set of peers. Its name depends only on Desc (the selector
// that defines it), never on its elements, so endpoint and label churn
// changes elements, not rules.
type Set struct {
	Kind SetKind `json:"kind"`
	// Desc is the canonical selector text, e.g.
	// `pods {app=web} in namespaces {ns=y}`.
	Desc string `json:"desc"`
	// Prefixes are the elements of SetAddrs and SetCIDRs sets: sorted, disjoint.
	Prefixes []netip.Prefix `json:"prefixes,omitempty"`
	// AddrPorts are the elements of SetAddrPorts sets, sorted.
	AddrPorts []AddrPort `json:"addrPorts,omitempty"`
}

// Program is the compiled policy of a set of endpoints: what the trace and
// matrix evaluate and what the nftables applier enforces.
type Program struct {
	// Endpoints are sorted by namespace and name.
	Endpoints []EndpointProgram `json:"endpoints"`
	// Sets holds every set a rule names.
	Sets map[string]Set `json:"sets"`
	// NodeAddrs are the addresses of each node (from Input.Nodes): a host
	// reaches its own endpoints through OUTPUT, which policy never filters.
	NodeAddrs map[string][]netip.Addr `json:"nodeAddrs,omitempty"`
	// Warnings lists parts of policies that were ignored (invalid peers,
	// unknown protocols...): they match nothing.
	Warnings []string `json:"warnings,omitempty"`
	// VXLAN is the overlay's source filter (Input.VXLAN), nil without one.
	VXLAN *VXLANFilter `json:"vxlan,omitempty"`
}
