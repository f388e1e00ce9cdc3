package api

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
)

// API versions and kinds of the policy documents Skein reads. The JSON
// schemas are the upstream Kubernetes ones, so files written for kubectl work.
const (
	NetworkingV1                   = "networking.k8s.io/v1"
	PolicyV1Alpha1                 = "policy.networking.k8s.io/v1alpha1"
	CoreV1                         = "v1"
	SkeinV1                        = "skein.dev/v1"
	KindNetworkPolicy              = "NetworkPolicy"
	KindAdminNetworkPolicy         = "AdminNetworkPolicy"
	KindBaselineAdminNetworkPolicy = "BaselineAdminNetworkPolicy"
	KindNamespace                  = "Namespace"
	KindEndpoint                   = "Endpoint"
	KindNode                       = "Node"
)

// Protocols a port may name; TCP is the default everywhere.
const (
	ProtocolTCP  = "TCP"
	ProtocolUDP  = "UDP"
	ProtocolSCTP = "SCTP"
)

// Policy types of a NetworkPolicy.
const (
	PolicyTypeIngress = "Ingress"
	PolicyTypeEgress  = "Egress"
)

// BaselineAdminNetworkPolicyName is the only name upstream allows for the
// (singleton) BaselineAdminNetworkPolicy. Skein accepts any name; all BANPs
// found apply.
const BaselineAdminNetworkPolicyName = "default"

// Object is any document Skein decodes from a policy file.
type Object interface {
	GetAPIVersion() string
	GetKind() string
	GetNamespace() string
	GetName() string
}

// TypeMeta is the apiVersion and kind of a document.
type TypeMeta struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
}

// GetAPIVersion returns the apiVersion.
func (t TypeMeta) GetAPIVersion() string { return t.APIVersion }

// GetKind returns the kind.
func (t TypeMeta) GetKind() string { return t.Kind }

