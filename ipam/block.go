package ipam

import (
	"encoding/binary"
	"hash/fnv"
	"math/bits"
	"net/netip"

	"github.com/skeinnet/skein/api"
)

// maxPoolBlocks caps how many blocks of one pool a node considers: an IPv6
// /56 of /122 blocks holds 2^66, more than a counter holds and more than
// any cluster claims; only its first 2^62 are ever handed out.
const maxPoolBlocks = uint64(1) << 62

// addOffset returns a + off, in a's family, wrapping within the family.
func addOffset(a netip.Addr, off uint64) netip.Addr {
	if a.Is4() {
		b := a.As4()
		v := binary.BigEndian.Uint32(b[:]) + uint32(off)
		binary.BigEndian.PutUint32(b[:], v)
		return netip.AddrFrom4(b)
	}
	return addShifted(a, off, 0)
}

// addShifted returns the IPv6 address a + off<<shift (shift < 128).
func addShifted(a netip.Addr, off uint64, shift int) netip.Addr {
	b := a.As16()
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	var dhi, dlo uint64
	switch {
	case shift == 0:
		dlo = off
	case shift < 64:
		dhi, dlo = off>>(64-shift), off<<shift
	default:
		dhi = off << (shift - 64)
	}
	lo2, carry := bits.Add64(lo, dlo, 0)
	hi2, _ := bits.Add64(hi, dhi, carry)
	binary.BigEndian.PutUint64(b[:8], hi2)
	binary.BigEndian.PutUint64(b[8:], lo2)
	return netip.AddrFrom16(b)
}

// blockCount returns how many blocks pool p splits into (at most
// maxPoolBlocks).
func blockCount(p api.Pool) uint64 {
	if p.BlockSize-p.CIDR.Bits() >= 62 {
		return maxPoolBlocks
	}
	return uint64(1) << (p.BlockSize - p.CIDR.Bits())
}

// blockAt returns the i-th block of pool p (0 ≤ i < blockCount(p)).
func blockAt(p api.Pool, i uint64) netip.Prefix {
	base := p.CIDR.Masked().Addr()
	shift := base.BitLen() - p.BlockSize
	if base.Is4() {
		return netip.PrefixFrom(addOffset(base, i<<shift), p.BlockSize)
	}
	return netip.PrefixFrom(addShifted(base, i, shift), p.BlockSize)
}

// poolBlocks enumerates every block of pool p in address order. Use it only on
// small pools; large ones are walked with blockAt.
func poolBlocks(p api.Pool) []netip.Prefix {
	n := blockCount(p)
	out := make([]netip.Prefix, 0, n)
	for i := uint64(0); i < n; i++ {
		out = append(out, blockAt(p, i))
	}
	return out
}

// spreadStart returns the index, among n blocks, at which node starts looking
// for a free block: a hash of the node name, so that nodes spread over the
// pool instead of all racing for its first block, but always the same for one
// name.
func spreadStart(node string, n uint64) uint64 {
	h := fnv.New64a()
	h.Write([]byte(node)) // hash.Hash.Write never fails
	return h.Sum64() % n
}

// takenSet answers whether a block of one pool is already claimed. Claims of
// the pool's block size are matched exactly; any other claimed prefix inside
// the pool (left over from a different block size) is matched by overlap.
type takenSet struct {
	exact map[netip.Prefix]bool
	odd   []netip.Prefix
}

func newTakenSet(p api.Pool, taken []netip.Prefix) takenSet {
	s := takenSet{exact: make(map[netip.Prefix]bool, len(taken))}
	for _, t := range taken {
		switch {
		case !t.Overlaps(p.CIDR):
		case t.Bits() == p.BlockSize:
			s.exact[t.Masked()] = true
		default:
			s.odd = append(s.odd, t)
		}
	}
	return s
}

// has reports whether block b overlaps a claimed prefix.
func (s takenSet) has(b netip.Prefix) bool {
	if s.exact[b] {
		return true
	}
	for _, t := range s.odd {
		if t.Overlaps(b) {
			return true
		}
	}
	return false
}

// candidateBlocks returns up to limit unclaimed blocks in the order node
// should try to claim them: pools in the given order, and inside each pool
// from node's spread start onwards, wrapping around. It visits at most
// len(taken)+limit blocks per pool, however large the pool.
func candidateBlocks(pools []api.Pool, taken []netip.Prefix, node string, limit int) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range pools {
		if len(out) >= limit {
			break
		}
		ts := newTakenSet(p, taken)
		n := blockCount(p)
		start := spreadStart(node, n)
		for i := uint64(0); i < n && len(out) < limit; i++ {
			b := blockAt(p, (start+i)%n)
			if !ts.has(b) {
				out = append(out, b)
			}
		}
	}
	return out
}

// claimedIn counts the blocks of taken that lie inside pool p.
func claimedIn(p api.Pool, taken []netip.Prefix) int {
	n := 0
	for _, b := range taken {
		if b.Bits() >= p.CIDR.Bits() && p.CIDR.Contains(b.Addr()) {
			n++
		}
	}
	return n
}
