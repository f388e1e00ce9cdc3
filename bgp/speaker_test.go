package bgp

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// sessionTimeout is generous: gobgp waits 1-2 s before its first connect
// and 5 s after a session drops.
const sessionTimeout = 20 * time.Second

// mesh starts nodes peering with every other one (each gets the full list,
// itself included, as an agent would pass it).
func mesh(t *testing.T, nodes ...*node) {
	t.Helper()
	var peers []Peer
	for _, n := range nodes {
		peers = append(peers, n.peer())
	}
	for _, n := range nodes {
		n.start(t)
	}
	for i, n := range nodes {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i + 1), 0}), 24)
		n.s.setLocal([]netip.Prefix{p})
		_ = n.s.setAdvertised([]netip.Prefix{p}, n.addr, netip.Addr{})
		if err := n.s.setPeers(peers); err != nil {
			t.Fatalf("setPeers(%s) = %v", n.name, err)
		}
	}
}

func TestMeshLearnsAndWithdraws(t *testing.T) {
	integration(t, "")
	a, b, c := newNode(t, "a", "127.1.0.1"), newNode(t, "b", "127.1.0.2"), newNode(t, "c", "127.1.0.3")
	c.cfg.DisableGracefulRestart = true // its stop must withdraw at once
	mesh(t, a, b, c)

	want := map[*node][]string{
		a: {"10.1.2.0/24 via 127.1.0.2", "10.1.3.0/24 via 127.1.0.3"},
		b: {"10.1.1.0/24 via 127.1.0.1", "10.1.3.0/24 via 127.1.0.3"},
		c: {"10.1.1.0/24 via 127.1.0.1", "10.1.2.0/24 via 127.1.0.2"},
	}
	for n, w := range want {
		waitFor(t, sessionTimeout, n.name+" learns the mesh", func() bool { return cmp.Equal(w, n.dp.lines()) })
	}

	d := a.s.Debug()
	if !d.Running || d.ASN != testASN || len(d.Neighbors) != 2 {
		t.Errorf("a.Debug() = running %v asn %d, %d neighbours; want running, %d, 2 (self filtered out)", d.Running, d.ASN, len(d.Neighbors), testASN)
	}
	waitFor(t, sessionTimeout, "a's counters", func() bool {
		nb := a.neighbor("b")
		return nb.State == "Established" && nb.Received == 1 && nb.Accepted == 1 && nb.Advertised == 1 && nb.Uptime != ""
	})
	if d := cmp.Diff(want[a], a.s.Debug().Routes); d != "" {
		t.Errorf("a.Debug().Routes mismatch (-want +got):\n%s", d)
	}

	// b withdraws its block, then advertises two.
	_ = b.s.setAdvertised(nil, b.addr, netip.Addr{})
	waitFor(t, sessionTimeout, "a drops b's withdrawn block", func() bool { return !a.dp.has("10.1.2.0/24 via 127.1.0.2") })
	_ = b.s.setAdvertised([]netip.Prefix{pfx("10.1.2.0/24"), pfx("10.1.20.0/24")}, b.addr, netip.Addr{})
	waitFor(t, sessionTimeout, "c learns b's new blocks", func() bool {
		return c.dp.has("10.1.2.0/24 via 127.1.0.2") && c.dp.has("10.1.20.0/24 via 127.1.0.2")
	})

	// c stops without graceful restart: a and b drop its block at once.
	c.stop()
	for _, n := range []*node{a, b} {
		waitFor(t, 5*time.Second, n.name+" drops stopped c's block", func() bool { return !n.dp.has("10.1.3.0/24 via 127.1.0.3") })
	}
	waitFor(t, sessionTimeout, "a sees c down", func() bool { return a.neighbor("c").State != "Established" })
	if a.log.count("peer down", "ip=127.1.0.3") != 1 {
		t.Errorf("a logged %d 'peer down' lines for c, want 1:\n%s", a.log.count("peer down", "ip=127.1.0.3"), strings.Join(a.log.all(), "\n"))
	}
	// c left its kernel routes in place.
	if d := cmp.Diff([]string{"10.1.1.0/24 via 127.1.0.1", "10.1.2.0/24 via 127.1.0.2", "10.1.20.0/24 via 127.1.0.2"}, c.dp.lines()); d != "" {
		t.Errorf("c's routes after stop mismatch (-want +got):\n%s", d)
	}

	// Removing a peer withdraws its routes on both sides.
	a.s.setPeers([]Peer{c.peer()}) //nolint:errcheck // valid input
	waitFor(t, 5*time.Second, "a drops b's blocks after removing b", func() bool { return len(a.dp.lines()) == 0 })
	waitFor(t, 5*time.Second, "b drops a's block after a removed it", func() bool { return !b.dp.has("10.1.1.0/24 via 127.1.0.1") })
}

