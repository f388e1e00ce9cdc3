package ipam

import (
	"net/netip"
	"time"
)

// usableRange returns the offsets, from the block's first address, of the
// first and last address of block b that may be handed to a pod: everything
// but the block's first address, which is reserved (the home block's first
// address is the node's VTEP address). Blocks hold at most 2^32 addresses
// (IPv4 pools; IPv6 blocks are /96 or longer by validation).
func usableRange(b netip.Prefix) (first, last uint64) {
	host := b.Addr().BitLen() - b.Bits()
	if host > 32 || host < 0 {
		return 1, 0 // not a block: no usable address
	}
	return 1, uint64(1)<<host - 1
}

// usableCount returns how many pod addresses block b holds.
func usableCount(b netip.Prefix) int {
	first, last := usableRange(b)
	if last < first {
		return 0
	}
	return int(last-first) + 1
}

// coolingAt reports whether addr is still resting after its release at now.
func coolingAt(cooling map[netip.Addr]time.Time, addr netip.Addr, now time.Time) bool {
	until, ok := cooling[addr]
	return ok && until.After(now)
}

// pickAddr returns the lowest usable address of the first block, in the given
// order, that is neither in used nor cooling down at now.
func pickAddr[V any](blocks []netip.Prefix, used map[netip.Addr]V, cooling map[netip.Addr]time.Time, now time.Time) (netip.Addr, bool) {
	for _, b := range blocks {
		first, last := usableRange(b)
		base := b.Masked().Addr()
		for v := first; v <= last; v++ {
			a := addOffset(base, v)
			if _, ok := used[a]; ok {
				continue
			}
			if coolingAt(cooling, a, now) {
				continue
			}
			return a, true
		}
	}
	return netip.Addr{}, false
}

// nextCoolingEnd returns the earliest time an address resting in one of
// blocks becomes free, or the zero time when none is resting.
func nextCoolingEnd(blocks []netip.Prefix, cooling map[netip.Addr]time.Time, now time.Time) (time.Time, int) {
	var first time.Time
	n := 0
	for a, until := range cooling {
		if !until.After(now) || !inAny(blocks, a) {
			continue
		}
		n++
		if first.IsZero() || until.Before(first) {
			first = until
		}
	}
	return first, n
}

// inAny reports whether a lies in one of blocks.
func inAny(blocks []netip.Prefix, a netip.Addr) bool {
	for _, b := range blocks {
		if b.Contains(a) {
			return true
		}
	}
	return false
}
