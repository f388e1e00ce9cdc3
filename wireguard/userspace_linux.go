package wireguard

import (
	"fmt"
	"log/slog"
	"strings"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

// userspaceDevice is wireguard-go in this process on a TUN device. The TUN
// goes away with the process: an agent restart drops the tunnel until the
// new agent has made it again.
type userspaceDevice struct {
	name string
	dev  *device.Device
}

func openUserspace(name string, mtu int, log *slog.Logger) (Device, error) {
	// A kernel device or a TUN left by a crashed run under the name.
	if err := removeLink(name); err != nil {
		return nil, err
	}
	t, err := tun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("create TUN device %s: %w", name, err)
	}
	wlog := log.With("component", "wireguard-go")
	logger := &device.Logger{
		Verbosef: func(format string, args ...any) { wlog.Debug(fmt.Sprintf(format, args...)) },
		Errorf:   func(format string, args ...any) { wlog.Warn(fmt.Sprintf(format, args...)) },
	}
	return &userspaceDevice{name: name, dev: device.NewDevice(t, conn.NewDefaultBind(), logger)}, nil
}

func (d *userspaceDevice) Name() string { return d.name }
func (d *userspaceDevice) Kind() string { return KindUserspace }

func (d *userspaceDevice) SetKey(priv Key, port int) error {
	if err := d.dev.IpcSet(uapiDevice(priv, port)); err != nil {
		return fmt.Errorf("wireguard-go %s: set key: %w", d.name, err)
	}
	if err := d.dev.Up(); err != nil {
		return fmt.Errorf("wireguard-go %s: up: %w", d.name, err)
	}
	return nil
}

func (d *userspaceDevice) UpdatePeers(set []Peer, remove []Key) error {
	if err := d.dev.IpcSet(uapiPeers(peerOps{set: set, remove: remove})); err != nil {
		return fmt.Errorf("wireguard-go %s: set peers: %w", d.name, err)
	}
	return nil
}

func (d *userspaceDevice) Peers() ([]PeerStats, error) {
	s, err := d.dev.IpcGet()
	if err != nil {
		return nil, fmt.Errorf("wireguard-go %s: get: %w", d.name, err)
	}
	return parseUAPIPeers(strings.TrimSpace(s))
}

// Close stops wireguard-go, which closes the TUN and so removes the link.
func (d *userspaceDevice) Close(bool) error {
	d.dev.Close()
	return nil
}
