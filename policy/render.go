package policy

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Names of the fixed objects in table inet skein.
const (
	TableName       = "skein"
	EgressDispatch  = "egress_dispatch"
	IngressDispatch = "ingress_dispatch"
	// EndpointAddrs maps interface . source address of every container
	// here to a verdict: anti-spoofing (a source not in it is dropped) and
	// the untrack decision's first half in one lookup (an endpoint no
	// policy selects goes to UntrackChain, a selected one is accepted, so
	// conntrack sees it).
	EndpointAddrs = "ep_addrs"
	// TrackedAddrs holds the addresses of this host's endpoints that some
	// policy selects: only their traffic needs connection tracking.
	TrackedAddrs = "tracked_addrs"
	// PodCIDRSet holds the cluster's pod pools (see Ruleset.PodCIDRs); the
	// rules match a family's single pool inline and use the set only when
	// the family has none or several.
	PodCIDRSet = "pod_cidrs"
	// UntrackChain decides, before conntrack, whether a packet from a
	// container here that no policy selects skips it; UntrackInChain does
	// the same for other packets to a pod address.
	UntrackChain   = "untrack"
	UntrackInChain = "untrack_in"
	// HostIfacePrefix starts every Skein host veth name ("sk" + 11 hex).
	HostIfacePrefix = "sk"
	// HostIfaceLen is the length of a Skein host veth name.
	HostIfaceLen = 13
	// DevicePrefix starts Skein's other devices (skein.vxlan): the
	// anti-spoofing drop of HostIfacePrefix names leaves them out.
	DevicePrefix = "skein."

	// The IPv6 twins of the fixed sets and chains, in the table only when
	// the ruleset has IPv6 (Ruleset.IPv6).
	EndpointAddrs6  = "ep_addrs6"
	TrackedAddrs6   = "tracked_addrs6"
	PodCIDRSet6     = "pod_cidrs6"
	UntrackChain6   = "untrack6"
	UntrackInChain6 = "untrack6_in"
	// NATargets6 holds interface . IPv6 address of every container here, as
	// a plain set: the neighbor advertisement check needs membership, which
	// the verdict map EndpointAddrs6 cannot answer.
	NATargets6 = "na_targets6"
	// Prerouting6Chain takes every IPv6 packet from the prerouting hook;
	// FromPod6Chain every IPv6 packet from a container.
	Prerouting6Chain = "prerouting6"
	FromPod6Chain    = "from_pod6"
	// Spoof6Chain and Router6Chain log and drop what FromPod6Chain refuses:
	// a foreign source or neighbor advertisement target; router
	// advertisements, redirects and DHCPv6 server replies.
	Spoof6Chain  = "spoof6_drop"
	Router6Chain = "router6_drop"
	// v6SetSuffix names the IPv6 twin of a peer set.
	v6SetSuffix = "_v6"
)

// V6SetName returns the name of the IPv6 twin of peer set name: nftables
// sets hold one address family, so each peer set of an IPv6 ruleset is two.
func V6SetName(name string) string { return name + v6SetSuffix }

// maxComment caps rule comments, as nft does.
const maxComment = 128

// Verdict kinds of rendered rules.
const (
	VerdictReturn = "return"
	VerdictDrop   = "drop"
	VerdictGoto   = "goto"
	// VerdictLog is a rule without a verdict: it logs what it matches to
	// DropLogGroup, rate-limited, and the next rule (the drop) decides. A
	// limit that did not match would make a drop rule not match, so the log
	// is a rule of its own.
	VerdictLog = "log"
)

// DropLogGroup is the NFLOG group policy and anti-spoofing drops are logged
// to; the log prefix is the name of the rule that drops (Origin.String()).
const DropLogGroup = 27

// Per-endpoint log rate: each policed endpoint address (the destination of
// an ingress drop, the source of an egress or anti-spoofing drop) has its
// own limit in the dynamic set DropLogSet, so one noisy endpoint cannot use
// up another's log lines. The set is bounded: at most dropLogSetSize
// addresses, each forgotten dropLogSetTimeout after its last logged drop
// (an address the full set has no room for is not logged; its packets
// are still dropped).
const (
	dropLogRate  = 10
	dropLogBurst = 20
	// DropLogSet and DropLogSet6 are the dynamic sets of per-endpoint log
	// limits, by IPv4 and IPv6 address.
	DropLogSet        = "drop_log"
	DropLogSet6       = "drop_log6"
	dropLogSetSize    = 65536
	dropLogSetTimeout = time.Minute
	// maxLogPrefix is nft's log prefix limit (128 with the NUL).
	maxLogPrefix = 127
)

// SpoofLogPrefix names the anti-spoofing drop in the drop log.
const SpoofLogPrefix = "anti-spoofing: " + spoofComment

// IsolatedLogPrefix starts the log prefix of an isolation drop: the agent
// puts "<endpoint> is " before it to get the text `policy trace` prints.
const IsolatedLogPrefix = "isolated for "

// logRule is the log rule that goes before drop rule r; prefix names the
// rule as `policy trace` does.
func logRule(r NFTRule, prefix string) NFTRule {
	l := r
	l.Verdict, l.Target = VerdictLog, ""
	l.Comment = logPrefix(prefix)
	return l
}

// dropLogText renders a log rule's limit and log, keyed by the policed
// endpoint: the source (bySource) or the destination, of an IPv6 packet
// (v6) or an IPv4 one.
func dropLogText(bySource, v6 bool, prefix string) string {
	key := "daddr"
	if bySource {
		key = "saddr"
	}
	family, ip, set := "ipv4", "ip", DropLogSet
	if v6 {
		family, ip, set = "ipv6", "ip6", DropLogSet6
	}
	return fmt.Sprintf("meta nfproto %s update @%s { %s %s limit rate %d/second burst %d packets } log prefix %q group %d",
		family, set, ip, key, dropLogRate, dropLogBurst, prefix, DropLogGroup)
}

func logPrefix(s string) string {
	if len(s) <= maxLogPrefix {
		return s
	}
	return s[:maxLogPrefix-3] + "..."
}

