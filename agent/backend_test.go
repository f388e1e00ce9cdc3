package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
	"github.com/skeinnet/skein/vxlan"
	"github.com/skeinnet/skein/wireguard"
)

// walker makes random deltas over a small cluster so that changes collide
// often: nodes come, go, move address, lose their VTEP and gain or lose the
// route-reflector label; blocks move between nodes; BGP peers appear,
// retarget and vanish, some undecodable. Each delta touches a key at most
// once, as one etcd revision does.
type walker struct {
	r    *rand.Rand
	snap store.Snapshot
	rev  int64
}

func newWalker(seed uint64) *walker {
	return &walker{r: rand.New(rand.NewPCG(seed, 7)), snap: store.Snapshot{
		Nodes: map[string]api.Node{}, Blocks: map[netip.Prefix]api.Block{}, Other: map[string][]byte{},
		Endpoints: map[string]api.Endpoint{}, Namespaces: map[string]api.Namespace{}, Alive: map[string]bool{},
	}}
}

func (w *walker) nodeName() string { return fmt.Sprintf("n%d", w.r.IntN(6)) }

func (w *walker) node(name string) api.Node {
	id := name[1]
	n := api.Node{Name: name, UnderlayIP: netip.AddrFrom4([4]byte{10, 0, byte(w.r.IntN(3)), id})}
	if w.r.IntN(5) > 0 {
		n.VTEPIP = netip.AddrFrom4([4]byte{10, 244, id, 0})
		n.VTEPMAC = api.MAC(net.HardwareAddr{2, 0, 0, 0, byte(w.r.IntN(2)), id})
	}
	if w.r.IntN(3) == 0 {
		n.Labels = map[string]string{api.RouteReflectorLabel: ""}
	}
	if w.r.IntN(8) == 0 {
		n.UnderlayIP = netip.Addr{}
	}
	// One of three WireGuard keys or none: nodes share keys now and then.
	if k := w.r.IntN(4); k > 0 {
		n.WireGuardKey = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{byte(k)}, 32))
	}
	return n
}

// step returns one random delta, applied to w.snap.
func (w *walker) step() store.Delta {
	w.rev++
	d := store.Delta{Rev: w.rev}
	seen := map[string]bool{}
	for range w.r.IntN(4) + 1 {
		switch w.r.IntN(3) {
		case 0:
			name := w.nodeName()
			if seen["node/"+name] {
				continue
			}
			seen["node/"+name] = true
			c := store.Change[api.Node]{Key: name}
			if o, ok := w.snap.Nodes[name]; ok {
				c.Old = &o
			}
			if c.Old == nil || w.r.IntN(3) > 0 {
				n := w.node(name)
				c.New = &n
			}
			d.Nodes = append(d.Nodes, c)
		case 1:
			cidr := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(w.r.IntN(8)), 64}), 26)
			if seen["block/"+cidr.String()] {
				continue
			}
			seen["block/"+cidr.String()] = true
			c := store.Change[api.Block]{Key: cidr.String()}
			if o, ok := w.snap.Blocks[cidr]; ok {
				c.Old = &o
			}
			if c.Old == nil || w.r.IntN(2) == 0 {
				c.New = &api.Block{CIDR: cidr, Node: w.nodeName()}
			}
			d.Blocks = append(d.Blocks, c)
		default:
			key := fmt.Sprintf("bgppeers/p%d", w.r.IntN(3))
			if seen[key] {
				continue
			}
			seen[key] = true
			c := store.Change[[]byte]{Key: key}
			if o, ok := w.snap.Other[key]; ok {
				c.Old = &o
			}
			if c.Old == nil || w.r.IntN(2) == 0 {
				raw := []byte("{not json")
				if w.r.IntN(5) > 0 {
					p := api.BGPPeer{Name: key[len("bgppeers/"):], PeerIP: netip.AddrFrom4([4]byte{192, 0, 2, byte(w.r.IntN(3) + 1)}), ASN: 65000}
					if w.r.IntN(2) == 0 {
						p.Node = w.nodeName()
					}
					raw, _ = json.Marshal(p)
				}
				c.New = &raw
			}
			d.Other = append(d.Other, c)
		}
	}
	w.snap.Apply(d)
	return d
}

