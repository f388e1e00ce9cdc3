package report

import (
	"fmt"
	"time"

	"github.com/skeinnet/skein/api"
)

// WireGuard is a node's WireGuard device as `skein status` shows it.
type WireGuard struct {
	// Device is "kernel" or "userspace".
	Device    string          `json:"device"`
	PublicKey string          `json:"publicKey"`
	Peers     []WireGuardPeer `json:"peers,omitempty"`
}

// WireGuardPeer is one peer with its handshake age.
type WireGuardPeer struct {
	Node string `json:"node"`
	// HandshakeAge is how long ago, at the status record's update, the
	// last handshake completed; nil before the first.
	HandshakeAge *time.Duration `json:"handshakeAge,omitempty"`
	RxBytes      int64          `json:"rxBytes"`
	TxBytes      int64          `json:"txBytes"`
	// Blocked says why the peer gets no path at all (fail closed).
	Blocked string `json:"blocked,omitempty"`
}

// handshakeStale is WireGuard's Reject-After-Time (180 s) with a keepalive
// (25 s) of slack: an older session carries nothing.
const handshakeStale = 205 * time.Second

// wireguardOf reads a node's WireGuard status, and the problems it shows.
func wireguardOf(st api.NodeStatus) (*WireGuard, []string) {
	ws := st.WireGuard
	if ws == nil {
		return nil, nil
	}
	out := &WireGuard{Device: ws.Device, PublicKey: ws.PublicKey}
	var problems []string
	for _, p := range ws.Peers {
		wp := WireGuardPeer{Node: p.Node, RxBytes: p.RxBytes, TxBytes: p.TxBytes, Blocked: p.Blocked}
		switch {
		case p.Blocked != "":
			problems = append(problems, fmt.Sprintf("no path to %s (fail closed): %s", p.Node, p.Blocked))
		case p.LastHandshake.IsZero():
			problems = append(problems, fmt.Sprintf("no WireGuard handshake with %s yet", p.Node))
		default:
			age := max(st.Updated.Sub(p.LastHandshake), 0)
			wp.HandshakeAge = &age
			if age > handshakeStale {
				problems = append(problems, fmt.Sprintf("last WireGuard handshake with %s %s ago", p.Node, age.Round(time.Second)))
			}
		}
		out.Peers = append(out.Peers, wp)
	}
	return out, problems
}
