package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/wireguard"
)

// TestWireGuardLinkGrades: a link is up while its handshake is fresh,
// pending before the first, down when stale or when the peer gets no path.
func TestWireGuardLinkGrades(t *testing.T) {
	b := &wgBackend{self: "h1"}
	now := time.Now()
	peers := []api.WireGuardPeer{
		{Node: "fresh", LastHandshake: now.Add(-10 * time.Second)},
		{Node: "stale", LastHandshake: now.Add(-10 * time.Minute)},
		{Node: "never"},
		{Node: "keyless", Blocked: "no WireGuard key published"},
	}
	links := b.gradeLinks(peers, wireguard.Stats{Syncs: 1})
	want := map[string]string{"fresh": api.LinkUp, "stale": api.LinkDown, "never": api.LinkPending, "keyless": api.LinkDown}
	for node, state := range want {
		if l := links[node]; l.State != state || l.Kind != "wireguard" {
			t.Errorf("%s: %+v, want %s", node, l, state)
		}
	}
	if !strings.Contains(links["keyless"].Detail, "fail closed") {
		t.Errorf("keyless detail %q does not say it is closed", links["keyless"].Detail)
	}
	if l := b.gradeLinks(peers[:1], wireguard.Stats{})["fresh"]; l.State != api.LinkPending {
		t.Errorf("before the first sync: %+v, want pending", l)
	}
}
