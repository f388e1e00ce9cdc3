package api

import (
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Backend names the cluster's inter-host dataplane.
type Backend string

// The backends a cluster can run.
const (
	BackendVXLAN Backend = "vxlan"
	BackendBGP   Backend = "bgp"
)

// Defaults for a new cluster.
const (
	DefaultBlockSize = 26
	// DefaultBlockSizeV6 gives IPv6 blocks 64 addresses, as many as a /26.
	DefaultBlockSizeV6 = 122
	// MinBlockSizeV6 and MaxBlockSizeV6 bound IPv6 blocks: at most 2^32
	// addresses (a node walks its blocks address by address) and at least 4.
	MinBlockSizeV6   = 96
	MaxBlockSizeV6   = 126
	DefaultVNI       = 4096
	DefaultVXLANPort = 4789
	DefaultASN       = 64512
	// VXLANOverhead is what the outer IPv4+UDP+VXLAN+Ethernet headers take from the MTU.
	VXLANOverhead = 50
	// VXLANOverhead6 is the same over an IPv6 underlay (a 40-byte outer header).
	VXLANOverhead6 = 70
	// GatewayIP is the link-local next hop every container routes through; the
	// host side of its veth answers for it.
	GatewayIP = "169.254.1.1"
	// GatewayIPv6 is the IPv6 next hop of every container: a link-local
	// address the host side of each veth carries (nodad), so no proxy
	// neighbour discovery is needed.
	GatewayIPv6 = "fe80::1"
)

// Pool is a range of pod addresses split into blocks of BlockSize bits. Its
// family is its CIDR's: a pool is IPv4 or IPv6, never both.
type Pool struct {
	CIDR      netip.Prefix `json:"cidr"`
	BlockSize int          `json:"blockSize"`
}

// VXLANConfig configures the overlay.
type VXLANConfig struct {
	VNI  int `json:"vni"`
	Port int `json:"port"`
	// DirectRouting routes the blocks of a node on this node's underlay
	// subnet via its underlay address, without encapsulation; nodes on
	// other subnets stay on the overlay.
	DirectRouting bool `json:"directRouting,omitempty"`
}

// BGPConfig configures the routed backend.
type BGPConfig struct {
	ASN      uint32 `json:"asn"`
	NodeMesh bool   `json:"nodeMesh"`
}

// Cluster is the cluster-wide configuration at /skein/cluster.
type Cluster struct {
	Pools   []Pool      `json:"pools"`
	Backend Backend     `json:"backend"`
	VXLAN   VXLANConfig `json:"vxlan"`
	BGP     *BGPConfig  `json:"bgp,omitempty"`
	Created time.Time   `json:"created,omitempty"`
	// Encryption "wireguard" tunnels pod traffic between hosts through
	// WireGuard (docs/encryption.md); empty sends it as the backend does.
	Encryption Encryption       `json:"encryption,omitempty"`
	WireGuard  *WireGuardConfig `json:"wireguard,omitempty"`
}

// MAC is a hardware address that marshals as the usual colon form
// (net.HardwareAddr alone would marshal as base64).
type MAC net.HardwareAddr

// String returns the colon-separated form.
func (m MAC) String() string { return net.HardwareAddr(m).String() }

// MarshalText implements encoding.TextMarshaler.
func (m MAC) MarshalText() ([]byte, error) { return []byte(net.HardwareAddr(m).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *MAC) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*m = nil
		return nil
	}
	hw, err := net.ParseMAC(string(b))
	if err != nil {
		return fmt.Errorf("parse MAC %q: %w", b, err)
	}
	*m = MAC(hw)
	return nil
}

