package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// netnsDir is where `ip netns` keeps named namespaces.
const netnsDir = "/var/run/netns"

// ipCommand returns the path of iproute2's ip.
func ipCommand() string {
	if p, err := exec.LookPath("ip"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "ip"
}

// runIP runs ip with args and returns its output in the error.
func runIP(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, ipCommand(), args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// addNetNS creates a named network namespace. It uses `ip netns add` so that
// /run/netns is a shared mount as every other tool expects.
func addNetNS(ctx context.Context, name string) error {
	return runIP(ctx, "netns", "add", name)
}

// delNetNS deletes a named network namespace; a missing one is not an error.
func delNetNS(ctx context.Context, name string) error {
	if _, err := os.Lstat(netnsPath(name)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return runIP(ctx, "netns", "delete", name)
}

// listNetNS returns the names of all named network namespaces.
func listNetNS() ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list network namespaces: %w", err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

// errThreadStuck reports that a thread could not return to its namespace; it
// was left locked so that the runtime discards it.
var errThreadStuck = errors.New("thread left in the target namespace (discarded)")

// inNetNS runs fn on a fresh OS thread switched into the named namespace.
// Sockets fn creates and processes it forks live in that namespace. The
// thread goes back to its namespace before it is unlocked; when that fails it
// stays locked, and the runtime ends it with the goroutine, so no other
// goroutine ever runs in the wrong namespace.
func inNetNS(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		clean, err := switchAndRun(name, fn)
		if clean {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// switchAndRun is inNetNS's body; clean reports whether the calling thread
// is back in its original namespace.
func switchAndRun(name string, fn func() error) (clean bool, err error) {
	orig, err := netns.Get()
	if err != nil {
		return true, fmt.Errorf("get current network namespace: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(netnsPath(name))
	if err != nil {
		return true, fmt.Errorf("open network namespace %s: %w", name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		// setns failed, so the thread never left.
		return true, fmt.Errorf("enter network namespace %s: %w", name, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		return false, errors.Join(ferr, fmt.Errorf("leave network namespace %s: %w: %w", name, err, errThreadStuck))
	}
	return true, ferr
}

// handleAt returns a netlink handle whose sockets live in the named namespace.
func handleAt(name string) (*netlink.Handle, error) {
	var h *netlink.Handle
	err := inNetNS(name, func() error {
		var err error
		h, err = netlink.NewHandle()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", name, err)
	}
	return h, nil
}

// loUp brings up lo in h's namespace.
func loUp(h *netlink.Handle) error {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// linkAddr is an address for netlink.
func linkAddr(p netip.Prefix) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
}

// setupUnderlay brings up lo and the bridge with the gateway address in the
// underlay namespace ns.
func setupUnderlay(ns string, gw netip.Prefix) error {
	h, err := handleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := loUp(h); err != nil {
		return fmt.Errorf("underlay %s: %w", ns, err)
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: BridgeName, MTU: UnderlayMTU}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("underlay %s: add bridge %s: %w", ns, BridgeName, err)
	}
	link, err := h.LinkByName(BridgeName)
	if err != nil {
		return fmt.Errorf("underlay %s: find bridge %s: %w", ns, BridgeName, err)
	}
	if err := h.AddrAdd(link, linkAddr(gw)); err != nil {
		return fmt.Errorf("underlay %s: add %s to %s: %w", ns, gw, BridgeName, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("underlay %s: set %s up: %w", ns, BridgeName, err)
	}
	return nil
}

// addBridge adds an address-less bridge (a host subnet's L2 segment) in the
// underlay namespace ns.
func addBridge(ns, name string) error {
	h, err := handleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: UnderlayMTU}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("underlay %s: add bridge %s: %w", ns, name, err)
	}
	if err := h.LinkSetUp(br); err != nil {
		return fmt.Errorf("underlay %s: set %s up: %w", ns, name, err)
	}
	return nil
}

// addRoute adds the route dst via gw in namespace ns.
func addRoute(ns string, dst netip.Prefix, gw netip.Addr) error {
	h, err := handleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	r := &netlink.Route{
		Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), dst.Addr().BitLen())},
		Gw:  gw.AsSlice(),
	}
	if err := h.RouteAdd(r); err != nil {
		return fmt.Errorf("%s: add route %s via %s: %w", ns, dst, gw, err)
	}
	return nil
}

// attachHost wires namespace hostNS to bridge in ulNS: a veth whose bridge
// side is port and whose other side is iface with addr. A valid gw becomes
// the default route in hostNS.
func attachHost(ulNS, bridge, port, hostNS, iface string, addr netip.Prefix, gw netip.Addr) error {
	ul, err := handleAt(ulNS)
	if err != nil {
		return err
	}
	defer ul.Close()
	hh, err := handleAt(hostNS)
	if err != nil {
		return err
	}
	defer hh.Close()
	target, err := netns.GetFromPath(netnsPath(hostNS))
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", hostNS, err)
	}
	defer target.Close()

	br, err := ul.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("find bridge %s in %s: %w", bridge, ulNS, err)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: port, MTU: UnderlayMTU},
		PeerName:      iface,
		PeerNamespace: netlink.NsFd(int(target)),
		PeerMTU:       UnderlayMTU,
	}
	if err := ul.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s (peer %s in %s): %w", port, iface, hostNS, err)
	}
	pl, err := ul.LinkByName(port)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", port, ulNS, err)
	}
	if err := ul.LinkSetMaster(pl, br); err != nil {
		return fmt.Errorf("attach %s to %s: %w", port, bridge, err)
	}
	if err := ul.LinkSetUp(pl); err != nil {
		return fmt.Errorf("set %s up: %w", port, err)
	}

	if err := loUp(hh); err != nil {
		return fmt.Errorf("host %s: %w", hostNS, err)
	}
	hl, err := hh.LinkByName(iface)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", iface, hostNS, err)
	}
	if err := hh.AddrAdd(hl, linkAddr(addr)); err != nil {
		return fmt.Errorf("add %s to %s in %s: %w", addr, iface, hostNS, err)
	}
	if err := hh.LinkSetUp(hl); err != nil {
		return fmt.Errorf("set %s up in %s: %w", iface, hostNS, err)
	}
	if gw.IsValid() {
		def := &netlink.Route{LinkIndex: hl.Attrs().Index, Gw: gw.AsSlice()}
		if err := hh.RouteAdd(def); err != nil {
			return fmt.Errorf("add default route via %s in %s: %w", gw, hostNS, err)
		}
	}
	return nil
}

// setSysctls writes net sysctls ("net/ipv4/ip_forward" → "1") inside the
// named namespace: /proc/sys/net resolves to the writing thread's namespace.
func setSysctls(ns string, kv map[string]string) error {
	return inNetNS(ns, func() error {
		for k, v := range kv {
			if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s in %s: %w", k, v, ns, err)
			}
		}
		return nil
	})
}

// setLoUp brings lo up in the named namespace.
func setLoUp(ns string) error {
	h, err := handleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := loUp(h); err != nil {
		return fmt.Errorf("%s: %w", ns, err)
	}
	return nil
}
