package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// The request/response helper: `bench rr-server ADDR` and `bench rr-client
// ADDR N WARMUP` run inside namespaces as subprocesses of the bench. They use
// plain blocking sockets on one locked thread, like netperf's TCP_RR, so that
// the figure is the network path's and not the Go netpoller's.

// rrServe listens on addr, prints "ready" and echoes every byte of each
// connection, one connection at a time, until killed.
func rrServe(addr string, stdout io.Writer) error {
	runtime.LockOSThread()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("rr-server: %w", err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("rr-server: socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("rr-server: reuseaddr: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return fmt.Errorf("rr-server: bind %s: %w", addr, err)
	}
	if err := unix.Listen(fd, 8); err != nil {
		return fmt.Errorf("rr-server: listen: %w", err)
	}
	if _, err := fmt.Fprintln(stdout, "ready"); err != nil {
		return err
	}
	buf := make([]byte, 1)
	for {
		c, _, err := unix.Accept(fd)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("rr-server: accept: %w", err)
		}
		_ = unix.SetsockoptInt(c, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) // best effort: 1-byte writes flush anyway
		for {
			n, err := unix.Read(c, buf)
			if err != nil && errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil || n == 0 {
				break
			}
			if _, err := unix.Write(c, buf[:n]); err != nil {
				break
			}
		}
		unix.Close(c)
	}
}

// rrClient connects to addr, does warmup untimed round trips and then n timed
// ones, and prints the round-trip times in nanoseconds, one per line.
func rrClient(addr string, n, warmup int, stdout io.Writer) error {
	runtime.LockOSThread()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("rr-client: %w", err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("rr-client: socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return fmt.Errorf("rr-client: nodelay: %w", err)
	}
	// A receive timeout so a lost path fails the round instead of hanging it.
	tv := unix.Timeval{Sec: 5}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("rr-client: rcvtimeo: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return fmt.Errorf("rr-client: connect %s: %w", addr, err)
	}
	buf := []byte{'x'}
	rtts := make([]int64, 0, n)
	for i := range warmup + n {
		t0 := time.Now()
		if _, err := unix.Write(fd, buf); err != nil {
			return fmt.Errorf("rr-client: write: %w", err)
		}
		for {
			m, err := unix.Read(fd, buf)
			if err != nil && errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return fmt.Errorf("rr-client: read: %w", err)
			}
			if m == 0 {
				return errors.New("rr-client: server closed the connection")
			}
			break
		}
		if i >= warmup {
			rtts = append(rtts, int64(time.Since(t0)))
		}
	}
	w := bufio.NewWriter(stdout)
	for _, r := range rtts {
		_, _ = w.WriteString(strconv.FormatInt(r, 10)) // a write error sticks: Flush returns it
		_ = w.WriteByte('\n')
	}
	return w.Flush()
}

// crrClient opens n+warmup connections to addr one after another, each
// sending one byte, reading the echo and closing (with a reset, so no
// TIME_WAIT piles up), and prints the timed ones' durations in nanoseconds,
// one per line. A connection's first packet is what walks a pod's policy
// chains; the rest of it is conntrack's.
func crrClient(addr string, n, warmup int, stdout io.Writer) error {
	runtime.LockOSThread()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("crr-client: %w", err)
	}
	sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	buf := []byte{'x'}
	times := make([]int64, 0, n)
	one := func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		defer unix.Close(fd)
		tv := unix.Timeval{Sec: 5}
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv) // best effort: a lost path then hangs 5 s per read
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
		_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		if err := unix.Connect(fd, sa); err != nil {
			return fmt.Errorf("connect %s: %w", addr, err)
		}
		if _, err := unix.Write(fd, buf); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		for {
			m, err := unix.Read(fd, buf)
			if err != nil && errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return fmt.Errorf("read: %w", err)
			}
			if m == 0 {
				return errors.New("server closed the connection")
			}
			return nil
		}
	}
	for i := range warmup + n {
		t0 := time.Now()
		if err := one(); err != nil {
			return fmt.Errorf("crr-client: connection %d: %w", i, err)
		}
		if i >= warmup {
			times = append(times, int64(time.Since(t0)))
		}
	}
	w := bufio.NewWriter(stdout)
	for _, r := range times {
		_, _ = w.WriteString(strconv.FormatInt(r, 10)) // a write error sticks: Flush returns it
		_ = w.WriteByte('\n')
	}
	return w.Flush()
}

// helperMain runs the helper subcommand in args (without the program name)
// and returns the process exit code.
func helperMain(args []string) int {
	var err error
	switch {
	case len(args) == 2 && args[0] == "rr-server":
		err = rrServe(args[1], os.Stdout)
	case len(args) == 4 && args[0] == "rr-client":
		n, nerr := strconv.Atoi(args[2])
		w, werr := strconv.Atoi(args[3])
		if err = errors.Join(nerr, werr); err == nil {
			err = rrClient(args[1], n, w, os.Stdout)
		}
	case len(args) == 4 && args[0] == "crr-client":
		n, nerr := strconv.Atoi(args[2])
		w, werr := strconv.Atoi(args[3])
		if err = errors.Join(nerr, werr); err == nil {
			err = crrClient(args[1], n, w, os.Stdout)
		}
	case len(args) > 0 && args[0] == "join-watch":
		err = joinWatchMain(args[1:])
	case len(args) > 0 && args[0] == "watch-fanout":
		err = watchFanoutMain(args[1:])
	default:
		err = fmt.Errorf("usage: bench rr-server ADDR | bench rr-client ADDR N WARMUP | bench crr-client ADDR N WARMUP | bench join-watch ENDPOINT PREFIX | bench watch-fanout ENDPOINT PREFIX M")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
