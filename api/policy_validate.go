package api

import (
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// FieldError is one validation failure at a field path such as
// "spec.ingress[0].from[1]".
type FieldError struct {
	Path string
	Msg  string
	// Line is the field's 1-based line in its file; 0 when unknown (stored
	// values, objects built in code).
	Line int
}

// Error returns "path: message", or "line N: path: message".
func (e FieldError) Error() string {
	s := e.Msg
	if e.Path != "" {
		s = e.Path + ": " + e.Msg
	}
	if e.Line > 0 {
		s = "line " + strconv.Itoa(e.Line) + ": " + s
	}
	return s
}

// FieldErrors is every validation failure of one object, in field order.
type FieldErrors []FieldError

// Error joins the failures with "; ".
func (es FieldErrors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

// asError returns es as an error, or nil (not a typed nil) when empty.
func (es FieldErrors) asError() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// errs collects FieldErrors.
type errs struct{ list FieldErrors }

func (e *errs) add(path, format string, args ...any) {
	e.list = append(e.list, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func idx(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

var (
	dns1123LabelRE  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dns1123SubRE    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	qualifiedNameRE = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	ianaSvcNameRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	hasLetterRE     = regexp.MustCompile(`[a-z]`)
)

// dnsLabelMsg returns why s is not a DNS-1123 label, or "".
func dnsLabelMsg(s string) string {
	if len(s) > 63 || !dns1123LabelRE.MatchString(s) {
		return fmt.Sprintf("invalid value %q: must be a DNS-1123 label (at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit)", s)
	}
	return ""
}

// dnsSubdomainMsg returns why s is not a DNS-1123 subdomain, or "".
func dnsSubdomainMsg(s string) string {
	if len(s) > 253 || !dns1123SubRE.MatchString(s) {
		return fmt.Sprintf("invalid value %q: must be a DNS-1123 subdomain (at most 253 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit)", s)
	}
	return ""
}

// labelKeyMsg returns why k is not a qualified label key ([prefix/]name), or "".
func labelKeyMsg(k string) string {
	name := k
	if prefix, n, ok := strings.Cut(k, "/"); ok {
		if prefix == "" || len(prefix) > 253 || !dns1123SubRE.MatchString(prefix) {
			return fmt.Sprintf("invalid label key %q: the prefix must be a DNS-1123 subdomain", k)
		}
		name = n
	}
	if name == "" || len(name) > 63 || !qualifiedNameRE.MatchString(name) {
		return fmt.Sprintf("invalid label key %q: the name must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", k)
	}
	return ""
}

// labelValueMsg returns why v is not a label value, or "".
func labelValueMsg(v string) string {
	if v != "" && (len(v) > 63 || !qualifiedNameRE.MatchString(v)) {
		return fmt.Sprintf("invalid label value %q: must be empty or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit", v)
	}
	return ""
}

// ValidateLabelKey reports why k cannot be a label key, or nil.
func ValidateLabelKey(k string) error {
	if m := labelKeyMsg(k); m != "" {
		return FieldError{Msg: m}
	}
	return nil
}

// ValidateLabelValue reports why v cannot be a label value, or nil.
func ValidateLabelValue(v string) error {
	if m := labelValueMsg(v); m != "" {
		return FieldError{Msg: m}
	}
	return nil
}

// portNameMsg returns why s is not an IANA_SVC_NAME (a named port), or "".
func portNameMsg(s string) string {
	switch {
	case len(s) > 15:
		return fmt.Sprintf("invalid port name %q: must be no more than 15 characters", s)
	case !ianaSvcNameRE.MatchString(s):
		return fmt.Sprintf("invalid port name %q: must contain only lowercase letters, digits and '-', starting and ending with a letter or digit", s)
	case strings.Contains(s, "--"):
		return fmt.Sprintf("invalid port name %q: must not contain consecutive hyphens", s)
	case !hasLetterRE.MatchString(s):
		return fmt.Sprintf("invalid port name %q: must contain at least one letter", s)
	}
	return ""
}

func validProtocol(p string) bool {
	return p == ProtocolTCP || p == ProtocolUDP || p == ProtocolSCTP
}

func (e *errs) protocol(path, p string) {
	if !validProtocol(p) {
		e.add(path, "unsupported value %q: supported values: %q, %q, %q", p, ProtocolTCP, ProtocolUDP, ProtocolSCTP)
	}
}

func (e *errs) portNumber(path string, p int64) {
	if p < 1 || p > 65535 {
		e.add(path, "invalid value %d: must be between 1 and 65535, inclusive", p)
	}
}

func (e *errs) labels(path string, m map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if msg := labelKeyMsg(k); msg != "" {
			e.add(path, "%s", msg)
		}
		if msg := labelValueMsg(m[k]); msg != "" {
			e.add(path+"["+k+"]", "%s", msg)
		}
	}
}

func (e *errs) meta(m ObjectMeta, namespaced bool, nameMsg func(string) string) {
	if m.Name == "" {
		e.add("metadata.name", "required value")
	} else if msg := nameMsg(m.Name); msg != "" {
		e.add("metadata.name", "%s", msg)
	}
	if namespaced {
		if m.Namespace == "" {
			e.add("metadata.namespace", "required value")
		} else if msg := dnsLabelMsg(m.Namespace); msg != "" {
			e.add("metadata.namespace", "%s", msg)
		}
	} else if m.Namespace != "" {
		e.add("metadata.namespace", "not allowed: the object is cluster-scoped")
	}
	e.labels("metadata.labels", m.Labels)
}

// ValidateLabelSelector returns the failures of s at path (nil s is valid).
func ValidateLabelSelector(s *LabelSelector, path string) FieldErrors {
	var e errs
	e.selector(s, path)
	return e.list
}

func (e *errs) selector(s *LabelSelector, path string) {
	if s == nil {
		return
	}
	e.labels(path+".matchLabels", s.MatchLabels)
	for i, r := range s.MatchExpressions {
		p := idx(path+".matchExpressions", i)
		if msg := labelKeyMsg(r.Key); msg != "" {
			e.add(p+".key", "%s", msg)
		}
		switch r.Operator {
		case LabelSelectorOpIn, LabelSelectorOpNotIn:
			if len(r.Values) == 0 {
				e.add(p+".values", "must be specified when `operator` is 'In' or 'NotIn'")
			}
		case LabelSelectorOpExists, LabelSelectorOpDoesNotExist:
			if len(r.Values) > 0 {
				e.add(p+".values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
			}
		default:
			e.add(p+".operator", "unsupported value %q: supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\"", r.Operator)
		}
		for j, v := range r.Values {
			if msg := labelValueMsg(v); msg != "" {
				e.add(idx(p+".values", j), "%s", msg)
			}
		}
	}
}

// ValidateNetworkPolicy checks np like the API server does, after
// PolicyDefaults. It returns FieldErrors or nil.
func ValidateNetworkPolicy(np *NetworkPolicy) error {
	var e errs
	e.meta(np.ObjectMeta, true, dnsSubdomainMsg)
	e.selector(&np.Spec.PodSelector, "spec.podSelector")
	for i, r := range np.Spec.Ingress {
		p := idx("spec.ingress", i)
		e.npPorts(p+".ports", r.Ports)
		e.npPeers(p+".from", r.From)
	}
	for i, r := range np.Spec.Egress {
		p := idx("spec.egress", i)
		e.npPorts(p+".ports", r.Ports)
		e.npPeers(p+".to", r.To)
	}
	if len(np.Spec.PolicyTypes) > 2 {
		e.add("spec.policyTypes", "may not specify more than two policyTypes")
	}
	for i, t := range np.Spec.PolicyTypes {
		if t != PolicyTypeIngress && t != PolicyTypeEgress {
			e.add(idx("spec.policyTypes", i), "unsupported value %q: supported values: %q, %q", t, PolicyTypeIngress, PolicyTypeEgress)
		}
	}
	return e.list.asError()
}

func (e *errs) npPorts(path string, ports []NetworkPolicyPort) {
	for i, port := range ports {
		p := idx(path, i)
		if port.Protocol != nil {
			e.protocol(p+".protocol", *port.Protocol)
		}
		if port.Port != nil {
			if port.Port.Type == TypeInt {
				e.portNumber(p+".port", int64(port.Port.IntVal))
			} else if msg := portNameMsg(port.Port.StrVal); msg != "" {
				e.add(p+".port", "%s", msg)
			}
		}
		if port.EndPort == nil {
			continue
		}
		switch {
		case port.Port == nil:
			e.add(p+".endPort", "may not be specified when port is not specified")
		case port.Port.Type == TypeString:
			e.add(p+".endPort", "may not be specified when port is a named port")
		case *port.EndPort < port.Port.IntVal:
			e.add(p+".endPort", "must be >= port (%d < %d)", *port.EndPort, port.Port.IntVal)
		default:
			e.portNumber(p+".endPort", int64(*port.EndPort))
		}
	}
}

func (e *errs) npPeers(path string, peers []NetworkPolicyPeer) {
	for i, peer := range peers {
		p := idx(path, i)
		n := 0
		if peer.PodSelector != nil {
			n++
			e.selector(peer.PodSelector, p+".podSelector")
		}
		if peer.NamespaceSelector != nil {
			n++
			e.selector(peer.NamespaceSelector, p+".namespaceSelector")
		}
		if peer.IPBlock != nil {
			n++
			e.ipBlock(p+".ipBlock", peer.IPBlock)
		}
		switch {
		case n == 0:
			e.add(p, "must specify a peer")
		case peer.IPBlock != nil && n > 1:
			e.add(p, "may not specify both ipBlock and another peer")
		}
	}
}

func (e *errs) ipBlock(path string, b *IPBlock) {
	if b.CIDR == "" {
		e.add(path+".cidr", "required value")
		return
	}
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		e.add(path+".cidr", "invalid CIDR %q", b.CIDR)
		return
	}
	cidr = cidr.Masked()
	for i, s := range b.Except {
		p := idx(path+".except", i)
		ex, err := netip.ParsePrefix(s)
		if err != nil {
			e.add(p, "invalid CIDR %q", s)
			continue
		}
		if ex.Addr().Is4() != cidr.Addr().Is4() || !cidr.Contains(ex.Addr()) || ex.Bits() <= cidr.Bits() {
			e.add(p, "%s must be a strict subset of cidr %s", s, b.CIDR)
		}
	}
}

// Prefixes parses b, masking host bits: the CIDR and the except prefixes.
func (b IPBlock) Prefixes() (netip.Prefix, []netip.Prefix, error) {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return netip.Prefix{}, nil, fmt.Errorf("ipBlock cidr %q: %w", b.CIDR, err)
	}
	out := make([]netip.Prefix, 0, len(b.Except))
	for _, s := range b.Except {
		ex, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, nil, fmt.Errorf("ipBlock except %q: %w", s, err)
		}
		out = append(out, ex.Masked())
	}
	return cidr.Masked(), out, nil
}

// ValidateAdminNetworkPolicy checks anp per the v1alpha1 schema. It returns
// FieldErrors or nil.
func ValidateAdminNetworkPolicy(anp *AdminNetworkPolicy) error {
	var e errs
	e.meta(anp.ObjectMeta, false, dnsSubdomainMsg)
	if anp.Spec.Priority < 0 || anp.Spec.Priority > 1000 {
		e.add("spec.priority", "invalid value %d: must be between 0 and 1000, inclusive", anp.Spec.Priority)
	}
	e.adminSpec(anp.Spec.Subject, anp.Spec.Ingress, anp.Spec.Egress, true)
	return e.list.asError()
}

// ValidateBaselineAdminNetworkPolicy checks banp per the v1alpha1 schema,
// except that any name is accepted (upstream allows only "default"). It
// returns FieldErrors or nil.
func ValidateBaselineAdminNetworkPolicy(banp *BaselineAdminNetworkPolicy) error {
	var e errs
	e.meta(banp.ObjectMeta, false, dnsSubdomainMsg)
	e.adminSpec(banp.Spec.Subject, banp.Spec.Ingress, banp.Spec.Egress, false)
	return e.list.asError()
}

// maxAdminItems is the upstream MaxItems of rules, peers and ports.
const maxAdminItems = 100

func (e *errs) adminSpec(subj AdminNetworkPolicySubject, ingress []AdminNetworkPolicyIngressRule, egress []AdminNetworkPolicyEgressRule, pass bool) {
	e.subject(subj)
	if len(ingress) > maxAdminItems {
		e.add("spec.ingress", "must have at most %d rules", maxAdminItems)
	}
	if len(egress) > maxAdminItems {
		e.add("spec.egress", "must have at most %d rules", maxAdminItems)
	}
	for i, r := range ingress {
		p := idx("spec.ingress", i)
		e.adminRule(p, r.Name, r.Action, r.Ports, pass)
		if len(r.From) == 0 {
			e.add(p+".from", "required value: must have at least one peer")
		} else if len(r.From) > maxAdminItems {
			e.add(p+".from", "must have at most %d peers", maxAdminItems)
		}
		for j, peer := range r.From {
			pp := idx(p+".from", j)
			e.onePeer(pp, peer.Namespaces != nil, peer.Pods != nil)
			e.selector(peer.Namespaces, pp+".namespaces")
			e.namespacedPod(peer.Pods, pp+".pods")
		}
	}
	for i, r := range egress {
		p := idx("spec.egress", i)
		e.adminRule(p, r.Name, r.Action, r.Ports, pass)
		if len(r.To) == 0 {
			e.add(p+".to", "required value: must have at least one peer")
		} else if len(r.To) > maxAdminItems {
			e.add(p+".to", "must have at most %d peers", maxAdminItems)
		}
		noNamedPorts := false
		for j, peer := range r.To {
			pp := idx(p+".to", j)
			e.onePeer(pp, peer.Namespaces != nil, peer.Pods != nil, peer.Nodes != nil, peer.Networks != nil)
			e.selector(peer.Namespaces, pp+".namespaces")
			e.namespacedPod(peer.Pods, pp+".pods")
			e.selector(peer.Nodes, pp+".nodes")
			if peer.Networks != nil {
				e.networks(pp+".networks", peer.Networks)
			}
			noNamedPorts = noNamedPorts || peer.Nodes != nil || peer.Networks != nil
		}
		if noNamedPorts && r.Ports != nil {
			for k, port := range *r.Ports {
				if port.NamedPort != nil {
					e.add(idx(p+".ports", k)+".namedPort", "may not be set when a peer is networks or nodes: they have no named ports")
				}
			}
		}
	}
}

// onePeer checks that exactly one of the peer's fields is set.
func (e *errs) onePeer(path string, set ...bool) {
	n := 0
	for _, s := range set {
		if s {
			n++
		}
	}
	switch {
	case n == 0:
		e.add(path, "must specify a peer")
	case n > 1:
		e.add(path, "must specify exactly one of namespaces, pods, nodes or networks")
	}
}

func (e *errs) namespacedPod(p *NamespacedPod, path string) {
	if p == nil {
		return
	}
	e.selector(&p.NamespaceSelector, path+".namespaceSelector")
	e.selector(&p.PodSelector, path+".podSelector")
}

func (e *errs) networks(path string, nets []CIDR) {
	switch {
	case len(nets) == 0:
		e.add(path, "must have at least one CIDR")
	case len(nets) > 25:
		e.add(path, "must have at most 25 CIDRs")
	}
	for i, c := range nets {
		p, err := netip.ParsePrefix(string(c))
		if err != nil || p.Addr().Is4In6() {
			e.add(idx(path, i), "invalid CIDR %q: must be an IPv4 or IPv6 prefix", c)
		}
	}
}

func (e *errs) adminRule(path, name string, action AdminNetworkPolicyRuleAction, ports *[]AdminNetworkPolicyPort, pass bool) {
	if len(name) > 100 {
		e.add(path+".name", "must be no more than 100 characters")
	}
	switch {
	case action == ActionAllow || action == ActionDeny:
	case action == ActionPass && pass:
	case pass:
		e.add(path+".action", "unsupported value %q: supported values: \"Allow\", \"Deny\", \"Pass\"", action)
	default:
		e.add(path+".action", "unsupported value %q: supported values: \"Allow\", \"Deny\"", action)
	}
	if ports == nil {
		return
	}
	if len(*ports) == 0 {
		e.add(path+".ports", "must have at least one port when present")
	} else if len(*ports) > maxAdminItems {
		e.add(path+".ports", "must have at most %d ports", maxAdminItems)
	}
	for i, port := range *ports {
		p := idx(path+".ports", i)
		n := 0
		if port.PortNumber != nil {
			n++
			e.protocol(p+".portNumber.protocol", port.PortNumber.Protocol)
			e.portNumber(p+".portNumber.port", int64(port.PortNumber.Port))
		}
		if port.NamedPort != nil {
			n++
			if msg := portNameMsg(*port.NamedPort); msg != "" {
				e.add(p+".namedPort", "%s", msg)
			}
		}
		if r := port.PortRange; r != nil {
			n++
			e.protocol(p+".portRange.protocol", r.Protocol)
			e.portNumber(p+".portRange.start", int64(r.Start))
			e.portNumber(p+".portRange.end", int64(r.End))
			if r.Start >= r.End {
				e.add(p+".portRange", "start (%d) must be less than end (%d)", r.Start, r.End)
			}
		}
		if n != 1 {
			e.add(p, "must specify exactly one of portNumber, namedPort or portRange")
		}
	}
}

// ValidateNamespaceDoc checks a Namespace document. It returns FieldErrors or nil.
func ValidateNamespaceDoc(d *NamespaceDoc) error {
	var e errs
	e.meta(d.ObjectMeta, false, dnsLabelMsg)
	if v, ok := d.Labels[NamespaceNameLabel]; ok && v != d.Name {
		e.add("metadata.labels["+NamespaceNameLabel+"]", "must be the namespace name %q (it is implied)", d.Name)
	}
	return e.list.asError()
}

// ValidateNodeDoc checks a Node document. It returns FieldErrors or nil.
func ValidateNodeDoc(d *NodeDoc) error {
	var e errs
	e.meta(d.ObjectMeta, false, func(s string) string {
		if err := ValidateNodeName(s); err != nil {
			return err.Error()
		}
		return ""
	})
	if !d.UnderlayIP.IsValid() {
		e.add("underlayIP", "required value")
	}
	return e.list.asError()
}

// ValidateEndpointDoc checks an Endpoint document. It returns FieldErrors or nil.
func ValidateEndpointDoc(d *EndpointDoc) error {
	var e errs
	e.meta(d.ObjectMeta, true, dnsSubdomainMsg)
	if d.Node != "" {
		if err := ValidateNodeName(d.Node); err != nil {
			e.add("node", "%v", err)
		}
	}
	if len(d.IPs) == 0 {
		e.add("ips", "required value: at least one address")
	}
	for i, ip := range d.IPs {
		if !ip.IsValid() {
			e.add(idx("ips", i), "invalid address")
		}
	}
	seen := map[string]bool{}
	for i, p := range d.Ports {
		path := idx("ports", i)
		if msg := portNameMsg(p.Name); msg != "" {
			e.add(path+".name", "%s", msg)
		}
		e.portNumber(path+".port", int64(p.Port))
		e.protocol(path+".protocol", p.Protocol)
		if seen[p.Name] {
			e.add(path+".name", "duplicate value %q", p.Name)
		} else {
			seen[p.Name] = true
		}
	}
	return e.list.asError()
}

// ValidateObject validates any decoded object by its type. It returns
// FieldErrors or nil.
func ValidateObject(o Object) error {
	switch v := o.(type) {
	case *NetworkPolicy:
		return ValidateNetworkPolicy(v)
	case *AdminNetworkPolicy:
		return ValidateAdminNetworkPolicy(v)
	case *BaselineAdminNetworkPolicy:
		return ValidateBaselineAdminNetworkPolicy(v)
	case *ClusterNetworkPolicy:
		return ValidateClusterNetworkPolicy(v)
	case *NamespaceDoc:
		return ValidateNamespaceDoc(v)
	case *EndpointDoc:
		return ValidateEndpointDoc(v)
	case *NodeDoc:
		return ValidateNodeDoc(v)
	}
	return FieldErrors{{Path: "kind", Msg: "unsupported type " + strconv.Quote(fmt.Sprintf("%T", o))}}
}
