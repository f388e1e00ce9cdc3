package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/skeinnet/skein/api"
)

// TestNodeShowIdentity: `skein node show` prints the short identity that
// skeind's name-clash errors name, so the two can be compared.
func TestNodeShowIdentity(t *testing.T) {
	tc := newTestCluster(t)
	ctx := tc.ctx(t)
	for _, n := range []api.Node{
		{Name: "h1", UnderlayIP: netip.MustParseAddr("10.0.0.1"), Identity: "sha256:3f2a9c1b7d4e" + strings.Repeat("0", 52)},
		{Name: "old", UnderlayIP: netip.MustParseAddr("10.0.0.2")},
	} {
		if err := tc.cl.PutNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for node, want := range map[string]string{"h1": "3f2a9c1b7d4e", "old": "none (registered by an earlier version)"} {
		out, err := run(t, newNodeCmd(tc.g), "show", node)
		if err != nil || !strings.Contains(out, "IDENTITY") || !strings.Contains(out, want) {
			t.Errorf("node show %s: %v\n%s\nwant IDENTITY %s", node, err, out, want)
		}
	}
}
