package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Capture records the frames crossing the lab's underlay bridge, as tcpdump
// on it would see them: an AF_PACKET socket in the underlay namespace with
// the bridge in promiscuous mode, so frames bridged between two hosts are
// seen too, not only those for the bridge itself.
type Capture struct {
	fd   int
	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex
	frames [][]byte
	err    error
}

// captureLimit bounds what a capture keeps (frames beyond are dropped).
const captureLimit = 64 << 20

// CaptureUnderlay starts capturing on the underlay bridge until Stop.
func (l *Lab) CaptureUnderlay(ctx context.Context) (*Capture, error) {
	ns, err := l.NetNS("ul")
	if err != nil {
		return nil, err
	}
	c := &Capture{fd: -1, stop: make(chan struct{}), done: make(chan struct{})}
	err = inNetNS(ns, func() error {
		br, err := net.InterfaceByName(BridgeName)
		if err != nil {
			return err
		}
		proto := htons(unix.ETH_P_ALL)
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		c.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: br.Index}); err != nil {
			return fmt.Errorf("bind to %s: %w", BridgeName, err)
		}
		mr := unix.PacketMreq{Ifindex: int32(br.Index), Type: unix.PACKET_MR_PROMISC}
		if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mr); err != nil {
			return fmt.Errorf("promiscuous %s: %w", BridgeName, err)
		}
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		return nil, fmt.Errorf("capture on %s in %s: %w", BridgeName, ns, err)
	}
	go c.read(ctx)
	return c, nil
}

func (c *Capture) read(ctx context.Context) {
	defer close(c.done)
	buf := make([]byte, 1<<16)
	kept := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.stop:
			return
		default:
		}
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			c.mu.Lock()
			if !errors.Is(err, unix.EBADF) {
				c.err = err
			}
			c.mu.Unlock()
			return
		}
		if kept+n > captureLimit {
			continue
		}
		kept += n
		c.mu.Lock()
		c.frames = append(c.frames, bytes.Clone(buf[:n]))
		c.mu.Unlock()
	}
}

// Stop ends the capture and returns the frames it saw.
func (c *Capture) Stop() ([][]byte, error) {
	close(c.stop) // the reader notices within its 100 ms receive timeout
	<-c.done
	unix.Close(c.fd)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frames, c.err
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