// NFTRule is one rule of an endpoint chain. It matches a connection when
// every field that is set matches; the fields render to, in order:
//
//	meta nfproto ipv4|ipv6                       (Set or PortSet != "")
//	ip|ip6 saddr|daddr @Set                      (Set != "")
//	ip|ip6 daddr . meta l4proto . th dport @PortSet  (PortSet != "")
//	meta l4proto Proto                           (Proto != 0)
//	th dport From-To                             (From != 0)
//	Verdict [Target]
type NFTRule struct {
	// Saddr says whether Set matches the source (ingress) or destination.
	Saddr bool
	// V6 says Set and PortSet are IPv6 sets, matched against IPv6
	// packets; otherwise they are IPv4 sets. Rules without sets match both.
	V6      bool
	Set     string
	PortSet string
	Proto   Protocol
	From    uint16
	To      uint16
	Verdict string
	// Target is the chain of a goto verdict.
	Target  string
	Comment string
}

// String renders r in nft syntax.
func (r NFTRule) String() string {
	var parts []string
	ip := "ip"
	if r.V6 {
		ip = "ip6"
	}
	if r.Set != "" {
		dir := "daddr"
		if r.Saddr {
			dir = "saddr"
		}
		parts = append(parts, ip+" "+dir+" @"+r.Set)
	}
	if r.PortSet != "" {
		parts = append(parts, ip+" daddr . meta l4proto . th dport @"+r.PortSet)
	}
	if r.Proto != 0 {
		parts = append(parts, "meta l4proto "+strings.ToLower(r.Proto.String()))
	}
	switch {
	case r.From == 0:
	case r.From == r.To:
		parts = append(parts, fmt.Sprintf("th dport %d", r.From))
	default:
		parts = append(parts, fmt.Sprintf("th dport %d-%d", r.From, r.To))
	}
	v := r.Verdict
	if r.Target != "" {
		v += " " + r.Target
	}
	if r.Verdict == VerdictLog {
		v = dropLogText(!r.Saddr, r.V6, r.Comment)
	}
	parts = append(parts, v)
	if r.Comment != "" && r.Verdict != VerdictLog {
		parts = append(parts, fmt.Sprintf("comment %q", r.Comment))
	}
	return strings.Join(parts, " ")
}

// NFTChain is a regular chain of endpoint rules. Its name is a hash of its
// rules, so endpoints with equal rules share it and a chain's content never
// changes under its name.
type NFTChain struct {
	Name  string
	Rules []NFTRule
}

// NFTSet is a named set of peers, of one address family.
type NFTSet struct {
	Name string
	Kind SetKind
	// V6 says the set holds IPv6 addresses (it is the twin of a peer set;
	// see V6SetName), IPv4 otherwise.
	V6        bool
	Comment   string
	Prefixes  []netip.Prefix
	AddrPorts []AddrPort
}

// IfaceAddr is an element of the anti-spoofing maps (ep_addrs for IPv4,
// ep_addrs6 for IPv6): an address a host interface's container may send
// from.
type IfaceAddr struct {
	Iface string
	Addr  netip.Addr
	// Tracked: a policy selects the endpoint, so its packets are accepted
	// into conntrack instead of going to the untrack chain. Flipping it is
	// an element change (delete and add in one batch).
	Tracked bool
}

// Ruleset is the content of table inet skein for a Program: what the applier
// writes, besides the fixed base chains.
type Ruleset struct {
	// NoDropLog: the log rules are left out (WithoutDropLog).
	NoDropLog bool
	Sets      []NFTSet   // sorted by name
	Chains    []NFTChain // sorted by name
	// EgressDispatch and IngressDispatch map a host interface to the chain
	// of its egress (traffic from the container) and ingress.
	EgressDispatch  map[string]string
	IngressDispatch map[string]string
	// Addrs are the anti-spoofing elements, sorted.
	Addrs []IfaceAddr
	// VXLAN is the overlay source filter (an input chain), nil without one.
	VXLAN *VXLANFilter
	// Tracked are the addresses of the endpoints that have a dispatch
	// entry (some policy selects them), sorted (IPv4 first): conntrack
	// follows every packet to or from them.
	Tracked []netip.Addr
	// IPv6 says the table handles IPv6: peer sets have IPv6 twins, rules
	// that match addresses come in both families, and the IPv6 base chains
	// (anti-spoofing, untrack) exist. Without it every IPv6 packet from a
	// container is dropped as spoofed, and an isolated endpoint receives
	// IPv6 only through rules that match any address. A cluster without
	// IPv6 addresses so pays nothing for it.
	IPv6 bool
	// PodCIDRs are the cluster's pod pools, which the applier's config
	// supplies (Render leaves them empty). TCP between two pod addresses
	// neither of which is in Tracked skips conntrack; none tracks all.
	PodCIDRs []netip.Prefix
}

// Render turns p into the Ruleset that enforces it. Endpoints without a host
// interface (not attached on this host) are skipped. The ruleset has IPv6
// (Ruleset.IPv6) iff p has an IPv6 address anywhere: in an endpoint or in a
// set.
func Render(p *Program) *Ruleset { return render(p, false) }

