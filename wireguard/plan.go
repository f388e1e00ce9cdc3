package wireguard

import (
	"cmp"
	"net/netip"
	"slices"
)

// Node is what the planner needs of a cluster node.
type Node struct {
	Name     string
	Key      string // public key, base64; "" when not published
	Underlay netip.Addr
	Blocks   []netip.Prefix
}

// Peer is one peer of the device.
type Peer struct {
	Node       string
	PublicKey  Key
	Endpoint   netip.AddrPort
	AllowedIPs []netip.Prefix
}

// Blocked is a block that gets an unreachable route: its node has no
// usable key, and its traffic must not go out in clear.
type Blocked struct {
	Node   string
	Block  netip.Prefix
	Reason string
}

// Plan is what the device and the routing table should hold.
type Plan struct {
	Peers []Peer
	// Tunnel are the blocks routed through the device.
	Tunnel []netip.Prefix
	// Blocked are the blocks routed nowhere (unreachable).
	Blocked []Blocked
	// Refused names the nodes without a usable key and why (also those
	// without blocks, which need no route).
	Refused map[string]string
}

// Make plans the tunnel from self to every other node, each listening on
// port. self's own key is compared so that two nodes sharing a key (a
// copied state dir) are refused rather than silently mixed up.
func Make(self string, port int, nodes []Node) Plan {
	p := Plan{Refused: map[string]string{}}
	var selfKey string
	keys := map[string]int{}
	for _, n := range nodes {
		if n.Name == self {
			selfKey = n.Key
		}
		if n.Key != "" {
			keys[n.Key]++
		}
	}
	for _, n := range nodes {
		if n.Name == self {
			continue
		}
		reason := ""
		var key Key
		switch {
		case n.Key == "":
			reason = "no WireGuard key published"
		case !n.Underlay.IsValid():
			reason = "no underlay address"
		case n.Key == selfKey || keys[n.Key] > 1:
			reason = "WireGuard key shared with another node"
		default:
			var err error
			if key, err = ParseKey(n.Key); err != nil {
				reason = "published WireGuard key is invalid"
			}
		}
		blocks := slices.Clone(n.Blocks)
		slices.SortFunc(blocks, comparePrefix)
		if reason != "" {
			p.Refused[n.Name] = reason
			for _, b := range blocks {
				p.Blocked = append(p.Blocked, Blocked{Node: n.Name, Block: b, Reason: reason})
			}
			continue
		}
		p.Peers = append(p.Peers, Peer{
			Node:       n.Name,
			PublicKey:  key,
			Endpoint:   netip.AddrPortFrom(n.Underlay, uint16(port)),
			AllowedIPs: blocks,
		})
		p.Tunnel = append(p.Tunnel, blocks...)
	}
	slices.SortFunc(p.Peers, func(a, b Peer) int { return cmp.Compare(a.Node, b.Node) })
	slices.SortFunc(p.Tunnel, comparePrefix)
	slices.SortFunc(p.Blocked, func(a, b Blocked) int { return comparePrefix(a.Block, b.Block) })
	return p
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}
