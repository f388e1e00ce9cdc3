package wireguard

import (
	"testing"

	"github.com/skeinnet/skein/internal/depcheck"
)

// TestPureFilesImportNoKernel keeps the planner, the UAPI text and the
// reconciler's loop free of kernel access: only *_linux.go files (the
// device and route appliers) may talk to the kernel.
func TestPureFilesImportNoKernel(t *testing.T) {
	t.Parallel()
	depcheck.Check(t, 3, depcheck.Rule{Applies: depcheck.NotLinux, Banned: depcheck.Kernel, Why: "kernel access belongs in *_linux.go"})
}
