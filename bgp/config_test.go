package bgp

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := Config{RouterID: netip.MustParseAddr("10.0.0.1"), ASN: 64512}
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string // substring; empty: valid
	}{
		{name: "minimal"},
		{name: "4-byte asn", edit: func(c *Config) { c.ASN = 4200000000 }},
		{name: "max asn", edit: func(c *Config) { c.ASN = 1<<32 - 1 }},
		{name: "asn 0", edit: func(c *Config) { c.ASN = 0 }, wantErr: "asn 0 is reserved"},
		{name: "no router id", edit: func(c *Config) { c.RouterID = netip.Addr{} }, wantErr: `router id ""`},
		{name: "zero router id", edit: func(c *Config) { c.RouterID = netip.IPv4Unspecified() }, wantErr: "router id \"0.0.0.0\""},
		{name: "ipv6 router id", edit: func(c *Config) { c.RouterID = netip.MustParseAddr("fd00::1") }, wantErr: "must be a non-zero IPv4 address"},
		{name: "ipv6 listen", edit: func(c *Config) { c.ListenAddr = netip.MustParseAddr("::1") }, wantErr: "listen address ::1"},
		{name: "ipv4 listen6", edit: func(c *Config) { c.ListenAddr6 = netip.MustParseAddr("10.0.0.1") }, wantErr: "IPv6 listen address 10.0.0.1"},
		{name: "link-local listen6", edit: func(c *Config) { c.ListenAddr6 = netip.MustParseAddr("fe80::1") }, wantErr: "IPv6 listen address fe80::1"},
		{name: "no listening", edit: func(c *Config) { c.ListenPort = -1 }},
		{name: "port too big", edit: func(c *Config) { c.ListenPort = 70000 }, wantErr: "listen port 70000"},
		{name: "port -2", edit: func(c *Config) { c.ListenPort = -2 }, wantErr: "listen port -2"},
		{name: "short hold time", edit: func(c *Config) { c.HoldTime = 2 * time.Second }, wantErr: "hold time 2s"},
		{name: "keepalive above hold", edit: func(c *Config) { c.HoldTime, c.KeepAlive = 3*time.Second, 4*time.Second }, wantErr: "keepalive 4s"},
		{name: "restart time too long", edit: func(c *Config) { c.RestartTime = 2 * time.Hour }, wantErr: "restart time 2h0m0s"},
		{name: "bad protocol", edit: func(c *Config) { c.RouteProtocol = 300 }, wantErr: "route protocol 300"},
		{name: "ipv6 import", edit: func(c *Config) { c.Import = []netip.Prefix{netip.MustParsePrefix("fd00::/64")} }},
		{name: "ipv4-mapped import", edit: func(c *Config) { c.Import = []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")} }, wantErr: "import prefix ::ffff:10.0.0.0/104"},
		{name: "ipv6 cluster id", edit: func(c *Config) { c.RouteReflector = &RRConfig{ClusterID: netip.MustParseAddr("::1")} }, wantErr: "cluster id ::1"},
		{name: "two errors", edit: func(c *Config) { c.ASN, c.ListenPort = 0, 99999 }, wantErr: "asn 0 is reserved\nlisten port 99999"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := ok
			if tc.edit != nil {
				tc.edit(&c)
			}
			err := c.Defaulted().Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.wantErr)
			}
			if _, nerr := New(withFakeDataplane(c)); (nerr == nil) != (err == nil) {
				t.Errorf("New() = %v, Validate() = %v: want both nil or both errors", nerr, err)
			}
		})
	}
}

func withFakeDataplane(c Config) Config {
	c.Dataplane = newFakeDataplane()
	return c
}

