package api

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const goodYAML = `# cluster shape and policies
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
apiVersion: skein.dev/v1
kind: Endpoint
metadata: {namespace: x, name: a, labels: {pod: a}}
node: node-1
ips: [10.244.1.10]
ports: [{name: serve-80-tcp, port: 80}]
---
---
# an empty document above and a comment-only one below are skipped
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-web
  namespace: x
spec:
  podSelector: {}
  ingress:
  - ports:
    - port: 80
      endPort: 81
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata:
  name: deny-y
  namespace: ignored
spec:
  priority: 5
  subject: {namespaces: {}}
  egress:
  - action: Deny
    to: [{networks: [192.0.2.0/24]}]
    ports: [{portRange: {start: 1, end: 100}}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress: [{action: Deny, from: [{namespaces: {}}]}]
...
`

func TestDecodeDocumentsYAML(t *testing.T) {
	t.Parallel()
	objs, err := DecodeDocuments("cluster.yaml", []byte(goodYAML))
	if err != nil {
		t.Fatalf("DecodeDocuments: %v", err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, fmt.Sprintf("%s %s %s/%s", o.GetAPIVersion(), o.GetKind(), o.GetNamespace(), o.GetName()))
	}
	want := []string{
		"v1 Namespace /x",
		"skein.dev/v1 Endpoint x/a",
		"networking.k8s.io/v1 NetworkPolicy x/allow-web",
		"policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy /deny-y",
		"policy.networking.k8s.io/v1alpha1 BaselineAdminNetworkPolicy /default",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("objects mismatch (-want +got):\n%s", d)
	}
	ep := objs[1].(*EndpointDoc).ToEndpoint()
	wantEP := Endpoint{Namespace: "x", Name: "a", Labels: map[string]string{"pod": "a"}, Node: "node-1",
		IPs: []netip.Addr{netip.MustParseAddr("10.244.1.10")}, Ports: []NamedPort{{Name: "serve-80-tcp", Port: 80, Protocol: "TCP"}}}
	if d := cmp.Diff(wantEP, ep, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("endpoint mismatch (-want +got):\n%s", d)
	}
	np := objs[2].(*NetworkPolicy)
	if d := cmp.Diff([]string{"Ingress"}, np.Spec.PolicyTypes); d != "" {
		t.Errorf("policyTypes not defaulted (-want +got):\n%s", d)
	}
	if p := np.Spec.Ingress[0].Ports[0].Protocol; p == nil || *p != "TCP" {
		t.Errorf("protocol not defaulted: %v", p)
	}
	anp := objs[3].(*AdminNetworkPolicy)
	if pr := (*anp.Spec.Egress[0].Ports)[0].PortRange; pr.Protocol != "TCP" {
		t.Errorf("portRange protocol = %q, want TCP", pr.Protocol)
	}
}

