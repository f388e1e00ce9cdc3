package wireguard

import (
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/nstest"
)

// simNodes is the size of the simulated cluster. Its nodes' underlay
// addresses are TEST-NET-1 (192.0.2.0/24) and the namespace has no route
// there, so no handshake the device starts towards them leaves it.
const simNodes = 1000

// TestReconcilerAppliesOnlyWhatChanged runs the reconciler on a real
// device (wireguard-go on a TUN here) in a namespace with 1 000 simulated
// peers: after the first full sync, a node's new block, a key copied onto
// a second node, and nodes' deletions each set or remove only those
// nodes' peers and routes; a full resync then finds nothing to repair (the
// incremental path left the kernel as a full sync would), and a route
// deleted behind Skein's back is repaired by the next resync.
func TestReconcilerAppliesOnlyWhatChanged(t *testing.T) {
	ns := nstest.New(t)
	pfx := netip.MustParsePrefix
	pools := []netip.Prefix{pfx("10.0.0.0/8")}
	self := netip.MustParseAddr("10.0.0.1")
	pl, nodes := simulated(t, simNodes+1)
	dir := t.TempDir()
	var (
		dev Device
		r   *Reconciler
	)
	if err := ns.Do(func() error {
		var err error
		if dev, err = Open(Config{Name: "skein.wg", MTU: 1420, Addr: self}); err != nil {
			return err
		}
		priv, err := RotateKey(filepath.Join(dir, "self"))
		if err != nil {
			return err
		}
		return dev.SetKey(priv, 51822)
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dev.Close(false) })
	r = NewReconciler(dev, pools, []netip.Addr{self}, time.Hour, nil)

	// step syncs in the namespace and returns what the sync changed.
	step := func(what string, full bool) Stats {
		t.Helper()
		before := r.Stats()
		if err := ns.Do(func() error { r.sync(full); return nil }); err != nil {
			t.Fatal(err)
		}
		after := r.Stats()
		if after.LastError != "" {
			t.Fatalf("%s: sync failed: %s", what, after.LastError)
		}
		return Stats{PeerOps: after.PeerOps - before.PeerOps, RouteOps: after.RouteOps - before.RouteOps,
			Full: after.Full - before.Full, Repairs: after.Repairs - before.Repairs}
	}
	expect := func(what string, got Stats, peers, routes int) {
		t.Helper()
		if got.PeerOps != peers || got.RouteOps != routes {
			t.Errorf("%s: %d peer and %d route changes, want %d and %d", what, got.PeerOps, got.RouteOps, peers, routes)
		}
	}
	update := func(names []string) { r.Update(pl.Changes(names)) }

	r.Reset(pl.Entries())
	got := step("first sync", false)
	if got.Full != 1 {
		t.Errorf("first sync was not a full one: %+v", got)
	}
	expect("first sync", got, simNodes, simNodes+1) // every peer, its block, the pool
	checkKernel(t, ns, dev, pl, pools)

	n := nodes[500]
	n.Blocks = append(slices.Clone(n.Blocks), pfx("10.250.0.0/26"))
	update(pl.Set(n))
	got = step("n500's new block", false)
	expect("n500's new block", got, 1, 1)
	if got.Full != 0 {
		t.Errorf("a one-node change ran a full sync")
	}

	copied := nodes[7]
	copied.Key = nodes[9].Key
	update(pl.Set(copied))
	expect("n7 takes n9's key", step("n7 takes n9's key", false), 2, 2) // both peers out, their blocks unreachable

	update(pl.Delete("n3"))
	expect("n3 deleted", step("n3 deleted", false), 1, 1)
	checkKernel(t, ns, dev, pl, pools)

	// n9 goes: its unreachable route with it, and n7, its key its own
	// again, is a peer once more.
	update(pl.Delete("n9"))
	expect("n9 deleted", step("n9 deleted", false), 1, 2)
	checkKernel(t, ns, dev, pl, pools)

	got = step("full resync", true)
	expect("full resync after the changes", got, 0, 0)
	if got.Repairs != 0 {
		t.Errorf("full resync repaired %d routes the incremental syncs left wrong", got.Repairs)
	}

	drifted := nodes[600].Blocks[0]
	if err := ns.Do(func() error {
		l, err := netlink.LinkByName("skein.wg")
		if err != nil {
			return err
		}
		return netlink.RouteDel(&netlink.Route{Dst: netipNet(drifted), LinkIndex: l.Attrs().Index, Scope: netlink.SCOPE_LINK})
	}); err != nil {
		t.Fatal(err)
	}
	if got = step("resync after a deleted route", true); got.Repairs != 1 {
		t.Errorf("resync after %s was deleted: %d repairs, want 1", drifted, got.Repairs)
	}
	checkKernel(t, ns, dev, pl, pools)
}

// checkKernel compares the device's peers and Skein's routes with the
// planner's entries.
func checkKernel(t *testing.T, ns *nstest.NS, dev Device, pl *Planner, pools []netip.Prefix) {
	t.Helper()
	p := PlanOf(pl.Entries())
	stats, err := dev.Peers()
	if err != nil {
		t.Fatal(err)
	}
	have := map[Key][]netip.Prefix{}
	for _, s := range stats {
		a := slices.Clone(s.AllowedIPs)
		slices.SortFunc(a, comparePrefix)
		have[s.PublicKey] = a
	}
	if len(have) != len(p.Peers) {
		t.Errorf("device has %d peers, plan %d", len(have), len(p.Peers))
	}
	for _, pe := range p.Peers {
		if a, ok := have[pe.PublicKey]; !ok || !slices.Equal(a, pe.AllowedIPs) {
			t.Errorf("peer %s: device allows %v, plan %v", pe.Node, a, pe.AllowedIPs)
		}
	}
	var routes []netlink.Route
	if err := ns.Do(func() (err error) {
		routes, err = netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: api.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	tunnel, unreachable := map[netip.Prefix]bool{}, map[netip.Prefix]bool{}
	for _, rt := range routes {
		d, _ := netipPrefix(*rt.Dst)
		if rt.Type == unix.RTN_UNREACHABLE {
			unreachable[d] = true
		} else {
			tunnel[d] = true
		}
	}
	if len(tunnel) != len(p.Tunnel) {
		t.Errorf("%d tunnel routes, plan %d", len(tunnel), len(p.Tunnel))
	}
	for _, b := range p.Tunnel {
		if !tunnel[b] {
			t.Errorf("no tunnel route for %s", b)
		}
	}
	if len(unreachable) != len(p.Blocked)+len(pools) {
		t.Errorf("%d unreachable routes, want %d blocked blocks and %d pools", len(unreachable), len(p.Blocked), len(pools))
	}
	for _, b := range p.Blocked {
		if !unreachable[b.Block] {
			t.Errorf("no unreachable route for %s (%s: %s)", b.Block, b.Node, b.Reason)
		}
	}
}
