// Package wireguard runs the encrypted tunnel between Skein hosts: one
// Device interface with two implementations, the kernel's WireGuard device
// (configured through wgctrl) and wireguard-go in this process on a TUN
// device (configured through its UAPI text protocol) where the kernel has
// no WireGuard module. Open chooses at start.
//
// The Planner is the pure part: per node it makes an Entry, either a peer
// (public key, underlay endpoint, the node's blocks as allowed IPs, routed
// through the device) or, for a node that has published no usable key, an
// unreachable route for every block, so its traffic is dropped rather than
// sent in clear. A change to a node re-plans that node (and the nodes
// sharing its old or new key), not the cluster. The Reconciler applies the
// changed entries alone (their peers, their routes) and on every resync
// compares the whole plan with the device and the routing table and repairs
// both.
//
// The private key lives in a 0600 file under the agent's state directory
// (key.go); only the public key leaves the host.
package wireguard