func TestGracefulRestartKeepsRoutesForRestartTime(t *testing.T) {
	integration(t, raceGR)
	a, b := newNode(t, "a", "127.1.1.1"), newNode(t, "b", "127.1.1.2")
	b.cfg.RestartTime = 3 * time.Second // what a keeps b's routes for
	mesh(t, a, b)
	waitFor(t, sessionTimeout, "a learns b", func() bool { return a.dp.has("10.1.2.0/24 via 127.1.1.2") })

	stopped := time.Now()
	b.stop()
	waitFor(t, 15*time.Second, "a drops b's block after the restart time", func() bool { return !a.dp.has("10.1.2.0/24 via 127.1.1.2") })
	dels := a.dp.deletes(pfx("10.1.2.0/24"))
	if len(dels) != 1 {
		t.Fatalf("a deleted b's block %d times, want 1", len(dels))
	}
	if kept := dels[0].At.Sub(stopped); kept < 2500*time.Millisecond {
		t.Errorf("a kept b's block %s after b stopped, want about the 3s restart time", kept)
	}
	if nb := a.neighbor("b"); nb.State == "Established" || nb.LastError == "" {
		t.Errorf("a's view of b = %+v, want not established with a last error", nb)
	}
	if got := b.dp.lines(); len(got) != 1 {
		t.Errorf("b's kernel routes after a graceful stop = %v, want a's block kept", got)
	}
}

