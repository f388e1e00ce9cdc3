package api

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

func TestLabelSelectorMatches(t *testing.T) {
	t.Parallel()
	labels := map[string]string{"app": "web", "tier": "front"}
	req := func(key string, op LabelSelectorOperator, values ...string) LabelSelectorRequirement {
		return LabelSelectorRequirement{Key: key, Operator: op, Values: values}
	}
	tests := []struct {
		name string
		sel  *LabelSelector
		want bool
	}{
		{"nil matches nothing", nil, false},
		{"empty matches all", &LabelSelector{}, true},
		{"matchLabels hit", &LabelSelector{MatchLabels: map[string]string{"app": "web"}}, true},
		{"matchLabels wrong value", &LabelSelector{MatchLabels: map[string]string{"app": "db"}}, false},
		{"matchLabels missing key", &LabelSelector{MatchLabels: map[string]string{"x": "web"}}, false},
		{"matchLabels empty value vs missing key", &LabelSelector{MatchLabels: map[string]string{"x": ""}}, false},
		{"In hit", &LabelSelector{MatchExpressions: []LabelSelectorRequirement{req("app", LabelSelectorOpIn, "db", "web")}}, true},
		{"In miss", &LabelSelector{MatchExpressions: []LabelSelectorRequirement{req("app", LabelSelectorOpIn, "db")}}, false},
		{"In missing key", &LabelSelector{MatchExpressions: []LabelSelectorRequirement{req("x", LabelSelectorOpIn, "web")}}, false},
		{"In without values is invalid", &LabelSelector{MatchExpressions: []LabelSelectorRequirement{req("app", LabelSelectorOpIn)}}, false},
		{"NotIn hit", &LabelSelector{MatchExpressions: []LabelSelectorRequirement{req("app", LabelSelectorOpNotIn, "db")}}, true},
		{"NotIn miss", &LabelSelector{MatchExpressions: []LabelSelectorRequirement{req("app", LabelSelectorOpNotIn, "web")}}, false},
		{"NotIn missing key matches", &LabelSelector{MatchExpressions: []LabelSelectorRequirement{req("x", LabelSelectorOpNotIn, "web")}}, true},
		{"Exists hit", &LabelSelector{MatchExpressions: []LabelSelectorRequirement{req("tier", LabelSelectorOpExists)}}, true},
		{"Exists miss", &LabelSelector{MatchExpressions: []LabelSelectorRequirement{req("x", LabelSelectorOpExists)}}, false},
		{"Exists with values is invalid", &LabelSelector{MatchExpressions: []LabelSelectorRequirement{req("tier", LabelSelectorOpExists, "front")}}, false},
		{"DoesNotExist hit", &LabelSelector{MatchExpressions: []LabelSelectorRequirement{req("x", LabelSelectorOpDoesNotExist)}}, true},
		{"DoesNotExist miss", &LabelSelector{MatchExpressions: []LabelSelectorRequirement{req("app", LabelSelectorOpDoesNotExist)}}, false},
		{"unknown operator", &LabelSelector{MatchExpressions: []LabelSelectorRequirement{req("app", "Equals", "web")}}, false},
		{"AND of labels and expressions", &LabelSelector{
			MatchLabels:      map[string]string{"app": "web"},
			MatchExpressions: []LabelSelectorRequirement{req("tier", LabelSelectorOpIn, "back")},
		}, false},
		{"AND all true", &LabelSelector{
			MatchLabels:      map[string]string{"app": "web"},
			MatchExpressions: []LabelSelectorRequirement{req("tier", LabelSelectorOpIn, "front"), req("x", LabelSelectorOpNotIn, "y")},
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.sel.Matches(labels); got != tc.want {
				t.Errorf("Matches(%v) = %v, want %v", labels, got, tc.want)
			}
		})
	}
	if !(&LabelSelector{MatchExpressions: []LabelSelectorRequirement{req("x", LabelSelectorOpNotIn, "y")}}).Matches(nil) {
		t.Error("NotIn on nil labels = false, want true")
	}
}

