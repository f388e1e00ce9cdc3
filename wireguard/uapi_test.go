package wireguard

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestDiffAndUAPIRoundTrip(t *testing.T) {
	k1, k2, k3 := mustKey(t), mustKey(t), mustKey(t)
	p := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	cur := []PeerStats{
		{PublicKey: k1, Endpoint: netip.MustParseAddrPort("10.0.0.1:51822"), AllowedIPs: []netip.Prefix{p("10.244.0.0/26")}},
		{PublicKey: k2, Endpoint: netip.MustParseAddrPort("10.0.0.2:51822"), AllowedIPs: []netip.Prefix{p("10.244.0.64/26")}},
	}
	want := []Peer{
		{PublicKey: k1, Endpoint: netip.MustParseAddrPort("10.0.0.1:51822"), AllowedIPs: []netip.Prefix{p("10.244.0.0/26")}}, // unchanged
		{PublicKey: k3, Endpoint: netip.MustParseAddrPort("10.0.0.3:51822"), AllowedIPs: []netip.Prefix{p("10.244.0.128/26"), p("10.244.1.0/26")}},
	}
	ops := diffPeers(cur, want)
	if len(ops.set) != 1 || ops.set[0].PublicKey != k3 || len(ops.remove) != 1 || ops.remove[0] != k2 {
		t.Fatalf("diff = %+v, want set k3, remove k2, leave k1 (its session) alone", ops)
	}
	text := uapiPeers(ops)
	for _, line := range []string{"public_key=" + uapiKey(k2) + "\nremove=true", "replace_allowed_ips=true", "allowed_ip=10.244.1.0/26", "endpoint=10.0.0.3:51822", "persistent_keepalive_interval=25"} {
		if !strings.Contains(text, line) {
			t.Errorf("set operation lacks %q:\n%s", line, text)
		}
	}
	// What wireguard-go answers to get=1, with the device's own fields first.
	get := "private_key=" + uapiKey(k1) + "\nlisten_port=51822\n" +
		"public_key=" + uapiKey(k3) + "\nendpoint=10.0.0.3:51822\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\ntx_bytes=10\nrx_bytes=20\nallowed_ip=10.244.0.128/26\nallowed_ip=10.244.1.0/26\n" +
		"public_key=" + uapiKey(k1) + "\nendpoint=10.0.0.1:51822\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\nallowed_ip=10.244.0.0/26\nerrno=0\n"
	peers, err := parseUAPIPeers(get)
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 2 || peers[0].PublicKey != k3 || !peers[0].LastHandshake.Equal(time.Unix(1700000000, 5)) ||
		peers[0].RxBytes != 20 || peers[0].TxBytes != 10 || len(peers[0].AllowedIPs) != 2 || !peers[1].LastHandshake.IsZero() {
		t.Fatalf("parsed = %+v", peers)
	}
	if ops := diffPeers(peers, want); len(ops.set) != 0 || len(ops.remove) != 0 {
		t.Errorf("diff of a device already at the plan = %+v, want nothing", ops)
	}
	if _, err := parseUAPIPeers("errno=1\n"); err == nil {
		t.Error("errno=1 parsed without error")
	}
}
