package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/policy"
	"github.com/skeinnet/skein/policyinput"
	"github.com/skeinnet/skein/store"
)

// recordingDataplane is a policy.Dataplane that records the host
// interfaces of every program applied.
type recordingDataplane struct {
	mu      sync.Mutex
	applied [][]string
}

func (d *recordingDataplane) Apply(_ context.Context, p *policy.Program) error {
	ifaces := make([]string, 0, len(p.Endpoints))
	for i := range p.Endpoints {
		ifaces = append(ifaces, p.Endpoints[i].HostIface)
	}
	slices.Sort(ifaces)
	d.mu.Lock()
	d.applied = append(d.applied, ifaces)
	d.mu.Unlock()
	return nil
}

func (d *recordingDataplane) ApplyElements(ctx context.Context, p *policy.Program, _ []policy.SetChanges) error {
	return d.Apply(ctx, p)
}
func (d *recordingDataplane) Stats() policy.ApplyStats { return policy.ApplyStats{} }
func (d *recordingDataplane) Reset()                   {}

func testEndpoint(i int) api.Endpoint {
	return api.Endpoint{
		Namespace: "x", Name: fmt.Sprintf("p%d", i), Node: "n1",
		ContainerID: fmt.Sprintf("c%03d", i), IfName: "eth0", HostIface: fmt.Sprintf("sk%03d", i),
		IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(i / 250), byte(i%250 + 1)})},
	}
}

// TestEnforcerConcurrentCommits fires CNI commits and watch updates at
// once: every commit returns only when its endpoint is in an applied
// program, the programs applied only ever grow (no program compiled from
// older input replaces a newer one, which would drop a just-added
// endpoint's dispatch and anti-spoofing entries), and the compiles are
// coalesced.
func TestEnforcerConcurrentCommits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dp := &recordingDataplane{}
		rec, err := policy.NewReconciler(policy.ReconcilerConfig{Dataplane: dp, Resync: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		e := newEnforcerWith("n1", rec, slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() { _ = rec.Run(ctx) })
		wg.Go(func() { _ = e.run(ctx) })

		const n = 60
		snapAt := func(rev int) *store.Snapshot {
			s := &store.Snapshot{Rev: int64(rev), Endpoints: map[string]api.Endpoint{}}
			for i := range min(rev, n) {
				ep := testEndpoint(i)
				s.Endpoints["n1/"+ep.ContainerID+"/eth0"] = ep
			}
			return s
		}
		e.update(snapAt(0))
		var commits sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			commits.Go(func() {
				errs <- e.committed(ctx, testEndpoint(i))
			})
		}
		// The watch publishes the endpoints back, in order, meanwhile.
		commits.Go(func() {
			for rev := 1; rev <= n; rev++ {
				e.update(snapAt(rev))
			}
		})
		commits.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("committed() = %v", err)
			}
		}
		synctest.Wait()
		cancel()
		wg.Wait()

		dp.mu.Lock()
		defer dp.mu.Unlock()
		for k := 1; k < len(dp.applied); k++ {
			for _, iface := range dp.applied[k-1] {
				if !slices.Contains(dp.applied[k], iface) {
					t.Fatalf("apply %d dropped %s, present in apply %d: a program of older input replaced a newer one", k, iface, k-1)
				}
			}
		}
		last := dp.applied[len(dp.applied)-1]
		if len(last) != n {
			t.Errorf("last program enforces %d endpoints, want %d", len(last), n)
		}
		if len(dp.applied) > 2*n+1 {
			t.Errorf("%d applies for %d commits and %d updates: changes were not coalesced", len(dp.applied), n, n)
		}
		t.Logf("%d commits and %d watch updates: %d applies", n, n, len(dp.applied))
	})
}

