package api

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func ptr[T any](v T) *T { return &v }

func validNP() *NetworkPolicy {
	return &NetworkPolicy{
		TypeMeta:   TypeMeta{APIVersion: NetworkingV1, Kind: KindNetworkPolicy},
		ObjectMeta: ObjectMeta{Name: "allow-web", Namespace: "x", Labels: map[string]string{"team": "a"}},
		Spec: NetworkPolicySpec{
			PodSelector: LabelSelector{MatchLabels: map[string]string{"pod": "a"}},
			Ingress: []NetworkPolicyIngressRule{{
				From:  []NetworkPolicyPeer{{PodSelector: &LabelSelector{}}},
				Ports: []NetworkPolicyPort{{Port: ptr(FromInt(80))}},
			}},
			Egress: []NetworkPolicyEgressRule{{
				To: []NetworkPolicyPeer{{IPBlock: &IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}}}},
			}},
		},
	}
}

func TestValidateNetworkPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(np *NetworkPolicy)
		wantErr string // "" means valid
	}{
		{"valid", func(*NetworkPolicy) {}, ""},
		{"no name", func(np *NetworkPolicy) { np.Name = "" }, "metadata.name: required value"},
		{"bad name", func(np *NetworkPolicy) { np.Name = "Allow_Web" }, `metadata.name: invalid value "Allow_Web": must be a DNS-1123 subdomain`},
		{"dotted name ok", func(np *NetworkPolicy) { np.Name = "allow.web" }, ""},
		{"bad namespace", func(np *NetworkPolicy) { np.Namespace = "a.b" }, `metadata.namespace: invalid value "a.b": must be a DNS-1123 label`},
		{"no namespace", func(np *NetworkPolicy) { np.Namespace = "" }, "metadata.namespace: required value"},
		{"bad label key", func(np *NetworkPolicy) { np.Labels = map[string]string{"-x": "a"} }, `metadata.labels: invalid label key "-x"`},
		{"bad label key prefix", func(np *NetworkPolicy) { np.Labels = map[string]string{"Ex.com/x": "a"} }, `invalid label key "Ex.com/x": the prefix`},
		{"bad label value", func(np *NetworkPolicy) { np.Labels = map[string]string{"x": "a b"} }, `metadata.labels[x]: invalid label value "a b"`},
		{"long label value", func(np *NetworkPolicy) { np.Labels = map[string]string{"x": strings.Repeat("a", 64)} }, `metadata.labels[x]: invalid label value`},
		{"prefixed label ok", func(np *NetworkPolicy) { np.Labels = map[string]string{"example.com/x_y.z": "A-1"} }, ""},
		{"policyTypes value", func(np *NetworkPolicy) { np.Spec.PolicyTypes = []string{"Ingress", "ingress"} }, `spec.policyTypes[1]: unsupported value "ingress"`},
		{"policyTypes too many", func(np *NetworkPolicy) { np.Spec.PolicyTypes = []string{"Ingress", "Egress", "Ingress"} }, "spec.policyTypes: may not specify more than two"},
		{"empty peer", func(np *NetworkPolicy) {
			np.Spec.Ingress[0].From = append(np.Spec.Ingress[0].From, NetworkPolicyPeer{})
		}, "spec.ingress[0].from[1]: must specify a peer"},
		{"empty egress peer", func(np *NetworkPolicy) { np.Spec.Egress[0].To = []NetworkPolicyPeer{{}} }, "spec.egress[0].to[0]: must specify a peer"},
		{"ipBlock with selector", func(np *NetworkPolicy) {
			np.Spec.Egress[0].To[0].NamespaceSelector = &LabelSelector{}
		}, "spec.egress[0].to[0]: may not specify both ipBlock and another peer"},
		{"pod and namespace selector ok", func(np *NetworkPolicy) {
			np.Spec.Ingress[0].From[0].NamespaceSelector = &LabelSelector{MatchLabels: map[string]string{"ns": "y"}}
		}, ""},
		{"ipBlock no cidr", func(np *NetworkPolicy) { np.Spec.Egress[0].To[0].IPBlock = &IPBlock{} }, "spec.egress[0].to[0].ipBlock.cidr: required value"},
		{"ipBlock bad cidr", func(np *NetworkPolicy) { np.Spec.Egress[0].To[0].IPBlock.CIDR = "10.0.0.0" }, `spec.egress[0].to[0].ipBlock.cidr: invalid CIDR "10.0.0.0"`},
		{"except outside cidr", func(np *NetworkPolicy) { np.Spec.Egress[0].To[0].IPBlock.Except = []string{"192.168.0.0/16"} }, "spec.egress[0].to[0].ipBlock.except[0]: 192.168.0.0/16 must be a strict subset of cidr 10.0.0.0/8"},
		{"except equal to cidr", func(np *NetworkPolicy) { np.Spec.Egress[0].To[0].IPBlock.Except = []string{"10.0.0.0/8"} }, "except[0]: 10.0.0.0/8 must be a strict subset"},
		{"except other family", func(np *NetworkPolicy) { np.Spec.Egress[0].To[0].IPBlock.Except = []string{"::/100"} }, "must be a strict subset"},
		{"except bad", func(np *NetworkPolicy) { np.Spec.Egress[0].To[0].IPBlock.Except = []string{"x"} }, `except[0]: invalid CIDR "x"`},
		{"ipv6 ipBlock ok", func(np *NetworkPolicy) {
			np.Spec.Egress[0].To[0].IPBlock = &IPBlock{CIDR: "fd00::/8", Except: []string{"fd00::/16"}}
		}, ""},
		{"endPort without port", func(np *NetworkPolicy) {
			np.Spec.Ingress[0].Ports = []NetworkPolicyPort{{EndPort: ptr(int32(90))}}
		}, "spec.ingress[0].ports[0].endPort: may not be specified when port is not specified"},
		{"endPort with named port", func(np *NetworkPolicy) {
			np.Spec.Ingress[0].Ports = []NetworkPolicyPort{{Port: ptr(FromString("http")), EndPort: ptr(int32(90))}}
		}, "spec.ingress[0].ports[0].endPort: may not be specified when port is a named port"},
		{"endPort below port", func(np *NetworkPolicy) {
			np.Spec.Ingress[0].Ports = []NetworkPolicyPort{{Port: ptr(FromInt(80)), EndPort: ptr(int32(79))}}
		}, "spec.ingress[0].ports[0].endPort: must be >= port"},
		{"endPort equal ok", func(np *NetworkPolicy) {
			np.Spec.Ingress[0].Ports = []NetworkPolicyPort{{Port: ptr(FromInt(80)), EndPort: ptr(int32(80))}}
		}, ""},
		{"endPort too big", func(np *NetworkPolicy) {
			np.Spec.Ingress[0].Ports = []NetworkPolicyPort{{Port: ptr(FromInt(80)), EndPort: ptr(int32(70000))}}
		}, "endPort: invalid value 70000: must be between 1 and 65535"},
		{"port zero", func(np *NetworkPolicy) { np.Spec.Ingress[0].Ports[0].Port = ptr(FromInt(0)) }, "spec.ingress[0].ports[0].port: invalid value 0: must be between 1 and 65535"},
		{"port too big", func(np *NetworkPolicy) { np.Spec.Ingress[0].Ports[0].Port = ptr(FromInt(65536)) }, "invalid value 65536"},
		{"named port ok", func(np *NetworkPolicy) { np.Spec.Ingress[0].Ports[0].Port = ptr(FromString("serve-80-tcp")) }, ""},
		{"named port numeric string", func(np *NetworkPolicy) { np.Spec.Ingress[0].Ports[0].Port = ptr(FromString("80")) }, `invalid port name "80": must contain at least one letter`},
		{"named port too long", func(np *NetworkPolicy) { np.Spec.Ingress[0].Ports[0].Port = ptr(FromString("abcdefghijklmnop")) }, "must be no more than 15 characters"},
		{"named port double hyphen", func(np *NetworkPolicy) { np.Spec.Ingress[0].Ports[0].Port = ptr(FromString("a--b")) }, "consecutive hyphens"},
		{"named port uppercase", func(np *NetworkPolicy) { np.Spec.Ingress[0].Ports[0].Port = ptr(FromString("HTTP")) }, "must contain only lowercase"},
		{"protocol", func(np *NetworkPolicy) { np.Spec.Ingress[0].Ports[0].Protocol = ptr("ICMP") }, `spec.ingress[0].ports[0].protocol: unsupported value "ICMP"`},
		{"protocol lowercase", func(np *NetworkPolicy) { np.Spec.Ingress[0].Ports[0].Protocol = ptr("tcp") }, `unsupported value "tcp"`},
		{"sctp ok", func(np *NetworkPolicy) { np.Spec.Ingress[0].Ports[0].Protocol = ptr("SCTP") }, ""},
		{"In without values", func(np *NetworkPolicy) {
			np.Spec.PodSelector.MatchExpressions = []LabelSelectorRequirement{{Key: "a", Operator: LabelSelectorOpIn}}
		}, "spec.podSelector.matchExpressions[0].values: must be specified when `operator` is 'In' or 'NotIn'"},
		{"NotIn without values", func(np *NetworkPolicy) {
			np.Spec.Ingress[0].From[0].PodSelector.MatchExpressions = []LabelSelectorRequirement{{Key: "a", Operator: LabelSelectorOpNotIn}}
		}, "spec.ingress[0].from[0].podSelector.matchExpressions[0].values: must be specified"},
		{"Exists with values", func(np *NetworkPolicy) {
			np.Spec.PodSelector.MatchExpressions = []LabelSelectorRequirement{{Key: "a", Operator: LabelSelectorOpExists, Values: []string{"b"}}}
		}, "matchExpressions[0].values: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"},
		{"DoesNotExist with values", func(np *NetworkPolicy) {
			np.Spec.PodSelector.MatchExpressions = []LabelSelectorRequirement{{Key: "a", Operator: LabelSelectorOpDoesNotExist, Values: []string{"b"}}}
		}, "may not be specified"},
		{"bad operator", func(np *NetworkPolicy) {
			np.Spec.PodSelector.MatchExpressions = []LabelSelectorRequirement{{Key: "a", Operator: "in", Values: []string{"b"}}}
		}, `spec.podSelector.matchExpressions[0].operator: unsupported value "in"`},
		{"bad expression key", func(np *NetworkPolicy) {
			np.Spec.PodSelector.MatchExpressions = []LabelSelectorRequirement{{Key: "a/b/c", Operator: LabelSelectorOpExists}}
		}, `matchExpressions[0].key: invalid label key "a/b/c"`},
		{"bad expression value", func(np *NetworkPolicy) {
			np.Spec.PodSelector.MatchExpressions = []LabelSelectorRequirement{{Key: "a", Operator: LabelSelectorOpIn, Values: []string{"ok", "not ok"}}}
		}, `matchExpressions[0].values[1]: invalid label value "not ok"`},
		{"bad matchLabels key", func(np *NetworkPolicy) {
			np.Spec.Ingress[0].From[0].PodSelector.MatchLabels = map[string]string{"": "x"}
		}, `spec.ingress[0].from[0].podSelector.matchLabels: invalid label key ""`},
		{"namespaceSelector validated", func(np *NetworkPolicy) {
			np.Spec.Ingress[0].From[0].NamespaceSelector = &LabelSelector{MatchLabels: map[string]string{"a": "-"}}
		}, `spec.ingress[0].from[0].namespaceSelector.matchLabels[a]: invalid label value "-"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			np := validNP()
			tc.mutate(np)
			PolicyDefaults(np)
			err := ValidateNetworkPolicy(np)
			checkErr(t, err, tc.wantErr)
		})
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("Validate = %v, want nil", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Validate = %v, want error containing %q", err, want)
	}
	var fe FieldErrors
	if !errors.As(err, &fe) || len(fe) == 0 {
		t.Errorf("error %v is not FieldErrors", err)
	}
}

// TestValidateCollectsAll: every failure is reported, in field order.
func TestValidateCollectsAll(t *testing.T) {
	t.Parallel()
	np := validNP()
	np.Name = ""
	np.Spec.Ingress[0].From = []NetworkPolicyPeer{{}}
	np.Spec.Egress[0].To[0].IPBlock.CIDR = "x"
	err := ValidateNetworkPolicy(np)
	var fe FieldErrors
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v, want FieldErrors", err)
	}
	var paths []string
	for _, e := range fe {
		paths = append(paths, e.Path)
	}
	want := []string{"metadata.name", "spec.ingress[0].from[0]", "spec.egress[0].to[0].ipBlock.cidr"}
	if d := cmp.Diff(want, paths); d != "" {
		t.Errorf("paths mismatch (-want +got):\n%s", d)
	}
}

func validANP() *AdminNetworkPolicy {
	ports := []AdminNetworkPolicyPort{{PortNumber: &Port{Protocol: ProtocolTCP, Port: 80}}}
	return &AdminNetworkPolicy{
		TypeMeta:   TypeMeta{APIVersion: PolicyV1Alpha1, Kind: KindAdminNetworkPolicy},
		ObjectMeta: ObjectMeta{Name: "deny-x"},
		Spec: AdminNetworkPolicySpec{
			Priority: 10,
			Subject:  AdminNetworkPolicySubject{Namespaces: &LabelSelector{MatchLabels: map[string]string{"ns": "x"}}},
			Ingress: []AdminNetworkPolicyIngressRule{{
				Name: "from-y", Action: ActionDeny,
				From:  []AdminNetworkPolicyIngressPeer{{Namespaces: &LabelSelector{}}},
				Ports: &ports,
			}},
			Egress: []AdminNetworkPolicyEgressRule{{
				Action: ActionPass,
				To:     []AdminNetworkPolicyEgressPeer{{Networks: []CIDR{"10.0.0.0/8"}}, {Pods: &NamespacedPod{}}},
			}},
		},
	}
}

func TestValidateAdminNetworkPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(p *AdminNetworkPolicy)
		wantErr string
	}{
		{"valid", func(*AdminNetworkPolicy) {}, ""},
		{"namespace set", func(p *AdminNetworkPolicy) { p.Namespace = "x" }, "metadata.namespace: not allowed: the object is cluster-scoped"},
		{"priority negative", func(p *AdminNetworkPolicy) { p.Spec.Priority = -1 }, "spec.priority: invalid value -1: must be between 0 and 1000"},
		{"priority too big", func(p *AdminNetworkPolicy) { p.Spec.Priority = 1001 }, "spec.priority: invalid value 1001"},
		{"priority bounds ok", func(p *AdminNetworkPolicy) { p.Spec.Priority = 1000 }, ""},
		{"no subject", func(p *AdminNetworkPolicy) { p.Spec.Subject = AdminNetworkPolicySubject{} }, "spec.subject: must specify exactly one of namespaces or pods"},
		{"two subjects", func(p *AdminNetworkPolicy) { p.Spec.Subject.Pods = &NamespacedPod{} }, "spec.subject: may specify only one"},
		{"subject selector validated", func(p *AdminNetworkPolicy) {
			p.Spec.Subject = AdminNetworkPolicySubject{Pods: &NamespacedPod{PodSelector: LabelSelector{MatchExpressions: []LabelSelectorRequirement{{Key: "a", Operator: "X"}}}}}
		}, `spec.subject.pods.podSelector.matchExpressions[0].operator: unsupported value "X"`},
		{"bad action", func(p *AdminNetworkPolicy) { p.Spec.Ingress[0].Action = "Reject" }, `spec.ingress[0].action: unsupported value "Reject": supported values: "Allow", "Deny", "Pass"`},
		{"empty action", func(p *AdminNetworkPolicy) { p.Spec.Egress[0].Action = "" }, `spec.egress[0].action: unsupported value ""`},
		{"long rule name", func(p *AdminNetworkPolicy) { p.Spec.Ingress[0].Name = strings.Repeat("a", 101) }, "spec.ingress[0].name: must be no more than 100 characters"},
		{"no peers", func(p *AdminNetworkPolicy) { p.Spec.Ingress[0].From = nil }, "spec.ingress[0].from: required value"},
		{"no egress peers", func(p *AdminNetworkPolicy) { p.Spec.Egress[0].To = nil }, "spec.egress[0].to: required value"},
		{"empty peer", func(p *AdminNetworkPolicy) { p.Spec.Ingress[0].From = []AdminNetworkPolicyIngressPeer{{}} }, "spec.ingress[0].from[0]: must specify a peer"},
		{"two fields in a peer", func(p *AdminNetworkPolicy) {
			p.Spec.Egress[0].To[0].Namespaces = &LabelSelector{}
		}, "spec.egress[0].to[0]: must specify exactly one of namespaces, pods, nodes or networks"},
		{"nodes peer", func(p *AdminNetworkPolicy) {
			p.Spec.Egress[0].To = []AdminNetworkPolicyEgressPeer{{Nodes: &LabelSelector{MatchLabels: map[string]string{"zone": "a"}}}}
		}, ""},
		{"nodes selector validated", func(p *AdminNetworkPolicy) {
			p.Spec.Egress[0].To = []AdminNetworkPolicyEgressPeer{{Nodes: &LabelSelector{MatchLabels: map[string]string{"-bad": "a"}}}}
		}, `spec.egress[0].to[0].nodes.matchLabels: invalid label key "-bad"`},
		{"named port with nodes peer", func(p *AdminNetworkPolicy) {
			p.Spec.Egress[0].To = []AdminNetworkPolicyEgressPeer{{Nodes: &LabelSelector{}}}
			p.Spec.Egress[0].Ports = &[]AdminNetworkPolicyPort{{NamedPort: ptr("web")}}
		}, "spec.egress[0].ports[0].namedPort: may not be set when a peer is networks or nodes"},
		{"bad network", func(p *AdminNetworkPolicy) { p.Spec.Egress[0].To[0].Networks = []CIDR{"10.0.0.1"} }, `spec.egress[0].to[0].networks[0]: invalid CIDR "10.0.0.1"`},
		{"mapped network", func(p *AdminNetworkPolicy) { p.Spec.Egress[0].To[0].Networks = []CIDR{"::ffff:10.0.0.0/104"} }, "invalid CIDR"},
		{"empty networks", func(p *AdminNetworkPolicy) { p.Spec.Egress[0].To[0].Networks = []CIDR{} }, "spec.egress[0].to[0].networks: must have at least one CIDR"},
		{"too many networks", func(p *AdminNetworkPolicy) {
			p.Spec.Egress[0].To[0].Networks = make([]CIDR, 26)
			for i := range p.Spec.Egress[0].To[0].Networks {
				p.Spec.Egress[0].To[0].Networks[i] = "10.0.0.0/8"
			}
		}, "must have at most 25 CIDRs"},
		{"empty ports list", func(p *AdminNetworkPolicy) { p.Spec.Ingress[0].Ports = &[]AdminNetworkPolicyPort{} }, "spec.ingress[0].ports: must have at least one port"},
		{"empty port", func(p *AdminNetworkPolicy) { p.Spec.Ingress[0].Ports = &[]AdminNetworkPolicyPort{{}} }, "spec.ingress[0].ports[0]: must specify exactly one of portNumber, namedPort or portRange"},
		{"two port forms", func(p *AdminNetworkPolicy) {
			(*p.Spec.Ingress[0].Ports)[0].NamedPort = ptr("http")
		}, "spec.ingress[0].ports[0]: must specify exactly one"},
		{"port number range", func(p *AdminNetworkPolicy) { (*p.Spec.Ingress[0].Ports)[0].PortNumber.Port = 0 }, "spec.ingress[0].ports[0].portNumber.port: invalid value 0"},
		{"port protocol", func(p *AdminNetworkPolicy) { (*p.Spec.Ingress[0].Ports)[0].PortNumber.Protocol = "IP" }, `spec.ingress[0].ports[0].portNumber.protocol: unsupported value "IP"`},
		{"named port", func(p *AdminNetworkPolicy) {
			p.Spec.Ingress[0].Ports = &[]AdminNetworkPolicyPort{{NamedPort: ptr("Web")}}
		}, `spec.ingress[0].ports[0].namedPort: invalid port name "Web"`},
		{"port range ok", func(p *AdminNetworkPolicy) {
			p.Spec.Ingress[0].Ports = &[]AdminNetworkPolicyPort{{PortRange: &PortRange{Protocol: "UDP", Start: 1, End: 65535}}}
		}, ""},
		{"port range reversed", func(p *AdminNetworkPolicy) {
			p.Spec.Ingress[0].Ports = &[]AdminNetworkPolicyPort{{PortRange: &PortRange{Protocol: "TCP", Start: 90, End: 90}}}
		}, "spec.ingress[0].ports[0].portRange: start (90) must be less than end (90)"},
		{"port range bounds", func(p *AdminNetworkPolicy) {
			p.Spec.Ingress[0].Ports = &[]AdminNetworkPolicyPort{{PortRange: &PortRange{Protocol: "TCP", Start: 1, End: 65536}}}
		}, "portRange.end: invalid value 65536"},
		{"too many rules", func(p *AdminNetworkPolicy) {
			p.Spec.Ingress = make([]AdminNetworkPolicyIngressRule, 101)
			for i := range p.Spec.Ingress {
				p.Spec.Ingress[i] = AdminNetworkPolicyIngressRule{Action: ActionAllow, From: []AdminNetworkPolicyIngressPeer{{Namespaces: &LabelSelector{}}}}
			}
		}, "spec.ingress: must have at most 100 rules"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := validANP()
			tc.mutate(p)
			checkErr(t, ValidateAdminNetworkPolicy(p), tc.wantErr)
		})
	}
}

func TestValidateBaselineAdminNetworkPolicy(t *testing.T) {
	t.Parallel()
	anp := validANP()
	mk := func() *BaselineAdminNetworkPolicy {
		return &BaselineAdminNetworkPolicy{
			TypeMeta:   TypeMeta{APIVersion: PolicyV1Alpha1, Kind: KindBaselineAdminNetworkPolicy},
			ObjectMeta: ObjectMeta{Name: "default"},
			Spec: BaselineAdminNetworkPolicySpec{
				Subject: anp.Spec.Subject,
				Ingress: []BaselineAdminNetworkPolicyIngressRule{{Action: ActionAllow, From: anp.Spec.Ingress[0].From}},
				Egress:  []BaselineAdminNetworkPolicyEgressRule{{Action: ActionDeny, To: anp.Spec.Egress[0].To}},
			},
		}
	}
	checkErr(t, ValidateBaselineAdminNetworkPolicy(mk()), "")
	b := mk()
	b.Name = "other-name"
	checkErr(t, ValidateBaselineAdminNetworkPolicy(b), "")
	b = mk()
	b.Spec.Egress[0].Action = ActionPass
	checkErr(t, ValidateBaselineAdminNetworkPolicy(b), `spec.egress[0].action: unsupported value "Pass": supported values: "Allow", "Deny"`)
	b = mk()
	b.Spec.Subject = AdminNetworkPolicySubject{}
	checkErr(t, ValidateBaselineAdminNetworkPolicy(b), "spec.subject: must specify exactly one")
}

func TestValidateDocs(t *testing.T) {
	t.Parallel()
	ns := func(name string, labels map[string]string) *NamespaceDoc {
		return &NamespaceDoc{TypeMeta: TypeMeta{APIVersion: CoreV1, Kind: KindNamespace}, ObjectMeta: ObjectMeta{Name: name, Labels: labels}}
	}
	checkErr(t, ValidateNamespaceDoc(ns("x", map[string]string{"ns": "x", NamespaceNameLabel: "x"})), "")
	checkErr(t, ValidateNamespaceDoc(ns("a.b", nil)), `metadata.name: invalid value "a.b": must be a DNS-1123 label`)
	checkErr(t, ValidateNamespaceDoc(ns("x", map[string]string{NamespaceNameLabel: "y"})), "metadata.labels[kubernetes.io/metadata.name]: must be the namespace name")

	ep := func() *EndpointDoc {
		return &EndpointDoc{
			TypeMeta:   TypeMeta{APIVersion: SkeinV1, Kind: KindEndpoint},
			ObjectMeta: ObjectMeta{Namespace: "x", Name: "a"},
			Node:       "node-1",
			IPs:        []netip.Addr{netip.MustParseAddr("10.244.1.10")},
			Ports:      []NamedPort{{Name: "serve-80-tcp", Port: 80, Protocol: "TCP"}, {Name: "serve-80-udp", Port: 80, Protocol: "UDP"}},
		}
	}
	checkErr(t, ValidateEndpointDoc(ep()), "")
	e := ep()
	e.IPs = nil
	checkErr(t, ValidateEndpointDoc(e), "ips: required value")
	e = ep()
	e.Node = "Node_1"
	checkErr(t, ValidateEndpointDoc(e), "node: node name")
	e = ep()
	e.Ports[1].Name = "serve-80-tcp"
	checkErr(t, ValidateEndpointDoc(e), `ports[1].name: duplicate value "serve-80-tcp"`)
	e = ep()
	e.Ports[0].Port = 0
	checkErr(t, ValidateEndpointDoc(e), "ports[0].port: invalid value 0")
	e = ep()
	e.Ports[0].Protocol = "ICMP"
	checkErr(t, ValidateEndpointDoc(e), `ports[0].protocol: unsupported value "ICMP"`)
}

func TestIPBlockPrefixes(t *testing.T) {
	t.Parallel()
	cidr, except, err := IPBlock{CIDR: "10.1.2.3/8", Except: []string{"10.1.0.0/16"}}.Prefixes()
	if err != nil {
		t.Fatal(err)
	}
	if cidr != netip.MustParsePrefix("10.0.0.0/8") || len(except) != 1 || except[0] != netip.MustParsePrefix("10.1.0.0/16") {
		t.Errorf("Prefixes() = %v %v", cidr, except)
	}
	if _, _, err := (IPBlock{CIDR: "x"}).Prefixes(); err == nil {
		t.Error("Prefixes of a bad CIDR: nil error")
	}
}
