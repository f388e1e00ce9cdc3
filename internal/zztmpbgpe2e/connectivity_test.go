//go:build e2e

package zztmpbgpe2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/skeinnet/skein/lab"
)

// TestConnectivity: every container pings and TCP-connects every other, on
// the same host and across hosts.
func TestConnectivity(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs := shared.Containers()
	if len(cs) < 6 {
		t.Fatalf("lab has %d containers, want at least 6", len(cs))
	}
	checkAllPairs(ctx, t, shared, cs)
}

// checkAllPairs pings and TCP-connects every ordered pair of containers.
func checkAllPairs(ctx context.Context, t *testing.T, l *lab.Lab, cs []lab.Container) {
	t.Helper()
	for i, dst := range cs {
		port := 7000 + i
		stop := serveEcho(ctx, t, l, dst.Name, netip.AddrPortFrom(dst.IP, uint16(port)))
		for _, src := range cs {
			if src.Name == dst.Name {
				continue
			}
			if err := l.Ping(ctx, src.Name, dst.IP); err != nil {
				t.Errorf("ping %s -> %s (%s): %v", src.Name, dst.Name, dst.IP, err)
			}
			if err := tcpEcho(ctx, l, src.Name, netip.AddrPortFrom(dst.IP, uint16(port))); err != nil {
				t.Errorf("tcp %s -> %s:%d: %v", src.Name, dst.IP, port, err)
			}
		}
		stop()
	}
}

// serveEcho runs a TCP echo server inside a container until stop is called.
func serveEcho(ctx context.Context, t *testing.T, l *lab.Lab, name string, addr netip.AddrPort) (stop func()) {
	t.Helper()
	ln, err := l.Listen(ctx, name, "tcp", addr.String())
	if err != nil {
		t.Fatalf("listen in %s on %s: %v", name, addr, err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second)) // bounded: a test conn
				_, _ = io.Copy(c, c)                                // echo until the client closes
			}()
		}
	}()
	return func() { ln.Close() }
}

// tcpEcho connects from a container and checks the bytes come back.
func tcpEcho(ctx context.Context, l *lab.Lab, from string, to netip.AddrPort) error {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := l.Dial(dctx, from, "tcp", to.String())
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second)) // bounded: a test conn
	msg := "hello from " + from
	if _, err := io.WriteString(c, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite() // lets the echo server finish
	}
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if string(got) != msg {
		return fmt.Errorf("echo: got %q, want %q", got, msg)
	}
	return nil
}

// hostOf returns the lab host a container lives on.
func hostOf(t *testing.T, l *lab.Lab, container string) lab.Host {
	t.Helper()
	c, err := l.Container(container)
	if err != nil {
		t.Fatal(err)
	}
	h, err := l.Host(c.Host)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func itoa(i int) string { return strconv.Itoa(i) }