// render is Render; ipv6 forces IPv6 on (the cluster has an IPv6 pool).
func render(p *Program, ipv6 bool) *Ruleset {
	rs := &Ruleset{EgressDispatch: map[string]string{}, IngressDispatch: map[string]string{}, VXLAN: p.VXLAN}
	rs.IPv6 = ipv6 || hasIPv6(p)
	chains := map[string]NFTChain{}
	used := map[string]bool{}
	for i := range p.Endpoints {
		ep := &p.Endpoints[i]
		if ep.HostIface == "" {
			continue
		}
		first := len(rs.Addrs)
		for _, ip := range ep.IPs {
			rs.Addrs = append(rs.Addrs, IfaceAddr{Iface: ep.HostIface, Addr: ip.Unmap()})
		}
		selected := false
		if c := renderDirection(&ep.Ingress, "in", true, rs.IPv6, chains, used); c != "" {
			rs.IngressDispatch[ep.HostIface] = c
			selected = true
		}
		if c := renderDirection(&ep.Egress, "out", false, rs.IPv6, chains, used); c != "" {
			rs.EgressDispatch[ep.HostIface] = c
			selected = true
		}
		if selected {
			for _, ip := range ep.IPs {
				rs.Tracked = append(rs.Tracked, ip.Unmap())
			}
			for i := first; i < len(rs.Addrs); i++ {
				rs.Addrs[i].Tracked = true
			}
		}
	}
	slices.SortFunc(rs.Tracked, netip.Addr.Compare)
	rs.Tracked = slices.Compact(rs.Tracked)
	for _, name := range slices.Sorted(maps.Keys(chains)) {
		rs.Chains = append(rs.Chains, chains[name])
	}
	for _, name := range slices.Sorted(maps.Keys(used)) {
		s := p.Sets[name]
		v4 := NFTSet{Name: name, Kind: s.Kind, Comment: truncate(s.Desc), Prefixes: s.Prefixes, AddrPorts: s.AddrPorts}
		if !rs.IPv6 {
			rs.Sets = append(rs.Sets, v4)
			continue
		}
		// Prefixes and AddrPorts are sorted with IPv4 first.
		n4 := slices.IndexFunc(s.Prefixes, func(p netip.Prefix) bool { return !p.Addr().Is4() })
		if n4 < 0 {
			n4 = len(s.Prefixes)
		}
		a4 := slices.IndexFunc(s.AddrPorts, func(a AddrPort) bool { return !a.Addr.Is4() })
		if a4 < 0 {
			a4 = len(s.AddrPorts)
		}
		v6 := v4
		v4.Prefixes, v4.AddrPorts = nilIfEmpty(s.Prefixes[:n4:n4]), nilIfEmpty(s.AddrPorts[:a4:a4])
		v6.Name, v6.V6 = V6SetName(name), true
		v6.Prefixes, v6.AddrPorts = nilIfEmpty(s.Prefixes[n4:]), nilIfEmpty(s.AddrPorts[a4:])
		rs.Sets = append(rs.Sets, v4, v6)
	}
	slices.SortFunc(rs.Addrs, func(a, b IfaceAddr) int {
		return cmp.Or(strings.Compare(a.Iface, b.Iface), a.Addr.Compare(b.Addr))
	})
	return rs
}

// ofFamily returns the elements of l whose address is IPv6 (v6) or IPv4.
func ofFamily[E any](l []E, v6 bool, addr func(E) netip.Addr) []E {
	var out []E
	for _, e := range l {
		if addr(e).Is6() == v6 {
			out = append(out, e)
		}
	}
	return out
}

func addrOf(a netip.Addr) netip.Addr         { return a }
func ifaceAddrOf(ia IfaceAddr) netip.Addr    { return ia.Addr }
func prefixAddrOf(p netip.Prefix) netip.Addr { return p.Addr() }

func nilIfEmpty[E any](l []E) []E {
	if len(l) == 0 {
		return nil
	}
	return l
}

// hasIPv6 reports whether p holds an IPv6 address: an endpoint's, or an
// element of a set a rule uses.
func hasIPv6(p *Program) bool {
	for i := range p.Endpoints {
		for _, ip := range p.Endpoints[i].IPs {
			if ip.Is6() && !ip.Is4In6() {
				return true
			}
		}
	}
	for _, s := range p.Sets {
		// Sorted with IPv4 first: the last element tells.
		if n := len(s.Prefixes); n > 0 && s.Prefixes[n-1].Addr().Is6() {
			return true
		}
		if n := len(s.AddrPorts); n > 0 && s.AddrPorts[n-1].Addr.Is6() {
			return true
		}
	}
	return false
}

// renderDirection adds the chains of d to chains and returns the entry
// chain's name, or "" when d lets everything through. With ipv6, rules
// that match addresses come twice: for IPv4 and for IPv6.
func renderDirection(d *Direction, prefix string, saddr, ipv6 bool, chains map[string]NFTChain, used map[string]bool) string {
	if d.Empty() {
		return ""
	}
	// The tail chain: the NetworkPolicy tier and, for endpoints it does not
	// isolate, the baseline tier. Falling off its end returns: allow.
	var tail []NFTRule
	if d.Isolated {
		tail = renderRules(tail, d.NP, saddr, ipv6, "", used)
		// Saddr (no set to match) says which end the log limit is keyed by.
		drop := NFTRule{Saddr: saddr, Verdict: VerdictDrop, Comment: truncate("isolated by NetworkPolicy " + strings.Join(d.IsolatedBy, ", "))}
		dir := egress
		if saddr {
			dir = ingress
		}
		// The text of policy.Eval's isolation decision, less "<who> is ".
		prefix := fmt.Sprintf("%s%s by NetworkPolicy %s and no rule allows it: %s", IsolatedLogPrefix, dir, strings.Join(d.IsolatedBy, ", "), Deny)
		tail = appendRule(tail, drop, prefix, ipv6)
	} else {
		tail = renderRules(tail, d.BANP, saddr, ipv6, "", used)
	}
	tailName := addChain(chains, prefix, tail)
	if len(d.ANP) == 0 {
		return tailName
	}
	head := renderRules(nil, d.ANP, saddr, ipv6, tailName, used)
	if tailName != "" {
		head = append(head, NFTRule{Verdict: VerdictGoto, Target: tailName})
	}
	return addChain(chains, prefix, head)
}

// renderRules appends the nft rules of rules: one per port match, and with
// ipv6 one more per port match of a rule that matches addresses. Pass goes
// to the tail chain, or returns when there is none.
func renderRules(out []NFTRule, rules []Rule, saddr, ipv6 bool, tail string, used map[string]bool) []NFTRule {
	for i := range rules {
		r := &rules[i]
		base := NFTRule{Saddr: saddr, Set: r.Peers, PortSet: r.PeerPorts, Comment: truncate(r.Origin.String())}
		// The text of policy.Eval's decision for r.
		prefix := fmt.Sprintf("%s: %s", r.Origin, r.Action)
		switch r.Action {
		case Allow:
			base.Verdict = VerdictReturn
		case Deny:
			base.Verdict = VerdictDrop
		case Pass:
			base.Verdict = VerdictReturn
			if tail != "" {
				base.Verdict, base.Target = VerdictGoto, tail
			}
		}
		if r.Peers != "" {
			used[r.Peers] = true
		}
		if r.PeerPorts != "" {
			used[r.PeerPorts] = true
		}
		if r.Ports == nil {
			out = appendRule(out, base, prefix, ipv6)
			continue
		}
		for _, pm := range r.Ports {
			nr := base
			nr.Proto, nr.From, nr.To = pm.Proto, pm.From, pm.To
			out = appendRule(out, nr, prefix, ipv6)
		}
	}
	return out
}

