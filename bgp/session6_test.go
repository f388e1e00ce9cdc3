package bgp

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinnet/skein/api"
)

// TestIPv6Session runs a session over IPv6: a and b peer only with each
// other's IPv6 address (both ::1, the one IPv6 address of the test's
// network namespace, on different ports). The session carries IPv6
// unicast only, so each learns the other's IPv6 block via its IPv6 next
// hop and none of its IPv4 block. c has no IPv6 address: it opens no
// session with its IPv6 peer and says so (fail closed).
func TestIPv6Session(t *testing.T) {
	integration(t, "")
	lo6 := netip.IPv6Loopback()
	a, b, c := newNode(t, "a", "127.1.7.1"), newNode(t, "b", "127.1.7.2"), newNode(t, "c", "127.1.7.3")
	a.cfg.ListenAddr6, b.cfg.ListenAddr6 = lo6, lo6
	nh6 := map[*node]netip.Addr{a: netip.MustParseAddr("fd00:255::1"), b: netip.MustParseAddr("fd00:255::2")}
	blocks := map[*node][]netip.Prefix{
		a: {pfx("10.7.1.0/24"), pfx("fd00:10::/122")},
		b: {pfx("10.7.2.0/24"), pfx("fd00:10::40/122")},
	}
	peer6 := func(n *node) Peer { return Peer{Name: n.name + "6", Address: lo6, ASN: n.cfg.ASN, Port: n.port} }
	for _, n := range []*node{a, b, c} {
		n.start(t)
	}
	other := map[*node]*node{a: b, b: a}
	for _, n := range []*node{a, b} {
		if err := n.s.Set(Desired{Peers: []Peer{peer6(other[n])}, Advertised: blocks[n], NextHop: n.addr, NextHop6: nh6[n], Local: blocks[n]}); err != nil {
			t.Errorf("%s.Set() = %v", n.name, err)
		}
	}
	want := map[*node][]string{
		a: {"fd00:10::40/122 via fd00:255::2"},
		b: {"fd00:10::/122 via fd00:255::1"},
	}
	for n, w := range want {
		waitFor(t, sessionTimeout, n.name+" learns the other's IPv6 block over IPv6", func() bool { return cmp.Equal(w, n.dp.lines()) })
	}
	waitFor(t, sessionTimeout, "a's IPv6 session counts IPv6 only", func() bool {
		nb := a.neighbor("b6")
		return nb.State == api.BGPEstablished && nb.Address == lo6 && nb.Received == 1 && nb.Received6 == 1 &&
			nb.Advertised == 1 && nb.Advertised6 == 1
	})
	if d := a.s.Debug(); d.Listen6 == "" || d.LastError != "" || len(d.Neighbors) != 1 {
		t.Errorf("a.Debug(): listen6 %q, last error %q, %d neighbours; want [::1]:port, none, 1", d.Listen6, d.LastError, len(d.Neighbors))
	}

	err := c.s.Set(Desired{Peers: []Peer{peer6(a)}, Advertised: []netip.Prefix{pfx("10.7.3.0/24")}, NextHop: c.addr})
	if err == nil || !strings.Contains(err.Error(), "a6 (::1)") || !strings.Contains(err.Error(), "UnderlayIP6") {
		t.Errorf("c.Set() = %v, want an error naming the IPv6 peer and the missing UnderlayIP6", err)
	}
	d := c.s.Debug()
	if len(d.Neighbors) != 1 || d.Neighbors[0].Name != "a6" || d.Neighbors[0].State != api.BGPNoSession ||
		!strings.Contains(d.Neighbors[0].LastError, "UnderlayIP6") || !strings.Contains(d.LastError, "a6 (::1)") {
		t.Errorf("c.Debug() neighbours %+v, last error %q; want a6 NoSession naming the missing UnderlayIP6", d.Neighbors, d.LastError)
	}
}

// TestRestartRearmsPeersNotUpYet: a restarted speaker whose session with a
// is up and synced while its other peer (ghost, nothing listening) is not
// up yet keeps that peer restarting. gobgp ends the restart deferral on a's
// End-of-RIB and clears the flag of every neighbour, ghost's too, so that
// ghost's session, once up, would open without the Forwarding State bit
// and its peer would drop this node's kept routes at once; the speaker
// re-adds ghost as restarting. (With a ToR over IPv4 and IPv6, the second
// session to come up lost a route for ~2 ms on half of the restarts.)
func TestRestartRearmsPeersNotUpYet(t *testing.T) {
	integration(t, raceGR)
	a, b := newNode(t, "a", "127.1.9.1"), newNode(t, "b", "127.1.9.2")
	mesh(t, a, b)
	waitFor(t, sessionTimeout, "b learns a", func() bool { return b.dp.has("10.1.1.0/24 via 127.1.9.1") })
	b.stop()

	ghostAddr := netip.MustParseAddr("127.1.9.3")
	ghost := Peer{Name: "ghost", Address: ghostAddr, ASN: testASN, Port: freePort(t, ghostAddr)}
	b2 := &node{name: "b", addr: b.addr, port: b.port, cfg: b.cfg, dp: b.dp, log: newLogRecorder(t.Output())}
	b2.start(t)
	b2.s.setLocal([]netip.Prefix{pfx("10.1.2.0/24")})
	_ = b2.s.setAdvertised([]netip.Prefix{pfx("10.1.2.0/24")}, b2.addr, netip.Addr{})
	if err := b2.s.setPeers([]Peer{a.peer(), ghost}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, sessionTimeout, "restarted b's session with a", func() bool { return b2.neighbor("a").State == "Established" })
	waitFor(t, sessionTimeout, "ghost re-added as restarting", func() bool { return b2.log.count("peer re-added as restarting", "ghost") > 0 })
	waitFor(t, 5*time.Second, "gobgp has ghost restarting", func() bool {
		b2.s.mu.Lock()
		r := b2.s.router
		b2.s.mu.Unlock()
		ns, err := r.neighbors(t.Context())
		if err != nil {
			return false
		}
		for _, n := range ns {
			if n.Address == ghostAddr {
				return n.LocalRestarting
			}
		}
		return false
	})
	if n := b2.log.count("peer re-added as restarting", "ip=127.1.9.1"); n != 0 {
		t.Errorf("a, whose session was up, re-added %d times", n)
	}
	if dels := a.dp.deletes(pfx("10.1.2.0/24")); len(dels) != 0 {
		t.Errorf("a deleted b's block during b's restart: %+v", dels)
	}
}