func TestGracefulRestartLosesNoRoute(t *testing.T) {
	integration(t, raceStart)
	a, b := newNode(t, "a", "127.1.2.1"), newNode(t, "b", "127.1.2.2")
	mesh(t, a, b)
	waitFor(t, sessionTimeout, "a learns b", func() bool { return a.dp.has("10.1.2.0/24 via 127.1.2.2") })
	waitFor(t, sessionTimeout, "b learns a", func() bool { return b.dp.has("10.1.1.0/24 via 127.1.2.1") })

	b.stop()
	// What the previous run of b left in the kernel, plus a stale route of
	// a peer that is gone.
	b.dp.do("add", Route{Dst: pfx("10.99.0.0/24"), Gw: netip.MustParseAddr("127.1.2.9")}) //nolint:errcheck // fake

	b2 := &node{name: "b", addr: b.addr, port: b.port, cfg: b.cfg, dp: b.dp, log: newLogRecorder(t.Output())}
	b2.start(t)
	b2.s.setLocal([]netip.Prefix{pfx("10.1.2.0/24")})
	_ = b2.s.setAdvertised([]netip.Prefix{pfx("10.1.2.0/24")}, b2.addr, netip.Addr{})
	if err := b2.s.setPeers([]Peer{a.peer()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "restarted b syncs", func() bool { return b2.s.Debug().Syncing })
	waitFor(t, sessionTimeout, "restarted b re-syncs", func() bool { return !b2.s.Debug().Syncing })
	waitFor(t, 5*time.Second, "restarted b removes the stale route", func() bool { return !b2.dp.has("10.99.0.0/24 via 127.1.2.9") })
	if !b2.dp.has("10.1.1.0/24 via 127.1.2.1") {
		t.Errorf("restarted b removed a's block with the stale routes: %v", b2.dp.lines())
	}
	if nb := b2.neighbor("a"); nb.State != "Established" {
		t.Errorf("restarted b's session to a: %s, want Established", nb.State)
	}
	if dels := a.dp.deletes(pfx("10.1.2.0/24")); len(dels) != 0 {
		t.Errorf("a deleted b's block during b's restart: %+v", dels)
	}
	if dels := b.dp.deletes(pfx("10.1.1.0/24")); len(dels) != 0 {
		t.Errorf("b deleted a's block across its restart: %+v", dels)
	}
	if !a.dp.has("10.1.2.0/24 via 127.1.2.2") || !b2.dp.has("10.1.1.0/24 via 127.1.2.1") {
		t.Errorf("routes after restart: a %v, b %v", a.dp.lines(), b2.dp.lines())
	}
}

func TestRouteReflector(t *testing.T) {
	integration(t, "")
	rr, c1, c2 := newNode(t, "rr", "127.1.3.1"), newNode(t, "c1", "127.1.3.2"), newNode(t, "c2", "127.1.3.3")
	rr.cfg.RouteReflector = &RRConfig{ClusterID: netip.MustParseAddr("1.1.1.1")}
	for _, n := range []*node{rr, c1, c2} {
		n.start(t)
	}
	for i, n := range []*node{rr, c1, c2} {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 3, byte(i), 0}), 24)
		n.s.setLocal([]netip.Prefix{p})
		_ = n.s.setAdvertised([]netip.Prefix{p}, n.addr, netip.Addr{})
	}
	client := func(n *node) Peer { p := n.peer(); p.RouteReflectorClient = true; return p }
	if err := rr.s.setPeers([]Peer{client(c1), client(c2)}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*node{c1, c2} {
		if err := c.s.setPeers([]Peer{rr.peer()}); err != nil { // no session between the clients
			t.Fatal(err)
		}
	}
	want := map[*node][]string{
		rr: {"10.3.1.0/24 via 127.1.3.2", "10.3.2.0/24 via 127.1.3.3"},
		c1: {"10.3.0.0/24 via 127.1.3.1", "10.3.2.0/24 via 127.1.3.3"},
		c2: {"10.3.0.0/24 via 127.1.3.1", "10.3.1.0/24 via 127.1.3.2"},
	}
	for n, w := range want {
		waitFor(t, sessionTimeout, n.name+" learns through the reflector", func() bool { return cmp.Equal(w, n.dp.lines()) })
	}
	if d := rr.s.Debug(); d.ClusterID != netip.MustParseAddr("1.1.1.1") || !d.Neighbors[0].RouteReflectorClient {
		t.Errorf("rr.Debug() cluster %s, neighbours %+v", d.ClusterID, d.Neighbors)
	}
}

