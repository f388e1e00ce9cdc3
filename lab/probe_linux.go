package lab

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"
)

// dialIn dials address from inside network namespace ns. The socket is
// created there and keeps living there; the caller's thread never moves.
func dialIn(ctx context.Context, ns, network, address string) (net.Conn, error) {
	var c net.Conn
	err := inNetNS(ns, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s %s from %s: %w", network, address, ns, err)
	}
	return c, nil
}

// listenIn listens on address inside network namespace ns.
func listenIn(ctx context.Context, ns, network, address string) (net.Listener, error) {
	var l net.Listener
	err := inNetNS(ns, func() error {
		var lc net.ListenConfig
		var err error
		l, err = lc.Listen(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen %s %s in %s: %w", network, address, ns, err)
	}
	return l, nil
}

// listenPacketIn opens a packet socket on address inside network namespace ns.
func listenPacketIn(ctx context.Context, ns, network, address string) (net.PacketConn, error) {
	var c net.PacketConn
	err := inNetNS(ns, func() error {
		var lc net.ListenConfig
		var err error
		c, err = lc.ListenPacket(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen %s %s in %s: %w", network, address, ns, err)
	}
	return c, nil
}

// pingIn sends ICMP echo requests from namespace ns to dst every
// pingInterval until a reply arrives or ctx ends (after defaultPingWait when
// ctx has no deadline).
func pingIn(ctx context.Context, ns string, dst netip.Addr) error {
	dst = dst.Unmap()
	network, laddr, reply := "ip4:icmp", "0.0.0.0", byte(icmpEchoReply)
	if dst.Is6() {
		network, laddr, reply = "ip6:ipv6-icmp", "::", icmpv6EchoReply
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultPingWait)
		defer cancel()
	}
	c, err := listenPacketIn(ctx, ns, network, laddr)
	if err != nil {
		return fmt.Errorf("ping %s from %s: %w", dst, ns, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) }) // wakes the reader
	defer stop()

	id := uint16(rand.Uint32())
	to := &net.IPAddr{IP: dst.AsSlice()}
	sctx, cancelSend := context.WithCancel(ctx)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		sendEchoes(sctx, c, to, id, dst.Is6())
	}()
	defer func() { cancelSend(); <-sent }()

	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("ping %s from %s: no reply: %w", dst, ns, ctx.Err())
			}
			return fmt.Errorf("ping %s from %s: read: %w", dst, ns, err)
		}
		ip, ok := from.(*net.IPAddr)
		if !ok {
			continue
		}
		src, _ := netip.AddrFromSlice(ip.IP)
		if src.Unmap() != dst || n < 8 || buf[0] != reply || binary.BigEndian.Uint16(buf[4:]) != id {
			continue
		}
		return nil
	}
}

// sendEchoes sends an echo request every pingInterval until ctx ends. Send
// errors are ignored: an unreachable network while routes converge is what a
// later try may get past, and the reader reports the outcome.
func sendEchoes(ctx context.Context, c net.PacketConn, to net.Addr, id uint16, v6 bool) {
	t := time.NewTicker(pingInterval)
	defer t.Stop()
	for seq := uint16(1); ; seq++ {
		_, _ = c.WriteTo(echoRequest(id, seq, v6), to) // see above
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
