package ipamaudit

import (
	"testing"

	"github.com/skeinnet/skein/internal/depcheck"
)

// TestImports keeps the package free of kernel and process access (the CLI
// links it on every OS) and requires its package doc.
func TestImports(t *testing.T) {
	t.Parallel()
	depcheck.Check(t, 3, depcheck.Rule{Banned: depcheck.Kernel, Why: "it reads etcd through store and agents over HTTP only"})
}
