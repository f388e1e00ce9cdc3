package policy

import (
	"context"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinnet/skein/internal/nstest"
)

// TestTableDriftRepaired: with WatchTable feeding the Reconciler (periodic
// rebuild an hour away), hand edits of table inet skein with nft — a set
// flushed, a foreign rule added, the whole table deleted — are undone within
// a second and counted, while the agent's own applies count as nothing.
func TestTableDriftRepaired(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft not installed (make deps installs it): it plays the admin editing the table by hand")
	}
	ns := nstest.New(t)
	c := newConn(t, ns)
	testLog := func(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }
	r, err := NewReconciler(ReconcilerConfig{Dataplane: NewApplier(c, testLog(t)), Log: testLog(t), Resync: time.Hour, RebuildEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	watching := make(chan error, 1)
	go func() { watching <- WatchTable(ctx, ns.Fd(), r.TableDrift) }()
	running := make(chan error, 1)
	go func() { running <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-running; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := <-watching; err != nil {
			t.Errorf("WatchTable: %v", err)
		}
	}()
	time.Sleep(50 * time.Millisecond) // the subscription is in place before the first apply

	p := applierProgram(t, "")
	if err := r.WaitApplied(ctx, r.Set(p)); err != nil {
		t.Fatal(err)
	}
	want := expectTable(Render(p))
	repaired := func(what string) {
		t.Helper()
		deadline := time.Now().Add(time.Second)
		for !cmp.Equal(want, listTable(t, c)) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not repaired within 1 s (-want +got):\n%s", what, cmp.Diff(want, listTable(t, c)))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if d := r.Drifts(); len(d) != 0 {
		t.Fatalf("own applies counted as drift: %v", d)
	}
	nft := func(args ...string) {
		t.Helper()
		out, err := exec.Command("ip", append([]string{"netns", "exec", ns.Name, "nft"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	var set string
	for _, s := range Render(p).Sets {
		if len(s.Prefixes) > 0 && s.Kind == SetAddrs {
			set = s.Name
			break
		}
	}
	if set == "" {
		t.Fatal("the test program has no address set with elements")
	}
	nft("flush", "set", "inet", TableName, set)
	repaired("set " + set + " flushed")
	nft("add", "rule", "inet", TableName, "forward", "accept")
	repaired("foreign rule added")
	nft("delete", "table", "inet", TableName)
	repaired("table deleted")
	d := r.Drifts()
	for _, k := range []string{DriftElement, DriftRule, DriftTable} {
		if d[k] == 0 {
			t.Errorf("drift of kind %s not counted: %v", k, d)
		}
	}
}
