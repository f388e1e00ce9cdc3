package api

import (
	"fmt"
	"time"
)

// Encryption names how pod traffic between hosts is encrypted.
type Encryption string

// The encryptions a cluster can run.
const (
	EncryptionNone      Encryption = ""
	EncryptionWireGuard Encryption = "wireguard"
)

// WireGuard defaults and names.
const (
	// DefaultWireGuardPort is the UDP port every node's WireGuard device
	// listens on (Calico uses 51820, Flannel 51820 and 51821: one away
	// from both so a host can run either next to Skein).
	DefaultWireGuardPort = 51822
	// WireGuardDevice is the name of the encrypted tunnel device on every host.
	WireGuardDevice = "skein.wg"
	// WireGuardOverhead is what WireGuard over an IPv6 underlay takes from
	// the MTU (40 IPv6 + 8 UDP + 32 WireGuard): the IPv4 figure is 60, one
	// MTU for both keeps a dual-stack underlay simple.
	WireGuardOverhead = 80
	// WireGuardKeyFile is the file under skeind's --state-dir that holds
	// the node's WireGuard private key (0600, never published).
	WireGuardKeyFile = "wireguard.key"
)

// WireGuardConfig configures the encrypted tunnel.
type WireGuardConfig struct {
	Port int `json:"port"`
}

// RotateKeyRequest asks a node's agent for a new WireGuard key, at
// /skein/rotate-key/<node>. The agent acts on each new ID once and
// records it as done in its status.
type RotateKeyRequest struct {
	Node      string    `json:"node"`
	ID        string    `json:"id"`
	Requested time.Time `json:"requested"`
}

// WireGuardStatus is what an agent publishes about its WireGuard device.
type WireGuardStatus struct {
	// Device is "kernel" or "userspace" (wireguard-go on a TUN device).
	Device    string `json:"device"`
	PublicKey string `json:"publicKey"`
	Port      int    `json:"port"`
	// Rotated is the ID of the last rotate-key request the agent acted on.
	Rotated string          `json:"rotated,omitempty"`
	Peers   []WireGuardPeer `json:"peers,omitempty"`
}

// WireGuardPeer is one peer of a node's WireGuard device, or a node that
// gets no path at all because it has published no key (Blocked set).
type WireGuardPeer struct {
	Node      string `json:"node"`
	PublicKey string `json:"publicKey,omitempty"`
	Endpoint  string `json:"endpoint,omitempty"`
	// LastHandshake is zero until a handshake completed.
	LastHandshake time.Time `json:"lastHandshake,omitzero"`
	RxBytes       int64     `json:"rxBytes"`
	TxBytes       int64     `json:"txBytes"`
	// Blocked says why the node's blocks are unreachable from here
	// instead of sent in clear (fail closed).
	Blocked string `json:"blocked,omitempty"`
}

// validateEncryption checks the encryption against the backend: WireGuard
// replaces the VXLAN overlay (every peer is a tunnel, so no direct routing),
// and is refused with BGP, whose routes send pod traffic in clear on the
// underlay by design.
func (c Cluster) validateEncryption() error {
	switch c.Encryption {
	case EncryptionNone:
		return nil
	case EncryptionWireGuard:
	default:
		return fmt.Errorf("cluster: unknown encryption %q (want wireguard, or none)", c.Encryption)
	}
	switch {
	case c.Backend != BackendVXLAN:
		return fmt.Errorf("cluster: encryption wireguard needs backend vxlan (it replaces the overlay with WireGuard tunnels); backend %s routes pod traffic unencrypted on the underlay", c.Backend)
	case c.VXLAN.DirectRouting:
		return fmt.Errorf("cluster: encryption wireguard and vxlan direct routing exclude each other: direct routes would send pod traffic in clear")
	case c.WireGuard == nil:
		return fmt.Errorf("cluster: encryption wireguard needs a wireguard port")
	case c.WireGuard.Port < 1 || c.WireGuard.Port > 65535:
		return fmt.Errorf("cluster: wireguard port %d out of range 1-65535", c.WireGuard.Port)
	case c.WireGuard.Port == c.VXLAN.Port:
		return fmt.Errorf("cluster: wireguard port %d is the vxlan port", c.WireGuard.Port)
	}
	return nil
}

// defaultEncryption fills the WireGuard port when encryption is on.
func (c Cluster) defaultEncryption() Cluster {
	if c.Encryption == EncryptionWireGuard && c.WireGuard == nil {
		c.WireGuard = &WireGuardConfig{Port: DefaultWireGuardPort}
	}
	return c
}

// RotateKeyKey is the store key (under the prefix) of node's rotate-key
// request. It sorts before status/, so the agents' watch sees it.
func RotateKeyKey(node string) string { return "rotate-key/" + node }
