package wireguard

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
)

func (r *Reconciler) apply(p Plan) (int, error) {
	// Peers first: a route through the device is only useful once the
	// device knows the peer behind it.
	if err := r.dev.SetPeers(p.Peers); err != nil {
		return 0, err
	}
	l, err := netlink.LinkByName(r.dev.Name())
	if err != nil {
		return 0, fmt.Errorf("find %s: %w", r.dev.Name(), err)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(l); err != nil {
			return 0, fmt.Errorf("set %s up: %w", r.dev.Name(), err)
		}
	}
	return applyRoutes(wantRoutes(p, r.pools, l.Attrs().Index, r.srcs), l.Attrs().Index)
}
