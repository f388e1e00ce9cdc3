package api

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// The agent's debug format: what /debug/topology serves, /ui draws, `skein
// status` and `skein topology` read, /metrics counts and the bench measures.
// api owns it so that every reader and the agent share one typed form;
// fields are only ever added.

// Topology is one node's view of the cluster.
type Topology struct {
	// Node is this node's own record.
	Node       Node      `json:"node"`
	Backend    Backend   `json:"backend"`
	Ready      bool      `json:"ready"`
	Reason     string    `json:"reason,omitempty"`
	Started    time.Time `json:"started"`
	ReadyAfter string    `json:"readyAfter,omitempty"`
	// Now is the agent's clock when it answered, to compute ages against.
	Now      time.Time `json:"now"`
	StoreRev int64     `json:"storeRev"`
	// Nodes is every node, this one included (Self), sorted by name.
	Nodes []TopologyNode `json:"nodes"`
	// Links are pairs of nodes graded by GradeLink: this node's sides
	// observed, the others' as their status records report (what /ui
	// draws). Every pair in clusters of up to 64 nodes or when asked
	// (/debug/topology?links=all); beyond, this node's pairs only: the
	// pairs grow as the square of the nodes.
	Links []PairLink `json:"links"`
	// Blocks is every block affinity in the cluster, by address.
	Blocks []Block `json:"blocks"`
	// Endpoints are this node's endpoints.
	Endpoints []Endpoint `json:"endpoints"`
	IPAM      IPAMStats  `json:"ipam"`
	// Dataplane is the VXLAN backend's state (nil in BGP mode).
	Dataplane *VXLANStatus `json:"dataplane,omitempty"`
	// BGP is the BGP backend's state (nil in VXLAN mode).
	BGP *BGPStatus `json:"bgp,omitempty"`
	// Policy is the enforcer's state (nil before policy runs).
	Policy *PolicyStatus `json:"policy,omitempty"`
	// Errors are the components' last errors.
	Errors []ComponentError `json:"errors,omitempty"`
	// StoreError lists undecodable keys in etcd ("key: error").
	StoreError []string `json:"storeErrors,omitempty"`
	// Offline is etcd reachability as this agent sees it and the endpoint
	// changes it made while etcd was away that are not yet published.
	Offline *OfflineState `json:"offline,omitempty"`
	// StatusError says why the other nodes' status records are missing.
	StatusError string `json:"statusError,omitempty"`
}

// TopologyNode is one node as the answering agent sees it.
type TopologyNode struct {
	Node
	Self  bool `json:"self,omitempty"`
	Alive bool `json:"alive"`
	// Blocks are the block CIDRs the node holds.
	Blocks []string `json:"blocks"`
	// Endpoints counts the node's published endpoints.
	Endpoints int `json:"endpoints"`
	// Link is the answering node's side of its tunnel or BGP session to it,
	// from its kernel (zero for Self).
	Link Link `json:"link"`
	// Agent is AgentUp, or AgentDownDataPathKept when the node has no heartbeat.
	Agent string `json:"agent"`
	// Status is what the node last published at status/<node>; nil when its
	// heartbeat is gone (or the records could not be read: see StatusError).
	Status *NodeStatus `json:"status,omitempty"`
}