// ObjectMeta is the subset of Kubernetes object metadata Skein keeps.
// Annotations are accepted (kubectl writes them) but carry no meaning.
type ObjectMeta struct {
	Name        string            `json:"name,omitempty"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// GetName returns the name.
func (m ObjectMeta) GetName() string { return m.Name }

// GetNamespace returns the namespace ("" for cluster-scoped objects).
func (m ObjectMeta) GetNamespace() string { return m.Namespace }

// LabelSelectorOperator is the operator of a selector requirement.
type LabelSelectorOperator string

// Selector operators, as in apimachinery.
const (
	LabelSelectorOpIn           LabelSelectorOperator = "In"
	LabelSelectorOpNotIn        LabelSelectorOperator = "NotIn"
	LabelSelectorOpExists       LabelSelectorOperator = "Exists"
	LabelSelectorOpDoesNotExist LabelSelectorOperator = "DoesNotExist"
)

// LabelSelector selects objects by labels. The requirements of matchLabels
// and matchExpressions are ANDed. An empty (non-nil) selector matches
// everything; a nil *LabelSelector matches nothing.
type LabelSelector struct {
	MatchLabels      map[string]string          `json:"matchLabels,omitempty"`
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

// LabelSelectorRequirement is one matchExpressions entry.
type LabelSelectorRequirement struct {
	Key      string                `json:"key"`
	Operator LabelSelectorOperator `json:"operator"`
	Values   []string              `json:"values,omitempty"`
}

// Empty reports whether s has no requirements, and so matches everything.
// A nil s is not empty (it matches nothing).
func (s *LabelSelector) Empty() bool {
	return s != nil && len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0
}

// Matches reports whether labels satisfy s, with apimachinery semantics:
// nil matches nothing, an empty selector matches everything, NotIn and
// DoesNotExist match when the key is absent. A selector that fails
// validation (unknown operator, In/NotIn without values, Exists with
// values) matches nothing, as LabelSelectorAsSelector would return an error.
func (s *LabelSelector) Matches(labels map[string]string) bool {
	if s == nil {
		return false
	}
	for k, v := range s.MatchLabels {
		if have, ok := labels[k]; !ok || have != v {
			return false
		}
	}
	for _, r := range s.MatchExpressions {
		if !r.matches(labels) {
			return false
		}
	}
	return true
}

func (r LabelSelectorRequirement) matches(labels map[string]string) bool {
	have, ok := labels[r.Key]
	switch r.Operator {
	case LabelSelectorOpIn:
		if len(r.Values) == 0 {
			return false
		}
		return ok && contains(r.Values, have)
	case LabelSelectorOpNotIn:
		if len(r.Values) == 0 {
			return false
		}
		return !ok || !contains(r.Values, have)
	case LabelSelectorOpExists:
		return len(r.Values) == 0 && ok
	case LabelSelectorOpDoesNotExist:
		return len(r.Values) == 0 && !ok
	default:
		return false
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// IntOrStringType says which field of an IntOrString is set.
type IntOrStringType int

// The kinds of IntOrString.
const (
	TypeInt IntOrStringType = iota
	TypeString
)

// IntOrString holds a JSON number or string, like apimachinery's intstr.
type IntOrString struct {
	Type   IntOrStringType
	IntVal int32
	StrVal string
}

// FromInt returns an IntOrString holding i.
func FromInt(i int32) IntOrString { return IntOrString{Type: TypeInt, IntVal: i} }

// FromString returns an IntOrString holding s.
func FromString(s string) IntOrString { return IntOrString{Type: TypeString, StrVal: s} }

// String returns the value as text.
func (v IntOrString) String() string {
	if v.Type == TypeString {
		return v.StrVal
	}
	return strconv.Itoa(int(v.IntVal))
}

// MarshalJSON implements json.Marshaler.
func (v IntOrString) MarshalJSON() ([]byte, error) {
	if v.Type == TypeString {
		return json.Marshal(v.StrVal)
	}
	return json.Marshal(v.IntVal)
}

// UnmarshalJSON implements json.Unmarshaler.
func (v *IntOrString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		v.Type = TypeString
		v.IntVal = 0
		return json.Unmarshal(b, &v.StrVal)
	}
	var i int32
	if err := json.Unmarshal(b, &i); err != nil {
		return fmt.Errorf("invalid value %s: want an integer or a string", b)
	}
	*v = FromInt(i)
	return nil
}

// NetworkPolicy is networking.k8s.io/v1 NetworkPolicy (namespaced).
type NetworkPolicy struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       NetworkPolicySpec `json:"spec"`
}

// NetworkPolicySpec is the spec of a NetworkPolicy.
type NetworkPolicySpec struct {
	// PodSelector selects the pods the policy applies to in its namespace;
	// empty selects all of them.
	PodSelector LabelSelector              `json:"podSelector"`
	Ingress     []NetworkPolicyIngressRule `json:"ingress,omitempty"`
	Egress      []NetworkPolicyEgressRule  `json:"egress,omitempty"`
	// PolicyTypes holds "Ingress" and/or "Egress"; see PolicyDefaults.
	PolicyTypes []string `json:"policyTypes,omitempty"`
}

// NetworkPolicyIngressRule allows traffic matching both From and Ports;
// an empty From or Ports matches all.
type NetworkPolicyIngressRule struct {
	Ports []NetworkPolicyPort `json:"ports,omitempty"`
	From  []NetworkPolicyPeer `json:"from,omitempty"`
}

// NetworkPolicyEgressRule allows traffic matching both To and Ports;
// an empty To or Ports matches all.
type NetworkPolicyEgressRule struct {
	Ports []NetworkPolicyPort `json:"ports,omitempty"`
	To    []NetworkPolicyPeer `json:"to,omitempty"`
}

// NetworkPolicyPeer is one peer: IPBlock alone, or PodSelector and/or
// NamespaceSelector. A nil selector is absent: PodSelector alone means pods
// in the policy's namespace; NamespaceSelector alone means all pods of the
// selected namespaces.
type NetworkPolicyPeer struct {
	PodSelector       *LabelSelector `json:"podSelector,omitempty"`
	NamespaceSelector *LabelSelector `json:"namespaceSelector,omitempty"`
	IPBlock           *IPBlock       `json:"ipBlock,omitempty"`
}

// IPBlock is a CIDR minus some sub-CIDRs.
type IPBlock struct {
	CIDR   string   `json:"cidr"`
	Except []string `json:"except,omitempty"`
}

// NetworkPolicyPort is a port (number or name) or a numeric range Port..EndPort.
// A nil Port means all ports of Protocol.
type NetworkPolicyPort struct {
	Protocol *string      `json:"protocol,omitempty"`
	Port     *IntOrString `json:"port,omitempty"`
	EndPort  *int32       `json:"endPort,omitempty"`
}

// PolicyDefaults applies the API server's defaulting to np: policyTypes
// empty → ["Ingress"] plus "Egress" iff there are egress rules; a nil port
// protocol → TCP.
func PolicyDefaults(np *NetworkPolicy) {
	if len(np.Spec.PolicyTypes) == 0 {
		np.Spec.PolicyTypes = []string{PolicyTypeIngress}
		if len(np.Spec.Egress) > 0 {
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, PolicyTypeEgress)
		}
	}
	defaultPorts := func(ports []NetworkPolicyPort) {
		for i := range ports {
			if ports[i].Protocol == nil {
				p := ProtocolTCP
				ports[i].Protocol = &p
			}
		}
	}
	for i := range np.Spec.Ingress {
		defaultPorts(np.Spec.Ingress[i].Ports)
	}
	for i := range np.Spec.Egress {
		defaultPorts(np.Spec.Egress[i].Ports)
	}
}

// AppliesTo reports whether np has policy type t ("Ingress" or "Egress").
// Call PolicyDefaults first.
func (np *NetworkPolicy) AppliesTo(t string) bool {
	return contains(np.Spec.PolicyTypes, t)
}

// AdminNetworkPolicyRuleAction is what an admin rule does with matching traffic.
type AdminNetworkPolicyRuleAction string

// Admin rule actions. Pass is not allowed in a BaselineAdminNetworkPolicy.
const (
	ActionAllow AdminNetworkPolicyRuleAction = "Allow"
	ActionDeny  AdminNetworkPolicyRuleAction = "Deny"
	ActionPass  AdminNetworkPolicyRuleAction = "Pass"
)

// AdminNetworkPolicy is policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy
// (cluster-scoped: metadata.namespace is cleared on decode). A status in a
// file is ignored.
type AdminNetworkPolicy struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       AdminNetworkPolicySpec `json:"spec"`
}

// AdminNetworkPolicySpec is the spec of an AdminNetworkPolicy. Lower
// Priority values are evaluated first; rules within a policy in order.
type AdminNetworkPolicySpec struct {
	Priority int32                           `json:"priority"`
	Subject  AdminNetworkPolicySubject       `json:"subject"`
	Ingress  []AdminNetworkPolicyIngressRule `json:"ingress,omitempty"`
	Egress   []AdminNetworkPolicyEgressRule  `json:"egress,omitempty"`
}

// AdminNetworkPolicySubject selects the pods a policy applies to; exactly
// one field is set.
type AdminNetworkPolicySubject struct {
	Namespaces *LabelSelector `json:"namespaces,omitempty"`
	Pods       *NamespacedPod `json:"pods,omitempty"`
}

// NamespacedPod selects pods matching PodSelector in namespaces matching
// NamespaceSelector (both required; empty selects all).
type NamespacedPod struct {
	NamespaceSelector LabelSelector `json:"namespaceSelector"`
	PodSelector       LabelSelector `json:"podSelector"`
}

// AdminNetworkPolicyIngressRule applies Action to traffic from any of From
// on any of Ports (a nil Ports means all ports).
type AdminNetworkPolicyIngressRule struct {
	Name   string                          `json:"name,omitempty"`
	Action AdminNetworkPolicyRuleAction    `json:"action"`
	From   []AdminNetworkPolicyIngressPeer `json:"from"`
	Ports  *[]AdminNetworkPolicyPort       `json:"ports,omitempty"`
}

// AdminNetworkPolicyEgressRule applies Action to traffic to any of To on any
// of Ports (a nil Ports means all ports).
type AdminNetworkPolicyEgressRule struct {
	Name   string                         `json:"name,omitempty"`
	Action AdminNetworkPolicyRuleAction   `json:"action"`
	To     []AdminNetworkPolicyEgressPeer `json:"to"`
	Ports  *[]AdminNetworkPolicyPort      `json:"ports,omitempty"`
}

// AdminNetworkPolicyIngressPeer is one source; exactly one field is set.
type AdminNetworkPolicyIngressPeer struct {
	Namespaces *LabelSelector `json:"namespaces,omitempty"`
	Pods       *NamespacedPod `json:"pods,omitempty"`
}

// AdminNetworkPolicyEgressPeer is one destination; exactly one field is set.
// Nodes selects nodes by the labels of their records and matches their
// underlay addresses.
type AdminNetworkPolicyEgressPeer struct {
	Namespaces *LabelSelector `json:"namespaces,omitempty"`
	Pods       *NamespacedPod `json:"pods,omitempty"`
	Nodes      *LabelSelector `json:"nodes,omitempty"`
	Networks   []CIDR         `json:"networks,omitempty"`
}

// CIDR is an IP prefix in CIDR notation ("10.0.0.0/8", "fd00::/8").
type CIDR string

// Prefix parses c; the result is masked.
func (c CIDR) Prefix() (netip.Prefix, error) {
	p, err := netip.ParsePrefix(string(c))
	if err != nil {
		return netip.Prefix{}, err
	}
	return p.Masked(), nil
}

// AdminNetworkPolicyPort selects ports; exactly one field is set.
type AdminNetworkPolicyPort struct {
	PortNumber *Port      `json:"portNumber,omitempty"`
	NamedPort  *string    `json:"namedPort,omitempty"`
	PortRange  *PortRange `json:"portRange,omitempty"`
}

// Port is one protocol and port number.
type Port struct {
	Protocol string `json:"protocol"`
	Port     int32  `json:"port"`
}

// PortRange is an inclusive port range of one protocol.
type PortRange struct {
	Protocol string `json:"protocol,omitempty"`
	Start    int32  `json:"start"`
	End      int32  `json:"end"`
}

// BaselineAdminNetworkPolicy is policy.networking.k8s.io/v1alpha1
// BaselineAdminNetworkPolicy (cluster-scoped). Upstream allows only the
// name "default"; Skein accepts any name and applies all of them.
type BaselineAdminNetworkPolicy struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       BaselineAdminNetworkPolicySpec `json:"spec"`
}

// BaselineAdminNetworkPolicySpec is like AdminNetworkPolicySpec without a
// priority; rule actions are Allow or Deny only.
type BaselineAdminNetworkPolicySpec struct {
	Subject AdminNetworkPolicySubject               `json:"subject"`
	Ingress []BaselineAdminNetworkPolicyIngressRule `json:"ingress,omitempty"`
	Egress  []BaselineAdminNetworkPolicyEgressRule  `json:"egress,omitempty"`
}

// BaselineAdminNetworkPolicyIngressRule has the shape of an ANP ingress rule.
type BaselineAdminNetworkPolicyIngressRule = AdminNetworkPolicyIngressRule

// BaselineAdminNetworkPolicyEgressRule has the shape of an ANP egress rule.
type BaselineAdminNetworkPolicyEgressRule = AdminNetworkPolicyEgressRule

// AdminPolicyPortDefaults sets the protocol of admin policy ports to TCP
// where it is empty (upstream defaulting).
func AdminPolicyPortDefaults(ingress []AdminNetworkPolicyIngressRule, egress []AdminNetworkPolicyEgressRule) {
	fix := func(ports *[]AdminNetworkPolicyPort) {
		if ports == nil {
			return
		}
		for i := range *ports {
			p := &(*ports)[i]
			if p.PortNumber != nil && p.PortNumber.Protocol == "" {
				p.PortNumber.Protocol = ProtocolTCP
			}
			if p.PortRange != nil && p.PortRange.Protocol == "" {
				p.PortRange.Protocol = ProtocolTCP
			}
		}
	}
	for i := range ingress {
		fix(ingress[i].Ports)
	}
	for i := range egress {
		fix(egress[i].Ports)
	}
}

// NamespaceDoc is a Namespace document (apiVersion v1) in an offline file.
type NamespaceDoc struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
}

// ToNamespace converts d to the stored form.
func (d NamespaceDoc) ToNamespace() Namespace {
	return Namespace{Name: d.Name, Labels: d.Labels}
}

// EndpointDoc is an Endpoint document (apiVersion skein.dev/v1) in an
// offline file: a pod's namespace, name, labels, node, addresses and ports.
type EndpointDoc struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Node       string       `json:"node,omitempty"`
	IPs        []netip.Addr `json:"ips"`
	Ports      []NamedPort  `json:"ports,omitempty"`
}

// ToEndpoint converts d to the stored form (without container details).
func (d EndpointDoc) ToEndpoint() Endpoint {
	return Endpoint{
		Namespace: d.Namespace,
		Name:      d.Name,
		Labels:    d.Labels,
		Ports:     d.Ports,
		IPs:       d.IPs,
		Node:      d.Node,
	}
}

// NodeDoc is a Node document (apiVersion skein.dev/v1) in an offline file:
// a node's name, labels and underlay address, which nodes peers of admin
// policies match.
type NodeDoc struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	UnderlayIP netip.Addr `json:"underlayIP"`
}

// ToNode converts d to the stored form (without VXLAN or BGP details).
func (d NodeDoc) ToNode() Node {
	return Node{Name: d.Name, UnderlayIP: d.UnderlayIP, Labels: d.Labels}
}