// appendRule appends r, after its log rule when r drops; with ipv6 and sets
// in r, its IPv6 twin follows. A drop without sets matches both families:
// with ipv6 it gets a second log rule, keyed by the IPv6 address.
func appendRule(out []NFTRule, r NFTRule, prefix string, ipv6 bool) []NFTRule {
	generic := r.Set == "" && r.PortSet == ""
	if r.Verdict == VerdictDrop {
		out = append(out, logRule(r, prefix))
		if ipv6 && generic {
			l := logRule(r, prefix)
			l.V6 = true
			out = append(out, l)
		}
	}
	out = append(out, r)
	if !ipv6 || generic {
		return out
	}
	r.V6 = true
	if r.Set != "" {
		r.Set = V6SetName(r.Set)
	}
	if r.PortSet != "" {
		r.PortSet = V6SetName(r.PortSet)
	}
	return appendRule(out, r, prefix, false)
}

// addChain adds a chain of rules named after its content and returns the
// name; "" for no rules.
func addChain(chains map[string]NFTChain, prefix string, rules []NFTRule) string {
	if len(rules) == 0 {
		return ""
	}
	h := sha256.New()
	for _, r := range rules {
		h.Write([]byte(r.String()))
		h.Write([]byte{'\n'})
	}
	name := prefix + "-" + hex.EncodeToString(h.Sum(nil)[:8])
	chains[name] = NFTChain{Name: name, Rules: rules}
	return name
}

func truncate(s string) string {
	if len(s) <= maxComment {
		return s
	}
	return s[:maxComment-3] + "..."
}

// ChainCount returns the number of chains of rs's table: the endpoint
// chains, prerouting, forward, the two untrack chains, the IPv6 base chains
// and the VXLAN filter's input and output.
func (rs *Ruleset) ChainCount() int {
	n := len(rs.Chains) + 4
	if rs.IPv6 {
		n += len(base6Chains(rs.PodCIDRs))
	}
	if rs.VXLAN != nil {
		n += 2
	}
	return n
}

// Structure returns the part of rs that only a table rebuild can change:
// set declarations and chains. Two rulesets with equal structures differ at
// most in elements (of sets, dispatch maps and the anti-spoofing set).
func (rs *Ruleset) Structure() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ipv6 %v\n%s %v\n", rs.IPv6, PodCIDRSet, rs.PodCIDRs)
	for _, s := range rs.Sets {
		fmt.Fprintf(&b, "set %s %s\n", s.Name, s.Kind)
	}
	for _, c := range rs.Chains {
		fmt.Fprintf(&b, "chain %s\n", c.Name)
		for _, r := range c.Rules {
			b.WriteString("\t" + r.String() + "\n")
		}
	}
	return b.String()
}

// WithoutDropLog takes the log rules out of rs (skeind --drop-log=false).
// The chains keep their names: they only need to be unique.
func (rs *Ruleset) WithoutDropLog() {
	rs.NoDropLog = true
	for i := range rs.Chains {
		rs.Chains[i].Rules = slices.DeleteFunc(slices.Clone(rs.Chains[i].Rules), func(r NFTRule) bool { return r.Verdict == VerdictLog })
	}
}

// Counts returns the number of sets (the peer sets and the six fixed
// ones, eleven with IPv6, two more with the VXLAN filter), rules (in all
// chains, the base chains included) and elements.
func (rs *Ruleset) Counts() (sets, rules, elements int) {
	sets = len(rs.Sets) + 6 // the fixed ones, drop_log included
	rules = len(baseForward) + len(basePrerouting(rs.PodCIDRs)) + 2*len(untrackRules(rs.PodCIDRs, false, false))
	if rs.NoDropLog {
		rules-- // the anti-spoofing log rule
	}
	if rs.IPv6 {
		sets += 5 // endpoint, tracked and pod addresses, NA targets, drop_log6
		rules++   // prerouting6Goto
		for _, c := range base6Chains(rs.PodCIDRs) {
			rules += len(c.rules)
			if rs.NoDropLog && (c.name == Spoof6Chain || c.name == Router6Chain) {
				rules-- // their log rule
			}
		}
	}
	if v := rs.VXLAN; v != nil {
		// vxlan_peers and vxlan_peers6; an input rule per family, the
		// notrack rules of prerouting and output.
		sets += 2
		rules += 4
		elements += len(v.Peers)
	}
	for _, c := range rs.Chains {
		rules += len(c.Rules)
	}
	elements += len(rs.Addrs) + len(ofFamily(rs.Addrs, true, ifaceAddrOf)) + len(rs.EgressDispatch) + len(rs.IngressDispatch) + len(rs.Tracked) + len(rs.PodCIDRs)
	for _, s := range rs.Sets {
		elements += len(s.Prefixes) + len(s.AddrPorts)
	}
	return sets, rules, elements
}

// Router6LogPrefix names the drop of router messages from containers in the
// drop log.
const Router6LogPrefix = "anti-spoofing: " + router6Comment

const (
	router6Comment = "no router advertisements, redirects or DHCPv6 server replies from containers"
	spoofComment   = "a Skein container sends only from its own addresses"
	vxlanComment   = "VXLAN only from cluster nodes"
	untrackComment = "TCP between pods no policy selects here skips conntrack"
	pickupComment  = "TCP of a connection conntrack did not see open: older than its pod's policy"
	// VXLANPeers is the set of underlay addresses VXLAN is accepted from.
	VXLANPeers = "vxlan_peers"
	// VXLANPeers6 is its twin for IPv6 underlays.
	VXLANPeers6 = "vxlan_peers6"
)

