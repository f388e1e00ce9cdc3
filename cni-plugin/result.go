package main

import (
	"cmp"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/skeinnet/skein/api"
)

// plumbed is what the kernel chose while plumbing (the container side MAC,
// the MTU the container interface ended up with).
type plumbed struct {
	ContainerMAC net.HardwareAddr
	MTU          int
}

// buildResult is ADD's result: the host veth (no sandbox), the container
// interface (sandbox = CNI_NETNS), one /32 per address on the container
// interface and the default route via the gateway. With a prevResult (skein
// chained after another interface plugin) ours is appended to it.
func buildResult(w wiring, ifName string, p plumbed, prev *types100.Result) *types100.Result {
	res := &types100.Result{CNIVersion: types100.ImplementedSpecVersion}
	if prev != nil {
		res.Interfaces = append(res.Interfaces, prev.Interfaces...)
		res.IPs = append(res.IPs, prev.IPs...)
		res.Routes = append(res.Routes, prev.Routes...)
		res.DNS = prev.DNS
	}
	hostIdx := len(res.Interfaces)
	res.Interfaces = append(res.Interfaces,
		&types100.Interface{Name: w.HostIface, Mac: w.HostMAC.String()},
		&types100.Interface{Name: ifName, Mac: p.ContainerMAC.String(), Mtu: p.MTU, Sandbox: w.Netns},
	)
	for _, ip := range w.IPs {
		gw := w.Gateway
		if ip.Is6() {
			gw = w.Gateway6
		}
		res.IPs = append(res.IPs, &types100.IPConfig{
			Interface: types100.Int(hostIdx + 1),
			Address:   prefixIPNet(netip.PrefixFrom(ip, ip.BitLen())),
			Gateway:   net.IP(gw.AsSlice()),
		})
	}
	for _, r := range containerRoutes(w) {
		if r.Gw.IsValid() { // the on-link gateway route is an implementation detail
			res.Routes = append(res.Routes, &types.Route{Dst: prefixIPNet(r.Dst), GW: net.IP(r.Gw.AsSlice())})
		}
	}
	return res
}

// printResult writes res in the config's cniVersion (Mesos reads the 0.2.0
// shape, ip4.ip). A 0.1.0/0.2.0 result carries the IPv4 address and routes
// only: those runtimes predate dual-stack. An IPv6-only attachment's has
// ip6 alone (the 0.2.0 types take it).
func printResult(w io.Writer, res *types100.Result, cniVersion string) error {
	has4 := slices.ContainsFunc(res.IPs, func(ipc *types100.IPConfig) bool { return ipc.Address.IP.To4() != nil })
	if (cniVersion == "0.1.0" || cniVersion == "0.2.0") && has4 {
		v4 := *res
		v4.IPs, v4.Routes = nil, nil
		for _, ipc := range res.IPs {
			if ipc.Address.IP.To4() != nil {
				v4.IPs = append(v4.IPs, ipc)
			}
		}
		for _, r := range res.Routes {
			if r.Dst.IP.To4() != nil {
				v4.Routes = append(v4.Routes, r)
			}
		}
		res = &v4
	}
	out, err := res.GetAsVersion(cniVersion)
	if err != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion, "convert result to version "+cniVersion, err.Error())
	}
	if err := out.PrintTo(w); err != nil {
		return types.NewError(types.ErrIOFailure, "print result", err.Error())
	}
	return nil
}

// prevResult parses the config's prevResult as a 1.1.0 result; nil when absent.
func prevResult(c *config) (*types100.Result, error) {
	conf := c.plugin // ParsePrevResult mutates its argument
	conf.CNIVersion = c.CNIVersion
	if conf.RawPrevResult == nil {
		return nil, nil
	}
	if err := version.ParsePrevResult(&conf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "decode prevResult", err.Error())
	}
	res, err := types100.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "convert prevResult", err.Error())
	}
	return res, nil
}

// wiringFromResult recovers from a cached ADD result what CHECK must find:
// the container interface named ifName in netnsPath and its addresses.
func wiringFromResult(o api.Owner, netnsPath string, res *types100.Result) (wiring, error) {
	idx := -1
	for i, intf := range res.Interfaces {
		if intf.Name == o.IfName && intf.Sandbox == netnsPath {
			idx = i
			break
		}
	}
	if idx < 0 {
		return wiring{}, fmt.Errorf("prevResult lists no interface %s in sandbox %s", o.IfName, netnsPath)
	}
	w := wiring{
		Owner:     o,
		Netns:     netnsPath,
		HostIface: api.HostIfaceName(o),
		HostMAC:   hostMAC(o),
		CtrMAC:    containerMAC(o),
		MTU:       res.Interfaces[idx].Mtu,
	}
	for _, ipc := range res.IPs {
		if ipc.Interface == nil || *ipc.Interface != idx {
			continue
		}
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			return wiring{}, fmt.Errorf("prevResult address %s: invalid IP", ipc.Address.String())
		}
		a = a.Unmap()
		w.IPs = append(w.IPs, a)
		g, ok := netip.AddrFromSlice(ipc.Gateway)
		switch {
		case !ok:
		case a.Is4() && !w.Gateway.IsValid():
			w.Gateway = g.Unmap()
		case a.Is6() && !w.Gateway6.IsValid():
			w.Gateway6 = g
		}
		if a.Is6() && !w.Gateway6.IsValid() {
			w.Gateway6 = netip.MustParseAddr(api.GatewayIPv6)
		}
	}
	// IPv4 first, as ADD plumbed them.
	slices.SortStableFunc(w.IPs, func(x, y netip.Addr) int { return cmp.Compare(x.BitLen(), y.BitLen()) })
	if len(w.IPs) == 0 {
		return wiring{}, fmt.Errorf("prevResult lists no address on interface %s", o.IfName)
	}
	if !w.Gateway.IsValid() && w.IPs[0].Is4() {
		w.Gateway = netip.MustParseAddr(api.GatewayIP)
	}
	return w, nil
}

// prefixIPNet converts at the CNI boundary.
func prefixIPNet(p netip.Prefix) net.IPNet {
	return net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
