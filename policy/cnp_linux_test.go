package policy

import (
	"context"
	"net/netip"
	"os"
	"testing"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/nstest"
)

// TestTrafficClusterNetworkPolicy enforces ClusterNetworkPolicies of both
// tiers, with Pass, and a nodes peer on a host namespace, and checks real
// TCP connections. The "node" is a namespace routed like a pod but on a
// non-Skein interface: the pods reach it through the forward hook, as they
// reach another host's underlay address.
func TestTrafficClusterNetworkPolicy(t *testing.T) {
	host := nstest.New(t)
	if err := host.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	}); err != nil {
		t.Fatalf("enable forwarding in %s: %v", host.Name, err)
	}
	a := plumb(t, host, "sk000000000ca", netip.MustParseAddr("10.98.0.2"))
	b := plumb(t, host, "sk000000000cb", netip.MustParseAddr("10.98.0.3"))
	c := plumb(t, host, "sk000000000cc", netip.MustParseAddr("10.98.0.4"))
	n2 := plumb(t, host, "nd000000000n2", netip.MustParseAddr("192.168.78.2"))
	for _, port := range []uint16{8080, 8081} {
		serve(t, b.ns, netip.AddrPortFrom(b.ip, port))
	}
	serve(t, n2.ns, netip.AddrPortFrom(n2.ip, 9090))
	b8080, b8081 := netip.AddrPortFrom(b.ip, 8080), netip.AddrPortFrom(b.ip, 8081)
	n9090 := netip.AddrPortFrom(n2.ip, 9090)

	node := func(zone string) api.Node {
		return api.Node{Name: "n2", UnderlayIP: n2.ip, Labels: map[string]string{"zone": zone}}
	}
	input := func(docs string) Input {
		t.Helper()
		ep := func(name string, p podNS) api.Endpoint {
			return api.Endpoint{Namespace: "x", Name: name, Labels: map[string]string{"pod": name}, IPs: []netip.Addr{p.ip},
				Node: "h", HostIface: p.iface, ContainerID: name, IfName: "eth0"}
		}
		return withPolicies(t, Input{
			Namespaces: []api.Namespace{{Name: "x"}},
			Endpoints:  []api.Endpoint{ep("a", a), ep("b", b), ep("c", c)},
			Nodes:      []api.Node{node("a")},
			Node:       "h",
		}, docs)
	}
	ap := NewApplier(newConn(t, host), nil)
	ctx := context.Background()
	apply := func(docs string) {
		t.Helper()
		if err := ap.Apply(ctx, Compile(input(docs))); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}

	// Admin tier: a passes to the NetworkPolicy tier, everyone else is
	// denied by a later Admin policy; the NetworkPolicy allows a on 8080.
	apply(`
kind: ClusterNetworkPolicy
metadata: {name: pass-a}
spec:
  tier: Admin
  priority: 10
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}}
  ingress: [{action: Pass, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: a}}}}]}]
---
kind: ClusterNetworkPolicy
metadata: {name: deny-rest}
spec:
  tier: Admin
  priority: 20
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}}
  ingress: [{action: Deny, from: [{namespaces: {}}]}]
---
metadata: {name: b-from-a-8080, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: a}}}], ports: [{port: 8080}]}]`)
	expectConnect(t, "Admin Pass then NetworkPolicy allows a on 8080", a.ns, netip.Addr{}, b8080)
	expectBlocked(t, "Admin Pass then NetworkPolicy isolates 8081", a.ns, netip.Addr{}, b8081)
	expectBlocked(t, "Admin Deny for c", c.ns, netip.Addr{}, b8080)

	// Baseline tier: a passes out of the tier (allow), c meets the
	// BaselineAdminNetworkPolicy's deny after the Baseline CNPs.
	apply(`
kind: ClusterNetworkPolicy
metadata: {name: base-pass-a}
spec:
  tier: Baseline
  priority: 10
  subject: {namespaces: {}}
  ingress: [{action: Pass, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: a}}}}]}]
---
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}}
  ingress: [{action: Deny, from: [{namespaces: {}}]}]`)
	expectConnect(t, "Baseline Pass for a", a.ns, netip.Addr{}, b8081)
	expectBlocked(t, "BANP deny after the Baseline CNPs for c", c.ns, netip.Addr{}, b8080)

	// A nodes peer: egress to nodes of zone a on 9090 is denied; the node's
	// relabel moves only set elements.
	docs := `
kind: ClusterNetworkPolicy
metadata: {name: no-zone-a}
spec:
  tier: Admin
  priority: 1
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: a}}}}
  egress: [{action: Deny, to: [{nodes: {matchLabels: {zone: a}}}], protocols: [{tcp: {destinationPort: {number: 9090}}}]}]`
	x := NewIncremental(input(docs))
	if err := ap.Apply(ctx, x.Program()); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	expectBlocked(t, "a to a zone-a node", a.ns, netip.Addr{}, n9090)
	expectConnect(t, "c to a zone-a node", c.ns, netip.Addr{}, n9090)
	before := ap.Stats()
	ch, full := x.SetNodes([]api.Node{node("b")}, nil)
	if full || ch.Len() != 1 {
		t.Fatalf("relabel: changes %v, full %v; want one element moved", ch, full)
	}
	if err := ap.ApplyElements(ctx, x.Program(), []SetChanges{ch}); err != nil {
		t.Fatalf("ApplyElements: %v", err)
	}
	expectConnect(t, "a to the node after it left zone a", a.ns, netip.Addr{}, n9090)
	ch, _ = x.SetNodes([]api.Node{node("a")}, nil)
	if err := ap.ApplyElements(ctx, x.Program(), []SetChanges{ch}); err != nil {
		t.Fatalf("ApplyElements: %v", err)
	}
	expectBlocked(t, "a to the node back in zone a", a.ns, netip.Addr{}, n9090)
	if after := ap.Stats(); after.Rebuilds != before.Rebuilds {
		t.Errorf("node relabels rebuilt the table (%d rebuilds, were %d)", after.Rebuilds, before.Rebuilds)
	}
	if err := ap.Delete(ctx); err != nil {
		t.Fatal(err)
	}
}
