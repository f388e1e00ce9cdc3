package api

// API versions and kind of ClusterNetworkPolicy, the successor of the
// AdminNetworkPolicy / BaselineAdminNetworkPolicy pair. v1beta1 is the one
// Skein writes in docs; v1alpha2 has the same schema and is accepted too.
const (
	PolicyV1Beta1             = "policy.networking.k8s.io/v1beta1"
	PolicyV1Alpha2            = "policy.networking.k8s.io/v1alpha2"
	KindClusterNetworkPolicy  = "ClusterNetworkPolicy"
	ClusterNetworkPolicyShort = "cnp"
)

// Tier is the evaluation tier of a ClusterNetworkPolicy.
type Tier string

// The tiers a ClusterNetworkPolicy can sit in: Admin is evaluated before
// NetworkPolicies, Baseline after them.
const (
	TierAdmin    Tier = "Admin"
	TierBaseline Tier = "Baseline"
)

// ClusterNetworkPolicyRuleAction is what a CNP rule does with matching
// traffic. Pass skips the rest of the policy's tier.
type ClusterNetworkPolicyRuleAction string

// CNP rule actions (ANP spells Accept "Allow").
const (
	CNPActionAccept ClusterNetworkPolicyRuleAction = "Accept"
	CNPActionDeny   ClusterNetworkPolicyRuleAction = "Deny"
	CNPActionPass   ClusterNetworkPolicyRuleAction = "Pass"
)

// ClusterNetworkPolicy is policy.networking.k8s.io/v1beta1 (or v1alpha2)
// ClusterNetworkPolicy, cluster-scoped: metadata.namespace is cleared on
// decode. A status in a file is ignored.
type ClusterNetworkPolicy struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       ClusterNetworkPolicySpec `json:"spec"`
}

// ClusterNetworkPolicySpec is the spec of a ClusterNetworkPolicy. Within a
// tier, lower Priority values are evaluated first; rules within a policy in
// order.
type ClusterNetworkPolicySpec struct {
	Tier     Tier                              `json:"tier"`
	Priority int32                             `json:"priority"`
	Subject  ClusterNetworkPolicySubject       `json:"subject"`
	Ingress  []ClusterNetworkPolicyIngressRule `json:"ingress,omitempty"`
	Egress   []ClusterNetworkPolicyEgressRule  `json:"egress,omitempty"`
}

// ClusterNetworkPolicySubject selects the pods a CNP applies to; exactly one
// field is set. Same shape as the ANP subject.
type ClusterNetworkPolicySubject = AdminNetworkPolicySubject

// ClusterNetworkPolicyIngressPeer is one source; exactly one field is set.
// Same shape as the ANP ingress peer.
type ClusterNetworkPolicyIngressPeer = AdminNetworkPolicyIngressPeer

// ClusterNetworkPolicyIngressRule applies Action to traffic from any of From
// matching any of Protocols (none: all traffic).
type ClusterNetworkPolicyIngressRule struct {
	Name      string                            `json:"name,omitempty"`
	Action    ClusterNetworkPolicyRuleAction    `json:"action"`
	From      []ClusterNetworkPolicyIngressPeer `json:"from"`
	Protocols []ClusterNetworkPolicyProtocol    `json:"protocols,omitempty"`
}

// ClusterNetworkPolicyEgressRule applies Action to traffic to any of To
// matching any of Protocols (none: all traffic).
type ClusterNetworkPolicyEgressRule struct {
	Name      string                           `json:"name,omitempty"`
	Action    ClusterNetworkPolicyRuleAction   `json:"action"`
	To        []ClusterNetworkPolicyEgressPeer `json:"to"`
	Protocols []ClusterNetworkPolicyProtocol   `json:"protocols,omitempty"`
}

// ClusterNetworkPolicyEgressPeer is one destination; exactly one field is
// set. Nodes selects nodes by label and matches their underlay addresses.
// DomainNames is part of the upstream (experimental) schema so files decode,
// but validation rejects it: Skein does not resolve names.
type ClusterNetworkPolicyEgressPeer struct {
	Namespaces  *LabelSelector `json:"namespaces,omitempty"`
	Pods        *NamespacedPod `json:"pods,omitempty"`
	Nodes       *LabelSelector `json:"nodes,omitempty"`
	Networks    []CIDR         `json:"networks,omitempty"`
	DomainNames []string       `json:"domainNames,omitempty"`
}

// ClusterNetworkPolicyProtocol matches traffic of one protocol (optionally
// one destination port or range) or a destination named port; exactly one
// field is set.
type ClusterNetworkPolicyProtocol struct {
	TCP                  *ClusterNetworkPolicyProtocolPort `json:"tcp,omitempty"`
	UDP                  *ClusterNetworkPolicyProtocolPort `json:"udp,omitempty"`
	SCTP                 *ClusterNetworkPolicyProtocolPort `json:"sctp,omitempty"`
	DestinationNamedPort string                            `json:"destinationNamedPort,omitempty"`
}

// ClusterNetworkPolicyProtocolPort holds the attributes of a tcp, udp or
// sctp match. Upstream requires DestinationPort (the object must not be
// empty); to match every port of a protocol use the range 1-65535.
type ClusterNetworkPolicyProtocolPort struct {
	DestinationPort *ClusterNetworkPolicyPort `json:"destinationPort,omitempty"`
}

// ClusterNetworkPolicyPort is a port number or a range; exactly one is set.
type ClusterNetworkPolicyPort struct {
	Number int32                          `json:"number,omitempty"`
	Range  *ClusterNetworkPolicyPortRange `json:"range,omitempty"`
}

// ClusterNetworkPolicyPortRange is an inclusive port range, Start < End.
type ClusterNetworkPolicyPortRange struct {
	Start int32 `json:"start"`
	End   int32 `json:"end"`
}
