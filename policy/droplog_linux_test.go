package policy

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/nstest"
	"github.com/skeinnet/skein/nflog"
)

// TestDropLogPerEndpoint: pods b and c are isolated for ingress by the
// same policy (so by the same chain and log rule). While a floods b with
// denied packets, the few denied packets a sends c are all logged: each
// policed endpoint has its own log limit, and b's flood is held to its
// limit.
func TestDropLogPerEndpoint(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	host := nstest.New(t)
	sysctl(t, host, "/proc/sys/net/ipv4/ip_forward", "1")
	a := plumb(t, host, "sk0000000000a", netip.MustParseAddr("10.99.0.2"))
	b := plumb(t, host, "sk0000000000b", netip.MustParseAddr("10.99.0.3"))
	c := plumb(t, host, "sk0000000000c", netip.MustParseAddr("10.99.0.4"))
	in := withPolicies(t, Input{
		Namespaces: []api.Namespace{{Name: "x"}},
		Endpoints: []api.Endpoint{
			{Namespace: "x", Name: "a", Labels: map[string]string{"pod": "a"}, IPs: []netip.Addr{a.ip}, Node: "h", HostIface: a.iface},
			{Namespace: "x", Name: "b", Labels: map[string]string{"pod": "quiet"}, IPs: []netip.Addr{b.ip}, Node: "h", HostIface: b.iface},
			{Namespace: "x", Name: "c", Labels: map[string]string{"pod": "quiet"}, IPs: []netip.Addr{c.ip}, Node: "h", HostIface: c.iface},
		},
		Node: "h",
	}, `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: x}
spec: {podSelector: {matchLabels: {pod: quiet}}}`)
	r := applyAndListen(t, host, in)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var (
		mu     sync.Mutex
		logged = map[netip.Addr]int{}
	)
	go func() {
		_ = r.Run(ctx, func(p nflog.Packet) {
			mu.Lock()
			logged[p.Dst]++
			mu.Unlock()
		})
	}()

	// The limits the packets add to drop_log are the kernel's doing, not a
	// foreign edit: the agent's drift watch must not see them (or every
	// logged drop would rebuild the table and reset the limits).
	var drifts []string
	wctx, wcancel := context.WithCancel(ctx)
	watched := make(chan error, 1)
	go func() {
		watched <- WatchTable(wctx, host.Fd(), func(kinds []string) {
			mu.Lock()
			drifts = append(drifts, kinds...)
			mu.Unlock()
		})
	}()
	time.Sleep(100 * time.Millisecond) // subscribed before the first packet

	udp := func(dst netip.Addr) net.Conn {
		var conn net.Conn
		if err := a.ns.Do(func() error {
			var err error
			conn, err = net.Dial("udp4", netip.AddrPortFrom(dst, 9).String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	toB, toC := udp(b.ip), udp(c.ip)
	start := time.Now()
	floodEnd := start.Add(1500 * time.Millisecond)
	var flood sync.WaitGroup
	sentB := 0
	flood.Go(func() {
		for time.Now().Before(floodEnd) {
			if _, err := toB.Write([]byte("flood")); err == nil {
				sentB++
			}
		}
	})
	const toCCount = 5
	time.Sleep(300 * time.Millisecond) // b's flood has used up any shared limit by now
	for range toCCount {
		if _, err := toC.Write([]byte("quiet")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	flood.Wait()
	elapsed := time.Since(start)

	// Read until c's lines are in, or a bounded wait.
	var gotB, gotC int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		gotC = logged[c.ip]
		mu.Unlock()
		if gotC >= toCCount {
			break
		}
	}
	time.Sleep(200 * time.Millisecond) // late lines of b's flood
	mu.Lock()
	gotB = logged[b.ip]
	mu.Unlock()
	wcancel()
	if err := <-watched; err != nil {
		t.Errorf("watch table: %v", err)
	}
	mu.Lock()
	if len(drifts) > 0 {
		t.Errorf("logged drops show as foreign table changes: %v", drifts)
	}
	mu.Unlock()
	t.Logf("flood of %d packets to b in %s: %d logged; %d to c: %d logged", sentB, elapsed.Round(time.Millisecond), gotB, toCCount, gotC)
	if sentB < 1000 {
		t.Fatalf("only %d packets flooded to b: not a flood", sentB)
	}
	if gotC != toCCount {
		t.Errorf("c's %d denied packets: %d logged; b's flood starved c's log lines", toCCount, gotC)
	}
	if maxB := dropLogBurst + int(float64(dropLogRate)*(elapsed+time.Second).Seconds()); gotB > maxB || gotB < dropLogBurst {
		t.Errorf("b's flood: %d lines logged, want its burst %d up to %d (the limit)", gotB, dropLogBurst, maxB)
	}
}

// TestDropLogOff: with NoDropLog the table has no log rule (the drops
// stay), nothing reaches the log group, and the applier's counts match the
// kernel's.
func TestDropLogOff(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	host := nstest.New(t)
	sysctl(t, host, "/proc/sys/net/ipv4/ip_forward", "1")
	a := plumb(t, host, "sk0000000000a", netip.MustParseAddr("10.99.0.2"))
	b := plumb(t, host, "sk0000000000b", netip.MustParseAddr("10.99.0.3"))
	serve(t, b.ns, netip.AddrPortFrom(b.ip, 8080))
	in := withPolicies(t, Input{
		Namespaces: []api.Namespace{{Name: "x"}},
		Endpoints: []api.Endpoint{
			{Namespace: "x", Name: "a", Labels: map[string]string{"pod": "a"}, IPs: []netip.Addr{a.ip}, Node: "h", HostIface: a.iface},
			{Namespace: "x", Name: "b", Labels: map[string]string{"pod": "b"}, IPs: []netip.Addr{b.ip}, Node: "h", HostIface: b.iface},
		},
		Node: "h",
	}, `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: x}
spec: {podSelector: {matchLabels: {pod: b}}}`)
	ap := NewApplierWith(ApplierConfig{Conn: newConn(t, host), NoDropLog: true})
	ctx := context.Background()
	if err := ap.Apply(ctx, Compile(in)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	obs, err := ap.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := ap.Stats(); obs.Rules != st.Rules || obs.Sets != st.Sets || obs.Chains != st.Chains {
		t.Errorf("stats %+v, observed %+v", st, obs)
	}
	if text := nftList(t, host); strings.Contains(text, "log prefix") || text == "" {
		t.Errorf("table with the drop log off still logs (or did not list):\n%s", text)
	}

	r, err := nflog.Open(DropLogGroup, host.Fd())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	logged := make(chan nflog.Packet, 16)
	go func() { _ = r.Run(rctx, func(p nflog.Packet) { logged <- p }) }()
	expectBlocked(t, "a to b with the log off", a.ns, netip.Addr{}, netip.AddrPortFrom(b.ip, 8080))
	select {
	case p := <-logged:
		t.Errorf("logged with the drop log off: %+v", p)
	case <-rctx.Done():
	}
}

// TestDropLogIPv6: an IPv6 packet a policy drops is logged (through the
// per-endpoint limit set drop_log6), with the IPv6 destination.
func TestDropLogIPv6(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	host := nstest.New(t)
	sysctl(t, host, "/proc/sys/net/ipv4/ip_forward", "1")
	sysctl(t, host, "/proc/sys/net/ipv6/conf/all/forwarding", "1")
	a := plumb6(t, host, "sk000000007a", netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("fd00:99::2"))
	b := plumb6(t, host, "sk000000007b", netip.MustParseAddr("10.99.0.3"), netip.MustParseAddr("fd00:99::3"))
	in := withPolicies(t, Input{
		Namespaces: []api.Namespace{{Name: "x"}},
		Endpoints: []api.Endpoint{
			{Namespace: "x", Name: "a", IPs: []netip.Addr{a.ip, a.ip6}, Node: "h", HostIface: a.iface},
			{Namespace: "x", Name: "b", Labels: map[string]string{"pod": "quiet"}, IPs: []netip.Addr{b.ip, b.ip6}, Node: "h", HostIface: b.iface},
		},
		Node: "h",
	}, `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: x}
spec: {podSelector: {matchLabels: {pod: quiet}}}`)
	r := applyAndListen(t, host, in)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan nflog.Packet, 16)
	go func() {
		_ = r.Run(ctx, func(p nflog.Packet) {
			select {
			case got <- p:
			default:
			}
		})
	}()
	var conn net.Conn
	if err := a.ns.Do(func() error {
		var err error
		conn, err = net.Dial("udp6", netip.AddrPortFrom(b.ip6, 9).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	// Neighbor discovery may hold the first packets: send until one is
	// logged, bounded by ctx.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		_, _ = conn.Write([]byte("denied"))
		select {
		case p := <-got:
			if p.Dst != b.ip6 {
				continue
			}
			if !strings.Contains(p.Prefix, "isolated") {
				t.Errorf("logged drop to %s has prefix %q, want the isolation rule", p.Dst, p.Prefix)
			}
			return
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("no IPv6 drop to %s logged within 10s", b.ip6)
		}
	}
}

// applyAndListen enforces in's program in host's namespace with the drop
// log on and returns a reader of the drop log's NFLOG group there, closed
// when the test ends.
func applyAndListen(t *testing.T, host *nstest.NS, in Input) *nflog.Reader {
	t.Helper()
	ap := NewApplierWith(ApplierConfig{Conn: newConn(t, host)})
	if err := ap.Apply(context.Background(), Compile(in)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	r, err := nflog.Open(DropLogGroup, host.Fd())
	if err != nil {
		t.Fatalf("open NFLOG group %d: %v", DropLogGroup, err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}
