package agent

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/skeinnet/skein/api"
)

func TestPickUnderlay(t *testing.T) {
	pfx := netip.MustParsePrefix
	addr := netip.MustParseAddr
	v4 := pfx("10.255.0.1/24")
	ll := pfx("fe80::1/64")
	g6 := pfx("fd00:255::1/64")
	g6b := pfx("fd00:255::2/64")
	for _, tc := range []struct {
		name    string
		addrs   []netip.Prefix
		ip, ip6 netip.Addr
		want    underlay // Iface left out
		err     string
	}{
		{name: "ipv4 only", addrs: []netip.Prefix{v4, ll},
			want: underlay{IP: addr("10.255.0.1"), Network: pfx("10.255.0.0/24")}},
		{name: "dual, IPv6 listed first", addrs: []netip.Prefix{ll, g6, v4},
			want: underlay{IP: addr("10.255.0.1"), Network: pfx("10.255.0.0/24"), IP6: addr("fd00:255::1"), Network6: pfx("fd00:255::/64")}},
		{name: "ipv6 only: IP is the IPv6 address", addrs: []netip.Prefix{ll, g6},
			want: underlay{IP: addr("fd00:255::1"), Network: pfx("fd00:255::/64"), IP6: addr("fd00:255::1"), Network6: pfx("fd00:255::/64")}},
		{name: "--underlay-ip6 picks the second", addrs: []netip.Prefix{v4, g6, g6b}, ip6: addr("fd00:255::2"),
			want: underlay{IP: addr("10.255.0.1"), Network: pfx("10.255.0.0/24"), IP6: addr("fd00:255::2"), Network6: pfx("fd00:255::/64")}},
		{name: "--underlay-ip IPv6 makes the node IPv6-only", addrs: []netip.Prefix{v4, g6, g6b}, ip: addr("fd00:255::2"),
			want: underlay{IP: addr("fd00:255::2"), Network: pfx("fd00:255::/64"), IP6: addr("fd00:255::2"), Network6: pfx("fd00:255::/64")}},
		{name: "only link-local IPv6", addrs: []netip.Prefix{ll}, err: "eth0 has no IPv4 address and no global IPv6 address"},
		{name: "--underlay-ip6 not on the interface", addrs: []netip.Prefix{v4, g6}, ip6: addr("fd00:99::1"),
			err: "--underlay-ip6 fd00:99::1 is not an address of underlay interface eth0"},
		{name: "--underlay-ip not on the interface", addrs: []netip.Prefix{v4}, ip: addr("10.9.9.9"),
			err: "underlay interface eth0 does not hold --underlay-ip 10.9.9.9"},
		{name: "two different IPv6 addresses", addrs: []netip.Prefix{g6, g6b}, ip: addr("fd00:255::1"), ip6: addr("fd00:255::2"),
			err: "--underlay-ip6 fd00:255::2 differs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pickUnderlay("eth0", tc.addrs, tc.ip, tc.ip6)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("pickUnderlay = %+v, %v; want error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Iface = "eth0"
			if got != tc.want {
				t.Errorf("pickUnderlay = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestValidateUnderlayFlags(t *testing.T) {
	addr := netip.MustParseAddr
	for _, tc := range []struct {
		ip, ip6 netip.Addr
		err     string
	}{
		{ip: addr("10.0.0.1")},
		{ip: addr("fd00::1")},
		{ip: addr("fd00::1"), ip6: addr("fd00::1")},
		{ip: addr("10.0.0.1"), ip6: addr("fd00::1")},
		{ip6: addr("10.0.0.1"), err: "--underlay-ip6 10.0.0.1: not a global IPv6 address"},
		{ip6: addr("fe80::1"), err: "--underlay-ip6 fe80::1: not a global IPv6 address"},
		{ip: addr("fe80::1"), err: "--underlay-ip fe80::1: not a global unicast address"},
		{ip: addr("::ffff:10.0.0.1"), err: "--underlay-ip ::ffff:10.0.0.1"},
		{ip: addr("fd00::1"), ip6: addr("fd00::2"), err: "so --underlay-ip6 fd00::2 must be the same address"},
	} {
		errs := Config{UnderlayIP: tc.ip, UnderlayIP6: tc.ip6}.validateUnderlay()
		switch {
		case tc.err == "" && len(errs) > 0:
			t.Errorf("underlay %v/%v: %v, want no error", tc.ip, tc.ip6, errs)
		case tc.err != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.err)):
			t.Errorf("underlay %v/%v: %v, want one error containing %q", tc.ip, tc.ip6, errs, tc.err)
		}
	}
}

func TestVXLANFamilyConflict(t *testing.T) {
	addr := netip.MustParseAddr
	nodes := []api.Node{
		{Name: "h1", UnderlayIP: addr("10.0.0.1")},
		{Name: "h2", UnderlayIP: addr("10.0.0.2"), UnderlayIP6: addr("fd00::2")},
		{Name: "h3"}, // registered no address yet
		{Name: "h4", UnderlayIP: addr("fd00::4"), UnderlayIP6: addr("fd00::4")},
	}
	if err := vxlanFamilyConflict("h5", addr("10.0.0.5"), nodes[:3]); err != nil {
		t.Errorf("IPv4 node among IPv4 and dual nodes: %v", err)
	}
	if err := vxlanFamilyConflict("h4", addr("fd00::4"), nodes[2:]); err != nil {
		t.Errorf("IPv6-only node alone (its own record aside): %v", err)
	}
	err := vxlanFamilyConflict("h4", addr("fd00::4"), nodes)
	want := "node h4: its VXLAN underlay address fd00::4 is IPv6 but node(s) h1 (10.0.0.1), h2 (10.0.0.2) have IPv4 underlay addresses"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("IPv6-only node among IPv4 nodes: %v, want %q", err, want)
	}
	err = vxlanFamilyConflict("h1", addr("10.0.0.1"), nodes)
	if want := "node(s) h4 (fd00::4) have IPv6 underlay addresses"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("IPv4 node with an IPv6-only one registered: %v, want %q", err, want)
	}
}
