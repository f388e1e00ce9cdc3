package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
)

// The simulated cluster of the scale phase, pure: node records, blocks and
// endpoints of nodes no agent runs, written into the lab's etcd the way
// their agents would write them.

// Shape of the simulated cluster.
const (
	// scalePodCIDR is the scale lab's pool: 4 096 blocks of /26, room for
	// the largest step, the joins and the real hosts.
	scalePodCIDR   = "10.64.0.0/14"
	scaleBlockBits = 26
	// scaleUnderlay holds the simulated nodes' underlay addresses. It is the
	// benchmarking range (RFC 2544): no lab host has a route covering it
	// (checked before anything is written), so the kernel can send nothing
	// to these addresses, and the bench never tries.
	scaleUnderlay = "198.18.0.0/15"
	// scaleNodePrefix starts every simulated node's name.
	scaleNodePrefix = "sim-"
)

// simNodeName names simulated node i.
func simNodeName(i int) string { return fmt.Sprintf("%s%05d", scaleNodePrefix, i) }

// simUnderlay returns simulated node i's underlay address in scaleUnderlay.
func simUnderlay(i int) netip.Addr {
	base := netip.MustParsePrefix(scaleUnderlay).Addr().As4()
	n := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	n += uint32(i) + 1
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// simMAC derives a locally administered unicast VTEP MAC from the node name,
// as agents do.
func simMAC(node string) api.MAC {
	sum := sha256.Sum256([]byte("skein-sim-vtep\x00" + node))
	mac := make(api.MAC, 6)
	copy(mac, sum[:6])
	mac[0] = (mac[0] &^ 0x01) | 0x02
	return mac
}

// simNode returns simulated node i's record; its VTEP address is the first
// address of its block, as an agent's is of its home block.
func simNode(i int, block netip.Prefix) api.Node {
	name := simNodeName(i)
	return api.Node{
		Name:       name,
		UnderlayIP: simUnderlay(i),
		VTEPMAC:    simMAC(name),
		VTEPIP:     block.Masked().Addr(),
		MTU:        1450,
		Version:    "sim",
	}
}

// simEndpoint returns endpoint j of simulated node i at address a, labelled
// like the policy phase's fake pods (namespace, app, tier, named port) so the
// policy phase's policies select them.
func simEndpoint(i, j, perNode int, a netip.Addr) api.Endpoint {
	g := i*perNode + j
	return api.Endpoint{
		Namespace:   polFakeNamespace((g / polFakePerNS) % polFakeNamespaces),
		Name:        fmt.Sprintf("pod-%05d-%03d", i, j),
		Labels:      map[string]string{polLabelKey: fmt.Sprintf("app-%d", j%polApps), "tier": fmt.Sprintf("t%d", j%3)},
		Ports:       []api.NamedPort{{Name: "http", Port: 8000 + j%polApps, Protocol: api.ProtocolTCP}},
		IPs:         []netip.Addr{a},
		Node:        simNodeName(i),
		ContainerID: fmt.Sprintf("sim%05d%03d", i, j),
		IfName:      lab.ContainerIface,
		HostIface:   fmt.Sprintf("sks%03d", j),
	}
}

// simKV is one key (relative to the store prefix) and its JSON value.
type simKV struct{ Key, Value string }

// simNodeKVs returns the keys simulated node i writes: its block, its
// endpoints (addresses 1..perNode of the block) and last its node record,
// as an agent claims before it registers. Keys are relative to the store
// prefix.
func simNodeKVs(i, perNode int, block netip.Prefix) ([]simKV, error) {
	if perNode > blockSize(block)-2 {
		return nil, fmt.Errorf("endpoints per node %d: block %s holds at most %d", perNode, block, blockSize(block)-2)
	}
	var out []simKV
	add := func(key string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode %s: %w", key, err)
		}
		out = append(out, simKV{key, string(b)})
		return nil
	}
	node := simNodeName(i)
	if err := add("blocks/"+api.BlockKeyName(block), api.Block{CIDR: block, Node: node}); err != nil {
		return nil, err
	}
	a := block.Masked().Addr()
	for j := range perNode {
		a = a.Next()
		ep := simEndpoint(i, j, perNode, a)
		if err := add(simEndpointKey(ep), ep); err != nil {
			return nil, err
		}
	}
	if err := add("nodes/"+node, simNode(i, block)); err != nil {
		return nil, err
	}
	return out, nil
}

// simEndpointKey is an endpoint's key relative to the store prefix.
func simEndpointKey(ep api.Endpoint) string {
	return "endpoints/" + ep.Node + "/" + ep.ContainerID + "/" + ep.IfName
}

// blockSize is the number of addresses in an IPv4 block.
func blockSize(p netip.Prefix) int { return 1 << (32 - p.Bits()) }

// freeBlocks returns n blocks of pool with the given prefix length that are
// not in taken, from the top of the pool down (agents claim from the
// bottom, so the two do not race for the same blocks).
func freeBlocks(pool netip.Prefix, bits, n int, taken map[netip.Prefix]bool) ([]netip.Prefix, error) {
	all := poolBlocks(pool, bits)
	var out []netip.Prefix
	for k := len(all) - 1; k >= 0 && len(out) < n; k-- {
		if !taken[all[k]] {
			out = append(out, all[k])
		}
	}
	if len(out) < n {
		return nil, fmt.Errorf("pool %s: only %d free /%d blocks for %d simulated nodes", pool, len(out), bits, n)
	}
	return out, nil
}