func TestDecodeDocumentsJSON(t *testing.T) {
	t.Parallel()
	np := `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"%s","namespace":"x"},"spec":{"podSelector":{}}}`
	tests := []struct {
		name  string
		input string
		want  []string
	}{
		{"one object", fmt.Sprintf(np, "a"), []string{"x/a"}},
		{"stream", fmt.Sprintf(np, "a") + "\n" + fmt.Sprintf(np, "b"), []string{"x/a", "x/b"}},
		{"array", "[\n" + fmt.Sprintf(np, "a") + ",\n" + fmt.Sprintf(np, "b") + "\n]", []string{"x/a", "x/b"}},
		{"List", `{"apiVersion":"v1","kind":"List","metadata":{},"items":[` + fmt.Sprintf(np, "a") + "," + fmt.Sprintf(np, "b") + `]}`, []string{"x/a", "x/b"}},
		{"YAML List", "apiVersion: v1\nkind: List\nitems:\n- " + fmt.Sprintf(np, "a"), []string{"x/a"}},
		{"default namespace", `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"a"},"spec":{"podSelector":{}}}`, []string{"default/a"}},
		{"YAML flow mapping", `{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: a, namespace: x}, spec: {podSelector: {}}}`, []string{"x/a"}},
		{"kubectl get output", `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"a","namespace":"x","uid":"1","resourceVersion":"5",
"creationTimestamp":"2024-01-01T00:00:00Z","generation":1,"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}"}},"spec":{"podSelector":{}},"status":{}}`, []string{"x/a"}},
		{"empty", "", nil},
		{"only comments", "# nothing\n---\n# here\n", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := DecodeDocuments("in.json", []byte(tc.input))
			if err != nil {
				t.Fatalf("DecodeDocuments: %v", err)
			}
			var got []string
			for _, o := range objs {
				got = append(got, ObjectName(o))
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("objects mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestDecodeDocumentsErrors(t *testing.T) {
	t.Parallel()
	np := func(body string) string {
		return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n" + body
	}
	tests := []struct {
		name    string
		input   string
		wantErr string
	}{
		{
			name: "bad document index and line",
			input: "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\n\n# web\n" + np(
				"spec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - port: 80\n      endPort: 79\n"),
			wantErr: "policies.yaml: document 2 (line 7): line 15: spec.ingress[0].ports[0].endPort: must be >= port",
		},
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n", `policies.yaml: document 1 (line 1): line 2: kind: unknown kind "Pod"`},
		{"missing kind", "apiVersion: v1\nmetadata: {name: x}\n", "document 1 (line 1): kind: required value"},
		{"unknown apiVersion", "apiVersion: networking.k8s.io/v1beta1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec: {podSelector: {}}\n",
			`apiVersion: unknown apiVersion "networking.k8s.io/v1beta1" for kind NetworkPolicy (want networking.k8s.io/v1)`},
		{"unknown field", np("spec:\n  podSelector: {}\n  ingress:\n  - fromm: []\n"), "document 1 (line 1): line 7: spec.ingress[0].fromm: unknown field"},
		{"unknown field wrong case", np("spec:\n  PodSelector: {}\n"), "spec.PodSelector: unknown field"},
		{"unknown top-level field", np("spec: {podSelector: {}}\nextra: 1\n"), "extra: unknown field"},
		{"wrong type", np("spec:\n  podSelector: []\n"), "spec.podSelector: invalid type: got a array, want an object"},
		{"boolean label", np("spec:\n  podSelector: {}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: true}}\n"),
			"spec.ingress[0].from[0].namespaceSelector.matchLabels[ns]: invalid type: got the boolean true, want a string (quote the value)"},
		{"number label", np("spec:\n  podSelector: {matchLabels: {v: 1}}\n"), "spec.podSelector.matchLabels[v]: invalid type: got the number 1, want a string"},
		{"bad port type", np("spec:\n  podSelector: {}\n  ingress: [{ports: [{port: true}]}]\n"), "spec.ingress[0].ports[0].port: invalid value true: want an integer or a string"},
		{"bad ip", "apiVersion: skein.dev/v1\nkind: Endpoint\nmetadata: {name: a}\nips: [10.0.0.300]\n", "document 1 (line 1): "},
		{"empty peer", np("spec:\n  podSelector: {}\n  ingress:\n  - from:\n    - podSelector: {}\n    - {}\n"), "spec.ingress[0].from[1]: must specify a peer"},
		{"not an object", "- a\n- b\n", "document 1 (line 1): not an object"},
		{"scalar", "hello\n", "document 1 (line 1): not an object"},
		{"yaml syntax line is file-relative", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: y\n   bad: 1\n",
			"document 2 (line 5): yaml: line 9: mapping values are not allowed"},
		{"duplicate key", "apiVersion: v1\nkind: Namespace\nkind: Namespace\nmetadata: {name: x}\n", `document 1 (line 1): yaml: line 3: mapping key "kind" already defined at line 2`},
		{"duplicate key in a later document", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: y\n  name: z\n",
			`document 2 (line 5): yaml: line 9: mapping key "name" already defined at line 8`},
		{"infinite float", np("spec:\n  podSelector: {}\n  ingress: [{ports: [{port: .inf}]}]\n"), "yaml: line 6: .inf cannot be represented in JSON"},
		{"duplicate object", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n",
			"document 2 (line 5): Namespace x is also defined in document 1"},
		{"json syntax", `{"apiVersion": "v1",` + "\n" + `"kind": }`, "policies.yaml: line 2: invalid JSON"},
		{"json array element line", "[\n{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"x\"}},\n{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"Y\"}}\n]",
			`document 2 (line 3): line 3: metadata.name: invalid value "Y"`},
		{"List item", `{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}},{"apiVersion":"v1","kind":"Namespace"}]}`,
			"document 1 (line 1): line 1: items[1].metadata.name: required value"},
		{"List bad apiVersion", `{"apiVersion":"v2","kind":"List","items":[]}`, `unknown apiVersion "v2" for kind List`},
		{"label value line", np("spec:\n  podSelector:\n    matchLabels:\n      app: web\n      tier: \"-bad\"\n"), "line 8: spec.podSelector.matchLabels[tier]: invalid label value"},
		{"missing field at its parent", "apiVersion: v1\nkind: Namespace\nmetadata:\n  labels: {a: b}\n", "line 3: metadata.name: required value"},
		{"json field line", "{\"apiVersion\": \"networking.k8s.io/v1\", \"kind\": \"NetworkPolicy\",\n \"metadata\": {\"name\": \"p\", \"namespace\": \"x\"},\n \"spec\": {\"podSelector\": {},\n  \"ingress\": [{\"ports\": [{\"port\": 80,\n   \"endPort\": 79}]}]}}",
			"document 1 (line 1): line 5: spec.ingress[0].ports[0].endPort: must be >= port"},
		{"content after separator", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n--- kind: Namespace\n", "line 4: content after the document separator"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := DecodeDocuments("policies.yaml", []byte(tc.input))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("DecodeDocuments = %d objects, %v; want error containing %q", len(objs), err, tc.wantErr)
			}
			if objs != nil {
				t.Errorf("DecodeDocuments returned %d objects with an error", len(objs))
			}
		})
	}
}

// TestDecodeYAML12: YAML 1.2 scalars (y, no, on stay strings), numbers in
// every YAML form, anchors and merge keys.
func TestDecodeYAML12(t *testing.T) {
	t.Parallel()
	in := `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: "n", namespace: y, labels: {a: no, b: on, c: "true", d: 2024-01-01}}
spec:
  podSelector: &sel {matchLabels: {ns: y}}
  ingress:
  - from: [{namespaceSelector: *sel}]
    ports: [{port: 0x50}, {port: 0o120, endPort: 81}]
  - from:
    - podSelector:
        <<: *sel
        matchExpressions: [{key: k, operator: In, values: [yes, off]}]
`
	objs, err := DecodeDocuments("y.yaml", []byte(in))
	if err != nil {
		t.Fatalf("DecodeDocuments: %v", err)
	}
	np := objs[0].(*NetworkPolicy)
	if np.Namespace != "y" {
		t.Errorf("namespace = %q, want y", np.Namespace)
	}
	if d := cmp.Diff(map[string]string{"a": "no", "b": "on", "c": "true", "d": "2024-01-01"}, np.Labels); d != "" {
		t.Errorf("labels (-want +got):\n%s", d)
	}
	sel := &LabelSelector{MatchLabels: map[string]string{"ns": "y"}}
	if d := cmp.Diff(sel, np.Spec.Ingress[0].From[0].NamespaceSelector); d != "" {
		t.Errorf("alias (-want +got):\n%s", d)
	}
	if p := np.Spec.Ingress[0].Ports; p[0].Port.IntVal != 80 || p[1].Port.IntVal != 80 {
		t.Errorf("ports = %v %v, want 80 80", p[0].Port, p[1].Port)
	}
	merged := &LabelSelector{MatchLabels: map[string]string{"ns": "y"},
		MatchExpressions: []LabelSelectorRequirement{{Key: "k", Operator: LabelSelectorOpIn, Values: []string{"yes", "off"}}}}
	if d := cmp.Diff(merged, np.Spec.Ingress[1].From[0].PodSelector); d != "" {
		t.Errorf("merge (-want +got):\n%s", d)
	}
}

func TestDecodeDocumentErrorType(t *testing.T) {
	t.Parallel()
	_, err := DecodeDocuments("f.yaml", []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: X}\n"))
	var de *DocumentError
	if !errors.As(err, &de) {
		t.Fatalf("err = %v, want *DocumentError", err)
	}
	if de.File != "f.yaml" || de.Index != 2 || de.Line != 5 {
		t.Errorf("DocumentError = %+v, want f.yaml document 2 line 5", de)
	}
	var fe FieldErrors
	if !errors.As(err, &fe) || fe[0].Path != "metadata.name" {
		t.Errorf("FieldErrors = %v, want metadata.name", fe)
	}
}

func TestDecodeDocumentsHuge(t *testing.T) {
	t.Parallel()
	ns := "apiVersion: v1\nkind: Namespace\nmetadata: {name: x%d}\n---\n"
	tests := []struct {
		name  string
		input func() []byte
	}{
		{"file too large", func() []byte { return make([]byte, MaxFileBytes+1) }},
		{"document too large", func() []byte {
			return []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  labels:\n    a: " + strings.Repeat("b", MaxDocumentBytes) + "\n")
		}},
		{"json document too large", func() []byte {
			return []byte(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"` + strings.Repeat("b", MaxDocumentBytes) + `"}}`)
		}},
		{"alias bomb", func() []byte {
			var b strings.Builder
			b.WriteString("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
			for i := 1; i < 10; i++ {
				fmt.Fprintf(&b, "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
			}
			return []byte(b.String())
		}},
		{"too many documents", func() []byte {
			var b strings.Builder
			for i := range MaxDocuments + 1 {
				fmt.Fprintf(&b, ns, i)
			}
			return []byte(b.String())
		}},
		{"too many json documents", func() []byte {
			var b strings.Builder
			b.WriteString("[")
			for i := range MaxDocuments + 1 {
				if i > 0 {
					b.WriteString(",")
				}
				fmt.Fprintf(&b, `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x%d"}}`, i)
			}
			b.WriteString("]")
			return []byte(b.String())
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeDocuments("big.yaml", tc.input())
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "big.yaml") || !strings.Contains(err.Error(), "huge documents") {
				t.Fatalf("DecodeDocuments = %v, want ErrTooLarge naming the file", err)
			}
		})
	}
}

