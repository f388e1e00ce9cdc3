package bgp

import (
	"slices"
	"testing"

	"github.com/skeinnet/skein/internal/depcheck"
)

// TestImports keeps GoBGP behind gobgp.go and gobgp_log.go (a move to
// GoBGP v4 rewrites those two files) and kernel access in *_linux.go.
func TestImports(t *testing.T) {
	t.Parallel()
	gobgpFiles := []string{"gobgp.go", "gobgp_log.go"}
	depcheck.Check(t, 6,
		depcheck.Rule{
			Applies: func(f string) bool { return !slices.Contains(gobgpFiles, f) },
			Banned:  []string{"github.com/osrg/gobgp"},
			Why:     "only gobgp.go and gobgp_log.go may",
		},
		depcheck.Rule{
			Applies: depcheck.NotLinux,
			Banned:  []string{"github.com/vishvananda/", "golang.org/x/sys/unix", "syscall", "os/exec", "go.etcd.io/"},
			Why:     "kernel access belongs in *_linux.go",
		})
}
