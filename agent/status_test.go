package agent

import (
	"context"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
)

// TestStatusEmptyBlocks: the status record lists the node's empty blocks,
// which `skein ipam show` prints, and a block filling up republishes it.
func TestStatusEmptyBlocks(t *testing.T) {
	f := newDebugFixture(t, "off")
	a := f.a
	a.cfg.BlockReleaseGrace = DefaultBlockReleaseGrace
	home := a.alloc.HomeBlock()
	st := a.nodeStatus()
	if len(st.EmptyBlocks) != 1 || st.EmptyBlocks[0].CIDR != home || !st.EmptyBlocks[0].Home || !st.EmptyBlocks[0].ReleaseAt.IsZero() {
		t.Fatalf("EmptyBlocks = %+v, want the home block, kept", st.EmptyBlocks)
	}
	if _, _, err := a.alloc.Allocate(t.Context(), "net-a", api.Owner{ContainerID: "c9", IfName: "eth0"}, ""); err != nil {
		t.Fatal(err)
	}
	after := a.nodeStatus()
	if len(after.EmptyBlocks) != 0 {
		t.Errorf("EmptyBlocks = %+v after an allocation, want none", after.EmptyBlocks)
	}
	filled := st
	filled.EmptyBlocks = nil
	if statusFingerprint(st) == statusFingerprint(filled) {
		t.Error("the fingerprint ignores empty blocks: a change would wait for the 10 s refresh")
	}
}

// TestRequestStatusPublishes: a CNI call's requestStatus makes the status
// loop publish a fresh record at once, not at the next 10 s refresh (the
// calls no longer build the record themselves).
func TestRequestStatusPublishes(t *testing.T) {
	f := newDebugFixture(t, "off")
	a := f.a
	a.statusCh = make(chan api.NodeStatus, 1)
	a.statusKick = make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.statusLoop(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("statusLoop() = %v", err)
		}
	}()
	// The loop's first check publishes (nothing was published yet); after
	// it, an unchanged status waits for the 10 s refresh.
	select {
	case <-a.statusCh:
	case <-time.After(5 * statusCheck):
		t.Fatal("the status loop published nothing")
	}
	// Nothing in the fingerprint changes here, so only the request can
	// make the loop publish before the refresh.
	a.requestStatus()
	select {
	case <-a.statusCh:
	case <-time.After(statusRefresh / 2):
		t.Fatal("requestStatus: no fresh status before the periodic refresh")
	}
}
