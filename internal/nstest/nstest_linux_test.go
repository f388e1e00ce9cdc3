package nstest

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// threadNS returns the network namespace of a locked thread.
func threadNS(t *testing.T) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	h, err := netns.Get()
	if err != nil {
		t.Fatalf("get netns: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func TestNew(t *testing.T) {
	before := threadNS(t)
	var path string
	t.Run("use", func(t *testing.T) {
		ns := New(t)
		path = ns.Path
		if _, err := os.Stat(ns.Path); err != nil {
			t.Fatalf("namespace file: %v", err)
		}
		links, err := ns.Handle.LinkList()
		if err != nil {
			t.Fatalf("list links: %v", err)
		}
		if len(links) != 1 || links[0].Attrs().Name != "lo" || links[0].Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("links in a fresh namespace = %v, want only lo, up", links)
		}
		var inside netns.NsHandle
		err = ns.Do(func() error {
			var err error
			inside, err = netns.Get()
			return err
		})
		if err != nil {
			t.Fatalf("Do: %v", err)
		}
		defer func() { _ = inside.Close() }()
		if !inside.Equal(ns.h) {
			t.Errorf("Do ran in %v, want %v", inside, ns.h)
		}
		if inside.Equal(before) {
			t.Errorf("Do ran in the test's own namespace %v", before)
		}
		// Every thread of the process is still outside: sample the ones
		// goroutines land on.
		for range 2 * runtime.GOMAXPROCS(0) {
			if h := threadNS(t); !h.Equal(before) {
				t.Fatalf("a thread was left in namespace %v", h)
			}
		}
	})
	if path == "" {
		return // skipped
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("after cleanup, stat %s = %v, want not exist", path, err)
	}
}

func TestPair(t *testing.T) {
	a, b := Pair(t, netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("192.0.2.2/24"))
	// A UDP datagram from a to b proves the veth and addresses work.
	var conn *net.UDPConn
	if err := b.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2)})
		return err
	}); err != nil {
		t.Fatalf("listen in b: %v", err)
	}
	defer func() { _ = conn.Close() }()
	var out net.Conn
	if err := a.Do(func() error {
		var err error
		out, err = net.Dial("udp4", conn.LocalAddr().String())
		return err
	}); err != nil {
		t.Fatalf("dial from a: %v", err)
	}
	defer func() { _ = out.Close() }()
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	// The kernel queues the datagram while ARP resolves, so one is enough.
	got := make(chan error, 1)
	go func() {
		n, from, err := conn.ReadFromUDP(buf)
		if err == nil && (string(buf[:n]) != "hi" || !from.IP.Equal(net.IPv4(192, 0, 2, 1))) {
			t.Errorf("got %q from %v, want \"hi\" from 192.0.2.1", buf[:n], from)
		}
		got <- err
	}()
	if _, err := out.Write([]byte("hi")); err != nil {
		t.Fatalf("send: %v", err)
	}
	if err := <-got; err != nil {
		t.Fatalf("receive in b: %v", err)
	}
}
