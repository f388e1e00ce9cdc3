//go:build !linux

package lab

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"
)

// The lab needs Linux network namespaces; elsewhere every kernel step fails.

var errUnsupported = errors.New("lab: network namespaces need Linux")

func ipCommand() string                               { return "ip" }
func addNetNS(context.Context, string) error          { return errUnsupported }
func delNetNS(context.Context, string) error          { return errUnsupported }
func listNetNS() ([]string, error)                    { return nil, nil }
func setupUnderlay(string, []netip.Prefix) error      { return errUnsupported }
func addBridge(string, string) error                  { return errUnsupported }
func addRoute(string, netip.Prefix, netip.Addr) error { return errUnsupported }
func setSysctls(string, map[string]string) error      { return errUnsupported }
func attachHost(string, string, string, string, string, []netip.Prefix, []netip.Addr) error {
	return errUnsupported
}
func setLoUp(string) error                                  { return errUnsupported }
func startInNetNS(string, string, []string) (int, error)    { return 0, errUnsupported }
func procAlive(int) bool                                    { return false }
func procOfRunDir(int, string) bool                         { return false }
func isEtcdProc(int) bool                                   { return false }
func findLabProcs(string, []string) []int                   { return nil }
func terminate(context.Context, []int, time.Duration) error { return errUnsupported }
func killProcs(context.Context, []int) error                { return errUnsupported }
func cniAdd(context.Context, cniCall) (netip.Addr, error)   { return netip.Addr{}, errUnsupported }
func cniDel(context.Context, cniCall) error                 { return errUnsupported }
func pingIn(context.Context, string, netip.Addr) error      { return errUnsupported }
func dialIn(context.Context, string, string, string) (net.Conn, error) {
	return nil, errUnsupported
}
func listenIn(context.Context, string, string, string) (net.Listener, error) {
	return nil, errUnsupported
}
func listenPacketIn(context.Context, string, string, string) (net.PacketConn, error) {
	return nil, errUnsupported
}
