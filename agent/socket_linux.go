package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// listenSocket opens the agent socket, root-only: whoever can talk to it can
// allocate addresses and plumb containers. The socket is bound in a private
// (0700) directory, made 0600 and only then moved into place, so it is
// never reachable by others, whatever the umask; each connection's peer is
// checked too (SO_PEERCRED), for sockets reached around the file mode.
func listenSocket(path string, log *slog.Logger) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("socket dir: %w", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("socket %s: another agent is serving it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	priv, err := os.MkdirTemp(dir, ".skeind-") // 0700
	if err != nil {
		return nil, fmt.Errorf("socket %s: private dir: %w", path, err)
	}
	defer func() { _ = os.RemoveAll(priv) }() // empty once the socket moved
	tmp := filepath.Join(priv, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on socket %s: %w", path, err)
	}
	// The bound name moves: remove the final one on Close instead.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		_ = ln.Close() // the chmod error is the one to report
		return nil, fmt.Errorf("chmod socket %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = ln.Close() // the rename error is the one to report
		return nil, fmt.Errorf("move socket into place at %s: %w", path, err)
	}
	return &peerCredListener{UnixListener: ln, path: path, euid: os.Geteuid(), log: log}, nil
}

// peerCredListener accepts connections from root (and the agent's own
// user, for unprivileged tests) only.
type peerCredListener struct {
	*net.UnixListener
	path string
	euid int
	log  *slog.Logger
}

// Accept returns the next connection from an allowed peer; others are
// closed and logged.
func (l *peerCredListener) Accept() (net.Conn, error) {
	for {
		c, err := l.UnixListener.AcceptUnix()
		if err != nil {
			return nil, err
		}
		cred, err := peerCred(c)
		switch {
		case err != nil:
			l.log.Warn("socket connection refused: peer credentials unknown", "err", err)
		case cred.Uid != 0 && int(cred.Uid) != l.euid:
			l.log.Warn("socket connection refused: peer is not root", "uid", cred.Uid, "pid", cred.Pid)
		default:
			return c, nil
		}
		_ = c.Close() // refused: nothing to tell the peer
	}
}

// Close stops listening and removes the socket.
func (l *peerCredListener) Close() error {
	err := l.UnixListener.Close()
	if rerr := os.Remove(l.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
		err = fmt.Errorf("remove socket %s: %w", l.path, rerr)
	}
	return err
}

// peerCred returns the credentials of the process that connected c.
func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	if cerr != nil {
		return nil, fmt.Errorf("peer credentials: SO_PEERCRED: %w", cerr)
	}
	return cred, nil
}