// The fixed base chains, in nft syntax (the applier builds the same rules).
//
// Conntrack costs every packet it sees, so only traffic that a policy
// applies to is tracked. Before conntrack (raw priority), a packet from a
// container is looked up once in the verdict map ep_addrs by interface and
// source: no entry drops it (anti-spoofing), a selected endpoint's entry
// accepts it (tracked), and an unselected one's goes to the untrack chain,
// which marks TCP to another pod address `notrack` unless the destination
// is a selected endpoint here. Other packets to a pod address (from the
// overlay) go to untrack_in, which checks the source is a pod address and
// the destination unselected. So an unselected pod's packet pays one map
// lookup, a masked compare and one set lookup; a selected pod's, the map
// lookup and conntrack. Every other packet (UDP, ICMP, traffic to or from
// outside the pod pools, which NAT may need, and traffic to this host: its
// VTEP address is in a pool, and a stateful host firewall must see its
// connections) stays tracked. A TCP connection that was untracked when its
// pod became selected is picked up mid-stream by conntrack (tcp_loose): its
// first packets are new but not SYNs, and the forward chain accepts TCP
// without SYN before any policy, since such a packet cannot open a
// connection. So a connection established before a deny keeps working, as
// when everything was tracked.

// fromPodMatch matches a packet from a container's host veth (and not from
// one of Skein's own devices).
const fromPodMatch = `iifname "` + HostIfacePrefix + `*" iifname != "` + DevicePrefix + `*"`

// poolMatch renders the test of a packet's source (saddr) or destination
// address against the family's pod pools: an inline masked compare when the
// family has one pool (no set lookup), else a lookup in the pool set (which
// is empty, so nothing is untracked, without pools).
func poolMatch(pools []netip.Prefix, v6, saddr, not bool) string {
	fam, dir, set := "ip", "daddr", PodCIDRSet
	if v6 {
		fam, set = "ip6", PodCIDRSet6
	}
	if saddr {
		dir = "saddr"
	}
	op := ""
	if not {
		op = "!= "
	}
	if p, ok := singlePool(pools, v6); ok {
		return fam + " " + dir + " " + op + p.String()
	}
	return fam + " " + dir + " " + op + "@" + set
}

// singlePool returns the family's pool when it has exactly one.
func singlePool(pools []netip.Prefix, v6 bool) (netip.Prefix, bool) {
	var one netip.Prefix
	n := 0
	for _, p := range pools {
		if p.Addr().Is6() == v6 {
			one = p
			n++
		}
	}
	return one, n == 1
}

// basePrerouting is the IPv4 part of the prerouting chain.
func basePrerouting(pools []netip.Prefix) []string {
	return []string{
		fromPodMatch + " iifname . ip saddr vmap @" + EndpointAddrs,
		fromPodMatch + " " + dropLogText(true, false, SpoofLogPrefix),
		fromPodMatch + ` counter drop comment "` + spoofComment + `"`,
		poolMatch(pools, false, false, false) + " goto " + UntrackInChain,
	}
}

// untrackRules are the rules of the untrack chains of a family: in (other
// packets to a pod address) checks the source, out (from an unselected
// container here) the destination.
func untrackRules(pools []netip.Prefix, v6, in bool) []string {
	fam, tracked := "ip", TrackedAddrs
	if v6 {
		fam, tracked = "ip6", TrackedAddrs6
	}
	return []string{
		"meta l4proto != tcp return",
		poolMatch(pools, v6, in, true) + " return",
		fam + " daddr @" + tracked + " return",
		"fib daddr type local return",
		`notrack comment "` + untrackComment + `"`,
	}
}

// prerouting6Goto starts the prerouting chain of an IPv6 ruleset.
const prerouting6Goto = "meta nfproto ipv6 goto " + Prerouting6Chain

// base6Chain is a regular chain an IPv6 ruleset adds.
type base6Chain struct {
	name  string
	rules []string
}

// base6Chains are the regular chains an IPv6 ruleset adds. A container
// may send from its own addresses and from link-local ones (which never
// leave the veth: the host does not forward them), and from :: only
// duplicate address detection (a neighbor solicitation) and MLD reports.
// It may not act as a router (router advertisements, redirects, DHCPv6
// server replies) nor advertise a neighbor address that is not its own
// or link-local (which would steal another pod's traffic on the host).
func base6Chains(pools []netip.Prefix) []base6Chain {
	return []base6Chain{
		{Prerouting6Chain, []string{
			fromPodMatch + " goto " + FromPod6Chain,
			poolMatch(pools, true, false, false) + " goto " + UntrackInChain6,
		}},
		{FromPod6Chain, []string{
			"icmpv6 type nd-router-advert goto " + Router6Chain,
			"icmpv6 type nd-redirect goto " + Router6Chain,
			"udp sport 547 goto " + Router6Chain,
			"icmpv6 type nd-neighbor-advert icmpv6 taddr != fe80::/10 iifname . icmpv6 taddr != @" + NATargets6 + " goto " + Spoof6Chain,
			"iifname . ip6 saddr vmap @" + EndpointAddrs6,
			"ip6 saddr fe80::/10 return",
			"ip6 saddr :: icmpv6 type nd-neighbor-solicit return",
			"ip6 saddr :: icmpv6 type mld2-listener-report return",
			"goto " + Spoof6Chain,
		}},
		{Spoof6Chain, []string{
			dropLogText(true, true, SpoofLogPrefix),
			`counter drop comment "` + spoofComment + `"`,
		}},
		{Router6Chain, []string{
			dropLogText(true, true, Router6LogPrefix),
			`counter drop comment "` + router6Comment + `"`,
		}},
		{UntrackChain6, untrackRules(pools, true, false)},
		{UntrackInChain6, untrackRules(pools, true, true)},
	}
}

var (
	baseForward = []string{
		"ct state established,related,untracked accept",
		`tcp flags ! syn accept comment "` + pickupComment + `"`,
		"ct state invalid drop",
		"iifname vmap @" + EgressDispatch,
		"oifname vmap @" + IngressDispatch,
	}
)

