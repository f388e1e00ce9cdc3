package ipam

import (
	"testing"

	"github.com/skeinnet/skein/internal/depcheck"
)

// TestDeps keeps ipam behind its BlockStore interface: no store, etcd or
// kernel packages in non-test files, and a package doc comment.
func TestDeps(t *testing.T) {
	t.Parallel()
	depcheck.Check(t, 4, depcheck.Rule{
		Banned: []string{"github.com/skeinnet/skein/store", "go.etcd.io/", "github.com/vishvananda/", "github.com/google/nftables", "os/exec"},
		Why:    "ipam talks to the store only through BlockStore and never to the kernel",
	})
}