// TestBackendPlannersEqualFullPlan is the equivalence the incremental
// backends rest on: after every random delta, what the per-change planners
// hold equals a plan made from scratch of the whole cluster (the resync
// path), for the VXLAN overlay, for BGP's peers in both BGP topologies,
// and for the WireGuard tunnel (keys shared now and then).
func TestBackendPlannersEqualFullPlan(t *testing.T) {
	for seed := range uint64(10) {
		direct := seed%2 == 1 // odd seeds route same-subnet peers directly
		t.Run(fmt.Sprint("seed", seed, "direct", direct), func(t *testing.T) {
			w := newWalker(seed)
			self := "n0"
			underlay := onLink{netip.MustParsePrefix("10.0.0.0/24")}
			cfg := vxlan.Config{Device: api.VXLANDevice, VNI: 1, Port: 4789, UnderlayIP: netip.MustParseAddr("10.0.0.48"), MTU: 1450,
				UnderlayIfIndex: 2, DirectRouting: direct}
			rec, err := vxlan.NewReconciler(vxlan.ReconcilerConfig{Dataplane: newMemDP()})
			if err != nil {
				t.Fatal(err)
			}
			view := func(fn func(store.Snapshot)) { fn(w.snap) }
			vx := newVXLANBackend(self, underlay, cfg, rec, view, slog.New(slog.DiscardHandler))
			vx.reset(w.snap)
			mesh := api.Cluster{BGP: &api.BGPConfig{ASN: 64512, NodeMesh: true}}
			rr := api.Cluster{BGP: &api.BGPConfig{ASN: 64512}}
			meshPeers, rrPeers := newBGPPeers(self, mesh, w.snap), newBGPPeers(self, rr, w.snap)
			wg := &wgBackend{self: self, port: 51822, log: slog.New(slog.DiscardHandler),
				rec: wireguard.NewReconciler(nil, nil, nil, time.Hour, nil)} // never run: only its plan is compared
			wg.reset(w.snap)
			directSeen := 0 // steps whose plan had a direct route
			for step := range 200 {
				d := w.step()
				vx.update(w.snap, d)
				meshPeers.update(w.snap, d)
				rrPeers.update(w.snap, d)
				wg.update(w.snap, d)

				if diff := cmp.Diff(wireguard.Make(self, 51822, wgNodes(w.snap)), wg.rec.Plan(), cmpopts.EquateComparable(netip.Addr{}, netip.AddrPort{}, netip.Prefix{}), cmpopts.EquateEmpty()); diff != "" {
					t.Fatalf("step %d: wireguard plan differs from a full plan (-full +incremental):\n%s", step, diff)
				}

				want := vxlan.Plan(cfg, vxlanPeers(self, underlay, w.snap))
				if diff := cmp.Diff(want.Lines(), vx.plan.State().Lines()); diff != "" {
					t.Fatalf("step %d: vxlan plan differs from a full plan (-full +incremental):\n%s", step, diff)
				}
				for _, r := range want.Routes {
					if r.Direct {
						directSeen++
						break
					}
				}
				for _, c := range []struct {
					name string
					cl   api.Cluster
					p    *bgpPeers
				}{{"mesh", mesh, meshPeers}, {"reflectors", rr, rrPeers}} {
					full, errs := planBGP(self, c.cl, w.snap)
					if diff := cmp.Diff(full, c.p.plan(), cmp.AllowUnexported(bgpPlan{}), cmpopts.EquateComparable(netip.Addr{}), cmpopts.EquateEmpty()); diff != "" {
						t.Fatalf("step %d: bgp %s peers differ from a full plan (-full +incremental):\n%s", step, c.name, diff)
					}
					if diff := cmp.Diff(errs, c.p.errs); diff != "" {
						t.Fatalf("step %d: bgp %s errors differ (-full +incremental):\n%s", step, c.name, diff)
					}
				}
			}
			// With direct routing the walk must reach direct routes, or it
			// proves nothing about them; without, it must never.
			if direct != (directSeen > 0) {
				t.Fatalf("direct routing %v: %d steps planned direct routes", direct, directSeen)
			}
		})
	}
}

// wgNodes is the whole view as the WireGuard planner takes it.
func wgNodes(s store.Snapshot) []wireguard.Node {
	blocks := map[string][]netip.Prefix{}
	for cidr, b := range s.Blocks {
		blocks[b.Node] = append(blocks[b.Node], cidr)
	}
	var out []wireguard.Node
	for name, n := range s.Nodes {
		out = append(out, wireguard.Node{Name: name, Key: n.WireGuardKey, Underlay: n.UnderlayIP, Blocks: blocks[name]})
	}
	return out
}