func TestLocalOverlapNotInstalledLoggedOnce(t *testing.T) {
	integration(t, "")
	a, b := newNode(t, "a", "127.1.4.1"), newNode(t, "b", "127.1.4.2")
	mesh(t, a, b) // a: 10.1.1.0/24 local
	_ = b.s.setAdvertised([]netip.Prefix{pfx("10.1.2.0/24"), pfx("10.1.1.0/25")}, b.addr, netip.Addr{})
	waitFor(t, sessionTimeout, "a learns b's block", func() bool { return a.dp.has("10.1.2.0/24 via 127.1.4.2") })
	waitFor(t, sessionTimeout, "a rejects the overlap", func() bool { return len(a.s.Debug().Rejected) == 1 })
	// More syncs with the overlap still there.
	_ = b.s.setAdvertised([]netip.Prefix{pfx("10.1.2.0/24"), pfx("10.1.1.0/25"), pfx("10.1.3.0/24")}, b.addr, netip.Addr{})
	waitFor(t, sessionTimeout, "a learns b's second block", func() bool { return a.dp.has("10.1.3.0/24 via 127.1.4.2") })

	if d := cmp.Diff([]string{"10.1.2.0/24 via 127.1.4.2", "10.1.3.0/24 via 127.1.4.2"}, a.dp.lines()); d != "" {
		t.Errorf("a's routes mismatch (-want +got):\n%s", d)
	}
	wantRej := []Rejection{{Prefix: pfx("10.1.1.0/25"), NextHop: b.addr, Peer: b.addr, Reason: "overlaps local block 10.1.1.0/24"}}
	if d := cmp.Diff(wantRej, a.s.Debug().Rejected, cmp.Comparer(func(x, y netip.Addr) bool { return x == y }), cmp.Comparer(func(x, y netip.Prefix) bool { return x == y })); d != "" {
		t.Errorf("a's rejected mismatch (-want +got):\n%s", d)
	}
	if n := a.log.count("learned route not installed", "10.1.1.0/25"); n != 1 {
		t.Errorf("overlap logged %d times, want once:\n%s", n, strings.Join(a.log.all(), "\n"))
	}
	// b's block moves to a: a stops installing it.
	a.s.setLocal([]netip.Prefix{pfx("10.1.1.0/24"), pfx("10.1.3.0/24")})
	waitFor(t, 5*time.Second, "a removes a route to its new local block", func() bool { return !a.dp.has("10.1.3.0/24 via 127.1.4.2") })
}

// silentListener accepts TCP connections and never says a word.
func silentListener(t *testing.T, addr netip.Addr) int {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().(*net.TCPAddr).Port
}

