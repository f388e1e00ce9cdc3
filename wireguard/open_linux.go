package wireguard

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Config says which device Open makes.
type Config struct {
	Name string
	MTU  int
	// Addr is the host's address on the device (its VTEP address, from its
	// own block): the source of host-to-pod traffic through the tunnel,
	// inside the allowed IPs the peers hold for this host.
	Addr netip.Addr
	// Addr6 is its IPv6 address in a dual-stack cluster (its IPv6 VTEP
	// address): the source of host-to-pod IPv6 traffic; optional.
	Addr6 netip.Addr
	// Userspace skips the kernel device.
	Userspace bool
	Log       *slog.Logger
}

// Open makes the WireGuard device: the kernel's where the wireguard module
// is there, wireguard-go on a TUN device otherwise. It fails, leaving no
// device behind, when neither can be made.
func Open(cfg Config) (Device, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var (
		dev       Device
		kernelErr error
	)
	if !cfg.Userspace {
		dev, kernelErr = openKernel(cfg.Name, cfg.MTU)
		if kernelErr != nil {
			log.Info("no kernel WireGuard device; using wireguard-go on a TUN device", "reason", kernelErr)
		}
	} else {
		kernelErr = errors.New("userspace asked for")
	}
	if dev == nil {
		var err error
		if dev, err = openUserspace(cfg.Name, cfg.MTU, log); err != nil {
			return nil, fmt.Errorf("wireguard: no device: kernel: %v; userspace: %w", kernelErr, err)
		}
	}
	if err := linkUp(cfg.Name, cfg.MTU, cfg.Addr, cfg.Addr6); err != nil {
		_ = dev.Close(false)
		return nil, fmt.Errorf("wireguard: %w", err)
	}
	log.Info("WireGuard device ready", "device", cfg.Name, "kind", dev.Kind())
	return dev, nil
}

// linkUp sets the device's MTU and addresses and brings it up.
func linkUp(name string, mtu int, addrs ...netip.Addr) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if mtu > 0 && l.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("set %s mtu %d: %w", name, mtu, err)
		}
	}
	for _, addr := range addrs {
		if !addr.IsValid() {
			continue
		}
		a := &netlink.Addr{IPNet: netipNet(netip.PrefixFrom(addr, addr.BitLen()))}
		if addr.Is6() {
			// IPAM owns the address: no duplicate to detect, and a
			// tentative address could not be a source.
			a.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrReplace(l, a); err != nil {
			return fmt.Errorf("address %s on %s: %w", addr, name, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// removeLink deletes the link called name if there is one.
func removeLink(name string) error {
	l, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("delete stale %s (%s): %w", name, l.Type(), err)
	}
	return nil
}
