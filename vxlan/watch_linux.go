package vxlan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/api"
)

// WatchKernel subscribes to route, neighbour (IPv4 and bridge FDB) and link
// changes in the namespace ns (nil: the caller's) and hands the ones about
// the overlay's objects to fn: routes marked api.RouteProtocol, neighbours
// and FDB entries on the device, and the device itself going away or down.
// It returns when ctx is done, or with an error when a subscription fails
// (the caller restarts it and resyncs: events may have been lost).
//
// This is what makes drift repair immediate: a foreign change to an object
// Skein owns reaches Reconciler.KernelEvent within milliseconds, instead of
// waiting for the periodic resync.
func WatchKernel(ctx context.Context, ns *netns.NsHandle, device string, fn func(Event)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	onErr := func(err error) {
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			// Only the initial link dump can be interrupted (by a link
			// changing meanwhile); its messages still arrive and the live
			// events that follow correct what it missed.
			return
		}
		select {
		case errc <- err:
		default:
		}
	}
	routes := make(chan netlink.RouteUpdate, 256)
	neighs := make(chan netlink.NeighUpdate, 256)
	links := make(chan netlink.LinkUpdate, 64)
	done := ctx.Done()
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{Namespace: ns, ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("subscribe to routes: %w", err)
	}
	if err := netlink.NeighSubscribeWithOptions(neighs, done, netlink.NeighSubscribeOptions{Namespace: ns, ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("subscribe to neighbours: %w", err)
	}
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{Namespace: ns, ErrorCallback: onErr, ListExisting: true}); err != nil {
		return fmt.Errorf("subscribe to links: %w", err)
	}
	index := 0  // of the device, learnt from link events
	up := false // whether the device was last seen up: only up → down is drift
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return fmt.Errorf("kernel watch: %w", err)
		case u, ok := <-routes:
			if !ok {
				return fmt.Errorf("kernel watch: route subscription closed")
			}
			if ev, ok := routeEvent(u); ok {
				fn(ev)
			}
		case u, ok := <-neighs:
			if !ok {
				return fmt.Errorf("kernel watch: neighbour subscription closed")
			}
			if index != 0 && u.LinkIndex != index {
				continue
			}
			if ev, ok := neighEvent(u); ok {
				fn(ev)
			}
		case u, ok := <-links:
			if !ok {
				return fmt.Errorf("kernel watch: link subscription closed")
			}
			if u.Attrs().Name != device {
				continue
			}
			index = u.Attrs().Index
			wasUp := up
			up = u.Header.Type != unix.RTM_DELLINK && u.Attrs().Flags&net.FlagUp != 0
			switch {
			case u.Header.Type == unix.RTM_DELLINK:
				index = 0
				fn(Event{Del: true, LinkGone: true})
			case wasUp && !up:
				fn(Event{LinkDown: true})
			}
		}
	}
}

func routeEvent(u netlink.RouteUpdate) (Event, bool) {
	if u.Protocol != api.RouteProtocol || u.Dst == nil || u.Gw == nil {
		return Event{}, false // not ours, or a container's /32 (no gateway)
	}
	gw, ok := netip.AddrFromSlice(u.Gw)
	if !ok {
		return Event{}, false
	}
	return Event{Del: u.Type == unix.RTM_DELROUTE, Route: &Route{Dst: prefixOf(u.Dst), Gw: gw.Unmap()}}, true
}

func neighEvent(u netlink.NeighUpdate) (Event, bool) {
	ip, ok := netip.AddrFromSlice(u.IP)
	if !ok {
		return Event{}, false
	}
	del := u.Type == unix.RTM_DELNEIGH
	mac := net.HardwareAddr(append([]byte(nil), u.HardwareAddr...))
	if u.Family == unix.AF_BRIDGE {
		if len(mac) != 6 {
			return Event{}, false // an FDB entry is named by its MAC
		}
		return Event{Del: del, FDB: &FDBEntry{MAC: mac, Dst: ip.Unmap()}}, true
	}
	if ip.IsMulticast() {
		return Event{}, false // the kernel's own (IPv6 MLD), never Skein's
	}
	// A neighbour's delete, and its state changes on the way out, come
	// without a link-layer address: the IP names it.
	return Event{Del: del, Neigh: &Neigh{IP: ip.Unmap(), MAC: mac}}, true
}