func TestPeerThatNeverAnswers(t *testing.T) {
	integration(t, "")
	a := newNode(t, "a", "127.1.5.1")
	a.start(t)
	_ = a.s.setAdvertised([]netip.Prefix{pfx("10.1.1.0/24")}, a.addr, netip.Addr{})
	refused := Peer{Name: "refused", Address: netip.MustParseAddr("127.1.5.9"), ASN: testASN, Port: freePort(t, netip.MustParseAddr("127.1.5.9"))}
	silentAddr := netip.MustParseAddr("127.1.5.8")
	silent := Peer{Name: "silent", Address: silentAddr, ASN: 65010, Port: silentListener(t, silentAddr)}
	if err := a.s.setPeers([]Peer{refused, silent}); err != nil {
		t.Fatal(err)
	}
	var first time.Time
	waitFor(t, sessionTimeout, "a connect failure recorded", func() bool {
		first = a.neighbor("refused").LastErrorAt
		return !first.IsZero()
	})
	waitFor(t, sessionTimeout, "a retried connect failure", func() bool { return a.neighbor("refused").LastErrorAt.After(first) })
	nb := a.neighbor("refused")
	if nb.State == "Established" || !strings.Contains(nb.LastError, "connection refused") {
		t.Errorf("refused peer = %+v, want not established, last error 'connection refused'", nb)
	}
	waitFor(t, sessionTimeout, "the silent peer's session opens", func() bool { return a.neighbor("silent").State == "OpenSent" })

	// The debug endpoint shows both, as JSON.
	rec := httptest.NewRecorder()
	a.s.ServeHTTPDebug(rec, httptest.NewRequest(http.MethodGet, "/debug/bgp", nil))
	var d struct {
		Running   bool `json:"running"`
		Neighbors []struct {
			Name, State, LastError string
			Received               *int `json:"prefixesReceived"`
		} `json:"neighbors"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
		t.Fatalf("debug JSON: %v\n%s", err, rec.Body)
	}
	if !d.Running || len(d.Neighbors) != 2 || d.Neighbors[0].Name != "refused" || d.Neighbors[0].Received == nil ||
		d.Neighbors[1].State != "OpenSent" || !strings.Contains(d.Neighbors[0].LastError, "refused") {
		t.Errorf("debug JSON = %s", rec.Body)
	}

	// Bounded logs: start, advertisement, two peers added; no line per retry.
	if n := len(a.log.all()); n > 6 {
		t.Errorf("%d log lines at Info and above, want at most 6:\n%s", n, strings.Join(a.log.all(), "\n"))
	}
}

func TestFlappingPeer(t *testing.T) {
	integration(t, raceStart)
	a, b := newNode(t, "a", "127.1.6.1"), newNode(t, "b", "127.1.6.2")
	b.cfg.DisableGracefulRestart = true
	mesh(t, a, b)
	for i := range 2 {
		waitFor(t, sessionTimeout, "a learns b", func() bool { return a.dp.has("10.1.2.0/24 via 127.1.6.2") })
		b.stop()
		waitFor(t, 5*time.Second, "a drops b", func() bool { return !a.dp.has("10.1.2.0/24 via 127.1.6.2") })
		b = &node{name: "b", addr: b.addr, port: b.port, cfg: b.cfg, dp: b.dp, log: b.log}
		b.start(t)
		_ = b.s.setAdvertised([]netip.Prefix{pfx("10.1.2.0/24")}, b.addr, netip.Addr{})
		if err := b.s.setPeers([]Peer{a.peer()}); err != nil {
			t.Fatal(err)
		}
		t.Logf("flap %d done", i+1)
	}
	waitFor(t, sessionTimeout, "a learns b after the flaps", func() bool { return a.dp.has("10.1.2.0/24 via 127.1.6.2") })
	if n := a.log.count("peer established", "ip=127.1.6.2"); n != 3 {
		t.Errorf("a logged %d 'peer established' for b, want 3", n)
	}
	if n := len(a.dp.deletes(pfx("10.1.2.0/24"))); n != 2 {
		t.Errorf("a deleted b's block %d times, want 2", n)
	}
}

func TestSetPeersRejectsDuplicates(t *testing.T) {
	t.Parallel()
	s, err := New(Config{RouterID: netip.MustParseAddr("127.1.7.1"), ASN: 64512, Dataplane: newFakeDataplane()})
	if err != nil {
		t.Fatal(err)
	}
	p := func(name, addr string) Peer { return Peer{Name: name, Address: netip.MustParseAddr(addr), ASN: 64512} }
	err = s.setPeers([]Peer{p("n1", "127.1.7.2"), p("n1", "127.1.7.3"), p("n2", "127.1.7.2"), p("n3", "127.1.7.4")})
	if !errors.Is(err, ErrDuplicatePeer) {
		t.Fatalf("setPeers() = %v, want ErrDuplicatePeer", err)
	}
	for _, s := range []string{`"n1": duplicate peer name`, `"n2": duplicate peer address 127.1.7.2 (also peer "n1")`} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("setPeers() error %q does not mention %q", err, s)
		}
	}
	var names []string
	for _, n := range s.Debug().Neighbors {
		names = append(names, n.Name+"="+n.State)
	}
	if d := cmp.Diff([]string{"n1=Stopped", "n3=Stopped"}, names); d != "" {
		t.Errorf("peers kept mismatch (-want +got):\n%s", d)
	}
}

func TestRunTwice(t *testing.T) {
	integration(t, "")
	n := newNode(t, "a", "127.1.8.1")
	n.start(t)
	waitFor(t, 5*time.Second, "the first Run", func() bool { return n.s.Debug().Running })
	if err := n.s.Run(t.Context()); err == nil {
		t.Error("second Run() = nil, want error")
	}
}

func TestRunFailsWhenPortTaken(t *testing.T) {
	integration(t, "")
	addr := netip.MustParseAddr("127.1.9.1")
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, err := New(Config{RouterID: addr, ASN: 64512, ListenPort: l.Addr().(*net.TCPAddr).Port, Dataplane: newFakeDataplane()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("Run() on a taken port = %v, want 'address already in use'", err)
	}
}
