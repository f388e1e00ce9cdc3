package ipam

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func TestReconcileLostBlock(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.newAlloc(e.config())
	for i := range 5 {
		mustAllocate(t, a, owner(fmt.Sprint("c", i)), fmt.Sprint("ns/p", i))
	}
	// While the agent was down, its second block went to node-b (say, after
	// `skein node delete` by mistake).
	e.store.set(pfx("10.0.0.0/30"), "node-b")

	var logs syncBuffer
	cfg := e.config()
	cfg.Log = slog.New(slog.NewTextHandler(&logs, nil))
	b := e.newAlloc(cfg)
	if d := cmp.Diff(pfxs("10.0.0.12/30"), b.Blocks(), cmpOpts); d != "" {
		t.Errorf("Blocks() (-want +got):\n%s", d)
	}
	var got []netip.Addr
	for _, al := range b.Allocations() {
		got = append(got, al.IP)
	}
	if d := cmp.Diff([]netip.Addr{addr("10.0.0.13"), addr("10.0.0.14"), addr("10.0.0.15")}, got, cmpOpts); d != "" {
		t.Errorf("allocations kept (-want +got):\n%s", d)
	}
	out := logs.String()
	for _, want := range []string{"level=ERROR", "prefix=10.0.0.0/30", "peer=node-b", "count=2", "10.0.0.1 c3/eth0 ns/p3", "10.0.0.2 c4/eth0 ns/p4"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if d := cmp.Diff(pfxs("10.0.0.0/30"), e.store.owned("node-b"), cmpOpts); d != "" {
		t.Errorf("node-b's blocks (-want +got):\n%s", d)
	}
	// Saved: a second restart sees the same.
	c := e.newAlloc(e.config())
	if got := len(c.Allocations()); got != 3 {
		t.Errorf("second restart sees %d allocations, want 3", got)
	}
}

func TestReconcileHomeLost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.newAlloc(e.config())
	for i := range 4 {
		mustAllocate(t, a, owner(fmt.Sprint("c", i)), "")
	}
	e.store.set(pfx("10.0.0.12/30"), "node-b")
	b := e.newAlloc(e.config())
	if got := b.HomeBlock(); got != pfx("10.0.0.0/30") {
		t.Errorf("HomeBlock() = %s, want 10.0.0.0/30", got)
	}
	if got := b.VTEPAddr(); got != addr("10.0.0.0") {
		t.Errorf("VTEPAddr() = %s, want 10.0.0.0", got)
	}
}

func TestReconcileReclaimsMissingBlock(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.newAlloc(e.config())
	for i := range 4 {
		mustAllocate(t, a, owner(fmt.Sprint("c", i)), "")
	}
	e.store.set(pfx("10.0.0.0/30"), "") // the claim vanished, no one took it
	b := e.newAlloc(e.config())
	if d := cmp.Diff(a.Allocations(), b.Allocations(), cmpOpts); d != "" {
		t.Errorf("Allocations() (-want +got):\n%s", d)
	}
	if d := cmp.Diff(pfxs("10.0.0.0/30", "10.0.0.12/30"), e.store.owned("node-a"), cmpOpts); d != "" {
		t.Errorf("store blocks (-want +got):\n%s", d)
	}
}

func TestReconcileAdoptsStoreBlocks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.newAlloc(e.config())
	mustAllocate(t, a, owner("c0"), "")
	e.store.set(pfx("10.0.0.4/30"), "node-a") // claimed, but the answer never arrived
	b := e.newAlloc(e.config())
	if d := cmp.Diff(pfxs("10.0.0.12/30", "10.0.0.4/30"), b.Blocks(), cmpOpts); d != "" {
		t.Errorf("Blocks() (-want +got):\n%s", d)
	}
}

func TestNewWithoutStateAdoptsStoreBlocks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.store.set(pfx("10.0.0.8/30"), "node-a")
	e.store.set(pfx("10.0.0.4/30"), "node-a")
	a := e.newAlloc(e.config())
	if d := cmp.Diff(pfxs("10.0.0.4/30", "10.0.0.8/30"), a.Blocks(), cmpOpts); d != "" {
		t.Errorf("Blocks() (-want +got):\n%s", d)
	}
	if e.store.claims != 0 {
		t.Errorf("store saw %d claims, want none", e.store.claims)
	}
}

func TestAllocateAdoptsStoreBlock(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.newAlloc(e.config())
	for i := range 3 {
		mustAllocate(t, a, owner(fmt.Sprint("c", i)), "")
	}
	e.store.set(pfx("10.0.0.8/30"), "node-a")
	if got := mustAllocate(t, a, owner("c3"), ""); got != addr("10.0.0.9") {
		t.Errorf("Allocate(c3) = %s, want 10.0.0.9 from the block the store already gives node-a", got)
	}
}
