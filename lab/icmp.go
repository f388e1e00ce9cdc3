package lab

import (
	"encoding/binary"
	"time"
)

// ICMP echo constants.
const (
	icmpEchoRequest = 8
	icmpEchoReply   = 0
	// ICMPv6 (RFC 4443); the kernel fills in the checksum on raw
	// ICMPv6 sockets, over the pseudo-header it alone knows.
	icmpv6EchoRequest = 128
	icmpv6EchoReply   = 129
	pingInterval      = 200 * time.Millisecond
	defaultPingWait   = 5 * time.Second
)

// echoRequest builds an ICMP (v6: ICMPv6) echo request.
func echoRequest(id, seq uint16, v6 bool) []byte {
	b := make([]byte, 8, 8+16)
	b[0] = icmpEchoRequest
	if v6 {
		b[0] = icmpv6EchoRequest
	}
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	b = append(b, "skein-lab-ping.."...)
	if !v6 {
		binary.BigEndian.PutUint16(b[2:], icmpChecksum(b))
	}
	return b
}

// icmpChecksum is the Internet checksum (RFC 1071).
func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = (sum >> 16) + (sum & 0xffff)
	}
	return ^uint16(sum)
}
