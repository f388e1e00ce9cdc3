package wireguard

import (
	"net/netip"
	"slices"
	"time"
)

// Device kinds, as Device.Kind reports them and status shows them.
const (
	KindKernel    = "kernel"
	KindUserspace = "userspace"
)

// KeepaliveInterval makes every peer handshake soon after it is set and
// keeps the session warm, so `skein status` shows a handshake age for idle
// peers too and a NAT or conntrack entry on the way does not expire.
const KeepaliveInterval = 25 * time.Second

// PeerStats is a peer as the device has it.
type PeerStats struct {
	PublicKey     Key
	Endpoint      netip.AddrPort
	AllowedIPs    []netip.Prefix
	LastHandshake time.Time // zero: none yet
	RxBytes       int64
	TxBytes       int64
}

// Device is a WireGuard device: the kernel's, or wireguard-go's on a TUN.
type Device interface {
	// Name is the network interface's name.
	Name() string
	// Kind is KindKernel or KindUserspace.
	Kind() string
	// SetKey sets the private key and the listen port.
	SetKey(priv Key, port int) error
	// UpdatePeers adds or changes the peers in set (allowed IPs replaced)
	// and removes those in remove, leaving every other peer and its
	// session alone. The Reconciler is its only caller, one call at a time.
	UpdatePeers(set []Peer, remove []Key) error
	// Peers reads the device's peers.
	Peers() ([]PeerStats, error)
	// Close removes the device (a kernel device is left in place when
	// keep is set, so traffic survives an agent restart).
	Close(keep bool) error
}

// syncPeers makes the device's peers exactly want, keeping the sessions of
// peers that did not change, and returns how many peers it set or removed.
func syncPeers(d Device, want []Peer) (int, error) {
	cur, err := d.Peers()
	if err != nil {
		return 0, err
	}
	ops := diffPeers(cur, want)
	n := len(ops.set) + len(ops.remove)
	if n == 0 {
		return 0, nil
	}
	return n, d.UpdatePeers(ops.set, ops.remove)
}

// peerOps is the change from the device's peers to the wanted ones.
type peerOps struct {
	set    []Peer
	remove []Key
}

// diffPeers returns the peers to set (new or changed) and to remove.
func diffPeers(cur []PeerStats, want []Peer) peerOps {
	var ops peerOps
	have := make(map[Key]PeerStats, len(cur))
	for _, p := range cur {
		have[p.PublicKey] = p
	}
	wanted := make(map[Key]bool, len(want))
	for _, w := range want {
		wanted[w.PublicKey] = true
		h, ok := have[w.PublicKey]
		if ok && h.Endpoint == w.Endpoint && samePrefixes(h.AllowedIPs, w.AllowedIPs) {
			continue
		}
		ops.set = append(ops.set, w)
	}
	for _, p := range cur {
		if !wanted[p.PublicKey] {
			ops.remove = append(ops.remove, p.PublicKey)
		}
	}
	return ops
}

func samePrefixes(a, b []netip.Prefix) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, comparePrefix)
	slices.SortFunc(b, comparePrefix)
	return slices.Equal(a, b)
}
