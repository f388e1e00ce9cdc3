package policy

import (
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// ICMPv6 types the IPv6 anti-spoofing chain looks at.
const (
	icmp6RouterAdvert   = 134
	icmp6NeighborSolic  = 135
	icmp6NeighborAdvert = 136
	icmp6Redirect       = 137
	icmp6MLD2Report     = 143
	// dhcp6ServerPort is the source port of DHCPv6 server (and relay) replies.
	dhcp6ServerPort = 547
)

// linkLocal is fe80::/10 as an address and a mask.
var (
	linkLocalAddr = []byte{0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	linkLocalMask = []byte{0xff, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
)

// addBase6 adds to the batch what an IPv6 ruleset has beyond the IPv4
// table: the map ep_addrs6, the sets na_targets6, tracked_addrs6 and
// pod_cidrs6 and the chains of base6Chains (render.go lists them in nft
// syntax). The prerouting rule that jumps to them is the caller's.
func addBase6(c *nftables.Conn, rs *Ruleset, dropLog *nftables.Set) error {
	addrs, na, tracked, pods := addrsMap(true), naTargets6(), trackedSet(true), podCIDRSet(true)
	if err := addSet(c, na, ifaceAddrKeys(ofFamily(rs.Addrs, true, ifaceAddrOf))); err != nil {
		return err
	}
	if err := addSet(c, tracked, addrElements(ofFamily(rs.Tracked, true, addrOf))); err != nil {
		return err
	}
	if err := addSet(c, pods, prefixElements(ofFamily(rs.PodCIDRs, true, prefixAddrOf))); err != nil {
		return err
	}
	// Chains before the rules and map entries that goto them.
	chain := func(name string) *nftables.Chain {
		return c.AddChain(&nftables.Chain{Table: table, Name: name})
	}
	untrack, untrackIn := chain(UntrackChain6), chain(UntrackInChain6)
	spoof, router := chain(Spoof6Chain), chain(Router6Chain)
	fromPod, pre := chain(FromPod6Chain), chain(Prerouting6Chain)
	if err := addSet(c, addrs, ifaceAddrElements(ofFamily(rs.Addrs, true, ifaceAddrOf), true)); err != nil {
		return err
	}
	add := func(ch *nftables.Chain, rules []baseRule) {
		for _, r := range rules {
			c.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: r.exprs, UserData: comment(r.comment)})
		}
	}
	add(untrack, untrackExprs(tracked, pods, rs.PodCIDRs, true, false))
	add(untrackIn, untrackExprs(tracked, pods, rs.PodCIDRs, true, true))
	add(spoof, dropChainExprs(SpoofLogPrefix, spoofComment, rs.NoDropLog, dropLog))
	add(router, dropChainExprs(Router6LogPrefix, router6Comment, rs.NoDropLog, dropLog))
	add(fromPod, fromPod6Exprs(addrs, na))
	add(pre, prerouting6Exprs(pods, rs.PodCIDRs))
	return nil
}

// dropChainExprs: log (rate-limited per source, unless noLog) and
// count-drop everything.
func dropChainExprs(logPrefix, why string, noLog bool, dropLog *nftables.Set) []baseRule {
	drop := baseRule{exprs: []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}, comment: why}
	if noLog {
		return []baseRule{drop}
	}
	return []baseRule{{exprs: dropLogExprs(logPrefix, true, true, dropLog.ID)}, drop}
}

func goTo(chain string) *expr.Verdict { return &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain} }

// prerouting6Exprs: IPv6 from a container goes to the anti-spoofing
// chain, IPv6 to a pod address to untrack6_in.
func prerouting6Exprs(pods *nftables.Set, pools []netip.Prefix) []baseRule {
	return []baseRule{
		{exprs: append(fromPodExprs(), goTo(FromPod6Chain))},
		{exprs: append(poolExprs(pods, pools, true, false, false), goTo(UntrackInChain6))},
	}
}

// icmp6Type: icmpv6 type t.
func icmp6Type(t byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_ICMPV6}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{t}},
	}
}

// fromPod6Exprs: the chain every IPv6 packet from a container walks; see
// base6Chains.
func fromPod6Exprs(addrs, na *nftables.Set) []baseRule {
	with := func(x []expr.Any, more ...expr.Any) []expr.Any { return append(x, more...) }
	// As in prerouting6Exprs, the nfproto tests make nft list "ip6 saddr".
	unspecified := append(familyOnly(true),
		loadFamilyAddr(true, true, reg1),
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: make([]byte, 16)},
	)
	return []baseRule{
		{exprs: with(icmp6Type(icmp6RouterAdvert), goTo(Router6Chain))},
		{exprs: with(icmp6Type(icmp6Redirect), goTo(Router6Chain))},
		{exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_UDP}},
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: be16(dhcp6ServerPort)},
			goTo(Router6Chain),
		}},
		// A neighbor advertisement's target (bytes 8-23 of the ICMPv6
		// message) must be link-local or the container's own address.
		{exprs: with(icmp6Type(icmp6NeighborAdvert),
			&expr.Payload{DestRegister: reg32e, Base: expr.PayloadBaseTransportHeader, Offset: 8, Len: 16},
			&expr.Bitwise{SourceRegister: reg32e, DestRegister: reg1, Len: 16, Mask: linkLocalMask, Xor: make([]byte, 16)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: linkLocalAddr},
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
			&expr.Lookup{SourceRegister: reg1, SetName: na.Name, SetID: na.ID, Invert: true},
			goTo(Spoof6Chain),
		)},
		{exprs: append(familyOnly(true),
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
			loadFamilyAddr(true, true, reg32e),
			&expr.Lookup{SourceRegister: reg1, SetName: addrs.Name, SetID: addrs.ID, IsDestRegSet: true, DestRegister: 0},
		)},
		{exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.NFPROTO_IPV6}},
			loadFamilyAddr(true, true, reg1),
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 16, Mask: linkLocalMask, Xor: make([]byte, 16)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: linkLocalAddr},
			&expr.Verdict{Kind: expr.VerdictReturn},
		}},
		{exprs: with(with(unspecified, icmp6Type(icmp6NeighborSolic)...), &expr.Verdict{Kind: expr.VerdictReturn})},
		{exprs: with(with(unspecified, icmp6Type(icmp6MLD2Report)...), &expr.Verdict{Kind: expr.VerdictReturn})},
		{exprs: []expr.Any{goTo(Spoof6Chain)}},
	}
}
