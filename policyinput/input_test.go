package policyinput

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

const (
	goodNP = `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"deny","namespace":"x"},"spec":{"podSelector":{"matchLabels":{"app":"db"}},"policyTypes":["Ingress"]}}`
	// A deny-all that an older or newer writer left with a bad field.
	badNP  = `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"deny","namespace":"x"},"spec":{"podSelector":{"matchLabels":{"app":"db"}},"policyTypes":["Ingres"]}}`
	badANP = `{"apiVersion":"policy.networking.k8s.io/v1alpha1","kind":"AdminNetworkPolicy","metadata":{"name":"a"},"spec":{"priority":"high","subject":{"namespaces":{"matchLabels":{"t":"1"}}}}}`
)

// TestFromSnapshotInvalid: stored policies that do not decode are never
// dropped: they quarantine the pods they name; a kind this reader does not
// know is quarantined too; a key that names no pods is reported only; keys
// outside policies/ are not policies.
func TestFromSnapshotInvalid(t *testing.T) {
	t.Parallel()
	snap := &store.Snapshot{Other: map[string][]byte{
		"policies/NetworkPolicy/x/deny":               []byte(badNP),
		"policies/AdminNetworkPolicy/_/a":             []byte(badANP),
		"policies/FuturePolicy/_/future":              []byte(`{}`),
		"policies/NetworkPolicy/y":                    []byte(`{}`),
		"bgppeers/tor":                                []byte(`{}`),
		"policies/NetworkPolicy/y/ok":                 []byte(strings.ReplaceAll(goodNP, `"x"`, `"y"`)),
		"policies/BaselineAdminNetworkPolicy/_/empty": []byte(`{"kind":"BaselineAdminNetworkPolicy"}`),
	}}
	in, invalid := FromSnapshot("", snap, Decode)
	var got []string
	for _, p := range invalid {
		got = append(got, p.Key+" → "+p.Enforced)
	}
	want := []string{
		"policies/AdminNetworkPolicy/_/a → quarantine",
		"policies/BaselineAdminNetworkPolicy/_/empty → quarantine",
		"policies/FuturePolicy/_/future → quarantine",
		"policies/NetworkPolicy/x/deny → quarantine",
		"policies/NetworkPolicy/y → nothing: names no pods",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("invalid policies mismatch (-want +got):\n%s", d)
	}
	if !strings.Contains(invalid[3].Error, "spec.policyTypes[0]") {
		t.Errorf("error %q does not name the field", invalid[3].Error)
	}
	wantQ := []api.PolicyTarget{
		{Kind: api.KindAdminNetworkPolicy, Name: "a", Subject: &api.AdminNetworkPolicySubject{Namespaces: &api.LabelSelector{MatchLabels: map[string]string{"t": "1"}}}},
		{Kind: api.KindBaselineAdminNetworkPolicy, Name: "empty"},
		{Kind: "FuturePolicy", Name: "future"},
		{Kind: api.KindNetworkPolicy, Namespace: "x", Name: "deny", PodSelector: &api.LabelSelector{MatchLabels: map[string]string{"app": "db"}}},
	}
	var gotQ []api.PolicyTarget
	for _, q := range in.Quarantines {
		gotQ = append(gotQ, q.Target)
	}
	if d := cmp.Diff(wantQ, gotQ); d != "" {
		t.Errorf("quarantines mismatch (-want +got):\n%s", d)
	}
	if len(in.NetworkPolicies) != 1 || in.NetworkPolicies[0].Namespace != "y" {
		t.Errorf("valid policies: %+v", in.NetworkPolicies)
	}
}

// TestFromSnapshotLastValid: a decoder that still returns the last valid
// value with its error keeps that value enforced, reported as such.
func TestFromSnapshotLastValid(t *testing.T) {
	t.Parallel()
	last, err := api.DecodePolicy(api.KindNetworkPolicy, []byte(goodNP))
	if err != nil {
		t.Fatal(err)
	}
	keep := func(_, _ string, _ []byte) (api.Object, error) { return last, errors.New("bad field") }
	snap := &store.Snapshot{Other: map[string][]byte{"policies/NetworkPolicy/x/deny": []byte(badNP)}}
	in, invalid := FromSnapshot("n1", snap, keep)
	if len(invalid) != 1 || invalid[0].Enforced != api.EnforcedLastValid {
		t.Errorf("invalid = %v, want one enforced as %q", invalid, api.EnforcedLastValid)
	}
	if len(in.NetworkPolicies) != 1 || len(in.Quarantines) != 0 {
		t.Errorf("policies %d, quarantines %d; want the last valid value enforced", len(in.NetworkPolicies), len(in.Quarantines))
	}
}

// TestFromSnapshotStable: the input does not depend on map order, and names
// the node it is for.
func TestFromSnapshotStable(t *testing.T) {
	t.Parallel()
	snap := &store.Snapshot{
		Endpoints: map[string]api.Endpoint{
			"n2/c2/eth0": {ContainerID: "c2", IfName: "eth0", Node: "n2"},
			"n1/c1/eth0": {ContainerID: "c1", IfName: "eth0", Node: "n1"},
			"n1/c1/eth1": {ContainerID: "c1", IfName: "eth1", Node: "n1"},
		},
		Namespaces: map[string]api.Namespace{"y": {Name: "y"}, "x": {Name: "x"}},
		Nodes:      map[string]api.Node{"n2": {Name: "n2"}, "n1": {Name: "n1"}},
	}
	first, _ := FromSnapshot("n1", snap, Decode)
	for range 20 {
		again, _ := FromSnapshot("n1", snap, Decode)
		if d := cmp.Diff(first, again, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); d != "" {
			t.Fatalf("input changed between calls (-first +again):\n%s", d)
		}
	}
	var eps []string
	for _, ep := range first.Endpoints {
		eps = append(eps, ep.ContainerID+"/"+ep.IfName)
	}
	if d := cmp.Diff([]string{"c1/eth0", "c1/eth1", "c2/eth0"}, eps); d != "" {
		t.Errorf("endpoint order (-want +got):\n%s", d)
	}
	if first.Node != "n1" || len(first.Namespaces) != 2 || first.Namespaces[0].Name != "x" || len(first.Nodes) != 2 || first.Nodes[0].Name != "n1" {
		t.Errorf("node %q, namespaces %v, nodes %v", first.Node, first.Namespaces, first.Nodes)
	}
}