func TestDecodePolicy(t *testing.T) {
	t.Parallel()
	raw := []byte(`{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"a","namespace":"x"},"spec":{"podSelector":{},"egress":[{}],"future":1}}`)
	o, err := DecodePolicy(KindNetworkPolicy, raw)
	if err != nil {
		t.Fatalf("DecodePolicy: %v", err)
	}
	np := o.(*NetworkPolicy)
	if d := cmp.Diff([]string{"Ingress", "Egress"}, np.Spec.PolicyTypes); d != "" {
		t.Errorf("not defaulted (-want +got):\n%s", d)
	}
	if _, err := DecodePolicy(KindAdminNetworkPolicy, raw); err == nil || !strings.Contains(err.Error(), `value has kind "NetworkPolicy"`) {
		t.Errorf("DecodePolicy with the wrong kind = %v", err)
	}
	if _, err := DecodePolicy(KindNamespace, raw); err == nil {
		t.Error("DecodePolicy(Namespace) = nil error")
	}
	bad := []byte(`{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"a","namespace":"x"},"spec":{"podSelector":{},"ingress":[{"from":[{}]}]}}`)
	if _, err := DecodePolicy(KindNetworkPolicy, bad); err == nil || !strings.Contains(err.Error(), "NetworkPolicy x/a: spec.ingress[0].from[0]: must specify a peer") {
		t.Errorf("DecodePolicy of an invalid policy = %v", err)
	}
}

func TestPolicyKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind, ns, name string
		key            string
	}{
		{KindNetworkPolicy, "x", "allow", "policies/NetworkPolicy/x/allow"},
		{KindAdminNetworkPolicy, "", "deny", "policies/AdminNetworkPolicy/_/deny"},
		{KindBaselineAdminNetworkPolicy, "", "default", "policies/BaselineAdminNetworkPolicy/_/default"},
	}
	for _, tc := range tests {
		if got := PolicyKey(tc.kind, tc.ns, tc.name); got != tc.key {
			t.Errorf("PolicyKey = %q, want %q", got, tc.key)
		}
		kind, ns, name, ok := ParsePolicyKey(tc.key)
		if !ok || kind != tc.kind || ns != tc.ns || name != tc.name {
			t.Errorf("ParsePolicyKey(%q) = %q %q %q %v", tc.key, kind, ns, name, ok)
		}
	}
	for _, bad := range []string{"bgppeers/x", "policies/Pod/x/y", "policies/NetworkPolicy/x", "policies/NetworkPolicy/x/y/z", "policies/NetworkPolicy//y"} {
		if _, _, _, ok := ParsePolicyKey(bad); ok {
			t.Errorf("ParsePolicyKey(%q) ok", bad)
		}
	}
}

// TestDecodeRecursiveAliases: aliases that contain themselves and
// over-deep documents are errors naming the file, document and line, fast,
// never a stack overflow.
func TestDecodeRecursiveAliases(t *testing.T) {
	deep := strings.Repeat("{a: ", 150) + "1" + strings.Repeat("}", 150) + "\n"
	cases := []struct {
		name, in, want string
	}{
		{"self alias", "a: &a {b: *a}\n", "x.yaml: document 1 (line 1): yaml: line 1: alias *a refers to itself"},
		{"merge of itself", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\nb: &b\n  c: 1\n  <<: *b\n", "x.yaml: document 2 (line 5): yaml: line 7: alias *b refers to itself"},
		{"mutual", "x: &x\n  y: &y\n    z: *x\n", "x.yaml: document 1 (line 1): yaml: line 3: alias *x refers to itself"},
		{"too deep", deep, "x.yaml: document 1 (line 1): yaml: line 1: document nests more than 100 levels deep"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := DecodeDocuments("x.yaml", []byte(tc.in))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("DecodeDocuments() error = %v, want prefix %q", err, tc.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("DecodeDocuments() took %v", d)
			}
		})
	}
	// Deep but acyclic alias use stays within the node budget and decodes.
	if _, err := yamlToJSON([]byte("a: &a [1]\nb: [*a, *a]\n"), 0); err != nil {
		t.Errorf("shared alias: %v", err)
	}
}

