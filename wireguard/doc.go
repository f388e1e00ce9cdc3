// Package wireguard runs the encrypted tunnel between Skein hosts: one
// Device interface with two implementations, the kernel's WireGuard device
// (configured through wgctrl) and wireguard-go in this process on a TUN
// device (configured through its UAPI text protocol) where the kernel has
// no WireGuard module. Open chooses at start.
//
// Plan is the pure part: from the cluster's nodes and blocks it makes the
// peers (public key, underlay endpoint, the peer's blocks as allowed IPs),
// the routes through the device, and an unreachable route for every block
// of a node that has published no usable key, so its traffic is dropped
// rather than sent in clear. The Reconciler puts a plan into the device and
// the kernel's routing table and repairs both on every resync.
//
// The private key lives in a 0600 file under the agent's state directory
// (key.go); only the public key leaves the host.
package wireguard
