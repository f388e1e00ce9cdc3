package policy

import (
	"strings"
	"testing"

	"github.com/skeinnet/skein/api"
)

// TestQuarantine: a stored policy that does not decode isolates the pods it
// names, both ways, ahead of any AdminNetworkPolicy allow; the trace names
// it as the deciding rule.
func TestQuarantine(t *testing.T) {
	t.Parallel()
	const allowAll = `apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: allow-all}
spec:
  priority: 1
  subject: {namespaces: {}}
  ingress: [{action: Allow, from: [{namespaces: {}}]}]
  egress: [{action: Allow, to: [{namespaces: {}}]}]
`
	const reason = "spec.ingress[0].ports[0].port: invalid value 0"
	x := "invalid stored policy NetworkPolicy x/deny-a: " + reason
	tests := []struct {
		name   string
		q      Quarantine
		probes []probe
	}{{
		name: "selector read: only the pods it names",
		q: Quarantine{Reason: reason, Target: api.PolicyTarget{Kind: api.KindNetworkPolicy, Namespace: "x", Name: "deny-a",
			PodSelector: &api.LabelSelector{MatchLabels: map[string]string{"pod": "a"}}}},
		probes: []probe{
			{from: "y/b", to: "x/a", port: 80, rule: x},
			{from: "x/a", to: "y/b", port: 80, rule: x},
			{from: "x/b", to: "x/a", port: 81, proto: "UDP", rule: x},
			{from: "y/b", to: "x/b", port: 80, allowed: true},
			{from: "x/b", to: "x/c", port: 80, allowed: true},
		},
	}, {
		name: "selector unreadable: the whole namespace",
		q:    Quarantine{Reason: reason, Target: api.PolicyTarget{Kind: api.KindNetworkPolicy, Namespace: "x", Name: "deny-a"}},
		probes: []probe{
			{from: "y/b", to: "x/a", port: 80, rule: x},
			{from: "x/c", to: "y/a", port: 80, rule: x},
			{from: "y/a", to: "z/c", port: 80, allowed: true},
		},
	}, {
		name: "admin subject read",
		q: Quarantine{Reason: "bad", Target: api.PolicyTarget{Kind: api.KindAdminNetworkPolicy, Name: "anp",
			Subject: &api.AdminNetworkPolicySubject{Namespaces: &api.LabelSelector{MatchLabels: map[string]string{"ns": "z"}}}}},
		probes: []probe{
			{from: "x/a", to: "z/a", port: 80, rule: "invalid stored policy AdminNetworkPolicy anp: bad"},
			{from: "z/b", to: "y/b", port: 80},
			{from: "x/a", to: "y/b", port: 80, allowed: true},
		},
	}, {
		name: "admin subject unreadable: every pod",
		q:    Quarantine{Reason: "bad", Target: api.PolicyTarget{Kind: api.KindBaselineAdminNetworkPolicy, Name: "default"}},
		probes: []probe{
			{from: "x/a", to: "y/b", port: 80, rule: "invalid stored policy BaselineAdminNetworkPolicy default: bad"},
			{from: "z/c", to: "z/a", port: 81},
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := withPolicies(t, model(), allowAll)
			in.Quarantines = []Quarantine{tc.q}
			check(t, Compile(in), tc.probes)
		})
	}
}

// TestQuarantineDecision: the trace reports the quarantine tier, and the
// rendered table drops the isolated pod's traffic with a comment naming the
// invalid policy.
func TestQuarantineDecision(t *testing.T) {
	t.Parallel()
	in := model()
	in.Node = "n1"
	in.Quarantines = []Quarantine{{Reason: "bad port", Target: api.PolicyTarget{Kind: api.KindNetworkPolicy, Namespace: "x", Name: "deny"}}}
	p := Compile(in)
	v, err := Trace(p, Peer{Namespace: "y", Name: "a"}, Peer{Namespace: "x", Name: "a"}, 80, "TCP")
	if err != nil {
		t.Fatal(err)
	}
	if v.Allowed || v.Ingress == nil || v.Ingress.Tier != "quarantine" || v.Ingress.Origin == nil || v.Ingress.Origin.Reason != "bad port" {
		t.Errorf("Trace() = %+v, want denied by the quarantine tier", v)
	}
	rs := Render(p)
	chain := rs.IngressDispatch["skxa"]
	if chain == "" {
		t.Fatalf("no ingress dispatch for skxa: %v", rs.IngressDispatch)
	}
	found := false
	for _, c := range rs.Chains {
		if c.Name != chain {
			continue
		}
		for _, r := range c.Rules {
			if r.Verdict == VerdictDrop && r.Set == "" && r.Proto == 0 && strings.Contains(r.Comment, "invalid stored policy NetworkPolicy x/deny") {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("chain %s has no drop-all rule naming the invalid policy", chain)
	}
	if _, ok := rs.EgressDispatch["skxa"]; !ok {
		t.Error("no egress dispatch for skxa: egress is not isolated")
	}
}
