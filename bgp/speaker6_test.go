package bgp

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestMeshIPv6 runs the IPv6 unicast family over the IPv4 sessions
// (MP-BGP): a and b advertise an IPv4 and an IPv6 block each, the IPv6 one
// with the node's IPv6 underlay address as next hop, and learn the other's
// with that next hop. c has no IPv6 underlay address: it advertises no IPv6
// block, installs no IPv6 route, and says why (fail closed).
func TestMeshIPv6(t *testing.T) {
	integration(t, "")
	a, b, c := newNode(t, "a", "127.1.6.1"), newNode(t, "b", "127.1.6.2"), newNode(t, "c", "127.1.6.3")
	nh6 := map[*node]netip.Addr{a: netip.MustParseAddr("fd00:255::1"), b: netip.MustParseAddr("fd00:255::2")}
	blocks := map[*node][]netip.Prefix{
		a: {pfx("10.6.1.0/24"), pfx("fd00:10::/122")},
		b: {pfx("10.6.2.0/24"), pfx("fd00:10::40/122")},
		c: {pfx("10.6.3.0/24"), pfx("fd00:10::80/122")},
	}
	var peers []Peer
	for _, n := range []*node{a, b, c} {
		peers = append(peers, n.peer())
		n.start(t)
	}
	for _, n := range []*node{a, b, c} {
		err := n.s.Set(Desired{Peers: peers, Advertised: blocks[n], NextHop: n.addr, NextHop6: nh6[n], Local: blocks[n]})
		if n == c {
			if err == nil || !strings.Contains(err.Error(), "fd00:10::80/122") || !strings.Contains(err.Error(), "UnderlayIP6") {
				t.Errorf("c.Set() = %v, want an error naming the IPv6 block and the missing UnderlayIP6", err)
			}
		} else if err != nil {
			t.Errorf("%s.Set() = %v", n.name, err)
		}
	}

	want := map[*node][]string{
		a: {"10.6.2.0/24 via 127.1.6.2", "10.6.3.0/24 via 127.1.6.3", "fd00:10::40/122 via fd00:255::2"},
		b: {"10.6.1.0/24 via 127.1.6.1", "10.6.3.0/24 via 127.1.6.3", "fd00:10::/122 via fd00:255::1"},
		c: {"10.6.1.0/24 via 127.1.6.1", "10.6.2.0/24 via 127.1.6.2"},
	}
	for n, w := range want {
		waitFor(t, sessionTimeout, n.name+" learns the dual-stack mesh", func() bool { return cmp.Equal(w, n.dp.lines()) })
	}
	waitFor(t, sessionTimeout, "c rejects the IPv6 paths", func() bool { return len(c.s.Debug().Rejected) == 2 })
	for _, r := range c.s.Debug().Rejected {
		if !r.Prefix.Addr().Is6() || !strings.Contains(r.Reason, "no IPv6 underlay address") {
			t.Errorf("c rejected %s, want only IPv6 paths for lack of an IPv6 underlay address", r)
		}
	}
	if d := c.s.Debug(); !strings.Contains(d.LastError, "UnderlayIP6") || d.NextHop6.IsValid() {
		t.Errorf("c.Debug() last error %q, next hop6 %s; want the missing UnderlayIP6 named and no IPv6 next hop", d.LastError, d.NextHop6)
	}
	if d := a.s.Debug(); d.NextHop != a.addr || d.NextHop6 != nh6[a] || d.LastError != "" {
		t.Errorf("a.Debug() next hops %s %s, last error %q; want %s %s and none", d.NextHop, d.NextHop6, d.LastError, a.addr, nh6[a])
	}
	waitFor(t, sessionTimeout, "a counts both families of b", func() bool {
		nb := a.neighbor("b")
		return nb.State == "Established" && nb.Received == 2 && nb.Accepted == 2 && nb.Advertised == 2 &&
			nb.Received6 == 1 && nb.Advertised6 == 1
	})

	// b withdraws its IPv6 block; its IPv4 one stays.
	if err := b.s.Set(Desired{Peers: peers, Advertised: blocks[b][:1], NextHop: b.addr, NextHop6: nh6[b], Local: blocks[b]}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, sessionTimeout, "a drops b's withdrawn IPv6 block", func() bool { return !a.dp.has("fd00:10::40/122 via fd00:255::2") })
	if !a.dp.has("10.6.2.0/24 via 127.1.6.2") {
		t.Errorf("a dropped b's IPv4 block with its IPv6 one: %v", a.dp.lines())
	}

	// c gets an IPv6 underlay address: it advertises and installs IPv6.
	nh6c := netip.MustParseAddr("fd00:255::3")
	if err := c.s.Set(Desired{Peers: peers, Advertised: blocks[c], NextHop: c.addr, NextHop6: nh6c, Local: blocks[c]}); err != nil {
		t.Fatalf("c.Set() with an IPv6 next hop = %v", err)
	}
	waitFor(t, sessionTimeout, "a learns c's IPv6 block", func() bool { return a.dp.has("fd00:10::80/122 via fd00:255::3") })
	waitFor(t, sessionTimeout, "c installs a's IPv6 block", func() bool { return c.dp.has("fd00:10::/122 via fd00:255::1") })
	waitFor(t, 5*time.Second, "c's error clears", func() bool { return c.s.Debug().LastError == "" })
}

