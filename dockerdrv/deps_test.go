package dockerdrv

import (
	"testing"

	"github.com/skeinnet/skein/internal/depcheck"
)

// TestDeps: the driver speaks the plugin protocol and the engine API with
// net/http, never through the Docker (moby) module; it reaches the agent
// only through Backend and the kernel only in *_linux.go.
func TestDeps(t *testing.T) {
	t.Parallel()
	depcheck.Check(t, 6,
		depcheck.Rule{
			Banned: []string{"github.com/docker/", "github.com/moby/", "github.com/skeinnet/skein/agent", "github.com/skeinnet/skein/store", "go.etcd.io/"},
			Why:    "the driver needs only net/http and the agent's calls (Backend)",
		},
		depcheck.Rule{
			Applies: depcheck.NotLinux,
			Banned:  []string{"github.com/vishvananda/", "os/exec"},
			Why:     "kernel access belongs in dataplane_linux.go",
		})
}
