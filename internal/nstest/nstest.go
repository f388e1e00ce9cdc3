// Package nstest gives privileged tests a throwaway network namespace.
//
// New creates a named namespace ("sktest-<random>", so that `ip netns exec`
// works on it) from a goroutine locked to its OS thread, and switches that
// thread back before unlocking it; if switching back fails, the goroutine exits
// still locked, which makes the runtime kill the thread. No thread is ever left
// in a test namespace, so test goroutines can run anywhere and talk to the
// namespace through the returned netlink handle (or an nftables Conn from
// Nftables), never by switching namespace themselves. t.Cleanup deletes the
// namespace, which destroys everything in it, even when the test fails.
//
// The package is for tests only.
package nstest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NS is a test network namespace.
type NS struct {
	// Name is the namespace's name under /run/netns.
	Name string
	// Path is the bind-mounted namespace file, usable with `ip netns exec Name`
	// and CNI's CNI_NETNS.
	Path string
	// Handle is a netlink handle whose sockets live in the namespace.
	Handle *netlink.Handle

	h netns.NsHandle
}

// New returns a fresh network namespace with its loopback up, or skips the
// test when the process cannot create one (not root, no CAP_SYS_ADMIN).
func New(t testing.TB) *NS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("nstest: needs root to create network namespaces; skipping privileged test")
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:]) // crypto/rand.Read never fails on Linux
	name := "sktest-" + hex.EncodeToString(rnd[:])
	ns := &NS{Name: name, Path: filepath.Join("/run/netns", name)}

	// Registered first so that it runs last, after the test's own cleanups.
	t.Cleanup(func() {
		if ns.Handle != nil {
			ns.Handle.Close()
		}
		if ns.h.IsOpen() {
			if err := ns.h.Close(); err != nil {
				t.Errorf("nstest: close %s: %v", name, err)
			}
		}
		err := unix.Unmount(ns.Path, unix.MNT_DETACH)
		if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			t.Errorf("nstest: unmount %s: %v", ns.Path, err)
		}
		if err := os.Remove(ns.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("nstest: remove %s: %v", ns.Path, err)
		}
	})

	h, err := create(name)
	if errors.Is(err, unix.EPERM) {
		t.Skipf("nstest: cannot create a network namespace (%v); skipping privileged test", err)
	}
	if err != nil {
		t.Fatalf("nstest: %v", err)
	}
	ns.h = h
	ns.Handle, err = netlink.NewHandleAt(h)
	if err != nil {
		t.Fatalf("nstest: netlink handle in %s: %v", name, err)
	}
	lo, err := ns.Handle.LinkByName("lo")
	if err != nil {
		t.Fatalf("nstest: find lo in %s: %v", name, err)
	}
	if err := ns.Handle.LinkSetUp(lo); err != nil {
		t.Fatalf("nstest: set lo up in %s: %v", name, err)
	}
	return ns
}

// create makes the named namespace on a dedicated locked thread.
func create(name string) (netns.NsHandle, error) {
	type result struct {
		h   netns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("get current netns: %w", err)}
			return
		}
		defer func() { _ = orig.Close() }() // read-only fd: nothing to lose
		h, err := netns.NewNamed(name)
		if serr := netns.Set(orig); serr != nil {
			// Still locked: the runtime ends this thread when the goroutine exits.
			if h.IsOpen() {
				_ = h.Close() // the setns error is the one that matters
			}
			ch <- result{err: fmt.Errorf("switch back from netns %s: %w", name, serr)}
			return
		}
		runtime.UnlockOSThread()
		if err != nil {
			err = fmt.Errorf("create netns %s: %w", name, err)
		}
		ch <- result{h, err}
	}()
	r := <-ch
	return r.h, r.err
}

// Fd returns a file descriptor of the namespace, valid until the test ends.
func (ns *NS) Fd() int { return int(ns.h) }

// Do runs f on an OS thread inside the namespace. Sockets f opens stay in the
// namespace and may be used from any goroutine afterwards.
func (ns *NS) Do(f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer func() { _ = orig.Close() }() // read-only fd: nothing to lose
		if err := netns.Set(ns.h); err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("enter netns %s: %w", ns.Name, err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			// Still locked: the runtime ends this thread when the goroutine exits.
			ch <- errors.Join(ferr, fmt.Errorf("switch back from netns %s: %w", ns.Name, err))
			return
		}
		runtime.UnlockOSThread()
		ch <- ferr
	}()
	return <-ch
}

// Nftables returns an nftables connection bound to the namespace.
func (ns *NS) Nftables(t testing.TB) *nftables.Conn {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(ns.Fd()))
	if err != nil {
		t.Fatalf("nstest: nftables conn in %s: %v", ns.Name, err)
	}
	return c
}

// Pair returns two fresh namespaces joined by a veth pair named "veth0" on
// both sides, with addresses a and b (e.g. 192.0.2.1/24 and 192.0.2.2/24) and
// both ends up.
func Pair(t testing.TB, a, b netip.Prefix) (*NS, *NS) {
	t.Helper()
	nsA, nsB := New(t), New(t)
	Veth(t, nsA, nsB, "veth0", a, b)
	return nsA, nsB
}

// Veth joins two namespaces with a veth pair called name on both sides,
// addresses a (in nsA) and b (in nsB), both ends up. Invalid prefixes add no
// address.
func Veth(t testing.TB, nsA, nsB *NS, name string, a, b netip.Prefix) {
	t.Helper()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name},
		PeerName:      name,
		PeerNamespace: netlink.NsFd(nsB.Fd()),
	}
	if err := nsA.Handle.LinkAdd(veth); err != nil {
		t.Fatalf("nstest: add veth %s from %s to %s: %v", name, nsA.Name, nsB.Name, err)
	}
	for _, side := range []struct {
		ns   *NS
		addr netip.Prefix
	}{{nsA, a}, {nsB, b}} {
		side.ns.LinkUp(t, name, side.addr)
	}
}

// LinkUp sets the link called name up and, when addr is valid, adds addr to it.
func (ns *NS) LinkUp(t testing.TB, name string, addr netip.Prefix) {
	t.Helper()
	link, err := ns.Handle.LinkByName(name)
	if err != nil {
		t.Fatalf("nstest: find %s in %s: %v", name, ns.Name, err)
	}
	if addr.IsValid() {
		a := &netlink.Addr{IPNet: &net.IPNet{
			IP:   addr.Addr().AsSlice(),
			Mask: net.CIDRMask(addr.Bits(), addr.Addr().BitLen()),
		}}
		if addr.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD // usable at once, not tentative
		}
		if err := ns.Handle.AddrAdd(link, a); err != nil {
			t.Fatalf("nstest: add %s to %s in %s: %v", addr, name, ns.Name, err)
		}
	}
	if err := ns.Handle.LinkSetUp(link); err != nil {
		t.Fatalf("nstest: set %s up in %s: %v", name, ns.Name, err)
	}
}
