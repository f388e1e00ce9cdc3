package wireguard

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// kernelDevice is the kernel's WireGuard device, configured over generic
// netlink. It outlives the agent: a restart keeps the tunnel up.
type kernelDevice struct {
	name string
	c    *wgctrl.Client
}

func openKernel(name string, mtu int) (Device, error) {
	if l, err := netlink.LinkByName(name); err == nil && l.Type() != "wireguard" {
		if err := removeLink(name); err != nil {
			return nil, err
		}
	} else if err == nil {
		// The device of the previous run: keep it, and its sessions.
		return newKernelDevice(name)
	}
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU = name, mtu
	if err := netlink.LinkAdd(&netlink.Wireguard{LinkAttrs: la}); err != nil {
		return nil, fmt.Errorf("add kernel wireguard link %s: %w", name, err)
	}
	d, err := newKernelDevice(name)
	if err != nil {
		_ = removeLink(name)
	}
	return d, err
}

func newKernelDevice(name string) (Device, error) {
	c, err := wgctrl.New()
	if err != nil {
		return nil, fmt.Errorf("wgctrl: %w", err)
	}
	return &kernelDevice{name: name, c: c}, nil
}

func (d *kernelDevice) Name() string { return d.name }
func (d *kernelDevice) Kind() string { return KindKernel }

func (d *kernelDevice) SetKey(priv Key, port int) error {
	if err := d.c.ConfigureDevice(d.name, wgtypes.Config{PrivateKey: &priv, ListenPort: &port}); err != nil {
		return fmt.Errorf("wireguard %s: set key: %w", d.name, err)
	}
	return nil
}

func (d *kernelDevice) UpdatePeers(set []Peer, remove []Key) error {
	var cfg wgtypes.Config
	for _, k := range remove {
		cfg.Peers = append(cfg.Peers, wgtypes.PeerConfig{PublicKey: k, Remove: true})
	}
	ka := KeepaliveInterval
	for _, p := range set {
		pc := wgtypes.PeerConfig{
			PublicKey:                   p.PublicKey,
			Endpoint:                    net.UDPAddrFromAddrPort(p.Endpoint),
			PersistentKeepaliveInterval: &ka,
			ReplaceAllowedIPs:           true,
		}
		for _, a := range p.AllowedIPs {
			pc.AllowedIPs = append(pc.AllowedIPs, *netipNet(a))
		}
		cfg.Peers = append(cfg.Peers, pc)
	}
	if err := d.c.ConfigureDevice(d.name, cfg); err != nil {
		return fmt.Errorf("wireguard %s: set peers: %w", d.name, err)
	}
	return nil
}

func (d *kernelDevice) Peers() ([]PeerStats, error) {
	dev, err := d.c.Device(d.name)
	if err != nil {
		return nil, fmt.Errorf("wireguard %s: %w", d.name, err)
	}
	out := make([]PeerStats, 0, len(dev.Peers))
	for _, p := range dev.Peers {
		ps := PeerStats{PublicKey: p.PublicKey, RxBytes: p.ReceiveBytes, TxBytes: p.TransmitBytes}
		if p.Endpoint != nil {
			ps.Endpoint = p.Endpoint.AddrPort()
			ps.Endpoint = netip.AddrPortFrom(ps.Endpoint.Addr().Unmap(), ps.Endpoint.Port())
		}
		if !p.LastHandshakeTime.IsZero() && p.LastHandshakeTime.After(time.Unix(0, 0)) {
			ps.LastHandshake = p.LastHandshakeTime
		}
		for _, a := range p.AllowedIPs {
			if pf, ok := netipPrefix(a); ok {
				ps.AllowedIPs = append(ps.AllowedIPs, pf)
			}
		}
		out = append(out, ps)
	}
	return out, nil
}

func (d *kernelDevice) Close(keep bool) error {
	err := d.c.Close()
	if !keep {
		if rerr := removeLink(d.name); err == nil {
			err = rerr
		}
	}
	return err
}

func netipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func netipPrefix(n net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}
