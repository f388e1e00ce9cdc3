//go:build !linux

package bgp

import (
	"errors"
	"net/netip"
)

// abortSessions is Linux-only; elsewhere a graceful stop sends a Cease
// notification and peers drop the speaker's routes.
func abortSessions(netip.Addr, int, map[netip.AddrPort]bool) (int, error) {
	return 0, errors.New("cutting sessions without notification is only implemented on linux")
}
