package wireguard

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// applyFull makes the device's peers and Skein's routes exactly want,
// reading both back from the kernel.
func (r *Reconciler) applyFull(want map[string]Entry) (syncCounts, error) {
	var res syncCounts
	p := PlanOf(want)
	// Peers first: a route through the device is only useful once the
	// device knows the peer behind it.
	n, err := syncPeers(r.dev, p.Peers)
	res.peers = n
	if err != nil {
		return res, err
	}
	link, err := r.link()
	if err != nil {
		return res, err
	}
	res.routes, err = applyRoutes(wantRoutes(want, r.pools, link, r.srcs), link)
	return res, err
}

// applyNodes applies the entries of the named nodes only (absent from
// want: the node is gone), from what the last sync applied: peers set,
// routes added or changed, routes gone deleted, peers gone removed, in
// that order, so a route never points at a device without its peer.
func (r *Reconciler) applyNodes(names []string, want map[string]Entry) (syncCounts, error) {
	var res syncCounts
	link, err := r.link()
	if err != nil {
		return res, err
	}
	var set []Peer
	var remove []Key
	setKeys := map[Key]bool{}
	oldRoutes, newRoutes := map[routeKey]*netlink.Route{}, map[routeKey]*netlink.Route{}
	for _, n := range names {
		old, hadOld := r.applied[n]
		e, hasNew := want[n]
		if hasNew && e.Peer != nil && (!hadOld || !old.equal(e)) {
			set = append(set, *e.Peer)
			setKeys[e.Peer.PublicKey] = true
		}
		if hadOld {
			entryRoutes(old, link, r.srcs, oldRoutes)
		}
		if hasNew {
			entryRoutes(e, link, r.srcs, newRoutes)
		}
	}
	for _, n := range names {
		old, hadOld := r.applied[n]
		e, hasNew := want[n]
		if hadOld && old.Peer != nil && !setKeys[old.Peer.PublicKey] && (!hasNew || e.Peer == nil || e.Peer.PublicKey != old.Peer.PublicKey) {
			remove = append(remove, old.Peer.PublicKey)
		}
	}
	if len(set) > 0 {
		if err := r.dev.UpdatePeers(set, nil); err != nil {
			return res, err
		}
		res.peers += len(set)
	}
	for k, rt := range newRoutes {
		if o, ok := oldRoutes[k]; ok && (k.unreachable || sameSrc(*o, rt)) {
			continue
		}
		if err := netlink.RouteReplace(rt); err != nil {
			return res, fmt.Errorf("route %s: %w", k.dst, err)
		}
		res.routes++
	}
	newDst := make(map[netip.Prefix]bool, len(newRoutes))
	for k := range newRoutes {
		newDst[k.dst] = true
	}
	for k, rt := range oldRoutes {
		if newDst[k.dst] {
			continue // replaced above (a block that turned unreachable, or back)
		}
		if err := netlink.RouteDel(rt); err != nil && !errors.Is(err, unix.ESRCH) {
			return res, fmt.Errorf("delete route %s: %w", k.dst, err)
		}
		res.routes++
	}
	if len(remove) > 0 {
		if err := r.dev.UpdatePeers(nil, remove); err != nil {
			return res, err
		}
		res.peers += len(remove)
	}
	return res, nil
}

// link finds the device's interface and sets it up.
func (r *Reconciler) link() (int, error) {
	l, err := netlink.LinkByName(r.dev.Name())
	if err != nil {
		return 0, fmt.Errorf("find %s: %w", r.dev.Name(), err)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(l); err != nil {
			return 0, fmt.Errorf("set %s up: %w", r.dev.Name(), err)
		}
	}
	return l.Attrs().Index, nil
}
