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
	EndpointAddrs   = "ep_addrs"
	// TrackedAddrs holds the addresses of this host's endpoints that some
	// policy selects: only their traffic needs connection tracking.
	TrackedAddrs = "tracked_addrs"
	// PodCIDRSet holds the cluster's pod pools (see Ruleset.PodCIDRs).
	PodCIDRSet = "pod_cidrs"
	// UntrackChain decides, before conntrack, which packets skip it.
	UntrackChain = "untrack"
	// HostIfacePrefix starts every Skein host veth name ("sk" + 11 hex).
	HostIfacePrefix = "sk"
	// HostIfaceLen is the length of a Skein host veth name.
	HostIfaceLen = 13
	// DevicePrefix starts Skein's other devices (skein.vxlan): the
	// anti-spoofing drop of HostIfacePrefix names leaves them out.
	DevicePrefix = "skein."
)

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
	// DropLogSet is the dynamic set of per-endpoint log limits.
	DropLogSet        = "drop_log"
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
// endpoint: the source (bySource) or the destination.
func dropLogText(bySource bool, prefix string) string {
	key := "daddr"
	if bySource {
		key = "saddr"
	}
	return fmt.Sprintf("meta nfproto ipv4 update @%s { ip %s limit rate %d/second burst %d packets } log prefix %q group %d",
		DropLogSet, key, dropLogRate, dropLogBurst, prefix, DropLogGroup)
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
//	meta nfproto ipv4
//	ip saddr|daddr @Set                          (Set != "")
//	ip daddr . meta l4proto . th dport @PortSet  (PortSet != "")
//	meta l4proto Proto                           (Proto != 0)
//	th dport From-To                             (From != 0)
//	Verdict [Target]
type NFTRule struct {
	// Saddr says whether Set matches the source (ingress) or destination.
	Saddr   bool
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
	if r.Set != "" {
		dir := "daddr"
		if r.Saddr {
			dir = "saddr"
		}
		parts = append(parts, "ip "+dir+" @"+r.Set)
	}
	if r.PortSet != "" {
		parts = append(parts, "ip daddr . meta l4proto . th dport @"+r.PortSet)
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
		v = dropLogText(!r.Saddr, r.Comment)
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

// NFTSet is a named set of peers.
type NFTSet struct {
	Name      string
	Kind      SetKind
	Comment   string
	Prefixes  []netip.Prefix
	AddrPorts []AddrPort
}

// IfaceAddr is an element of the anti-spoofing set: an address a host
// interface's container may send from.
type IfaceAddr struct {
	Iface string
	Addr  netip.Addr
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
	// Tracked are the IPv4 addresses of the endpoints that have a dispatch
	// entry (some policy selects them), sorted: conntrack follows every
	// packet to or from them.
	Tracked []netip.Addr
	// PodCIDRs are the cluster's pod pools, which the applier's config
	// supplies (Render leaves them empty). TCP between two pod addresses
	// neither of which is in Tracked skips conntrack; none tracks all.
	PodCIDRs []netip.Prefix
}

// Render turns p into the Ruleset that enforces it. Endpoints without a host
// interface (not attached on this host) are skipped.
func Render(p *Program) *Ruleset {
	rs := &Ruleset{EgressDispatch: map[string]string{}, IngressDispatch: map[string]string{}, VXLAN: p.VXLAN}
	chains := map[string]NFTChain{}
	used := map[string]bool{}
	for i := range p.Endpoints {
		ep := &p.Endpoints[i]
		if ep.HostIface == "" {
			continue
		}
		for _, ip := range ep.IPs {
			if ip.Is4() {
				rs.Addrs = append(rs.Addrs, IfaceAddr{Iface: ep.HostIface, Addr: ip})
			}
		}
		selected := false
		if c := renderDirection(&ep.Ingress, "in", true, chains, used); c != "" {
			rs.IngressDispatch[ep.HostIface] = c
			selected = true
		}
		if c := renderDirection(&ep.Egress, "out", false, chains, used); c != "" {
			rs.EgressDispatch[ep.HostIface] = c
			selected = true
		}
		if selected {
			for _, ip := range ep.IPs {
				if ip.Is4() {
					rs.Tracked = append(rs.Tracked, ip)
				}
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
		rs.Sets = append(rs.Sets, NFTSet{Name: name, Kind: s.Kind, Comment: truncate(s.Desc), Prefixes: s.Prefixes, AddrPorts: s.AddrPorts})
	}
	slices.SortFunc(rs.Addrs, func(a, b IfaceAddr) int {
		return cmp.Or(strings.Compare(a.Iface, b.Iface), a.Addr.Compare(b.Addr))
	})
	return rs
}

// renderDirection adds the chains of d to chains and returns the entry
// chain's name, or "" when d lets everything through.
func renderDirection(d *Direction, prefix string, saddr bool, chains map[string]NFTChain, used map[string]bool) string {
	if d.Empty() {
		return ""
	}
	// The tail chain: the NetworkPolicy tier and, for endpoints it does not
	// isolate, the baseline tier. Falling off its end returns: allow.
	var tail []NFTRule
	if d.Isolated {
		tail = renderRules(tail, d.NP, saddr, "", used)
		// Saddr (no set to match) says which end the log limit is keyed by.
		drop := NFTRule{Saddr: saddr, Verdict: VerdictDrop, Comment: truncate("isolated by NetworkPolicy " + strings.Join(d.IsolatedBy, ", "))}
		dir := egress
		if saddr {
			dir = ingress
		}
		// The text of policy.Eval's isolation decision, less "<who> is ".
		prefix := fmt.Sprintf("%s%s by NetworkPolicy %s and no rule allows it: %s", IsolatedLogPrefix, dir, strings.Join(d.IsolatedBy, ", "), Deny)
		tail = append(tail, logRule(drop, prefix), drop)
	} else {
		tail = renderRules(tail, d.BANP, saddr, "", used)
	}
	tailName := addChain(chains, prefix, tail)
	if len(d.ANP) == 0 {
		return tailName
	}
	head := renderRules(nil, d.ANP, saddr, tailName, used)
	if tailName != "" {
		head = append(head, NFTRule{Verdict: VerdictGoto, Target: tailName})
	}
	return addChain(chains, prefix, head)
}

// renderRules appends the nft rules of rules: one per port match. Pass goes
// to the tail chain, or returns when there is none.
func renderRules(out []NFTRule, rules []Rule, saddr bool, tail string, used map[string]bool) []NFTRule {
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
			out = appendRule(out, base, prefix)
			continue
		}
		for _, pm := range r.Ports {
			nr := base
			nr.Proto, nr.From, nr.To = pm.Proto, pm.From, pm.To
			out = appendRule(out, nr, prefix)
		}
	}
	return out
}

// appendRule appends r, after its log rule when r drops.
func appendRule(out []NFTRule, r NFTRule, prefix string) []NFTRule {
	if r.Verdict == VerdictDrop {
		out = append(out, logRule(r, prefix))
	}
	return append(out, r)
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

// Structure returns the part of rs that only a table rebuild can change:
// set declarations and chains. Two rulesets with equal structures differ at
// most in elements (of sets, dispatch maps and the anti-spoofing set).
func (rs *Ruleset) Structure() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %v\n", PodCIDRSet, rs.PodCIDRs)
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
// ones), rules (in all chains, the base chains included) and elements.
func (rs *Ruleset) Counts() (sets, rules, elements int) {
	sets = len(rs.Sets) + 6 // the fixed ones, drop_log included
	rules = len(baseForward) + len(basePrerouting) + len(untrackRules)
	if rs.NoDropLog {
		rules-- // the anti-spoofing log rule
	}
	for _, c := range rs.Chains {
		rules += len(c.Rules)
	}
	elements = len(rs.Addrs) + len(rs.EgressDispatch) + len(rs.IngressDispatch) + len(rs.Tracked) + len(rs.PodCIDRs)
	for _, s := range rs.Sets {
		elements += len(s.Prefixes) + len(s.AddrPorts)
	}
	return sets, rules, elements
}

const (
	spoofComment   = "a Skein container sends only from its own addresses"
	vxlanComment   = "VXLAN only from cluster nodes"
	untrackComment = "TCP between pods no policy selects here skips conntrack"
	pickupComment  = "TCP of a connection conntrack did not see open: older than its pod's policy"
	// VXLANPeers is the set of underlay addresses VXLAN is accepted from.
	VXLANPeers = "vxlan_peers"
)

// The fixed base chains, in nft syntax (the applier builds the same rules).
//
// Conntrack costs every packet it sees, so only traffic that a policy
// applies to is tracked: the untrack chain, at raw priority (before
// conntrack), marks TCP between two pod addresses `notrack` unless one of
// them is a selected endpoint here. Every other packet (UDP, ICMP, traffic
// to or from outside the pod pools, which NAT may need, and traffic to this
// host: its VTEP address is in a pool, and a stateful host firewall must see
// its connections) stays tracked. A TCP
// connection that was untracked when its pod became selected is picked up
// mid-stream by conntrack (tcp_loose): its first packets are new but not
// SYNs, and the forward chain accepts TCP without SYN before any policy,
// since such a packet cannot open a connection. So a connection
// established before a deny keeps working, as when everything was tracked.
var (
	basePrerouting = []string{
		"meta nfproto ipv4 iifname . ip saddr @" + EndpointAddrs + " goto " + UntrackChain,
		`iifname "` + HostIfacePrefix + `*" iifname != "` + DevicePrefix + `*" ` + dropLogText(true, SpoofLogPrefix),
		`iifname "` + HostIfacePrefix + `*" iifname != "` + DevicePrefix + `*" counter drop comment "` + spoofComment + `"`,
		"meta nfproto ipv4 ip daddr @" + PodCIDRSet + " goto " + UntrackChain,
	}
	untrackRules = []string{
		"meta l4proto != tcp return",
		"ip saddr != @" + PodCIDRSet + " return",
		"ip daddr != @" + PodCIDRSet + " return",
		"ip saddr @" + TrackedAddrs + " return",
		"ip daddr @" + TrackedAddrs + " return",
		"fib daddr type local return",
		`notrack comment "` + untrackComment + `"`,
	}
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
		var elems []string
		switch s.Kind {
		case SetAddrs:
			b.WriteString("\t\ttype ipv4_addr\n")
			for _, p := range s.Prefixes {
				elems = append(elems, p.Addr().String())
			}
		case SetCIDRs:
			b.WriteString("\t\ttype ipv4_addr\n\t\tflags interval\n")
			for _, p := range s.Prefixes {
				elems = append(elems, p.String())
			}
		case SetAddrPorts:
			b.WriteString("\t\ttype ipv4_addr . inet_proto . inet_service\n")
			for _, e := range s.AddrPorts {
				elems = append(elems, fmt.Sprintf("%s . %s . %d", e.Addr, strings.ToLower(e.Proto.String()), e.Port))
			}
		}
		writeElements(&b, elems)
		b.WriteString("\t}\n")
	}
	b.WriteString("\tset " + EndpointAddrs + " {\n\t\ttype ifname . ipv4_addr\n")
	var elems []string
	for _, a := range rs.Addrs {
		elems = append(elems, fmt.Sprintf("%q . %s", a.Iface, a.Addr))
	}
	writeElements(&b, elems)
	b.WriteString("\t}\n")
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
	b.WriteString("\tset " + TrackedAddrs + " {\n\t\ttype ipv4_addr\n")
	elems = elems[:0]
	for _, a := range rs.Tracked {
		elems = append(elems, a.String())
	}
	writeElements(&b, elems)
	b.WriteString("\t}\n\tset " + PodCIDRSet + " {\n\t\ttype ipv4_addr\n\t\tflags interval\n")
	elems = elems[:0]
	for _, p := range rs.PodCIDRs {
		elems = append(elems, p.String())
	}
	writeElements(&b, elems)
	b.WriteString("\t}\n")
	writeChain := func(head string, rules []string) {
		b.WriteString(head)
		for _, r := range rules {
			b.WriteString("\t\t" + r + "\n")
		}
		b.WriteString("\t}\n")
	}
	pre := basePrerouting
	if v := rs.VXLAN; v != nil {
		pre = append(slices.Clip(pre), vxlanNotrack(v.Port))
	}
	writeChain("\tchain prerouting {\n\t\ttype filter hook prerouting priority raw; policy accept;\n", pre)
	writeChain("\tchain "+UntrackChain+" {\n", untrackRules)
	writeChain("\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n", baseForward)
	if v := rs.VXLAN; v != nil {
		var peers []string
		for _, a := range v.Peers {
			peers = append(peers, a.String())
		}
		fmt.Fprintf(&b, "\tset %s {\n\t\ttype ipv4_addr\n", VXLANPeers)
		writeElements(&b, peers)
		fmt.Fprintf(&b, "\t}\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\tudp dport %d ip saddr != @%s counter drop comment %q\n\t}\n", v.Port, VXLANPeers, vxlanComment)
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
		for name, l := range m {
			if addrs[name] == nil {
				addrs[name] = map[netip.Addr]bool{}
			}
			for _, p := range l {
				addrs[name][p.Addr()] = in
			}
		}
	}
	wantPorts := func(m map[string][]AddrPort, in bool) {
		for name, l := range m {
			if ports[name] == nil {
				ports[name] = map[AddrPort]bool{}
			}
			for _, ap := range l {
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
			p := netip.PrefixFrom(a, 32)
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
			out[i] = netip.PrefixFrom(a, 32)
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
