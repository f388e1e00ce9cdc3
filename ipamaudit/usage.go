package ipamaudit

import (
	"net/netip"

	"github.com/skeinnet/skein/api"
)

// PoolUsage is one pool's block usage as `skein ipam show` reports it.
type PoolUsage struct {
	CIDR         netip.Prefix `json:"cidr"`
	BlockSize    int          `json:"blockSize"`
	BlocksTotal  int          `json:"blocksTotal"`
	BlocksUsed   int          `json:"blocksUsed"`
	Blocks       []BlockUsage `json:"blocks"`
	EndpointIPs  int          `json:"endpointIPs"`
	AddressTotal int          `json:"addressTotal"`
}

// BlockUsage is one claimed block in `skein ipam show`.
type BlockUsage struct {
	api.Block
	// Endpoints counts endpoint addresses inside the block.
	Endpoints int `json:"endpoints"`
	// Empty is set when the node's agent last reported the block empty.
	Empty *api.EmptyBlock `json:"empty,omitempty"`
	// NoStatus: the node published no readable status, so whether the
	// block is empty is not known.
	NoStatus bool `json:"noStatus,omitempty"`
}

// Usage groups blocks and endpoint addresses by pool; statuses (by node)
// say which blocks are empty.
func Usage(pools []api.Pool, blocks []api.Block, eps []api.Endpoint, statuses map[string]api.NodeStatus) []PoolUsage {
	var out []PoolUsage
	for _, p := range pools {
		u := PoolUsage{CIDR: p.CIDR, BlockSize: p.BlockSize, Blocks: []BlockUsage{}}
		if p.BlockSize >= p.CIDR.Bits() && p.BlockSize-p.CIDR.Bits() < 31 {
			u.BlocksTotal = 1 << (p.BlockSize - p.CIDR.Bits())
		}
		if bits := p.CIDR.Addr().BitLen() - p.CIDR.Bits(); bits < 31 {
			u.AddressTotal = 1 << bits
		}
		for _, b := range blocks {
			if p.CIDR.Contains(b.CIDR.Addr()) {
				u.Blocks = append(u.Blocks, BlockUsage{Block: b})
			}
		}
		u.BlocksUsed = len(u.Blocks)
		for _, ep := range eps {
			for _, ip := range ep.IPs {
				if p.CIDR.Contains(ip) {
					u.EndpointIPs++
				}
				for i := range u.Blocks {
					if u.Blocks[i].CIDR.Contains(ip) {
						u.Blocks[i].Endpoints++
					}
				}
			}
		}
		for i := range u.Blocks {
			b := &u.Blocks[i]
			st, ok := statuses[b.Node]
			if !ok {
				b.NoStatus = true
				continue
			}
			for _, e := range st.EmptyBlocks {
				if e.CIDR == b.CIDR {
					b.Empty = &e
				}
			}
		}
		out = append(out, u)
	}
	return out
}
