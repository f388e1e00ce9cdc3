// Package nflog reads packets the kernel logs to an NFLOG group (nft `log
// group N`) over netlink: a minimal reader, since no maintained library for
// it is in the module proxy here.
package nflog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// nfnetlink_log constants (linux/netfilter/nfnetlink_log.h).
const (
	subsysULOG      = 4
	msgPacket       = 0
	msgConfig       = 1
	attrCfgCmd      = 1
	attrCfgMode     = 2
	attrCfgQThresh  = 4
	cmdBind         = 1
	cmdUnbind       = 2
	copyPacket      = 2
	attrPrefix      = 10
	attrPayload     = 9
	attrIfindexIn   = 4
	attrIfindexOut  = 5
	copyRange       = 128 // an IPv4 header with options or an IPv6 header with some extension headers, and the ports
	nfgenmsgLen     = 4
	receiveDeadline = 500 * time.Millisecond
)

// Packet is one logged packet.
type Packet struct {
	Prefix   string
	Src, Dst netip.Addr
	Proto    uint8
	// SrcPort and DstPort are set for TCP and UDP.
	SrcPort, DstPort uint16
	InIf, OutIf      uint32
}

// Reader is bound to one NFLOG group.
type Reader struct {
	conn  *netlink.Conn
	group uint16
}

// Open binds a netlink socket to group, in the network namespace netns (a
// namespace fd) or, for 0, in the current one.
func Open(group uint16, netns int) (*Reader, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("nflog: dial netfilter netlink: %w", err)
	}
	r := &Reader{conn: c, group: group}
	if err := r.config(cmdAttr(cmdBind)); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("nflog: bind group %d: %w", group, err)
	}
	mode := make([]byte, 6)
	binary.BigEndian.PutUint32(mode, copyRange)
	mode[4] = copyPacket
	if err := r.config(netlink.Attribute{Type: attrCfgMode, Data: mode}); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("nflog: set copy mode of group %d: %w", group, err)
	}
	// The kernel batches up to 100 packets for up to a second by default:
	// send each at once, so a drop shows when it happens.
	if err := r.config(netlink.Attribute{Type: attrCfgQThresh, Data: binary.BigEndian.AppendUint32(nil, 1)}); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("nflog: set queue threshold of group %d: %w", group, err)
	}
	return r, nil
}

func cmdAttr(cmd byte) netlink.Attribute {
	return netlink.Attribute{Type: attrCfgCmd, Data: []byte{cmd}}
}

func (r *Reader) config(a netlink.Attribute) error {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{a})
	if err != nil {
		return err
	}
	hdr := []byte{unix.AF_UNSPEC, 0, 0, 0}
	binary.BigEndian.PutUint16(hdr[2:], r.group)
	_, err = r.conn.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(subsysULOG<<8 | msgConfig), Flags: netlink.Request | netlink.Acknowledge},
		Data:   append(hdr, attrs...),
	})
	return err
}

// Close unbinds the group and closes the socket.
func (r *Reader) Close() error {
	_ = r.config(cmdAttr(cmdUnbind))
	return r.conn.Close()
}

// Run calls fn for each logged packet until ctx ends.
func (r *Reader) Run(ctx context.Context, fn func(Packet)) error {
	for ctx.Err() == nil {
		if err := r.conn.SetReadDeadline(time.Now().Add(receiveDeadline)); err != nil {
			return fmt.Errorf("nflog: set deadline: %w", err)
		}
		msgs, err := r.conn.Receive()
		if err != nil {
			if errors.Is(err, unix.ENOBUFS) {
				continue // the kernel dropped logs: keep reading
			}
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("nflog: receive: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Type != netlink.HeaderType(subsysULOG<<8|msgPacket) {
				continue
			}
			if p, ok := Parse(m.Data); ok {
				fn(p)
			}
		}
	}
	return ctx.Err()
}

// Parse decodes an NFULNL_MSG_PACKET body (nfgenmsg and attributes).
func Parse(b []byte) (Packet, bool) {
	var p Packet
	if len(b) < nfgenmsgLen {
		return p, false
	}
	ad, err := netlink.NewAttributeDecoder(b[nfgenmsgLen:])
	if err != nil {
		return p, false
	}
	ad.ByteOrder = binary.BigEndian
	var payload []byte
	for ad.Next() {
		switch ad.Type() {
		case attrPrefix:
			p.Prefix = ad.String()
		case attrPayload:
			payload = ad.Bytes()
		case attrIfindexIn:
			p.InIf = ad.Uint32()
		case attrIfindexOut:
			p.OutIf = ad.Uint32()
		}
	}
	if ad.Err() != nil {
		return p, false
	}
	if len(payload) > 0 && payload[0]>>4 == 6 {
		return p, parseIPv6(payload, &p)
	}
	return p, parseIPv4(payload, &p)
}

// IPv6 extension headers parseIPv6 skips to find the transport header.
const (
	ip6HopByHop = 0
	ip6Routing  = 43
	ip6Fragment = 44
	ip6DestOpts = 60
)

// parseIPv6 decodes an IPv6 packet; Proto is the transport protocol after
// the extension headers, and ports are left 0 when the copy ends before
// them (or in a later fragment).
func parseIPv6(b []byte, p *Packet) bool {
	if len(b) < 40 {
		return false
	}
	p.Src = netip.AddrFrom16([16]byte(b[8:24]))
	p.Dst = netip.AddrFrom16([16]byte(b[24:40]))
	next, off := b[6], 40
	for {
		switch next {
		case ip6HopByHop, ip6Routing, ip6DestOpts:
			if len(b) < off+2 {
				p.Proto = next
				return true
			}
			next, off = b[off], off+8+int(b[off+1])*8
			continue
		case ip6Fragment:
			if len(b) < off+8 {
				p.Proto = next
				return true
			}
			later := binary.BigEndian.Uint16(b[off+2:])&0xfff8 != 0
			next, off = b[off], off+8
			if later {
				p.Proto = next
				return true
			}
			continue
		}
		break
	}
	p.Proto = next
	if (p.Proto == unix.IPPROTO_TCP || p.Proto == unix.IPPROTO_UDP) && len(b) >= off+4 {
		p.SrcPort = binary.BigEndian.Uint16(b[off:])
		p.DstPort = binary.BigEndian.Uint16(b[off+2:])
	}
	return true
}

func parseIPv4(b []byte, p *Packet) bool {
	if len(b) < 20 || b[0]>>4 != 4 {
		return false
	}
	ihl := int(b[0]&0x0f) * 4
	p.Proto = b[9]
	p.Src = netip.AddrFrom4([4]byte(b[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	if (p.Proto == unix.IPPROTO_TCP || p.Proto == unix.IPPROTO_UDP) && len(b) >= ihl+4 {
		p.SrcPort = binary.BigEndian.Uint16(b[ihl:])
		p.DstPort = binary.BigEndian.Uint16(b[ihl+2:])
	}
	return true
}
