package policy

import (
	"testing"

	"github.com/skeinnet/skein/internal/depcheck"
)

// TestPureFilesImportNoKernel keeps the compiler, evaluator and reconciler free of kernel,
// store and process access: only *_linux.go files may talk to the kernel.
func TestPureFilesImportNoKernel(t *testing.T) {
	t.Parallel()
	depcheck.Check(t, 3, depcheck.Rule{Applies: depcheck.NotLinux, Banned: depcheck.Kernel, Why: "kernel access belongs in *_linux.go"})
}
