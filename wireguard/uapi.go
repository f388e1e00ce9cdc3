package wireguard

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// The UAPI text protocol (wireguard.com/xplatform) configures wireguard-go:
// keys in hex, one key=value per line, peers introduced by public_key.

// uapiKey renders a key as UAPI wants it.
func uapiKey(k Key) string { return hex.EncodeToString(k[:]) }

// uapiDevice renders the device part of a set operation.
func uapiDevice(priv Key, port int) string {
	return fmt.Sprintf("private_key=%s\nlisten_port=%d\n", uapiKey(priv), port)
}

// uapiPeers renders ops as a set operation.
func uapiPeers(ops peerOps) string {
	var b strings.Builder
	for _, k := range ops.remove {
		fmt.Fprintf(&b, "public_key=%s\nremove=true\n", uapiKey(k))
	}
	for _, p := range ops.set {
		fmt.Fprintf(&b, "public_key=%s\nendpoint=%s\npersistent_keepalive_interval=%d\nreplace_allowed_ips=true\n",
			uapiKey(p.PublicKey), p.Endpoint, int(KeepaliveInterval/time.Second))
		for _, a := range p.AllowedIPs {
			fmt.Fprintf(&b, "allowed_ip=%s\n", a)
		}
	}
	return b.String()
}

// parseUAPIPeers reads the peers of a get operation's answer.
func parseUAPIPeers(s string) ([]PeerStats, error) {
	var (
		out        []PeerStats
		cur        *PeerStats
		sec, nsec  int64
		flushShake = func() {
			if cur != nil && (sec != 0 || nsec != 0) {
				cur.LastHandshake = time.Unix(sec, nsec)
			}
			sec, nsec = 0, 0
		}
	)
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("uapi: line %q has no '='", line)
		}
		if k == "public_key" {
			flushShake()
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != len(Key{}) {
				return nil, fmt.Errorf("uapi: bad public_key %q", v)
			}
			out = append(out, PeerStats{PublicKey: Key(b)})
			cur = &out[len(out)-1]
			continue
		}
		if k == "errno" && v != "0" {
			return nil, fmt.Errorf("uapi: errno %s", v)
		}
		if cur == nil {
			continue // device fields
		}
		var err error
		switch k {
		case "endpoint":
			cur.Endpoint, err = netip.ParseAddrPort(v)
		case "allowed_ip":
			var p netip.Prefix
			if p, err = netip.ParsePrefix(v); err == nil {
				cur.AllowedIPs = append(cur.AllowedIPs, p)
			}
		case "last_handshake_time_sec":
			sec, err = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			nsec, err = strconv.ParseInt(v, 10, 64)
		case "rx_bytes":
			cur.RxBytes, err = strconv.ParseInt(v, 10, 64)
		case "tx_bytes":
			cur.TxBytes, err = strconv.ParseInt(v, 10, 64)
		}
		if err != nil {
			return nil, fmt.Errorf("uapi: %s=%q: %w", k, v, err)
		}
	}
	flushShake()
	return out, sc.Err()
}
