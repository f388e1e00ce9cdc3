package api

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBGPPeerValidate(t *testing.T) {
	t.Parallel()
	ok := BGPPeer{Name: "tor", PeerIP: netip.MustParseAddr("10.255.1.254"), ASN: 64512}
	with := func(f func(p *BGPPeer)) BGPPeer { p := ok; f(&p); return p }
	tests := []struct {
		name    string
		p       BGPPeer
		wantErr []string // substrings, all required; none means valid
	}{
		{"minimal", ok, nil},
		{"all fields", with(func(p *BGPPeer) {
			p.Node, p.Port, p.Description, p.ASN = "node-1.rack2", 1179, "rack 2 ToR", 4294967295
		}), nil},
		{"asn 1", with(func(p *BGPPeer) { p.ASN = 1 }), nil},
		{"asn 0", with(func(p *BGPPeer) { p.ASN = 0 }), []string{"asn 0 is reserved"}},
		{"as_trans", with(func(p *BGPPeer) { p.ASN = 23456 }), []string{"AS_TRANS"}},
		{"no name", with(func(p *BGPPeer) { p.Name = "" }), []string{`name ""`, "(unnamed)"}},
		{"upper case name", with(func(p *BGPPeer) { p.Name = "ToR" }), []string{`name "ToR"`}},
		{"name with dot", with(func(p *BGPPeer) { p.Name = "tor.a" }), []string{`name "tor.a"`}},
		{"name with slash", with(func(p *BGPPeer) { p.Name = "a/b" }), []string{`name "a/b"`}},
		{"name too long", with(func(p *BGPPeer) { p.Name = strings.Repeat("a", 64) }), []string{"1-63"}},
		{"name 63", with(func(p *BGPPeer) { p.Name = strings.Repeat("a", 63) }), nil},
		{"trailing dash", with(func(p *BGPPeer) { p.Name = "tor-" }), []string{`name "tor-"`}},
		{"no peer IP", with(func(p *BGPPeer) { p.PeerIP = netip.Addr{} }), []string{"peer IP: required"}},
		{"ipv6 peer", with(func(p *BGPPeer) { p.PeerIP = netip.MustParseAddr("fd00::1") }), nil},
		{"global ipv6 peer", with(func(p *BGPPeer) { p.PeerIP = netip.MustParseAddr("2001:db8::1") }), nil},
		{"mapped ipv4", with(func(p *BGPPeer) { p.PeerIP = netip.MustParseAddr("::ffff:10.0.0.1") }), []string{"peer IP ::ffff:10.0.0.1", "IPv4-mapped", "write the IPv4 address 10.0.0.1"}},
		{"link-local ipv6", with(func(p *BGPPeer) { p.PeerIP = netip.MustParseAddr("fe80::1") }), []string{"peer IP fe80::1", "link-local"}},
		{"zoned ipv6", with(func(p *BGPPeer) { p.PeerIP = netip.MustParseAddr("fd00::1%eth0") }), []string{"zone"}},
		{"unspecified ipv6", with(func(p *BGPPeer) { p.PeerIP = netip.IPv6Unspecified() }), []string{"unicast"}},
		{"multicast ipv6", with(func(p *BGPPeer) { p.PeerIP = netip.MustParseAddr("ff02::2") }), []string{"unicast"}},
		{"unspecified", with(func(p *BGPPeer) { p.PeerIP = netip.MustParseAddr("0.0.0.0") }), []string{"unicast"}},
		{"multicast", with(func(p *BGPPeer) { p.PeerIP = netip.MustParseAddr("224.0.0.5") }), []string{"unicast"}},
		{"broadcast", with(func(p *BGPPeer) { p.PeerIP = netip.MustParseAddr("255.255.255.255") }), []string{"unicast"}},
		{"bad node", with(func(p *BGPPeer) { p.Node = "Node_1" }), []string{`node name "Node_1"`}},
		{"negative port", with(func(p *BGPPeer) { p.Port = -1 }), []string{"port -1"}},
		{"big port", with(func(p *BGPPeer) { p.Port = 65536 }), []string{"port 65536"}},
		{"long description", with(func(p *BGPPeer) { p.Description = strings.Repeat("x", 257) }), []string{"257 bytes"}},
		{"control in description", with(func(p *BGPPeer) { p.Description = "a\nb" }), []string{"control characters"}},
		{"every error at once", BGPPeer{Name: "X", Port: 70000}, []string{`name "X"`, "peer IP: required", "asn 0", "port 70000"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.p.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want error containing %q", tc.wantErr)
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Validate() = %v, want it to contain %q", err, s)
				}
			}
		})
	}
}

func TestBGPPeerJSON(t *testing.T) {
	t.Parallel()
	p := BGPPeer{Name: "tor", PeerIP: netip.MustParseAddr("10.255.1.254"), ASN: 65001, Node: "n1", Port: 1179, Description: "rack 1"}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"name":"tor","peerIP":"10.255.1.254","asn":65001,"node":"n1","port":1179,"description":"rack 1"}`
	if string(b) != want {
		t.Errorf("Marshal = %s\nwant      %s", b, want)
	}
	b, err = json.Marshal(BGPPeer{Name: "all", PeerIP: netip.MustParseAddr("10.0.0.1"), ASN: 64512})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != `{"name":"all","peerIP":"10.0.0.1","asn":64512}` {
		t.Errorf("Marshal without optional fields = %s", got)
	}
	got, err := DecodeBGPPeer([]byte(want))
	if err != nil {
		t.Fatalf("DecodeBGPPeer: %v", err)
	}
	if d := cmp.Diff(p, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("round trip mismatch (-want +got):\n%s", d)
	}
}

func TestDecodeBGPPeer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		raw     string
		want    BGPPeer
		wantErr string
	}{
		{"ok", `{"name":"tor","peerIP":"10.0.0.1","asn":64512}`,
			BGPPeer{Name: "tor", PeerIP: netip.MustParseAddr("10.0.0.1"), ASN: 64512}, ""},
		{"unknown field ignored", `{"name":"tor","peerIP":"10.0.0.1","asn":64512,"password":"x"}`,
			BGPPeer{Name: "tor", PeerIP: netip.MustParseAddr("10.0.0.1"), ASN: 64512}, ""},
		{"not json", `nope`, BGPPeer{}, "decode bgp peer"},
		{"bad ip", `{"name":"tor","peerIP":"10.0.0.300","asn":64512}`, BGPPeer{}, "decode bgp peer"},
		{"asn as string", `{"name":"tor","peerIP":"10.0.0.1","asn":"64512"}`, BGPPeer{}, "asn"},
		{"asn too big", `{"name":"tor","peerIP":"10.0.0.1","asn":4294967296}`, BGPPeer{}, "asn"},
		{"invalid", `{"name":"tor","peerIP":"10.0.0.1","asn":0}`, BGPPeer{}, "bgp peer tor: asn 0 is reserved"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := DecodeBGPPeer([]byte(tc.raw))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("DecodeBGPPeer() = %+v, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeBGPPeer() = %v", err)
			}
			if got != tc.want {
				t.Errorf("DecodeBGPPeer() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestBGPPeerKey(t *testing.T) {
	t.Parallel()
	if got := BGPPeerKey("tor"); got != "bgppeers/tor" {
		t.Errorf("BGPPeerKey = %q, want bgppeers/tor", got)
	}
}