// Link is the state of the dataplane connection from one node to another.
type Link struct {
	// Kind is "vxlan", LinkKindDirect or "bgp".
	Kind string `json:"kind,omitempty"`
	// State is one of the Link* constants.
	State  string `json:"state,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// LinkKindDirect is the kind of a VXLAN-backend link routed directly on
// the shared underlay subnet (VXLANConfig.DirectRouting).
const LinkKindDirect = "vxlan-direct"

// Link states.
const (
	// LinkUp: every FDB, neighbour and route entry is in the kernel, or the
	// BGP session is established.
	LinkUp = "up"
	// LinkPartial: some of the node's VXLAN entries are missing.
	LinkPartial = "partial"
	// LinkPending: the dataplane has not synced yet.
	LinkPending = "pending"
	// LinkDown: none of the entries is in the kernel, or the session is not
	// established.
	LinkDown = "down"
	// LinkNone: no tunnel is expected (the node has no VTEP yet) or no
	// session is configured.
	LinkNone = "none"
	// LinkUnknown: neither end could say anything about the link (both
	// agents down and no status record). It is never shown as down: the
	// kernels keep what they had.
	LinkUnknown = "unknown"
)

// Where a link's state comes from (PairLink.Basis).
const (
	// BasisObserved: the agent at one end graded its side from its kernel
	// (or its BGP speaker) just now.
	BasisObserved = "observed"
	// BasisReported: no agent answered; the state is what the ends last
	// published in their status records.
	BasisReported = "reported"
	// BasisNone: nothing was known about either side.
	BasisNone = "none"
)

// Agent states of a node (TopologyNode.Agent).
const (
	AgentUp = "up"
	// AgentDownDataPathKept is the state of a node whose agent has no
	// heartbeat: its routes and FDB entries stay programmed on every host
	// until `skein node delete`.
	AgentDownDataPathKept = "agent down, data path kept"
)

// AgentState is how a node's agent is shown.
func AgentState(alive bool) string {
	if alive {
		return AgentUp
	}
	return AgentDownDataPathKept
}

// LinkSide is what is known about one end's side of a link: the entries
// (or the session) that end has toward the other.
type LinkSide struct {
	// Node is the end's name.
	Node string
	// AgentUp is false when the end's agent has no heartbeat. Its kernel
	// keeps the routes and FDB entries it had, so the data path is kept.
	AgentUp bool
	// Observed is the end agent's own grade of its side, asked just now
	// (its debug endpoint, or this agent's kernel); nil when not known.
	Observed *Link
	// Reported is the grade the end last published in its status record
	// (NodeStatus.Links); "" when none.
	Reported string
}

// PairLink is the link between two nodes, as `skein status`, `skein
// topology`, /debug/topology (and so /ui) show it.
type PairLink struct {
	From  string `json:"from"`
	To    string `json:"to"`
	State string `json:"state"`
	// Kind is the kind of an observed side (Link.Kind: vxlan, vxlan-direct
	// or bgp); empty when no side was observed.
	Kind string `json:"kind,omitempty"`
	// Observed is true when Basis is observed.
	Observed bool   `json:"observed"`
	Basis    string `json:"basis"`
	// AgentDown names the ends whose agent has no heartbeat: their data
	// path is kept, which does not make the link down.
	AgentDown []string `json:"agentDown,omitempty"`
	Detail    string   `json:"detail,omitempty"`
}

// linkRank orders states from worst to best: a link is as good as its
// worse side, since traffic needs both.
var linkRank = map[string]int{LinkDown: 0, LinkPartial: 1, LinkPending: 2, LinkNone: 3, LinkUp: 4}

// GradeLink is the one place a link's state is decided. Each side is
// graded by its own end, observed when that end's agent answered, else as
// it last reported; the link takes the worse known side. A side whose
// agent is down and that reported nothing is unknown, not down: a stopped
// agent leaves its kernel forwarding.
func GradeLink(a, b LinkSide) PairLink {
	l := PairLink{From: a.Node, To: b.Node, State: LinkUnknown, Basis: BasisNone}
	var details []string
	for _, s := range []LinkSide{a, b} {
		if !s.AgentUp {
			l.AgentDown = append(l.AgentDown, s.Node)
		}
		state, detail, basis := "", "", ""
		switch {
		case s.Observed != nil && s.Observed.State != "":
			state, detail, basis = s.Observed.State, s.Observed.Detail, BasisObserved
			if l.Kind == "" {
				l.Kind = s.Observed.Kind
			}
		case s.Reported != "":
			state, basis = s.Reported, BasisReported
		default:
			continue
		}
		if detail == "" {
			detail = state
		}
		details = append(details, basis+" by "+s.Node+": "+detail)
		if l.Basis != BasisObserved {
			l.Basis = basis
		}
		if l.State == LinkUnknown || linkRank[state] < linkRank[l.State] {
			l.State = state
		}
	}
	l.Observed = l.Basis == BasisObserved
	if len(l.AgentDown) > 0 {
		details = append(details, strings.Join(l.AgentDown, " and ")+": "+AgentDownDataPathKept)
	}
	l.Detail = strings.Join(details, "; ")
	return l
}

// ComponentError is one component's last error.
type ComponentError struct {
	Component string `json:"component"`
	Error     string `json:"error"`
}

// IPAMStats counts one node's addresses.
type IPAMStats struct {
	Blocks   int `json:"blocks"`
	Capacity int `json:"capacity"` // addresses pods may get in the node's blocks
	Used     int `json:"used"`
	Free     int `json:"free"`    // allocatable now: neither used nor cooling
	Cooling  int `json:"cooling"` // released and still resting
}

// EtcdState is etcd reachability as one agent sees it.
type EtcdState struct {
	Reachable bool      `json:"reachable"`
	Since     time.Time `json:"since,omitzero"`
	LastError string    `json:"lastError,omitempty"`
}

// JournalStats is what is known of an agent's offline journal.
type JournalStats struct {
	// Unpublished counts the queued changes; Oldest is when the first was made.
	Unpublished int       `json:"unpublished"`
	Oldest      time.Time `json:"oldest,omitzero"`
}

// OfflineState is the journal and etcd reachability.
type OfflineState struct {
	Etcd EtcdState `json:"etcd"`
	JournalStats
	LastError string `json:"lastError,omitempty"`
}

// VXLANStatus is the VXLAN backend's state.
type VXLANStatus struct {
	// Desired and Actual are the entries (one line each) of the last plan
	// and of the kernel as of the last sync.
	Desired []string `json:"desired"`
	Actual  []string `json:"actual"`
	// ActualFrom says where Actual comes from: "kernel" (read when asked)
	// or "last sync" (what the reconciler last saw or did); ActualError says
	// why the kernel could not be read.
	ActualFrom  string    `json:"actualFrom,omitempty"`
	ActualError string    `json:"actualError,omitempty"`
	LastSync    time.Time `json:"lastSync,omitzero"`
	LastError   string    `json:"lastError,omitempty"`
	// LastOps counts the changes the last sync made.
	LastOps  int `json:"lastOps"`
	Syncs    int `json:"syncs"`
	Failures int `json:"failures"`
	// Routes, Neighs and FDB count desired objects.
	Routes int `json:"routes"`
	Neighs int `json:"neighs"`
	FDB    int `json:"fdb"`
	// LastDuration is how long the last sync took.
	LastDuration time.Duration `json:"lastDuration,omitempty"`
}

// BGP session states as GoBGP names them, plus the three Skein adds.
const (
	BGPEstablished   = "Established"
	BGPNotConfigured = "NotConfigured"
	BGPStopped       = "Stopped"
	// BGPNoSession is an IPv6 peer of a node without an IPv6 underlay
	// address: no session can run from it (LastError says so).
	BGPNoSession = "NoSession"
)

// BGPSession is one BGP session.
type BGPSession struct {
	// Name is the peer's node name for node peers, the BGPPeer's otherwise.
	Name                 string     `json:"name"`
	Address              netip.Addr `json:"address"`
	ASN                  uint32     `json:"asn"`
	Port                 int        `json:"port,omitempty"`
	RouteReflectorClient bool       `json:"routeReflectorClient,omitempty"`
	Passive              bool       `json:"passive,omitempty"`
	Description          string     `json:"description,omitempty"`
	// State is Idle, Connect, Active, OpenSent, OpenConfirm or Established;
	// NotConfigured before the speaker has the peer, Stopped when not running,
	// NoSession when this node cannot open it (an IPv6 peer, no UnderlayIP6).
	State string `json:"state"`
	// Since is when the session last went up (Established) or down.
	Since time.Time `json:"since,omitzero"`
	// Uptime is how long the session has been Established.
	Uptime string `json:"uptime,omitempty"`
	// Received, Accepted and Advertised count unicast prefixes of both
	// families; Received6 and Advertised6 are their IPv6 share.
	Received    int `json:"prefixesReceived"`
	Accepted    int `json:"prefixesAccepted"`
	Advertised  int `json:"prefixesAdvertised"`
	Received6   int `json:"prefixesReceived6,omitempty"`
	Advertised6 int `json:"prefixesAdvertised6,omitempty"`
	// Flaps counts sessions that went down soon after coming up.
	Flaps int `json:"flaps,omitempty"`
	// GracefulRestart reports that graceful restart was negotiated;
	// PeerRestarting that the peer's routes are kept while it restarts.
	GracefulRestart bool `json:"gracefulRestart,omitempty"`
	PeerRestarting  bool `json:"peerRestarting,omitempty"`
	// LastError is the last reason given for a failed or lost session.
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
}

// Neighbor is the session as a status record publishes it.
func (s BGPSession) Neighbor() BGPNeighbor {
	return BGPNeighbor{
		Name: s.Name, Address: s.Address, ASN: s.ASN, State: s.State, Uptime: s.Uptime,
		Received: s.Received, Advertised: s.Advertised, Received6: s.Received6, Advertised6: s.Advertised6,
		LastError: s.LastError,
	}
}

// Up reports whether the session is established.
func (s BGPSession) Up() bool { return strings.EqualFold(s.State, BGPEstablished) }

// BGPRejection is a learned best path that is not installed, and why.
type BGPRejection struct {
	Prefix  netip.Prefix `json:"prefix"`
	NextHop netip.Addr   `json:"nextHop,omitzero"`
	Peer    netip.Addr   `json:"peer,omitzero"`
	Reason  string       `json:"reason"`
}

// String renders the rejection for logs and the debug state.
func (r BGPRejection) String() string {
	return fmt.Sprintf("%s via %s from %s: %s", r.Prefix, addrOrEmpty(r.NextHop), addrOrEmpty(r.Peer), r.Reason)
}

func addrOrEmpty(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// BGPStatus is the BGP backend's state.
type BGPStatus struct {
	RouterID netip.Addr `json:"routerID"`
	ASN      uint32     `json:"asn"`
	Listen   string     `json:"listen"`
	// Listen6 is the IPv6 address and port, the source of IPv6 sessions,
	// when the node has an IPv6 underlay address.
	Listen6         string `json:"listen6,omitempty"`
	Running         bool   `json:"running"`
	GracefulRestart bool   `json:"gracefulRestart"`
	// ClusterID is set when the speaker is a route reflector.
	ClusterID netip.Addr `json:"clusterID,omitzero"`
	// Syncing reports that routes of an earlier run are kept until the
	// peers have re-sent theirs (or the stale-route time passes).
	Syncing bool `json:"syncing"`
	// WaitingForAdvertised reports that peers are not configured because
	// the prefixes to advertise were never set.
	WaitingForAdvertised bool           `json:"waitingForAdvertised,omitempty"`
	Neighbors            []BGPSession   `json:"neighbors"`
	Advertised           []netip.Prefix `json:"advertised"`
	NextHop              netip.Addr     `json:"nextHop,omitzero"`
	// NextHop6 is the next hop of the advertised IPv6 blocks (the node's
	// IPv6 underlay address); without it no IPv6 block is advertised or
	// IPv6 route installed, and LastError says so.
	NextHop6 netip.Addr     `json:"nextHop6,omitzero"`
	Local    []netip.Prefix `json:"local"`
	// Routes are the kernel routes the speaker owns, as of the last sync.
	Routes []string `json:"routes"`
	// Rejected are learned best paths that are not installed, and why.
	Rejected []BGPRejection `json:"rejected,omitempty"`
	// Blocked are destinations held by a route the speaker does not own.
	Blocked []string `json:"blocked,omitempty"`
	// LastSync, LastDuration, Syncs and Failures are about route syncs.
	LastSync     time.Time     `json:"lastSync,omitzero"`
	LastDuration time.Duration `json:"lastDuration"`
	LastError    string        `json:"lastError,omitempty"`
	Syncs        int           `json:"syncs"`
	Failures     int           `json:"failures"`
}

// PolicyProgram summarises the compiled policy program.
type PolicyProgram struct {
	Endpoints int      `json:"endpoints"`
	Sets      int      `json:"sets"`
	Rules     int      `json:"rules"`
	Warnings  []string `json:"warnings,omitempty"`
}

// PolicyDataplane describes the applies to the nftables table.
type PolicyDataplane struct {
	// Rebuilds counts whole-table batches, Patches batches that add or
	// delete chains or sets in place, Updates element-only batches (and
	// applies with nothing to do).
	Rebuilds int `json:"rebuilds"`
	Patches  int `json:"patches"`
	Updates  int `json:"updates"`
	Failures int `json:"failures"`
	// LastKind is "rebuild", "patch" or "elements".
	LastKind string `json:"lastKind,omitempty"`
	// Chains, Rules, Sets and Elements describe the last applied table.
	Chains   int `json:"chains"`
	Rules    int `json:"rules"`
	Sets     int `json:"sets"`
	Elements int `json:"elements"`
	// LastOps is the number of operations of the last apply (1 for a
	// rebuild).
	LastOps      int           `json:"lastOps"`
	LastDuration time.Duration `json:"lastDuration"`
	LastApply    time.Time     `json:"lastApply,omitzero"`
	LastError    string        `json:"lastError,omitempty"`
}

// PolicyStatus is the policy enforcer's state.
type PolicyStatus struct {
	DesiredVersion uint64          `json:"desiredVersion"`
	AppliedVersion uint64          `json:"appliedVersion"`
	Program        PolicyProgram   `json:"program"`
	Dataplane      PolicyDataplane `json:"dataplane"`
	LastSync       time.Time       `json:"lastSync,omitzero"`
	LastError      string          `json:"lastError,omitempty"`
	Syncs          int             `json:"syncs"`
	Failures       int             `json:"failures"`
	// BadPolicies are the stored policies that could not be enforced.
	BadPolicies []string `json:"badPolicies,omitempty"`
}

// EndpointPage is what /debug/endpoints serves: one page of the cluster's
// endpoints as this agent holds them, sorted by namespace, name and
// interface, optionally filtered.
type EndpointPage struct {
	Node     string    `json:"node"`
	Now      time.Time `json:"now"`
	StoreRev int64     `json:"storeRev"`
	// Total counts the endpoints that match the filter; Endpoints holds
	// those from Offset on, at most Limit of them, and More says how many
	// matching ones follow the page.
	Total     int        `json:"total"`
	Offset    int        `json:"offset"`
	Limit     int        `json:"limit"`
	More      int        `json:"more"`
	Endpoints []Endpoint `json:"endpoints"`
}

// PolicyMatrix is what /debug/matrix serves: who may reach whom among one
// namespace's endpoints, computed from this agent's view by the code behind
// `skein policy matrix`.
type PolicyMatrix struct {
	Node      string    `json:"node"`
	Now       time.Time `json:"now"`
	StoreRev  int64     `json:"storeRev"`
	Namespace string    `json:"namespace"`
	Ports     []int     `json:"ports"`
	Protocols []string  `json:"protocols"`
	// Endpoints are the rows and columns, "namespace/name", sorted.
	Endpoints []string `json:"endpoints"`
	// Cells are in order protocol, port, from, to.
	Cells []MatrixCell `json:"cells"`
	// Warnings are the compiler's; Invalid the stored policies that do not
	// decode (quarantined here, as `skein policy matrix` does).
	Warnings []string        `json:"warnings,omitempty"`
	Invalid  []InvalidPolicy `json:"invalid,omitempty"`
}

// MatrixCell is one connection of a PolicyMatrix (policy.Cell).
type MatrixCell struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
	Allowed  bool   `json:"allowed"`
	// Rule is the deciding rule, as `skein policy trace` prints it.
	Rule string `json:"rule"`
	// Family is 6 for a cell of an IPv6 matrix, 0 for IPv4.
	Family int `json:"family,omitempty"`
}
