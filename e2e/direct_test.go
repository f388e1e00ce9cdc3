//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
)

// directLabName is the VXLAN direct-routing lab's name, next to the shared lab.
var directLabName = labName + "dr"

// directRoute is a route with Skein's protocol as `ip -j route` shows it.
type directRoute struct {
	Dst     string `json:"dst"`
	Gateway string `json:"gateway"`
	Dev     string `json:"dev"`
}

// hostSkeinRoutes returns a host's IPv4 routes with Skein's protocol and a
// gateway, by destination.
func hostSkeinRoutes(ctx context.Context, l *lab.Lab, host string) (map[string]directRoute, error) {
	return hostSkeinRoutesFamily(ctx, l, host, "-4")
}

// hostSkeinRoutesFamily is hostSkeinRoutes for family "-4" or "-6"; the
// containers' own /32 and /128 routes have no gateway and are left out.
func hostSkeinRoutesFamily(ctx context.Context, l *lab.Lab, host, family string) (map[string]directRoute, error) {
	out, err := l.Exec(ctx, host, "ip", "-j", family, "route", "show", "proto", fmt.Sprint(api.RouteProtocol))
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, out)
	}
	var rs []directRoute
	if err := json.Unmarshal(out, &rs); err != nil {
		return nil, fmt.Errorf("parse ip -j route: %w: %s", err, out)
	}
	m := map[string]directRoute{}
	for _, r := range rs {
		if r.Gateway != "" {
			m[r.Dst] = r
		}
	}
	return m, nil
}

// TestVXLANDirectRouting: a VXLAN cluster with direct routing on, its three
// hosts on one underlay subnet. Every host routes every other host's blocks
// via that host's underlay address on the underlay interface, with no
// neighbour or FDB entry on the VXLAN device for it; every container reaches
// every other; `skein status` and `skein topology` grade each link up with
// kind vxlan-direct;
// a direct route deleted by hand comes back (drift repair on the underlay
// device).
func TestVXLANDirectRouting(t *testing.T) {
	checkDirectLab(t, lab.Config{Name: directLabName, Backend: string(api.BackendVXLAN), VXLANDirectRouting: true, Hosts: 3, ContainersPerHost: 1})
}

// TestVXLANDirectRoutingCrossSubnet: the same with the hosts on two
// underlay subnets behind a router (the lab's ToR, routing the underlay
// only): hosts 1 and 3 share a subnet and route to each other directly,
// host 2 is across the router and stays on the overlay both ways.
func TestVXLANDirectRoutingCrossSubnet(t *testing.T) {
	checkDirectLab(t, lab.Config{Name: labName + "dx", Backend: string(api.BackendVXLAN), VXLANDirectRouting: true,
		ToR: lab.ToRBIRD, Subnets: 2, Hosts: 3, ContainersPerHost: 1})
}

