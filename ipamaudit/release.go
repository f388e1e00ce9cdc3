package ipamaudit

// A release is one etcd transaction guarded by what the check read (the
// mod revision of the record, the absence of the node, the blocks around
// an address), so a node that came back, a block claimed meanwhile or an
// endpoint re-published by a new ADD make it skip, never free a live
// address.

import (
	"context"
	"errors"
	"time"

	"github.com/skeinnet/skein/store"
)

// ReleaseVerb says what Release does about f.
func (f Finding) ReleaseVerb() string {
	if f.Kind == OrphanBlock {
		return "delete block " + f.Block.String()
	}
	return "delete endpoint record " + f.Node + "/" + f.Owner
}

// Release makes one guarded release of a Releasable finding, within
// timeout, and says how it went: released, skipped (what the check read
// has changed) or failed.
func Release(ctx context.Context, cl *store.Client, f Finding, timeout time.Duration) string {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var err error
	if f.Kind == OrphanBlock {
		err = cl.ReleaseBlockIf(cctx, f.Block, f.modRev, f.guard)
	} else {
		err = cl.DeleteEndpointIf(cctx, f.Node, f.owner, f.modRev, f.guard)
	}
	switch {
	case err == nil:
		return "released: " + f.ReleaseVerb()[len("delete "):] + " deleted"
	case errors.Is(err, store.ErrChanged):
		return "skipped: changed since the check (run it again)"
	}
	return "failed: " + err.Error()
}
