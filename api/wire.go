package api

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
)

// The agent socket speaks HTTP/JSON. These are its paths; every non-2xx answer
// carries an AgentError body.
const (
	PathAllocate = "/v1/cni/allocate" // POST AllocateRequest → AllocateResponse
	PathCommit   = "/v1/cni/commit"   // POST CommitRequest → CommitResponse (endpoint published)
	PathRelease  = "/v1/cni/release"  // POST ReleaseRequest → ReleaseResponse
	PathCheck    = "/v1/cni/check"    // POST ReleaseRequest (owner) → CheckResponse
	PathGC       = "/v1/cni/gc"       // POST GCRequest → GCResponse
	PathStatus   = "/v1/status"       // GET → AgentStatus
)

// Owner identifies one attachment: a container's interface.
type Owner struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
}

// String returns "container/ifname".
func (o Owner) String() string { return o.ContainerID + "/" + o.IfName }

// HostIfaceName returns the host-side veth name of an attachment: "sk" plus 11
// hex characters of a hash of container id and ifname (15-character kernel limit).
func HostIfaceName(o Owner) string {
	sum := sha256.Sum256([]byte(o.ContainerID + "\x00" + o.IfName))
	return "sk" + hex.EncodeToString(sum[:])[:11]
}

// PodInfo is what the runtime told the plugin about the workload.
type PodInfo struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	// UID is the Kubernetes pod's (K8S_POD_UID), when a kubelet called.
	UID    string            `json:"uid,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	Ports  []NamedPort       `json:"ports,omitempty"`
}

// AllocateRequest asks the agent for the attachment's addresses. It is
// idempotent per owner: asking again returns the same addresses.
type AllocateRequest struct {
	Owner
	// Network is the CNI network name (the config's "name"): with the owner
	// it makes the spec's attachment key. Required on every call.
	Network string  `json:"network"`
	Pod     PodInfo `json:"pod"`
}

// AllocateResponse gives the addresses and link settings for a new attachment.
type AllocateResponse struct {
	IPs []netip.Prefix `json:"ips"` // each a /32 (or /128): IPv4 first, then IPv6 in a dual-stack cluster; IPv6 alone in an IPv6-only one
	// Gateway is the IPv4 next hop (GatewayIP), set when IPs holds an IPv4
	// address.
	Gateway netip.Addr `json:"gateway"`
	// Gateway6 is the IPv6 next hop (GatewayIPv6), set when IPs holds an
	// IPv6 address.
	Gateway6 netip.Addr `json:"gateway6,omitzero"`
	MTU      int        `json:"mtu"`
	// Existing reports that the owner already held these addresses.
	Existing bool `json:"existing,omitempty"`
}

// CommitRequest publishes the plumbed endpoint; the agent answers once the
// endpoint is in the store (and, with policy, enforced).
type CommitRequest struct {
	Owner
	Network   string       `json:"network"`
	Pod       PodInfo      `json:"pod"`
	IPs       []netip.Addr `json:"ips"`
	HostIface string       `json:"hostIface"`
	Netns     string       `json:"netns,omitempty"`
}

// CommitResponse acknowledges a commit.
type CommitResponse struct {
	Endpoint Endpoint `json:"endpoint"`
}

// ReleaseRequest frees an owner's addresses and unpublishes its endpoint. It
// succeeds when the owner holds nothing.
type ReleaseRequest struct {
	Owner
	Network string `json:"network"`
}

// ReleaseResponse lists what was freed.
type ReleaseResponse struct {
	Released []netip.Addr `json:"released,omitempty"`
}

// CheckResponse says what the agent holds for an owner.
type CheckResponse struct {
	// HeldBy names the other network that holds the attachment; IPs is then
	// empty and a DEL of the asking network must leave it alone.
	HeldBy    string       `json:"heldBy,omitempty"`
	IPs       []netip.Addr `json:"ips"`
	Published bool         `json:"published"`
	MTU       int          `json:"mtu"`
}

// GCRequest lists the attachments of one network that are still valid; the
// agent frees the rest of that network's attachments and nothing of another
// network's.
type GCRequest struct {
	Network string  `json:"network"`
	Valid   []Owner `json:"valid"`
}

// GCResponse lists the freed attachments so the plugin can remove their veths.
type GCResponse struct {
	Freed []Owner `json:"freed"`
}

// AgentStatus is the agent's readiness as seen by the plugin's STATUS verb.
type AgentStatus struct {
	Node   string   `json:"node"`
	Ready  bool     `json:"ready"`
	Blocks []string `json:"blocks"`
	Reason string   `json:"reason,omitempty"`
}

// AgentError is the body of every failed agent call. Code follows the CNI
// error codes (11 try again later, 7 invalid config, 3 unknown container ...).
type AgentError struct {
	Code    uint   `json:"code"`
	Message string `json:"msg"`
	Details string `json:"details,omitempty"`
}

// Error implements error.
func (e *AgentError) Error() string {
	if e.Details != "" {
		return e.Message + ": " + e.Details
	}
	return e.Message
}
