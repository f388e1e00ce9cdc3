package report

import (
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
)

// TestWireGuardOf: each peer's handshake age is taken at the status
// record's update; a blocked peer, one that never handshook and one whose
// last handshake is too old are problems.
func TestWireGuardOf(t *testing.T) {
	now := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	st := api.NodeStatus{Node: "h1", Updated: now, WireGuard: &api.WireGuardStatus{Device: "userspace", Peers: []api.WireGuardPeer{
		{Node: "h2", LastHandshake: now.Add(-12 * time.Second)},
		{Node: "h3", LastHandshake: now.Add(-5 * time.Minute)},
		{Node: "h4"},
		{Node: "h5", Blocked: "no WireGuard key published"},
	}}}
	wg, problems := wireguardOf(st)
	if wg == nil || len(wg.Peers) != 4 || wg.Peers[0].HandshakeAge == nil || *wg.Peers[0].HandshakeAge != 12*time.Second {
		t.Fatalf("wireguardOf = %+v", wg)
	}
	want := []string{"last WireGuard handshake with h3 5m0s ago", "no WireGuard handshake with h4 yet", "no path to h5 (fail closed): no WireGuard key published"}
	if strings.Join(problems, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(problems, "\n"), strings.Join(want, "\n"))
	}
	if wg, problems := wireguardOf(api.NodeStatus{}); wg != nil || problems != nil {
		t.Errorf("no wireguard status: %+v %v", wg, problems)
	}
}
