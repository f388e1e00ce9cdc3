package policyinput

import (
	"testing"

	"github.com/skeinnet/skein/internal/depcheck"
)

// TestImports keeps the input builder free of kernel and process access:
// the CLI links it.
func TestImports(t *testing.T) {
	t.Parallel()
	depcheck.Check(t, 1, depcheck.Rule{Banned: depcheck.Kernel, Why: "the input builder is pure"})
}