// Node is a host running skeind, at /skein/nodes/<name>.
type Node struct {
	Name string `json:"name"`
	// UnderlayIP is the address VXLAN, BGP sessions and etcd use: IPv4 on
	// an IPv4 or dual-stack underlay, IPv6 (equal to UnderlayIP6) on an
	// IPv6-only node.
	UnderlayIP netip.Addr `json:"underlayIP"`
	// UnderlayIP6 is the node's IPv6 underlay address, set whenever it has
	// one: the next hop of IPv6 routes that go straight over the underlay
	// (BGP, direct routing).
	UnderlayIP6 netip.Addr `json:"underlayIP6,omitzero"`
	VTEPMAC     MAC        `json:"vtepMAC,omitempty"`
	VTEPIP      netip.Addr `json:"vtepIP,omitzero"`
	// VTEPIP6 is the VXLAN device's IPv6 address (the first of the node's
	// IPv6 home block), the next hop of routes to its IPv6 blocks; unset
	// in clusters without an IPv6 pool.
	VTEPIP6  netip.Addr        `json:"vtepIP6,omitzero"`
	RouterID netip.Addr        `json:"routerID,omitzero"`
	ASN      uint32            `json:"asn,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	// KubeLabels are the keys of Labels that skein-kube set from the
	// Kubernetes Node: it removes them when Kubernetes does, and leaves
	// the node's own (skeind --labels) alone.
	KubeLabels []string `json:"kubeLabels,omitempty"`
	DebugAddr  string   `json:"debugAddr,omitempty"`
	MTU        int      `json:"mtu,omitempty"`
	Version    string   `json:"version,omitempty"`
	// Identity is "sha256:<hex>" of the secret its agent keeps in
	// --state-dir: the agent that can show the secret owns the name. Empty
	// in records written before identities existed.
	Identity string `json:"identity,omitempty"`
	// WireGuardKey is the node's WireGuard public key (base64), with
	// encryption on; its private key stays in the agent's --state-dir.
	WireGuardKey string `json:"wireguardKey,omitempty"`
}

// Block is the affinity of one pool block to a node, at /skein/blocks/<cidr>.
type Block struct {
	CIDR netip.Prefix `json:"cidr"`
	Node string       `json:"node"`
}

// NamedPort is a container port with a name, as in a pod's containerPorts.
type NamedPort struct {
	Name     string `json:"name"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
}

// Endpoint is one container attachment, at /skein/endpoints/<node>/<container>/<ifname>.
type Endpoint struct {
	Namespace   string            `json:"namespace"`
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels,omitempty"`
	Ports       []NamedPort       `json:"ports,omitempty"`
	IPs         []netip.Addr      `json:"ips"`
	Node        string            `json:"node"`
	ContainerID string            `json:"containerID"`
	IfName      string            `json:"ifName"`
	HostIface   string            `json:"hostIface"`
	// Network is the CNI network the attachment belongs to; empty in records
	// written before networks were recorded.
	Network string    `json:"network,omitempty"`
	Created time.Time `json:"created,omitempty"`
}

// Namespace carries the labels of a namespace, at /skein/namespaces/<name>.
type Namespace struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	// Owner is OwnerKubernetes when skein-kube mirrors the namespace from
	// the Kubernetes API; empty for namespaces of the CLI and the agents.
	Owner string `json:"owner,omitempty"`
}

// NamespaceNameLabel is implied on every namespace, as in Kubernetes.
const NamespaceNameLabel = "kubernetes.io/metadata.name"

// EffectiveLabels returns the namespace labels including the implied name label.
func (n Namespace) EffectiveLabels() map[string]string {
	out := make(map[string]string, len(n.Labels)+1)
	for k, v := range n.Labels {
		out[k] = v
	}
	out[NamespaceNameLabel] = n.Name
	return out
}

// NodeStatus is what an agent publishes about itself, at /skein/status/<node>.
type NodeStatus struct {
	Node      string    `json:"node"`
	Version   string    `json:"version"`
	Backend   Backend   `json:"backend"`
	Ready     bool      `json:"ready"`
	Blocks    []string  `json:"blocks"`
	Endpoints int       `json:"endpoints"`
	Peers     int       `json:"peers"`
	LastSync  time.Time `json:"lastSync,omitempty"`
	LastError string    `json:"lastError,omitempty"`
	Updated   time.Time `json:"updated"`
	DebugAddr string    `json:"debugAddr,omitempty"`
	// PeersUp counts peers with a working path: VXLAN peers programmed, or
	// BGP sessions Established.
	PeersUp int `json:"peersUp"`
	// Links grades this node's side of its link to each other node (up,
	// partial, pending, down, none: see docs/operations.md "Link states").
	Links map[string]string `json:"links,omitempty"`
	// EmptyBlocks are the node's blocks with no allocation and no cooling
	// address, and since when (`skein ipam show` prints them).
	EmptyBlocks []EmptyBlock `json:"emptyBlocks,omitempty"`
	// BGP lists the node's BGP sessions (backend bgp).
	BGP []BGPNeighbor `json:"bgp,omitempty"`
	// PolicyVersion is the policy program last enforced, at PolicySync.
	PolicyVersion uint64    `json:"policyVersion,omitempty"`
	PolicySync    time.Time `json:"policySync,omitzero"`
	PolicyError   string    `json:"policyError,omitempty"`
	// InvalidPolicies lists stored policies that do not decode or
	// validate, and what the agent enforces in their place.
	InvalidPolicies []InvalidPolicy `json:"invalidPolicies,omitempty"`
	// Unpublished counts local endpoint changes (starts and deletes) made
	// while etcd was unreachable and not yet written to it; UnpublishedSince
	// is when the oldest of them was made.
	Unpublished      int       `json:"unpublished,omitempty"`
	UnpublishedSince time.Time `json:"unpublishedSince,omitzero"`
	// EtcdUnreachable reports that the agent's last etcd call failed for
	// lack of etcd (the record itself is written once etcd is back).
	EtcdUnreachable bool `json:"etcdUnreachable,omitempty"`
	// WireGuard is the node's WireGuard device and peers (encryption on).
	WireGuard *WireGuardStatus `json:"wireguard,omitempty"`
}

