package agent

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/skeinnet/skein/api"
)

// TestCheckV6Only: a BGP node of an IPv6-only cluster needs an IPv6
// underlay address, and no node of one serves the Docker driver; VXLAN
// nodes and dual-stack clusters need neither.
func TestCheckV6Only(t *testing.T) {
	v6 := []api.Pool{{CIDR: netip.MustParsePrefix("fd00:10:244::/56"), BlockSize: 122}}
	dual := append([]api.Pool{{CIDR: netip.MustParsePrefix("10.244.0.0/16"), BlockSize: 26}}, v6...)
	v4only := underlay{Iface: "eth0", IP: netip.MustParseAddr("10.255.0.1")}
	both := v4only
	both.IP6 = netip.MustParseAddr("fd00:255::1")
	tests := []struct {
		name    string
		cl      api.Cluster
		ul      underlay
		docker  string
		wantErr string
	}{
		{"v6 only, bgp, no IPv6 underlay", api.Cluster{Pools: v6, Backend: api.BackendBGP}, v4only, "", "node n1: backend bgp in an IPv6-only cluster needs an IPv6 underlay address"},
		{"v6 only, bgp, dual underlay", api.Cluster{Pools: v6, Backend: api.BackendBGP}, both, "", ""},
		{"v6 only, vxlan, IPv4 underlay", api.Cluster{Pools: v6, Backend: api.BackendVXLAN}, v4only, "", ""},
		{"v6 only, docker driver", api.Cluster{Pools: v6, Backend: api.BackendVXLAN}, v4only, "/run/docker/plugins/skein.sock", "node n1: --docker-plugin-socket: the Docker driver needs an IPv4 pool"},
		{"dual-stack, bgp, no IPv6 underlay (warned, not refused)", api.Cluster{Pools: dual, Backend: api.BackendBGP}, v4only, "", ""},
		{"dual-stack, docker driver", api.Cluster{Pools: dual, Backend: api.BackendVXLAN}, v4only, "/run/docker/plugins/skein.sock", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkV6Only("n1", tc.cl, tc.ul, tc.docker)
			if (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("checkV6Only = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
