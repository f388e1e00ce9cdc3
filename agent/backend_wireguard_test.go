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

// countingDevice stands in for a WireGuard device to count how often the
// status path dumps its peers (the devices themselves are tested on real
// wireguard-go in package wireguard).
type countingDevice struct {
	wireguard.Device
	dumps int
	peers []wireguard.PeerStats
}

func (d *countingDevice) Peers() ([]wireguard.PeerStats, error) {
	d.dumps++
	return d.peers, nil
}

// TestWireGuardStatusReadsDeviceSparingly: status checks once a second read
// every peer from the device only every 5 s once all peers have a
// handshake, but at every check while one has none (so its first handshake
// shows at once).
func TestWireGuardStatusReadsDeviceSparingly(t *testing.T) {
	dev := &countingDevice{peers: []wireguard.PeerStats{{}}} // one peer, no handshake yet
	rec := wireguard.NewReconciler(dev, nil, nil, time.Hour, nil)
	e := wireguard.Entry{Peer: &wireguard.Peer{Node: "h2"}}
	rec.Update(map[string]*wireguard.Entry{"h2": &e})
	b := &wgBackend{self: "h1", rec: rec}
	for range 3 {
		b.peers()
	}
	if dev.dumps != 3 {
		t.Errorf("%d device reads for 3 status checks with a peer pending, want 3", dev.dumps)
	}
	dev.peers[0].LastHandshake = time.Now()
	dev.dumps = 0
	for range 5 {
		b.peers()
	}
	if dev.dumps != 1 {
		t.Errorf("%d device reads for 5 checks with every handshake done, want 1 (the one that saw it)", dev.dumps)
	}
	b.statsMu.Lock()
	b.statsAt = time.Now().Add(-deviceStatsMaxAge)
	b.statsMu.Unlock()
	if b.peers(); dev.dumps != 2 {
		t.Errorf("after %s: %d device reads, want a second one", deviceStatsMaxAge, dev.dumps)
	}
}