// InvalidPolicy is a stored policy that does not decode or validate. It is
// never dropped: either its last valid value stays enforced, or the pods it
// names are quarantined (isolated both ways).
type InvalidPolicy struct {
	// Key is the policy's key: policies/<kind>/<namespace or _>/<name>.
	Key   string `json:"key"`
	Error string `json:"error"`
	// Enforced is EnforcedQuarantine or EnforcedLastValid.
	Enforced string `json:"enforced"`
}

// What an agent enforces for an InvalidPolicy.
const (
	// EnforcedQuarantine: the pods the policy names (as far as its
	// selector can be read; else its namespace, or every pod for a
	// cluster-scoped kind) are isolated both ways.
	EnforcedQuarantine = "quarantine"
	// EnforcedLastValid: the policy was valid before this update; its last
	// valid value stays enforced.
	EnforcedLastValid = "last valid version"
)

// String returns "key: error (enforced: ...)".
func (p InvalidPolicy) String() string {
	return p.Key + ": " + p.Error + " (enforced: " + p.Enforced + ")"
}

// EmptyBlock is a block its node holds with no allocation and no address
// cooling down.
type EmptyBlock struct {
	CIDR netip.Prefix `json:"cidr"`
	// Since is when its last address was freed and done cooling, or when
	// the node got the block or its agent started, whichever is latest.
	Since time.Time `json:"since"`
	// Home marks the node's home block (it carries the VTEP address), which
	// is never released.
	Home bool `json:"home,omitempty"`
	// ReleaseAt is when the node returns the block to the pool if it stays
	// empty; zero for the home block or when the agent releases none.
	ReleaseAt time.Time `json:"releaseAt,omitzero"`
}

// BGPNeighbor is one BGP session as an agent reports it.
type BGPNeighbor struct {
	Name       string     `json:"name"`
	Address    netip.Addr `json:"address"`
	ASN        uint32     `json:"asn"`
	State      string     `json:"state"`
	Uptime     string     `json:"uptime,omitempty"`
	Received   int        `json:"received"`
	Advertised int        `json:"advertised"`
	// Received6 and Advertised6 are the IPv6 share of Received and
	// Advertised (IPv6 unicast over the same IPv4 session, or all of an
	// IPv6 session's).
	Received6   int    `json:"received6,omitempty"`
	Advertised6 int    `json:"advertised6,omitempty"`
	LastError   string `json:"lastError,omitempty"`
}

// RouteReflectorLabel marks a node as a BGP route reflector; its value is
// the reflector's cluster id (an IPv4 address, or empty for the router id).
const RouteReflectorLabel = "skein.dev/route-reflector"

// DefaultSocket is where skeind serves skein-cni (and `skein ipam check --leaked`).
const DefaultSocket = "/run/skein/skeind.sock"

// IdentityFile is the file under skeind's --state-dir that holds the node's secret.
const IdentityFile = "node-identity"

// RouteProtocol marks kernel routes Skein owns (rtnetlink protocol number), so
// that Skein only ever lists and deletes its own routes.
const RouteProtocol = 78

// VXLANDevice is the name of the overlay device on every host.
const VXLANDevice = "skein.vxlan"