// TestGracefulRestartIPv6 restarts b: a keeps b's IPv6 route and the new b
// keeps a's, none deleted on either side.
func TestGracefulRestartIPv6(t *testing.T) {
	integration(t, raceStart)
	a, b := newNode(t, "a", "127.1.7.1"), newNode(t, "b", "127.1.7.2")
	nhA, nhB := netip.MustParseAddr("fd00:255::1"), netip.MustParseAddr("fd00:255::2")
	ba := []netip.Prefix{pfx("10.7.1.0/24"), pfx("fd00:10::/122")}
	bb := []netip.Prefix{pfx("10.7.2.0/24"), pfx("fd00:10::40/122")}
	a.start(t)
	b.start(t)
	if err := a.s.Set(Desired{Peers: []Peer{b.peer()}, Advertised: ba, NextHop: a.addr, NextHop6: nhA, Local: ba}); err != nil {
		t.Fatal(err)
	}
	if err := b.s.Set(Desired{Peers: []Peer{a.peer()}, Advertised: bb, NextHop: b.addr, NextHop6: nhB, Local: bb}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, sessionTimeout, "a learns b's IPv6 block", func() bool { return a.dp.has("fd00:10::40/122 via fd00:255::2") })
	waitFor(t, sessionTimeout, "b learns a's IPv6 block", func() bool { return b.dp.has("fd00:10::/122 via fd00:255::1") })

	b.stop()
	b2 := &node{name: "b", addr: b.addr, port: b.port, cfg: b.cfg, dp: b.dp, log: newLogRecorder(t.Output())}
	b2.start(t)
	if err := b2.s.Set(Desired{Peers: []Peer{a.peer()}, Advertised: bb, NextHop: b.addr, NextHop6: nhB, Local: bb}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, sessionTimeout, "restarted b re-syncs", func() bool { return !b2.s.Debug().Syncing })
	for _, p := range []netip.Prefix{pfx("fd00:10::40/122"), pfx("10.7.2.0/24")} {
		if dels := a.dp.deletes(p); len(dels) != 0 {
			t.Errorf("a deleted b's block %s during b's restart: %+v", p, dels)
		}
	}
	for _, p := range []netip.Prefix{pfx("fd00:10::/122"), pfx("10.7.1.0/24")} {
		if dels := b.dp.deletes(p); len(dels) != 0 {
			t.Errorf("b deleted a's block %s across its restart: %+v", p, dels)
		}
	}
	if !a.dp.has("fd00:10::40/122 via fd00:255::2") || !b2.dp.has("fd00:10::/122 via fd00:255::1") {
		t.Errorf("routes after restart: a %v, b %v", a.dp.lines(), b2.dp.lines())
	}
}

// TestAllSyncedWaitsForEveryFamily: a peer that negotiated graceful restart
// for both families is synced only once it sent End-of-RIB for both.
func TestAllSyncedWaitsForEveryFamily(t *testing.T) {
	t.Parallel()
	addr := netip.MustParseAddr("10.0.0.2")
	peers := []Peer{{Name: "p", Address: addr, ASN: testASN}}
	ns := []neighbor{{Address: addr, State: "Established", GR: true, GRFamilies: []family{ipv4Unicast, ipv6Unicast}}}
	eor := map[netip.Addr]map[family]bool{addr: {ipv4Unicast: true}}
	if allSynced(peers, ns, eor) {
		t.Error("allSynced with only the IPv4 End-of-RIB = true, want false (IPv6 routes not re-sent yet)")
	}
	eor[addr][ipv6Unicast] = true
	if !allSynced(peers, ns, eor) {
		t.Error("allSynced with both End-of-RIBs = false, want true")
	}
	ns[0].GRFamilies = []family{ipv4Unicast} // a peer speaking graceful restart for IPv4 only
	delete(eor[addr], ipv6Unicast)
	if !allSynced(peers, ns, eor) {
		t.Error("allSynced for an IPv4-only graceful-restart peer with its End-of-RIB = false, want true")
	}
}
