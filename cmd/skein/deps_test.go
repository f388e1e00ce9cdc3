package main

import (
	"testing"

	"github.com/skeinnet/skein/internal/depcheck"
)

// TestThinCLI keeps the admin CLI a client: it talks to etcd and to the
// agents' HTTP endpoints, so it links neither the agent nor the dataplane
// libraries (GoBGP, nftables), and it builds where admins run it.
func TestThinCLI(t *testing.T) {
	t.Parallel()
	banned := []string{"github.com/skeinnet/skein/agent", "github.com/osrg/gobgp", "github.com/google/nftables"}
	for _, goos := range []string{"", "darwin"} {
		t.Run("GOOS="+goosName(goos), func(t *testing.T) {
			t.Parallel()
			depcheck.NotLinked(t, goos, banned, "cmd/skein must stay a thin client (issue 10)")
		})
	}
}

func goosName(goos string) string {
	if goos == "" {
		return "host"
	}
	return goos
}