func TestPolicyDefaults(t *testing.T) {
	t.Parallel()
	tcp, udp := ProtocolTCP, ProtocolUDP
	port := FromInt(80)
	tests := []struct {
		name string
		in   NetworkPolicySpec
		want NetworkPolicySpec
	}{
		{
			name: "empty spec is ingress only",
			in:   NetworkPolicySpec{},
			want: NetworkPolicySpec{PolicyTypes: []string{"Ingress"}},
		},
		{
			name: "egress rules add Egress",
			in:   NetworkPolicySpec{Egress: []NetworkPolicyEgressRule{{}}},
			want: NetworkPolicySpec{Egress: []NetworkPolicyEgressRule{{}}, PolicyTypes: []string{"Ingress", "Egress"}},
		},
		{
			name: "empty egress list adds nothing",
			in:   NetworkPolicySpec{Egress: []NetworkPolicyEgressRule{}},
			want: NetworkPolicySpec{Egress: []NetworkPolicyEgressRule{}, PolicyTypes: []string{"Ingress"}},
		},
		{
			name: "explicit types kept",
			in:   NetworkPolicySpec{PolicyTypes: []string{"Egress"}, Ingress: []NetworkPolicyIngressRule{{}}},
			want: NetworkPolicySpec{PolicyTypes: []string{"Egress"}, Ingress: []NetworkPolicyIngressRule{{}}},
		},
		{
			name: "protocol defaults to TCP, explicit kept",
			in: NetworkPolicySpec{
				Ingress: []NetworkPolicyIngressRule{{Ports: []NetworkPolicyPort{{Port: &port}, {Protocol: &udp}}}},
				Egress:  []NetworkPolicyEgressRule{{Ports: []NetworkPolicyPort{{}}}},
			},
			want: NetworkPolicySpec{
				Ingress:     []NetworkPolicyIngressRule{{Ports: []NetworkPolicyPort{{Protocol: &tcp, Port: &port}, {Protocol: &udp}}}},
				Egress:      []NetworkPolicyEgressRule{{Ports: []NetworkPolicyPort{{Protocol: &tcp}}}},
				PolicyTypes: []string{"Ingress", "Egress"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			np := &NetworkPolicy{Spec: tc.in}
			PolicyDefaults(np)
			if d := cmp.Diff(tc.want, np.Spec); d != "" {
				t.Errorf("PolicyDefaults mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestIntOrString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    IntOrString
		wantErr bool
	}{
		{`80`, FromInt(80), false},
		{`"serve-80-tcp"`, FromString("serve-80-tcp"), false},
		{`"80"`, FromString("80"), false},
		{`true`, IntOrString{}, true},
		{`1.5`, IntOrString{}, true},
	}
	for _, tc := range tests {
		var got IntOrString
		err := json.Unmarshal([]byte(tc.in), &got)
		if (err != nil) != tc.wantErr {
			t.Errorf("Unmarshal(%s) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if tc.wantErr {
			continue
		}
		if got != tc.want {
			t.Errorf("Unmarshal(%s) = %+v, want %+v", tc.in, got, tc.want)
		}
		b, err := json.Marshal(got)
		if err != nil || string(b) != tc.in {
			t.Errorf("Marshal(%+v) = %s, %v; want %s", got, b, err, tc.in)
		}
	}
}

// TestPolicyRoundTrip: YAML written for kubectl decodes into the types and
// marshals back to the same document, so the json tags are upstream's.
func TestPolicyRoundTrip(t *testing.T) {
	t.Parallel()
	docs := []struct {
		name string
		obj  any
		yaml string
	}{
		{"NetworkPolicy", &NetworkPolicy{}, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  labels:
    a: b
  name: allow-web
  namespace: x
spec:
  egress:
  - ports:
    - endPort: 90
      port: 80
      protocol: UDP
    to:
    - ipBlock:
        cidr: 10.0.0.0/8
        except:
        - 10.1.0.0/16
  ingress:
  - from:
    - namespaceSelector:
        matchExpressions:
        - key: ns
          operator: NotIn
          values:
          - "y"
      podSelector: {}
    ports:
    - port: serve-80-tcp
  podSelector:
    matchLabels:
      pod: a
  policyTypes:
  - Ingress
  - Egress
`},
		{"AdminNetworkPolicy", &AdminNetworkPolicy{}, `apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata:
  name: deny-x
spec:
  egress:
  - action: Allow
    name: dns
    ports:
    - portRange:
        end: 60
        protocol: UDP
        start: 53
    - namedPort: dns
    to:
    - networks:
      - 10.0.0.0/8
    - nodes:
        matchLabels:
          a: b
  ingress:
  - action: Pass
    from:
    - pods:
        namespaceSelector: {}
        podSelector:
          matchLabels:
            pod: b
    ports:
    - portNumber:
        port: 80
        protocol: TCP
  priority: 10
  subject:
    namespaces:
      matchLabels:
        ns: x
`},
		{"BaselineAdminNetworkPolicy", &BaselineAdminNetworkPolicy{}, `apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata:
  name: default
spec:
  ingress:
  - action: Deny
    from:
    - namespaces: {}
  subject:
    pods:
      namespaceSelector: {}
      podSelector: {}
`},
		{"Endpoint", &EndpointDoc{}, `apiVersion: skein.dev/v1
ips:
- 10.244.1.10
kind: Endpoint
metadata:
  labels:
    pod: a
  name: a
  namespace: x
node: node-1
ports:
- name: serve-80-tcp
  port: 80
  protocol: TCP
`},
	}
	for _, tc := range docs {
		t.Run(tc.name, func(t *testing.T) {
			if err := yaml.UnmarshalStrict([]byte(tc.yaml), tc.obj); err != nil {
				t.Fatalf("UnmarshalStrict: %v", err)
			}
			b, err := yaml.Marshal(tc.obj)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if d := cmp.Diff(tc.yaml, string(b)); d != "" {
				t.Errorf("round trip mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestPeerPointerness(t *testing.T) {
	t.Parallel()
	var np NetworkPolicy
	in := `{"spec":{"podSelector":{},"ingress":[{"from":[{"podSelector":{}}]}]}}`
	if err := json.Unmarshal([]byte(in), &np); err != nil {
		t.Fatal(err)
	}
	peer := np.Spec.Ingress[0].From[0]
	if peer.PodSelector == nil || !peer.PodSelector.Empty() || peer.NamespaceSelector != nil {
		t.Errorf("peer = %+v, want empty podSelector and nil namespaceSelector", peer)
	}
}

func TestDocConversions(t *testing.T) {
	t.Parallel()
	ns := NamespaceDoc{ObjectMeta: ObjectMeta{Name: "x", Labels: map[string]string{"ns": "x"}}}
	if d := cmp.Diff(Namespace{Name: "x", Labels: map[string]string{"ns": "x"}}, ns.ToNamespace()); d != "" {
		t.Errorf("ToNamespace mismatch (-want +got):\n%s", d)
	}
	ep := EndpointDoc{ObjectMeta: ObjectMeta{Namespace: "x", Name: "a", Labels: map[string]string{"pod": "a"}}, Node: "n1",
		Ports: []NamedPort{{Name: "p", Port: 80, Protocol: "TCP"}}}
	got := ep.ToEndpoint()
	want := Endpoint{Namespace: "x", Name: "a", Labels: map[string]string{"pod": "a"}, Node: "n1", Ports: []NamedPort{{Name: "p", Port: 80, Protocol: "TCP"}}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ToEndpoint mismatch (-want +got):\n%s", d)
	}
}