// checkDirectLab brings up cfg's lab and checks that hosts on one subnet
// route to each other directly and hosts on different subnets through the
// overlay, that every container reaches every other, the link kinds in
// `skein status`, and drift repair of a route.
func checkDirectLab(t *testing.T, cfg lab.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	l := upBGPLab(t, cfg)
	cl := labStore(ctx, t, l)
	hosts := l.Hosts()
	subnetOf := map[string]int{}
	for _, h := range hosts {
		subnetOf[h.Name] = h.Subnet
	}
	direct := func(a, b lab.Host) bool { return a.Subnet == b.Subnet }

	// wantRoutes reports what differs from: every other host's blocks via
	// its underlay address on the underlay interface, and nothing else.
	wantRoutes := func() (bool, string) {
		blocks, err := blocksByNode(ctx, cl)
		if err != nil {
			return false, err.Error()
		}
		var bad []string
		for _, self := range hosts {
			got, err := hostSkeinRoutes(ctx, l, self.Name)
			if err != nil {
				return false, err.Error()
			}
			want := map[string]bool{}
			for _, owner := range hosts {
				if owner.Name == self.Name {
					continue
				}
				for _, b := range blocks[owner.Name] {
					want[b.String()] = true
					r := got[b.String()]
					switch {
					case direct(self, owner) && (r.Gateway != owner.UnderlayIP.String() || r.Dev != lab.HostIface):
						bad = append(bad, fmt.Sprintf("%s: %s via %q dev %q, want via %s dev %s", self.Name, b, r.Gateway, r.Dev, owner.UnderlayIP, lab.HostIface))
					case !direct(self, owner) && r.Dev != api.VXLANDevice:
						bad = append(bad, fmt.Sprintf("%s: %s via %q dev %q, want dev %s (other subnet)", self.Name, b, r.Gateway, r.Dev, api.VXLANDevice))
					}
				}
			}
			for dst, r := range got {
				if !want[dst] && r.Dev != api.VXLANDevice { // overlay peers may add a VTEP route
					bad = append(bad, fmt.Sprintf("%s: unexpected route %s via %s dev %s", self.Name, dst, r.Gateway, r.Dev))
				}
			}
		}
		slices.Sort(bad)
		return len(bad) == 0, strings.Join(bad, "\n")
	}
	waitFor(ctx, t, 30*time.Second, "direct routes to every other host's blocks", wantRoutes)

	t.Run("no overlay entries for direct peers", func(t *testing.T) {
		for _, h := range hosts {
			overlayPeers := 0
			directUnderlays := map[string]bool{}
			for _, o := range hosts {
				switch {
				case o.Name == h.Name:
				case direct(h, o):
					directUnderlays[o.UnderlayIP.String()] = true
				default:
					overlayPeers++
				}
			}
			out, err := l.Exec(ctx, h.Name, "ip", "-j", "neigh", "show", "dev", api.VXLANDevice, "nud", "permanent")
			if err != nil {
				t.Fatalf("%s: ip neigh: %v: %s", h.Name, err, out)
			}
			var neighs []json.RawMessage
			if err := json.Unmarshal(out, &neighs); err != nil {
				t.Fatalf("%s: parse ip -j neigh: %v: %s", h.Name, err, out)
			}
			if len(neighs) != overlayPeers {
				t.Errorf("%s: %d neighbours on %s, want %d (one per peer on another subnet): %s", h.Name, len(neighs), api.VXLANDevice, overlayPeers, out)
			}
			out, err = l.Exec(ctx, h.Name, "bridge", "-j", "fdb", "show", "dev", api.VXLANDevice)
			if err != nil {
				t.Fatalf("%s: bridge fdb: %v: %s", h.Name, err, out)
			}
			var fdb []struct {
				Dst string `json:"dst"`
			}
			if err := json.Unmarshal(out, &fdb); err != nil {
				t.Fatalf("%s: parse bridge -j fdb: %v: %s", h.Name, err, out)
			}
			n := 0
			for _, e := range fdb {
				if e.Dst == "" {
					continue
				}
				n++
				if directUnderlays[e.Dst] {
					t.Errorf("%s: FDB entry to %s on %s for a direct peer: %s", h.Name, e.Dst, api.VXLANDevice, out)
				}
			}
			if n != overlayPeers {
				t.Errorf("%s: %d FDB entries on %s, want %d (one per peer on another subnet): %s", h.Name, n, api.VXLANDevice, overlayPeers, out)
			}
		}
	})

	t.Run("connectivity", func(t *testing.T) {
		if cs := l.Containers(); len(cs) != len(hosts) {
			t.Fatalf("%d containers, want one per host: %v", len(cs), cs)
		}
		checkAllPairs(ctx, t, l, l.Containers())
	})

	t.Run("status", func(t *testing.T) {
		// Each host's agent answers on its own loopback: ask from inside
		// each host and read that host's links.
		for _, h := range hosts {
			waitFor(ctx, t, 30*time.Second, h.Name+"'s links up and direct in skein status", func() (bool, string) {
				cmd, err := l.Command(ctx, h.Name, opsBin(), "--etcd-endpoints", l.EtcdUnderlayEndpoints()[0], "status", "-o", "json")
				if err != nil {
					return false, err.Error()
				}
				r := runCmd(t, cmd)
				var rep linkStatusReport
				if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
					return false, fmt.Sprintf("parse: %v\n%v", err, r)
				}
				var bad []string
				for _, n := range rep.Nodes {
					if n.Name != h.Name {
						continue
					}
					if len(n.Links) != len(hosts)-1 {
						bad = append(bad, fmt.Sprintf("%d links, want %d: %v", len(n.Links), len(hosts)-1, r))
					}
					for peer, lk := range n.Links {
						kind := string(api.BackendVXLAN)
						if subnetOf[peer] == h.Subnet {
							kind = api.LinkKindDirect
						}
						if lk.State != api.LinkUp || lk.Kind != kind {
							bad = append(bad, fmt.Sprintf("→ %s: %s %s (%s), want %s %s", peer, lk.Kind, lk.State, lk.Detail, kind, api.LinkUp))
						}
					}
					slices.Sort(bad)
					return len(bad) == 0, strings.Join(bad, "\n")
				}
				return false, "node missing from skein status: " + r.String()
			})
		}
	})

	t.Run("topology", func(t *testing.T) {
		// The link's kind comes from its observed side: from inside a host,
		// that host's. The other side is what that host last published, so
		// the pair is up once every host's status record says so.
		for _, h := range hosts {
			waitFor(ctx, t, 30*time.Second, h.Name+"'s links up with their kind in skein topology", func() (bool, string) {
				cmd, err := l.Command(ctx, h.Name, opsBin(), "--etcd-endpoints", l.EtcdUnderlayEndpoints()[0], "topology", "-o", "json")
				if err != nil {
					return false, err.Error()
				}
				r := runCmd(t, cmd)
				var g linkGraph
				if err := json.Unmarshal([]byte(r.stdout), &g); err != nil {
					return false, fmt.Sprintf("parse skein topology: %v\n%v", err, r)
				}
				var bad []string
				n := 0
				for _, lk := range g.Links {
					peer := lk.To
					switch h.Name {
					case lk.From:
					case lk.To:
						peer = lk.From
					default:
						continue
					}
					n++
					kind := string(api.BackendVXLAN)
					if subnetOf[peer] == h.Subnet {
						kind = api.LinkKindDirect
					}
					if lk.Kind != kind || lk.State != api.LinkUp {
						bad = append(bad, fmt.Sprintf("link to %s is %s %s (%s), want %s %s", peer, lk.Kind, lk.State, lk.Detail, kind, api.LinkUp))
					}
				}
				if n != len(hosts)-1 {
					bad = append(bad, fmt.Sprintf("%d links in skein topology, want %d:\n%v", n, len(hosts)-1, r))
				}
				return len(bad) == 0, strings.Join(bad, "\n")
			})
		}
	})

	t.Run("drift repair", func(t *testing.T) {
		h := hosts[0]
		got, err := hostSkeinRoutes(ctx, l, h.Name)
		if err != nil || len(got) == 0 {
			t.Fatalf("%s: routes %v: %v", h.Name, got, err)
		}
		// A direct route when the host has one: those live on the underlay
		// device, which the watch must cover too.
		var victim directRoute
		for _, r := range got {
			if victim.Dst == "" || r.Dev == lab.HostIface {
				victim = r
			}
		}
		if victim.Dev != lab.HostIface {
			t.Fatalf("%s: no direct route to delete: %v", h.Name, got)
		}
		if out, err := l.Exec(ctx, h.Name, "ip", "route", "del", victim.Dst, "proto", fmt.Sprint(api.RouteProtocol)); err != nil {
			t.Fatalf("%s: delete route %s: %v: %s", h.Name, victim.Dst, err, out)
		}
		waitFor(ctx, t, 30*time.Second, "the deleted direct route back", wantRoutes)
	})
}