// TestDecodeJSONDuplicateKeys: a key given twice is an error naming the
// key's path and both lines, in files (whatever the layout) and in stored
// values; encoding/json would keep the last value silently.
func TestDecodeJSONDuplicateKeys(t *testing.T) {
	denyAll := `{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
 "metadata": {"name": "deny", "namespace": "x"},
 "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
          "podSelector": {"matchLabels": {"app": "none"}}}}
`
	cases := []struct {
		name, in, want string
	}{
		{"object", denyAll, "p.json: document 1 (line 1): line 4: spec.podSelector: duplicate key (first at line 3)"},
		{"second of a stream", `{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "y"}}` + "\n" + denyAll,
			"p.json: document 2 (line 2): line 5: spec.podSelector: duplicate key (first at line 4)"},
		{"array element", "[\n" + `{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "y"}},` + "\n" +
			`{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "z", "labels": {"a": "1", "a": "2"}}}` + "\n]",
			"p.json: document 2 (line 3): line 3: metadata.labels.a: duplicate key (first at line 3)"},
		{"list items", `{"apiVersion": "v1", "kind": "List", "items": [` + "\n" +
			`{"apiVersion": "v1", "kind": "Namespace", "kind": "Namespace", "metadata": {"name": "z"}}]}`,
			"p.json: document 1 (line 1): line 2: items[0].kind: duplicate key (first at line 2)"},
		{"top level", `{"kind": "Namespace", "apiVersion": "v1", "kind": "Endpoint"}`,
			"p.json: document 1 (line 1): line 1: kind: duplicate key (first at line 1)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeDocuments("p.json", []byte(tc.in))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("DecodeDocuments() error = %v\nwant %s", err, tc.want)
			}
			var de *DuplicateKeyError
			if !errors.As(err, &de) {
				t.Errorf("error %v is not a *DuplicateKeyError", err)
			}
		})
	}
	t.Run("stored", func(t *testing.T) {
		_, err := DecodePolicy(KindNetworkPolicy, []byte(strings.ReplaceAll(denyAll, "\n", "")))
		want := "decode NetworkPolicy: line 1: spec.podSelector: duplicate key (first at line 1)"
		if err == nil || err.Error() != want {
			t.Errorf("DecodePolicy() error = %v, want %s", err, want)
		}
	})
	t.Run("distinct keys", func(t *testing.T) {
		// The same key in sibling objects and list elements is no duplicate.
		in := `{"a": {"x": 1}, "b": {"x": [{"y": 1}, {"y": 2}]}, "c": [[{"z": 1}], [{"z": 1}]], "": 1}`
		if err := CheckDuplicateKeys([]byte(in), 0); err != nil {
			t.Errorf("CheckDuplicateKeys(%s) = %v", in, err)
		}
	})
}
