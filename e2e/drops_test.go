//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/policy"
)

// dropsWait bounds how long a denied connection may take to show in
// `skein policy drops` (the issue asks for 1 s; the test logs the time it
// took and fails only past this bound, so a loaded machine does not flake).
const dropsWait = 10 * time.Second

// testDrops: with y/b isolated for ingress except from x/a on TCP 80, a
// denied connection from x/b shows in `skein policy drops` with its source,
// destination, port and the rule `policy trace` names, over each family;
// the allowed one from x/a never does.
func (s *polSuite) testDrops(ctx context.Context, t *testing.T) {
	defer s.deleteAllPolicies(ctx, t)
	s.apply(ctx, t, polNP("y", "drops-b", `
podSelector: {matchLabels: {pod: b}}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: x}}
    podSelector: {matchLabels: {pod: a}}
  ports: [{protocol: TCP, port: 80}]`))
	xa, xb, xc, yb := s.byKey["x/a"], s.byKey["x/b"], s.byKey["x/c"], s.byKey["y/b"]
	enforced := false
	for deadline := time.Now().Add(polEnforceWait); time.Now().Before(deadline); {
		if !s.probe(ctx, xc, yb, tcp81) {
			enforced = true
			break
		}
	}
	if !enforced {
		t.Fatalf("x/c still reaches y/b on TCP/81 after %s", polEnforceWait)
	}

	var tr policy.Verdict
	out := s.mustSkein(ctx, t, "policy", "trace", "--from", "x/b", "--to", "y/b", "--port", "80", "-o", "json")
	if err := json.Unmarshal([]byte(out), &tr); err != nil || tr.Allowed {
		t.Fatalf("trace x/b -> y/b TCP/80: %v %+v", err, tr)
	}

	start := time.Now()
	if s.probe(ctx, xb, yb, tcp80) {
		t.Fatal("x/b reached y/b on TCP/80, which drops-b denies")
	}
	d := s.waitDrop(ctx, t, func(d api.Drop) bool { return d.Src == xb.c.IP && d.Dst == yb.c.IP && d.DstPort == 80 })
	t.Logf("denied x/b -> y/b TCP/80: logged %s after the connect began, shown by `skein policy drops` %s after it began (the connect itself waits %s): %+v", d.Time.Sub(start).Round(time.Millisecond), time.Since(start).Round(time.Millisecond), polProbeTimeout, d)
	if d.Proto != "TCP" || d.Rule != tr.Rule || d.From == nil || *d.From != (api.EndpointRef{Namespace: "x", Name: "b"}) ||
		d.To == nil || *d.To != (api.EndpointRef{Namespace: "y", Name: "b"}) {
		t.Errorf("drop %+v; want TCP from x/b to y/b, rule %q", d, tr.Rule)
	}

	// The allowed connection, then one more denied one: once that shows,
	// the allowed one (logged first on the same node, had it been dropped)
	// would have too.
	if !s.probe(ctx, xa, yb, tcp80) {
		t.Fatal("x/a does not reach y/b on TCP/80, which drops-b allows")
	}
	if s.probe(ctx, xc, yb, tcp80) {
		t.Fatal("x/c reached y/b on TCP/80, which drops-b denies")
	}
	s.waitDrop(ctx, t, func(d api.Drop) bool { return d.Src == xc.c.IP && d.Dst == yb.c.IP && d.DstPort == 80 })
	for _, d := range s.drops(ctx, t) {
		if d.Src == xa.c.IP {
			t.Errorf("allowed traffic from x/a logged as dropped: %+v", d)
		}
	}
	if !s.dual {
		return
	}

	// Over IPv6: the denied connection shows with the pods' IPv6 addresses,
	// named, with the rule IPv6 trace names.
	out = s.mustSkein(ctx, t, "policy", "trace", "--from", "x/b", "--to", "y/b", "--port", "80", "--family", "6", "-o", "json")
	var tr6 policy.Verdict
	if err := json.Unmarshal([]byte(out), &tr6); err != nil || tr6.Allowed {
		t.Fatalf("trace x/b -> y/b TCP/80 over IPv6: %v %+v", err, tr6)
	}
	if s.probeFamily(ctx, xb, yb, tcp80, 6) {
		t.Fatal("x/b reached y/b on TCP/80 over IPv6, which drops-b denies")
	}
	d = s.waitDrop(ctx, t, func(d api.Drop) bool { return d.Src == xb.c.IP6 && d.Dst == yb.c.IP6 && d.DstPort == 80 })
	if d.Proto != "TCP" || d.Rule != tr6.Rule || d.From == nil || *d.From != (api.EndpointRef{Namespace: "x", Name: "b"}) ||
		d.To == nil || *d.To != (api.EndpointRef{Namespace: "y", Name: "b"}) {
		t.Errorf("IPv6 drop %+v; want TCP from x/b to y/b, rule %q", d, tr6.Rule)
	}
}

// drops runs `skein policy drops -o json` for y/b on y/b's host: agents'
// debug endpoints listen on their host's loopback, and ingress drops are
// logged where the destination lives.
func (s *polSuite) drops(ctx context.Context, t *testing.T) []api.Drop {
	t.Helper()
	cmd, err := s.l.Command(ctx, s.byKey["y/b"].c.Host, s.bin, "--etcd-endpoints", s.l.EtcdUnderlayEndpoints()[0],
		"policy", "drops", "--namespace", "y", "--pod", "b", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("skein policy drops: %v\n%s", err, stderr.String())
	}
	var ds []api.Drop
	if err := json.Unmarshal([]byte(out), &ds); err != nil {
		t.Fatalf("policy drops -o json: %v\n%s", err, out)
	}
	return ds
}

// waitDrop waits up to dropsWait for a drop that match accepts.
func (s *polSuite) waitDrop(ctx context.Context, t *testing.T, match func(api.Drop) bool) api.Drop {
	t.Helper()
	var last []api.Drop
	for deadline := time.Now().Add(dropsWait); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		last = s.drops(ctx, t)
		for _, d := range last {
			if match(d) {
				return d
			}
		}
	}
	b, _ := json.MarshalIndent(last, "", "  ")
	t.Fatalf("no matching drop within %s; `skein policy drops` for y/b has %s drops:\n%s", dropsWait, strconv.Itoa(len(last)), b)
	return api.Drop{}
}