// String renders rs as an nft ruleset listing (for goldens and debugging).
func (rs *Ruleset) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", TableName)
	for _, s := range rs.Sets {
		fmt.Fprintf(&b, "\tset %s {\n\t\tcomment %q\n", s.Name, s.Comment)
		addr := "ipv4_addr"
		if s.V6 {
			addr = "ipv6_addr"
		}
		var elems []string
		switch s.Kind {
		case SetAddrs:
			b.WriteString("\t\ttype " + addr + "\n")
			for _, p := range s.Prefixes {
				elems = append(elems, p.Addr().String())
			}
		case SetCIDRs:
			b.WriteString("\t\ttype " + addr + "\n\t\tflags interval\n")
			for _, p := range s.Prefixes {
				elems = append(elems, p.String())
			}
		case SetAddrPorts:
			b.WriteString("\t\ttype " + addr + " . inet_proto . inet_service\n")
			for _, e := range s.AddrPorts {
				elems = append(elems, fmt.Sprintf("%s . %s . %d", e.Addr, strings.ToLower(e.Proto.String()), e.Port))
			}
		}
		writeElements(&b, elems)
		b.WriteString("\t}\n")
	}
	var elems []string
	for _, v6 := range []bool{false, true} {
		if v6 && !rs.IPv6 {
			break
		}
		name, addr, untrack := EndpointAddrs, "ipv4_addr", UntrackChain
		if v6 {
			name, addr, untrack = EndpointAddrs6, "ipv6_addr", UntrackChain6
		}
		b.WriteString("\tmap " + name + " {\n\t\ttype ifname . " + addr + " : verdict\n")
		elems = elems[:0]
		var targets []string
		for _, a := range rs.Addrs {
			if a.Addr.Is6() == v6 {
				verdict := "goto " + untrack
				if a.Tracked {
					verdict = "accept"
				}
				elems = append(elems, fmt.Sprintf("%q . %s : %s", a.Iface, a.Addr, verdict))
				targets = append(targets, fmt.Sprintf("%q . %s", a.Iface, a.Addr))
			}
		}
		writeElements(&b, elems)
		b.WriteString("\t}\n")
		if v6 {
			b.WriteString("\tset " + NATargets6 + " {\n\t\ttype ifname . " + addr + "\n")
			writeElements(&b, targets)
			b.WriteString("\t}\n")
		}
	}
	for _, m := range []struct {
		name string
		m    map[string]string
	}{{EgressDispatch, rs.EgressDispatch}, {IngressDispatch, rs.IngressDispatch}} {
		b.WriteString("\tmap " + m.name + " {\n\t\ttype ifname : verdict\n")
		elems = elems[:0]
		for _, iface := range slices.Sorted(maps.Keys(m.m)) {
			elems = append(elems, fmt.Sprintf("%q : jump %s", iface, m.m[iface]))
		}
		writeElements(&b, elems)
		b.WriteString("\t}\n")
	}
	for _, v6 := range []bool{false, true} {
		if v6 && !rs.IPv6 {
			break
		}
		tracked, pods, addr := TrackedAddrs, PodCIDRSet, "ipv4_addr"
		if v6 {
			tracked, pods, addr = TrackedAddrs6, PodCIDRSet6, "ipv6_addr"
		}
		b.WriteString("\tset " + tracked + " {\n\t\ttype " + addr + "\n")
		elems = elems[:0]
		for _, a := range rs.Tracked {
			if a.Is6() == v6 {
				elems = append(elems, a.String())
			}
		}
		writeElements(&b, elems)
		b.WriteString("\t}\n\tset " + pods + " {\n\t\ttype " + addr + "\n\t\tflags interval\n")
		elems = elems[:0]
		for _, p := range rs.PodCIDRs {
			if p.Addr().Is6() == v6 {
				elems = append(elems, p.String())
			}
		}
		writeElements(&b, elems)
		b.WriteString("\t}\n")
	}
	writeChain := func(head string, rules []string) {
		b.WriteString(head)
		for _, r := range rules {
			b.WriteString("\t\t" + r + "\n")
		}
		b.WriteString("\t}\n")
	}
	pre := basePrerouting(rs.PodCIDRs)
	if rs.IPv6 {
		pre = append([]string{prerouting6Goto}, pre...)
	}
	if v := rs.VXLAN; v != nil {
		pre = append(slices.Clip(pre), vxlanNotrack(v.Port))
	}
	writeChain("\tchain prerouting {\n\t\ttype filter hook prerouting priority raw; policy accept;\n", pre)
	writeChain("\tchain "+UntrackChain+" {\n", untrackRules(rs.PodCIDRs, false, false))
	writeChain("\tchain "+UntrackInChain+" {\n", untrackRules(rs.PodCIDRs, false, true))
	if rs.IPv6 {
		for _, c := range base6Chains(rs.PodCIDRs) {
			writeChain("\tchain "+c.name+" {\n", c.rules)
		}
	}
	writeChain("\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n", baseForward)
	if v := rs.VXLAN; v != nil {
		var peers []string
		for _, a := range v.Peers {
			peers = append(peers, a.String())
		}
		var peers6 []string
		for _, a := range v.Peers {
			if a.Is6() {
				peers6 = append(peers6, a.String())
			}
		}
		peers = slices.DeleteFunc(peers, func(s string) bool { return strings.Contains(s, ":") })
		fmt.Fprintf(&b, "\tset %s {\n\t\ttype ipv4_addr\n", VXLANPeers)
		writeElements(&b, peers)
		fmt.Fprintf(&b, "\t}\n\tset %s {\n\t\ttype ipv6_addr\n", VXLANPeers6)
		writeElements(&b, peers6)
		fmt.Fprintf(&b, "\t}\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\tudp dport %d ip saddr != @%s counter drop comment %q\n\t\tudp dport %d ip6 saddr != @%s counter drop comment %q\n\t}\n", v.Port, VXLANPeers, vxlanComment, v.Port, VXLANPeers6, vxlanComment)
		writeChain("\tchain output {\n\t\ttype filter hook output priority raw; policy accept;\n", []string{vxlanNotrack(v.Port)})
	}
	for _, c := range rs.Chains {
		b.WriteString("\tchain " + c.Name + " {\n")
		for _, r := range c.Rules {
			b.WriteString("\t\t" + r.String() + "\n")
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// vxlanNotrack is the rule that keeps the overlay's underlay packets, in
// (prerouting) and out (output), out of conntrack: nothing matches their
// state, and the inner packets are tracked or not on their own.
func vxlanNotrack(port uint16) string {
	return fmt.Sprintf("udp dport %d notrack", port)
}

func writeElements(b *strings.Builder, elems []string) {
	if len(elems) == 0 {
		return
	}
	b.WriteString("\t\telements = { ")
	b.WriteString(strings.Join(elems, ",\n\t\t\t     "))
	b.WriteString(" }\n")
}

// TableDiff turns the table of one Ruleset into another's in place.
// Chains are named after their content, so a chain is either kept as it is,
// added or deleted, never edited; sets keep their name for life and only
// their elements change.
type TableDiff struct {
	// AddSets are new sets, with their elements.
	AddSets []NFTSet
	// AddChains are new chains, with their rules.
	AddChains []NFTChain
	// DelChains are chains to delete, those that goto others first.
	DelChains []string
	// DelSets are sets no rule uses any more (deleted after the chains).
	DelSets []string
	// Element changes of kept sets (SetAddrs and SetAddrPorts only: the
	// elements of a CIDR set follow from its name), by set name.
	AddAddrs, DelAddrs         map[string][]netip.Addr
	AddAddrPorts, DelAddrPorts map[string][]AddrPort
	// Anti-spoofing changes.
	AddIfaceAddrs, DelIfaceAddrs []IfaceAddr
	// Changes of the tracked endpoint addresses: an endpoint becoming
	// selected or unselected is an element change, never a rebuild.
	AddTracked, DelTracked []netip.Addr
	// Dispatch changes: a changed target is a delete plus an add.
	AddEgress, DelEgress   map[string]string
	AddIngress, DelIngress map[string]string
	// VXLAN source filter peers (element changes of set vxlan_peers).
	AddVXLANPeers, DelVXLANPeers []netip.Addr
}

// Structural reports whether d adds or deletes sets or chains.
func (d *TableDiff) Structural() bool {
	return len(d.AddSets)+len(d.AddChains)+len(d.DelChains)+len(d.DelSets) > 0
}

// Len returns the number of operations in d: one per set or chain added or
// deleted, one per element added or deleted.
func (d *TableDiff) Len() int {
	n := len(d.AddSets) + len(d.AddChains) + len(d.DelChains) + len(d.DelSets)
	n += len(d.AddIfaceAddrs) + len(d.DelIfaceAddrs) + len(d.AddEgress) + len(d.DelEgress) + len(d.AddIngress) + len(d.DelIngress)
	n += len(d.AddVXLANPeers) + len(d.DelVXLANPeers) + len(d.AddTracked) + len(d.DelTracked)
	for _, m := range []map[string][]netip.Addr{d.AddAddrs, d.DelAddrs} {
		for _, v := range m {
			n += len(v)
		}
	}
	for _, m := range []map[string][]AddrPort{d.AddAddrPorts, d.DelAddrPorts} {
		for _, v := range m {
			n += len(v)
		}
	}
	return n
}

// DiffRulesets returns the changes from have to want.
func DiffRulesets(have, want *Ruleset) *TableDiff {
	d := &TableDiff{
		AddAddrs: map[string][]netip.Addr{}, DelAddrs: map[string][]netip.Addr{},
		AddAddrPorts: map[string][]AddrPort{}, DelAddrPorts: map[string][]AddrPort{},
	}
	haveSets := map[string]*NFTSet{}
	for i := range have.Sets {
		haveSets[have.Sets[i].Name] = &have.Sets[i]
	}
	wantSets := map[string]bool{}
	for i := range want.Sets {
		w := &want.Sets[i]
		wantSets[w.Name] = true
		h := haveSets[w.Name]
		switch {
		case h == nil:
			d.AddSets = append(d.AddSets, *w)
		case w.Kind == SetAddrs:
			add, del := diffSlices(addrsOf(h.Prefixes), addrsOf(w.Prefixes))
			if len(add) > 0 {
				d.AddAddrs[w.Name] = add
			}
			if len(del) > 0 {
				d.DelAddrs[w.Name] = del
			}
		case w.Kind == SetAddrPorts:
			add, del := diffSlices(h.AddrPorts, w.AddrPorts)
			if len(add) > 0 {
				d.AddAddrPorts[w.Name] = add
			}
			if len(del) > 0 {
				d.DelAddrPorts[w.Name] = del
			}
		}
	}
	for _, h := range have.Sets {
		if !wantSets[h.Name] {
			d.DelSets = append(d.DelSets, h.Name)
		}
	}

	haveChains := map[string]bool{}
	for _, c := range have.Chains {
		haveChains[c.Name] = true
	}
	wantChains := map[string]bool{}
	for _, c := range want.Chains {
		wantChains[c.Name] = true
		if !haveChains[c.Name] {
			d.AddChains = append(d.AddChains, c)
		}
	}
	// A chain cannot go while a rule still jumps to it: delete the chains
	// nothing (else deleted) jumps to first, the targets of goto rules after.
	targets := map[string]bool{}
	for _, c := range have.Chains {
		for _, r := range c.Rules {
			if r.Target != "" {
				targets[r.Target] = true
			}
		}
	}
	var later []string
	for _, c := range have.Chains {
		switch {
		case wantChains[c.Name]:
		case targets[c.Name]:
			later = append(later, c.Name)
		default:
			d.DelChains = append(d.DelChains, c.Name)
		}
	}
	d.DelChains = append(d.DelChains, later...)

	d.AddIfaceAddrs, d.DelIfaceAddrs = diffSlices(have.Addrs, want.Addrs)
	d.AddTracked, d.DelTracked = diffSlices(have.Tracked, want.Tracked)
	d.AddEgress, d.DelEgress = diffMaps(have.EgressDispatch, want.EgressDispatch)
	d.AddIngress, d.DelIngress = diffMaps(have.IngressDispatch, want.IngressDispatch)
	return d
}

func addrsOf(ps []netip.Prefix) []netip.Addr {
	out := make([]netip.Addr, len(ps))
	for i, p := range ps {
		out[i] = p.Addr()
	}
	return out
}

// diffSlices returns the elements of want missing from have, and those of
// have missing from want, in order.
func diffSlices[T comparable](have, want []T) (add, del []T) {
	h := make(map[T]bool, len(have))
	for _, v := range have {
		h[v] = true
	}
	w := make(map[T]bool, len(want))
	for _, v := range want {
		w[v] = true
		if !h[v] {
			add = append(add, v)
		}
	}
	for _, v := range have {
		if !w[v] {
			del = append(del, v)
		}
	}
	return add, del
}

func diffMaps(have, want map[string]string) (add, del map[string]string) {
	add, del = map[string]string{}, map[string]string{}
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			add[k] = v
			if ok {
				del[k] = hv
			}
		}
	}
	for k, v := range have {
		if _, ok := want[k]; !ok {
			del[k] = v
		}
	}
	return add, del
}

