package main

import (
	"strings"
	"testing"

	"github.com/skeinnet/skein/api"
)

// TestApplyEncryption: cluster init's --encryption refuses what would send
// pod traffic in clear or cannot work, naming the conflict.
func TestApplyEncryption(t *testing.T) {
	base := func(backend string, direct bool) api.Cluster {
		c, err := buildCluster([]string{"10.244.0.0/16"}, 26, api.DefaultBlockSizeV6, backend, 64512, true, 4096, 4789)
		if err != nil {
			t.Fatal(err)
		}
		c.VXLAN.DirectRouting = direct
		return c
	}
	tests := []struct {
		name, backend, enc string
		direct             bool
		port               int
		wantErr            string
	}{
		{"bgp", "bgp", "wireguard", false, 51822, "needs backend vxlan"},
		{"direct routing", "vxlan", "wireguard", true, 51822, "exclude each other"},
		{"port zero", "vxlan", "wireguard", false, 0, "wireguard port 0 out of range"},
		{"vxlan port", "vxlan", "wireguard", false, 4789, "wireguard port 4789 is the vxlan port"},
		{"unknown", "vxlan", "ipsec", false, 51822, `--encryption "ipsec": want wireguard or none`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base(tc.backend, tc.direct)
			err := applyEncryption(&c, tc.enc, tc.port)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("applyEncryption = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
	c := base("vxlan", false)
	if err := applyEncryption(&c, "wireguard", api.DefaultWireGuardPort); err != nil || c.Encryption != api.EncryptionWireGuard || c.WireGuard.Port != api.DefaultWireGuardPort {
		t.Fatalf("valid: %+v %v", c, err)
	}
	c = base("bgp", false)
	if err := applyEncryption(&c, "none", 0); err != nil || c.Encryption != "" || c.WireGuard != nil {
		t.Fatalf("none: %+v %v", c, err)
	}
}
