package policy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinnet/skein/api"
)

// decodeInto adds the policies of a YAML file, decoded and validated as
// `skein policy apply` and `skein policy matrix -f` do, to in.
func decodeInto(t *testing.T, in Input, docs string) Input {
	t.Helper()
	objs, err := api.DecodeDocuments("test.yaml", []byte(docs))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		switch v := o.(type) {
		case *api.NetworkPolicy:
			in.NetworkPolicies = append(in.NetworkPolicies, *v)
		case *api.AdminNetworkPolicy:
			in.ANPs = append(in.ANPs, *v)
		case *api.BaselineAdminNetworkPolicy:
			in.BANPs = append(in.BANPs, *v)
		default:
			t.Fatalf("unexpected %T", o)
		}
	}
	return in
}

// TestModelMatrix runs classic upstream e2e cases on the x/y/z model and
// compares Matrix with the expected truth tables.
func TestModelMatrix(t *testing.T) {
	t.Parallel()
	type table struct {
		proto   string
		port    int
		allowed func(from, to string) bool
	}
	all := func(string, string) bool { return true }
	for _, tc := range []struct {
		name   string
		docs   string
		tables []table
	}{
		{
			name: "no policy",
			tables: []table{
				{"TCP", 80, all}, {"UDP", 81, all},
			},
		},
		{
			name: "default-deny ingress in x",
			docs: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: x}
spec: {podSelector: {}}`,
			tables: []table{
				{"TCP", 80, func(_, to string) bool { return ns(to) != "x" }},
				{"UDP", 81, func(_, to string) bool { return ns(to) != "x" }},
			},
		},
		{
			name: "allow ingress to x from namespace y only",
			docs: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-y, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]}]`,
			tables: []table{
				{"TCP", 80, func(from, to string) bool { return ns(to) != "x" || ns(from) == "y" }},
			},
		},
		{
			name: "egress deny in x, even where y allows",
			docs: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: x}
spec: {podSelector: {}, policyTypes: [Egress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all, namespace: "y"}
spec: {podSelector: {}, ingress: [{}]}`,
			tables: []table{
				{"TCP", 80, func(from, _ string) bool { return ns(from) != "x" }},
			},
		},
		{
			name: "named port serve-80-tcp into x",
			docs: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: named, namespace: x}
spec:
  podSelector: {}
  ingress: [{ports: [{port: serve-80-tcp}]}]`,
			tables: []table{
				{"TCP", 80, all},
				{"TCP", 81, func(_, to string) bool { return ns(to) != "x" }},
				{"UDP", 80, func(_, to string) bool { return ns(to) != "x" }},
			},
		},
		{
			name: "endPort range 80-81 into x/a",
			docs: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: range, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{ports: [{port: 80, endPort: 81, protocol: TCP}]}]`,
			tables: []table{
				{"TCP", 80, all},
				{"TCP", 81, all},
				{"UDP", 80, func(_, to string) bool { return to != "x/a" }},
				{"SCTP", 81, func(_, to string) bool { return to != "x/a" }},
			},
		},
		{
			name: "egress from x/a to an ipBlock except y",
			docs: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: cidr-except, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.2.0/24]}}]}]`,
			tables: []table{
				{"TCP", 80, func(from, to string) bool { return from != "x/a" || ns(to) != "y" }},
			},
		},
		{
			name: "admin deny z into x, pass y to a deny-all NetworkPolicy",
			docs: `
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: guard-x}
spec:
  priority: 10
  subject: {namespaces: {matchLabels: {ns: x}}}
  ingress:
  - {name: pass-y, action: Pass, from: [{namespaces: {matchLabels: {ns: "y"}}}]}
  - {name: deny-z, action: Deny, from: [{namespaces: {matchLabels: {ns: z}}}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-from-y, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {}}]}]`,
			tables: []table{
				{"TCP", 80, func(from, to string) bool { return ns(to) != "x" || ns(from) == "x" }},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := Compile(decodeInto(t, model(), tc.docs))
			for _, tb := range tc.tables {
				want := truth(t, tb.proto, tb.port, tb.allowed)
				got := matrixTable(t, p, tb.proto, tb.port)
				if d := cmp.Diff(want, got); d != "" {
					t.Errorf("%s/%d truth table (-want +got):\n%s", tb.proto, tb.port, d)
				}
			}
		})
	}
}

func TestMatrixCells(t *testing.T) {
	t.Parallel()
	p := Compile(decodeInto(t, model(), `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: x}
spec: {podSelector: {}}`))
	cells, err := Matrix(p, []int{80, 81}, []string{"TCP", "udp"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(cells), 2*2*9*9; got != want {
		t.Fatalf("got %d cells, want %d", got, want)
	}
	want := Cell{From: "y/b", To: "x/a", Port: 81, Protocol: "UDP", Allowed: false,
		Rule: "x/a is isolated for ingress by NetworkPolicy x/deny-ingress and no rule allows it: Deny"}
	found := false
	for _, c := range cells {
		if c.From == want.From && c.To == want.To && c.Port == want.Port && c.Protocol == want.Protocol {
			found = true
			if d := cmp.Diff(want, c); d != "" {
				t.Errorf("cell (-want +got):\n%s", d)
			}
		}
	}
	if !found {
		t.Errorf("no cell %+v", want)
	}
	if _, err := Matrix(p, []int{80}, []string{"ICMP"}); err == nil || !strings.Contains(err.Error(), "ICMP") {
		t.Errorf("Matrix with ICMP: err = %v", err)
	}
}

// TestMatrixNamespace: a program limited to one namespace gives that
// namespace's pairs with the verdicts of the whole cluster's matrix (its
// selectors still see every namespace).
func TestMatrixNamespace(t *testing.T) {
	t.Parallel()
	in := decodeInto(t, model(), `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-from-a, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {matchLabels: {pod: a}}}]}]`)
	all, err := Matrix(Compile(in), []int{80}, []string{"TCP"})
	if err != nil {
		t.Fatal(err)
	}
	in.Namespace = "x"
	cells, err := Matrix(Compile(in), []int{80}, []string{"TCP"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != 9 {
		t.Fatalf("got %d cells for namespace x, want 3×3", len(cells))
	}
	var want []Cell
	for _, c := range all {
		if strings.HasPrefix(c.From, "x/") && strings.HasPrefix(c.To, "x/") {
			want = append(want, c)
		}
	}
	if d := cmp.Diff(want, cells); d != "" {
		t.Errorf("namespace x cells differ from the whole matrix's (-want +got):\n%s", d)
	}
	denied := 0
	for _, c := range cells {
		if !c.Allowed {
			denied++
		}
	}
	if denied != 4 { // from x/b and x/c to the other two
		t.Errorf("%d denied cells in x, want 4: %+v", denied, cells)
	}
}
