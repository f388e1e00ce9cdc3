package api

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestClusterValidate(t *testing.T) {
	pool := func(cidr string, bs int) Pool { return Pool{CIDR: netip.MustParsePrefix(cidr), BlockSize: bs} }
	tests := []struct {
		name    string
		c       Cluster
		wantErr string
	}{
		{"ok", Cluster{Pools: []Pool{pool("10.244.0.0/16", 26)}}, ""},
		{"two pools", Cluster{Pools: []Pool{pool("10.244.0.0/16", 26), pool("10.245.0.0/16", 24)}}, ""},
		{"no pools", Cluster{}, "at least one pool"},
		{"host bits", Cluster{Pools: []Pool{pool("10.244.1.0/16", 26)}}, "host bits set (did you mean 10.244.0.0/16?)"},
		{"block larger than pool", Cluster{Pools: []Pool{pool("10.244.0.0/24", 16)}}, "block size /16 must be between /24 and /30"},
		{"block too small", Cluster{Pools: []Pool{pool("10.244.0.0/16", 31)}}, "block size /31"},
		{"dual-stack", Cluster{Pools: []Pool{pool("10.244.0.0/16", 26), pool("fd00:10:244::/56", 122)}}, ""},
		{"ipv6 only", Cluster{Pools: []Pool{pool("fd00::/64", 120)}}, ""},
		{"ipv6 only, two pools", Cluster{Pools: []Pool{pool("fd00::/64", 120), pool("fd01::/64", 122)}}, ""},
		{"ipv6 only with bgp", Cluster{Pools: []Pool{pool("fd00::/64", 120)}, Backend: BackendBGP, BGP: &BGPConfig{ASN: 64512}}, ""},
		{"ipv6 only with wireguard", Cluster{Pools: []Pool{pool("fd00::/64", 120)}, Encryption: EncryptionWireGuard}, ""},
		{"ipv6 block too large", Cluster{Pools: []Pool{pool("10.244.0.0/16", 26), pool("fd00::/56", 64)}}, "IPv6 block size /64 must be between /96 and /126"},
		{"ipv6 block too small", Cluster{Pools: []Pool{pool("10.244.0.0/16", 26), pool("fd00::/56", 127)}}, "IPv6 block size /127"},
		{"ipv6 block wider than pool", Cluster{Pools: []Pool{pool("10.244.0.0/16", 26), pool("fd00::/120", 112)}}, "between /120 and /126"},
		{"ipv6 overlap", Cluster{Pools: []Pool{pool("10.244.0.0/16", 26), pool("fd00::/56", 122), pool("fd00:0:0:10::/64", 122)}}, "pools[1] fd00::/56 and pools[2] fd00:0:0:10::/64: pools overlap"},
		{"ipv4-mapped", Cluster{Pools: []Pool{pool("::ffff:10.0.0.0/104", 122)}}, "IPv4-mapped"},
		{"dual-stack with bgp", Cluster{Pools: []Pool{pool("10.244.0.0/16", 26), pool("fd00::/56", 122)}, Backend: BackendBGP, BGP: &BGPConfig{ASN: 64512}}, ""},
		{"ipv6 with wireguard", Cluster{Pools: []Pool{pool("10.244.0.0/16", 26), pool("fd00::/56", 122)}, Encryption: EncryptionWireGuard}, ""},
		{"overlap", Cluster{Pools: []Pool{pool("10.244.0.0/16", 26), pool("10.244.128.0/17", 26)}}, "pools[0] 10.244.0.0/16 and pools[1] 10.244.128.0/17: pools overlap"},
		{"bad backend", Cluster{Pools: []Pool{pool("10.244.0.0/16", 26)}, Backend: "ipip"}, `unknown backend "ipip"`},
		{"bad vni", Cluster{Pools: []Pool{pool("10.244.0.0/16", 26)}, VXLAN: VXLANConfig{VNI: 1 << 24, Port: 4789}}, "vni 16777216 out of range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c.Defaulted()
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
	d := Cluster{Pools: []Pool{pool("10.244.0.0/16", 0), pool("fd00::/56", 0)}}.Defaulted()
	if d.Pools[0].BlockSize != DefaultBlockSize || d.Pools[1].BlockSize != DefaultBlockSizeV6 {
		t.Errorf("Defaulted block sizes = /%d, /%d; want /%d, /%d", d.Pools[0].BlockSize, d.Pools[1].BlockSize, DefaultBlockSize, DefaultBlockSizeV6)
	}
	err := Cluster{Pools: []Pool{pool("10.0.0.0/8", 26), pool("10.1.0.0/16", 26)}}.Defaulted().Validate()
	if !errors.Is(err, ErrOverlap) {
		t.Errorf("overlap error %v does not wrap ErrOverlap", err)
	}
}

func TestHostIfaceName(t *testing.T) {
	a := HostIfaceName(Owner{ContainerID: "abc", IfName: "eth0"})
	if len(a) != 13 || !strings.HasPrefix(a, "sk") {
		t.Errorf("HostIfaceName = %q, want sk + 11 hex", a)
	}
	if a != HostIfaceName(Owner{ContainerID: "abc", IfName: "eth0"}) {
		t.Error("HostIfaceName is not stable")
	}
	if a == HostIfaceName(Owner{ContainerID: "abc", IfName: "eth1"}) {
		t.Error("two interfaces of one container share a host veth name")
	}
	if a == HostIfaceName(Owner{ContainerID: "abce", IfName: "th0"}) {
		t.Error("container id and ifname are not separated in the hash")
	}
}

func TestBlockKeyName(t *testing.T) {
	for _, s := range []string{"10.244.1.0/26", "fd00::/120"} {
		p := netip.MustParsePrefix(s)
		got, err := ParseBlockKeyName(BlockKeyName(p))
		if err != nil || got != p {
			t.Errorf("round trip of %s: %v %v", s, got, err)
		}
	}
	if BlockKeyName(netip.MustParsePrefix("10.244.1.0/26")) != "10.244.1.0-26" {
		t.Error("block key must use - for /")
	}
}

func TestMACJSON(t *testing.T) {
	var m MAC
	if err := m.UnmarshalText([]byte("0a:00:00:00:00:01")); err != nil || m.String() != "0a:00:00:00:00:01" {
		t.Errorf("MAC round trip: %v %v", m, err)
	}
	if err := m.UnmarshalText([]byte("zz")); err == nil {
		t.Error("bad MAC accepted")
	}
}

// TestClusterValidateEncryption: a stored cluster with encryption on is
// checked like cluster init checks it (skeind reads it from etcd).
func TestClusterValidateEncryption(t *testing.T) {
	ok := Cluster{Pools: []Pool{{CIDR: netip.MustParsePrefix("10.244.0.0/16"), BlockSize: 26}}, Encryption: EncryptionWireGuard}.Defaulted()
	if err := ok.Validate(); err != nil || ok.WireGuard == nil || ok.WireGuard.Port != DefaultWireGuardPort {
		t.Fatalf("defaulted wireguard cluster: %+v: %v", ok.WireGuard, err)
	}
	bad := ok
	bad.WireGuard = nil
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "needs a wireguard port") {
		t.Errorf("no port: %v", err)
	}
	bad = ok
	bad.Encryption = "rot13"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), `unknown encryption "rot13"`) {
		t.Errorf("unknown encryption: %v", err)
	}
}
