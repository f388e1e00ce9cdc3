package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// abortSessions shuts down (shutdown(2), both directions) every TCP socket
// of this process that is a BGP session of the speaker: local address
// local (any when it is the wildcard), and either local port listenPort (a session the peer opened) or a
// remote address and port in remotes (one the speaker opened). The peer sees
// the connection end without a NOTIFICATION, exactly as when the process
// dies, and keeps the speaker's routes if graceful restart was negotiated.
// The descriptors stay open for gobgp to close. It returns how many sessions
// it cut.
func abortSessions(local netip.Addr, listenPort int, remotes map[netip.AddrPort]bool) (int, error) {
	peerAddrs := map[netip.Addr]bool{}
	for ap := range remotes {
		peerAddrs[ap.Addr()] = true
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, fmt.Errorf("list file descriptors: %w", err)
	}
	var errs []error
	n := 0
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || !strings.HasPrefix(target, "socket:") {
			continue // closed meanwhile, or not a socket
		}
		typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
		if err != nil || typ != unix.SOCK_STREAM {
			continue
		}
		la, ok1 := sockAddrPort(unix.Getsockname(fd))
		ra, ok2 := sockAddrPort(unix.Getpeername(fd))
		if !ok1 || !ok2 || (!local.IsUnspecified() && la.Addr() != local) || !peerAddrs[ra.Addr()] {
			continue
		}
		if int(la.Port()) != listenPort && !remotes[ra] {
			continue
		}
		if err := unix.Shutdown(fd, unix.SHUT_RDWR); err != nil && !errors.Is(err, unix.ENOTCONN) {
			errs = append(errs, fmt.Errorf("shut down session %s-%s: %w", la, ra, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

func sockAddrPort(sa unix.Sockaddr, err error) (netip.AddrPort, bool) {
	if err != nil {
		return netip.AddrPort{}, false
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)), true
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port)), true
	}
	return netip.AddrPort{}, false
}