func TestConfigDefaulted(t *testing.T) {
	t.Parallel()
	id := netip.MustParseAddr("10.0.0.1")
	got := Config{RouterID: id, ASN: 64512, RouteReflector: &RRConfig{}, HoldTime: 30 * time.Second}.Defaulted()
	want := Config{
		RouterID: id, ASN: 64512, ListenAddr: id, ListenPort: 179,
		RestartTime: 120 * time.Second, StaleRouteTime: 60 * time.Second,
		RouteReflector: &RRConfig{ClusterID: id},
		HoldTime:       30 * time.Second, KeepAlive: 10 * time.Second, ConnectRetry: DefaultConnectRetry,
		Table: 254, RouteProtocol: 78,
	}
	if d := cmp.Diff(want, got, cmpopts.IgnoreFields(Config{}, "Log"), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("Defaulted() mismatch (-want +got):\n%s", d)
	}
	if got.Log == nil {
		t.Error("Defaulted().Log = nil")
	}
	if d := (Config{RouterID: id, ASN: 1}).Defaulted(); d.HoldTime != 9*time.Second || d.KeepAlive != 3*time.Second {
		t.Errorf("default timers = %s/%s, want 9s/3s", d.HoldTime, d.KeepAlive)
	}
}

func TestValidatePeers(t *testing.T) {
	t.Parallel()
	p := func(name, addr string, asn uint32) Peer {
		a, _ := netip.ParseAddr(addr) // invalid on purpose in some cases
		return Peer{Name: name, Address: a, ASN: asn}
	}
	tests := []struct {
		name     string
		in       []Peer
		wantOK   []string
		wantErrs []string
		dup      bool
	}{
		{name: "empty"},
		{name: "valid", in: []Peer{p("a", "10.0.0.1", 64512), p("b", "10.0.0.2", 65001)}, wantOK: []string{"a", "b"}},
		{name: "ipv6", in: []Peer{p("a", "10.0.0.1", 64512), p("a6", "fd00::1", 64512)}, wantOK: []string{"a", "a6"}},
		{
			name:     "duplicate name: first wins",
			in:       []Peer{p("a", "10.0.0.1", 1), p("a", "10.0.0.2", 1)},
			wantOK:   []string{"a"},
			wantErrs: []string{`peer "a": duplicate peer name`},
			dup:      true,
		},
		{
			name:     "duplicate address",
			in:       []Peer{p("a", "10.0.0.1", 1), p("b", "10.0.0.1", 1), p("c", "10.0.0.3", 1)},
			wantOK:   []string{"a", "c"},
			wantErrs: []string{`peer "b": duplicate peer address 10.0.0.1 (also peer "a")`},
			dup:      true,
		},
		{
			name: "invalid ones",
			in: []Peer{
				p("", "10.0.0.1", 1), p("noaddr", "", 1), p("ll6", "fe80::1", 1), p("mapped", "::ffff:10.0.0.9", 1), p("asn0", "10.0.0.4", 0),
				{Name: "port", Address: netip.MustParseAddr("10.0.0.5"), ASN: 1, Port: 65536},
			},
			wantErrs: []string{`peer "": invalid peer: empty name`, `peer "noaddr": invalid peer: address ""`, `peer "ll6": invalid peer: address "fe80::1"`, `peer "mapped"`, `peer "asn0": invalid peer: asn 0`, "port 65536"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ok, err := ValidatePeers(tc.in)
			var names []string
			for _, p := range ok {
				names = append(names, p.Name)
			}
			if d := cmp.Diff(tc.wantOK, names); d != "" {
				t.Errorf("ValidatePeers() kept mismatch (-want +got):\n%s", d)
			}
			if (err != nil) != (len(tc.wantErrs) > 0) {
				t.Fatalf("ValidatePeers() error = %v, want errors %q", err, tc.wantErrs)
			}
			for _, s := range tc.wantErrs {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if got := errors.Is(err, ErrDuplicatePeer); got != tc.dup {
				t.Errorf("errors.Is(err, ErrDuplicatePeer) = %v, want %v", got, tc.dup)
			}
		})
	}
}