// TestPolicyInputInvalid: stored policies that do not decode are never
// dropped. Invalid from their first value, they quarantine the pods they
// name; updated from valid to invalid, their last valid value stays
// enforced; a kind this agent does not know is quarantined too.
func TestPolicyInputInvalid(t *testing.T) {
	e := newEnforcerWith("n1", nil, slog.New(slog.DiscardHandler))
	const good = `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"deny","namespace":"x"},"spec":{"podSelector":{"matchLabels":{"app":"db"}},"policyTypes":["Ingress"]}}`
	// A deny-all that an older or newer writer left with a bad field.
	const bad = `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"deny","namespace":"x"},"spec":{"podSelector":{"matchLabels":{"app":"db"}},"policyTypes":["Ingres"]}}`
	const badANP = `{"apiVersion":"policy.networking.k8s.io/v1alpha1","kind":"AdminNetworkPolicy","metadata":{"name":"a"},"spec":{"priority":"high","subject":{"namespaces":{"matchLabels":{"t":"1"}}}}}`
	snap := &store.Snapshot{Other: map[string][]byte{
		"policies/NetworkPolicy/x/deny":               []byte(bad),
		"policies/AdminNetworkPolicy/_/a":             []byte(badANP),
		"policies/ClusterNetworkPolicy/_/future":      []byte(`{}`),
		"policies/NetworkPolicy/y":                    []byte(`{}`),
		"bgppeers/tor":                                []byte(`{}`),
		"policies/NetworkPolicy/y/ok":                 []byte(strings.ReplaceAll(good, `"x"`, `"y"`)),
		"policies/BaselineAdminNetworkPolicy/_/empty": []byte(`{"kind":"BaselineAdminNetworkPolicy"}`),
	}}
	e.mu.Lock()
	in, invalid := policyinput.FromSnapshot("n1", snap, e.decodeLocked)
	e.mu.Unlock()
	var got []string
	for _, p := range invalid {
		got = append(got, p.Key+" → "+p.Enforced)
	}
	want := []string{
		"policies/AdminNetworkPolicy/_/a → quarantine",
		"policies/BaselineAdminNetworkPolicy/_/empty → quarantine",
		"policies/ClusterNetworkPolicy/_/future → quarantine",
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
		{Kind: "ClusterNetworkPolicy", Name: "future"},
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

	// Valid, then updated to invalid: the valid value stays, reported.
	snap = &store.Snapshot{Other: map[string][]byte{"policies/NetworkPolicy/x/deny": []byte(good)}}
	e.mu.Lock()
	in, invalid = policyinput.FromSnapshot("n1", snap, e.decodeLocked)
	e.mu.Unlock()
	if len(invalid) != 0 || len(in.NetworkPolicies) != 1 {
		t.Fatalf("valid policy: invalid %v, policies %d", invalid, len(in.NetworkPolicies))
	}
	snap = &store.Snapshot{Other: map[string][]byte{"policies/NetworkPolicy/x/deny": []byte(bad)}}
	e.mu.Lock()
	in, invalid = policyinput.FromSnapshot("n1", snap, e.decodeLocked)
	e.mu.Unlock()
	if len(invalid) != 1 || invalid[0].Enforced != api.EnforcedLastValid || len(in.NetworkPolicies) != 1 || len(in.Quarantines) != 0 {
		t.Errorf("valid → invalid: invalid %v, policies %d, quarantines %d; want the last valid value enforced", invalid, len(in.NetworkPolicies), len(in.Quarantines))
	}
}

// TestInvalidPolicyLoggedOncePerChange: an invalid stored policy is
// logged (warn) when it appears and when its error changes, not on every
// compile, and once (info) when it is fixed.
func TestInvalidPolicyLoggedOncePerChange(t *testing.T) {
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	rec, err := policy.NewReconciler(policy.ReconcilerConfig{Dataplane: &recordingDataplane{}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnforcerWith("n1", rec, log)
	const key = "policies/NetworkPolicy/x/deny"
	compile := func(raw string) {
		snap := &store.Snapshot{Other: map[string][]byte{}}
		if raw != "" {
			snap.Other[key] = []byte(raw)
		}
		e.update(snap)
		e.compile()
	}
	compile(`{"kind":"NetworkPolicy"}`)
	compile(`{"kind":"NetworkPolicy"}`) // unchanged: no new line
	compile(`{"kind":"NetworkPolicy","apiVersion":"v9"}`)
	compile("")
	got := logs.String()
	count := func(prefix string) int {
		n := 0
		for _, l := range strings.Split(got, "\n") {
			if strings.Contains(l, prefix) && strings.Contains(l, "key="+key) {
				n++
			}
		}
		return n
	}
	if n := count(`level=WARN msg="invalid stored policy" `); n != 2 {
		t.Errorf("%d warnings, want 2 (appeared, error changed):\n%s", n, got)
	}
	if n := count(`level=INFO msg="invalid stored policy fixed or deleted" `); n != 1 {
		t.Errorf("%d fixed lines, want 1:\n%s", n, got)
	}
	if inv := e.invalidPolicies(); len(inv) != 0 {
		t.Errorf("invalid policies after the delete: %v", inv)
	}
}

// TestPredecodeEqualsOneByOne: decoding many stored policies in parallel
// files exactly what decoding them one by one does, the last valid value of
// a policy updated to an invalid one included.
func TestPredecodeEqualsOneByOne(t *testing.T) {
	other := map[string][]byte{}
	for i := range 3 * predecodeMin {
		raw := fmt.Sprintf(`{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"p%d","namespace":"ns"},"spec":{"podSelector":{"matchLabels":{"app":"a%d"}}}}`, i, i%7)
		if i%10 == 0 {
			raw = `{"kind":"NetworkPolicy","metadata":{"name":"bad"},"spec":{"podSelector":{"matchLabels":{"app":1}}}}`
		}
		other[fmt.Sprintf("policies/NetworkPolicy/ns/p%d", i)] = []byte(raw)
	}
	other["bgppeers/x"] = []byte(`{}`) // not a policy: left alone
	prev := `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"p10","namespace":"ns"},"spec":{"podSelector":{}}}`

	serial := &enforcer{decoded: map[string]decodedPolicy{}}
	parallel := &enforcer{decoded: map[string]decodedPolicy{}}
	for _, e := range []*enforcer{serial, parallel} {
		if _, err := e.decodeLocked("policies/NetworkPolicy/ns/p10", api.KindNetworkPolicy, []byte(prev)); err != nil {
			t.Fatal(err)
		}
	}
	for k, raw := range other {
		if kind, _, _, ok := api.ParsePolicyKey(k); ok {
			_, _ = serial.decodeLocked(k, kind, raw) // errors are what is compared
		}
	}
	parallel.predecodeLocked(other)
	if len(parallel.decoded) != len(serial.decoded) {
		t.Fatalf("parallel filed %d policies, one by one %d", len(parallel.decoded), len(serial.decoded))
	}
	for k, want := range serial.decoded {
		got := parallel.decoded[k]
		if !bytes.Equal(got.raw, want.raw) || fmt.Sprint(got.err) != fmt.Sprint(want.err) || !reflect.DeepEqual(got.obj, want.obj) {
			t.Errorf("%s: parallel %+v, one by one %+v", k, got, want)
		}
	}
	if d := parallel.decoded["policies/NetworkPolicy/ns/p10"]; d.err == nil || d.obj == nil {
		t.Errorf("p10 updated to an invalid value: err %v obj %v, want the error and the last valid object", d.err, d.obj)
	}
}