// elementDiff turns a sequence of set changes into the element operations
// that take rs there: an element's last change decides whether it should be
// in its set, and only elements whose presence differs from rs are touched.
// Sets rs does not hold (used by no rendered endpoint) are skipped.
func elementDiff(rs *Ruleset, chs []SetChanges) *TableDiff {
	addrs := map[string]map[netip.Addr]bool{}
	ports := map[string]map[AddrPort]bool{}
	want := func(m map[string][]netip.Prefix, in bool) {
		for set, l := range m {
			for _, p := range l {
				name := familySet(set, p.Addr())
				if addrs[name] == nil {
					addrs[name] = map[netip.Addr]bool{}
				}
				addrs[name][p.Addr()] = in
			}
		}
	}
	wantPorts := func(m map[string][]AddrPort, in bool) {
		for set, l := range m {
			for _, ap := range l {
				name := familySet(set, ap.Addr)
				if ports[name] == nil {
					ports[name] = map[AddrPort]bool{}
				}
				ports[name][ap] = in
			}
		}
	}
	vxlan := map[netip.Addr]bool{}
	for _, ch := range chs {
		want(ch.DelPrefixes, false)
		want(ch.AddPrefixes, true)
		wantPorts(ch.DelPorts, false)
		wantPorts(ch.AddPorts, true)
		for _, a := range ch.DelVXLAN {
			vxlan[a] = false
		}
		for _, a := range ch.AddVXLAN {
			vxlan[a] = true
		}
	}
	d := &TableDiff{}
	if rs.VXLAN != nil {
		for _, a := range slices.SortedFunc(maps.Keys(vxlan), netip.Addr.Compare) {
			_, has := slices.BinarySearchFunc(rs.VXLAN.Peers, a, netip.Addr.Compare)
			switch in := vxlan[a]; {
			case in && !has:
				d.AddVXLANPeers = append(d.AddVXLANPeers, a)
			case !in && has:
				d.DelVXLANPeers = append(d.DelVXLANPeers, a)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(addrs)) {
		s := rs.set(name)
		if s == nil || s.Kind != SetAddrs {
			continue
		}
		for _, a := range slices.SortedFunc(maps.Keys(addrs[name]), netip.Addr.Compare) {
			p := onePrefix(a)
			_, has := slices.BinarySearchFunc(s.Prefixes, p, comparePrefix)
			switch in := addrs[name][a]; {
			case in && !has:
				putElem(&d.AddAddrs, name, a)
			case !in && has:
				putElem(&d.DelAddrs, name, a)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(ports)) {
		s := rs.set(name)
		if s == nil || s.Kind != SetAddrPorts {
			continue
		}
		for _, ap := range slices.SortedFunc(maps.Keys(ports[name]), compareAddrPort) {
			_, has := slices.BinarySearchFunc(s.AddrPorts, ap, compareAddrPort)
			switch in := ports[name][ap]; {
			case in && !has:
				putElem(&d.AddAddrPorts, name, ap)
			case !in && has:
				putElem(&d.DelAddrPorts, name, ap)
			}
		}
	}
	return d
}

// familySet returns the nftables set of peer set name that holds a: the
// set itself for IPv4, its IPv6 twin for IPv6.
func familySet(name string, a netip.Addr) string {
	if a.Is6() {
		return V6SetName(name)
	}
	return name
}

// changesHaveIPv6 reports whether chs add an IPv6 address to a set.
func changesHaveIPv6(chs []SetChanges) bool {
	for _, ch := range chs {
		for _, l := range ch.AddPrefixes {
			for _, p := range l {
				if p.Addr().Is6() {
					return true
				}
			}
		}
		for _, l := range ch.AddPorts {
			for _, ap := range l {
				if ap.Addr.Is6() {
					return true
				}
			}
		}
	}
	return false
}

func putElem[E any](m *map[string][]E, name string, e E) {
	if *m == nil {
		*m = map[string][]E{}
	}
	(*m)[name] = append((*m)[name], e)
}

// set returns the set named name, nil if rs has none.
func (rs *Ruleset) set(name string) *NFTSet {
	i, ok := slices.BinarySearchFunc(rs.Sets, name, func(s NFTSet, n string) int { return strings.Compare(s.Name, n) })
	if !ok {
		return nil
	}
	return &rs.Sets[i]
}

// moveElements applies d's element changes to rs's sets (rs then describes
// the table after d).
func (rs *Ruleset) moveElements(d *TableDiff) {
	if rs.VXLAN != nil && len(d.AddVXLANPeers)+len(d.DelVXLANPeers) > 0 {
		// A new filter: the old one may be shared with a Program.
		rs.VXLAN = &VXLANFilter{Port: rs.VXLAN.Port, Peers: moveSorted(rs.VXLAN.Peers, d.AddVXLANPeers, d.DelVXLANPeers, netip.Addr.Compare)}
		if rs.VXLAN.Peers == nil {
			rs.VXLAN.Peers = []netip.Addr{}
		}
	}
	prefixes := func(l []netip.Addr) []netip.Prefix {
		out := make([]netip.Prefix, len(l))
		for i, a := range l {
			out[i] = onePrefix(a)
		}
		return out
	}
	names := map[string]bool{}
	for _, m := range []map[string][]netip.Addr{d.AddAddrs, d.DelAddrs} {
		for n := range m {
			names[n] = true
		}
	}
	for n := range names {
		s := rs.set(n)
		s.Prefixes = moveSorted(s.Prefixes, prefixes(d.AddAddrs[n]), prefixes(d.DelAddrs[n]), comparePrefix)
	}
	clear(names)
	for _, m := range []map[string][]AddrPort{d.AddAddrPorts, d.DelAddrPorts} {
		for n := range m {
			names[n] = true
		}
	}
	for n := range names {
		s := rs.set(n)
		s.AddrPorts = moveSorted(s.AddrPorts, d.AddAddrPorts[n], d.DelAddrPorts[n], compareAddrPort)
	}
}
