package agent

import (
	"testing"

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
