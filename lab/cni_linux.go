package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

// run calls fn with a libcni runtime on a thread inside the host namespace,
// so the plugin process libcni forks starts there.
func (c cniCall) run(fn func(*libcni.CNIConfig, *libcni.NetworkConfigList) error) error {
	list, err := libcni.ConfListFromBytes(c.conf)
	if err != nil {
		return fmt.Errorf("parse conflist: %w", err)
	}
	f, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open plugin log: %w", err)
	}
	defer f.Close()
	ex := &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: f}, PluginDecoder: version.PluginDecoder{}}
	cni := libcni.NewCNIConfigWithCacheDir([]string{c.binDir}, c.cacheDir, ex)
	return inNetNS(c.hostNS, func() error { return fn(cni, list) })
}

// runtimeConf returns the attachment as libcni takes it.
func (c cniCall) runtimeConf() *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: c.containerID, NetNS: c.netns, IfName: c.ifName, Args: c.args}
}

// cniAdd runs CNI ADD and returns the container's first IPv4 address and
// its first IPv6 address (each invalid when it has none; never both).
func cniAdd(ctx context.Context, c cniCall) (ip4, ip6 netip.Addr, err error) {
	var res types.Result
	err = c.run(func(cni *libcni.CNIConfig, list *libcni.NetworkConfigList) error {
		var err error
		res, err = cni.AddNetworkList(ctx, list, c.runtimeConf())
		return err
	})
	if err != nil {
		return netip.Addr{}, netip.Addr{}, fmt.Errorf("CNI ADD %s: %w", c.containerID, err)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return netip.Addr{}, netip.Addr{}, fmt.Errorf("CNI ADD %s: convert result: %w", c.containerID, err)
	}
	for _, ip := range r.IPs {
		a, ok := netip.AddrFromSlice(ip.Address.IP)
		switch {
		case !ok:
		case a.Unmap().Is4() && !ip4.IsValid():
			ip4 = a.Unmap()
		case a.Is6() && !a.Is4In6() && !ip6.IsValid():
			ip6 = a
		}
	}
	if !ip4.IsValid() && !ip6.IsValid() { // IPv6 alone in an IPv6-only lab
		return netip.Addr{}, netip.Addr{}, fmt.Errorf("CNI ADD %s: result has no address", c.containerID)
	}
	return ip4, ip6, nil
}

// cniDel runs CNI DEL.
func cniDel(ctx context.Context, c cniCall) error {
	err := c.run(func(cni *libcni.CNIConfig, list *libcni.NetworkConfigList) error {
		return cni.DelNetworkList(ctx, list, c.runtimeConf())
	})
	if err != nil {
		return fmt.Errorf("CNI DEL %s: %w", c.containerID, err)
	}
	return nil
}
