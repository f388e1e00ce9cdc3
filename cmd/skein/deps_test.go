package main

import (
	"testing"

	"github.com/skeinnet/skein/internal/depcheck"
)

// TestThinCLI keeps the admin CLI a client: it talks to etcd and to the
// agents' HTTP endpoints, so it links neither the agent nor GoBGP, and it
// builds where admins run it (macOS too), without nftables there.
func TestThinCLI(t *testing.T) {
	t.Parallel()
	const why = "cmd/skein must stay a thin client (issue 10)"
	thin := []string{"github.com/skeinnet/skein/agent", "github.com/osrg/gobgp", "github.com/skeinnet/skein/bgp", "golang.zx2c4.com/"}
	t.Run("GOOS=linux", func(t *testing.T) {
		t.Parallel()
		// TODO(cli): ban github.com/google/nftables here too once the policy
		// compiler and its nftables applier (policy/nft_linux.go,
		// policy/monitor_linux.go) are separate packages: trace and matrix
		// link the compiler, and Go links whole packages (#10).
		depcheck.NotLinked(t, "linux", thin, why)
	})
	t.Run("GOOS=darwin", func(t *testing.T) {
		t.Parallel()
		depcheck.NotLinked(t, "darwin", append(thin, "github.com/google/nftables", "github.com/vishvananda/"), why)
	})
}
