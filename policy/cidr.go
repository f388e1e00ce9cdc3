package policy

import (
	"net/netip"
	"slices"
)

// subtract returns base minus every except prefix, as sorted disjoint
// prefixes. Except prefixes outside base change nothing.
func subtract(base netip.Prefix, excepts []netip.Prefix) []netip.Prefix {
	out := []netip.Prefix{base.Masked()}
	for _, e := range excepts {
		e = e.Masked()
		if e.Addr().BitLen() != base.Addr().BitLen() {
			continue
		}
		var next []netip.Prefix
		for _, p := range out {
			next = append(next, cut(p, e)...)
		}
		out = next
	}
	slices.SortFunc(out, comparePrefix)
	return out
}

// cut returns p minus e.
func cut(p, e netip.Prefix) []netip.Prefix {
	if !p.Overlaps(e) {
		return []netip.Prefix{p}
	}
	if e.Bits() <= p.Bits() {
		return nil // e covers p
	}
	// p strictly contains e: split p in halves and keep cutting the one that
	// holds e; the other half survives whole.
	var out []netip.Prefix
	for p.Bits() < e.Bits() {
		lo, hi := halves(p)
		if lo.Contains(e.Addr()) {
			out = append(out, hi)
			p = lo
		} else {
			out = append(out, lo)
			p = hi
		}
	}
	return out
}

// halves splits p into its two sub-prefixes one bit longer.
func halves(p netip.Prefix) (netip.Prefix, netip.Prefix) {
	bits := p.Bits() + 1
	lo := netip.PrefixFrom(p.Addr(), bits)
	b := p.Addr().AsSlice()
	i := p.Bits() // index of the new bit
	b[i/8] |= 0x80 >> (i % 8)
	hiAddr, _ := netip.AddrFromSlice(b)
	if p.Addr().Is4() {
		hiAddr = hiAddr.Unmap()
	}
	return lo, netip.PrefixFrom(hiAddr, bits)
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
