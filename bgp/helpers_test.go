package bgp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDataplane records owned routes and every operation.
type fakeDataplane struct {
	mu      sync.Mutex
	routes  map[netip.Prefix]Route
	foreign map[netip.Prefix]bool // destinations held by someone else
	fail    map[netip.Prefix]error
	ops     []fakeOp
}

type fakeOp struct {
	At   time.Time
	Verb string // add, replace, del
	R    Route
}

func newFakeDataplane() *fakeDataplane {
	return &fakeDataplane{routes: map[netip.Prefix]Route{}, foreign: map[netip.Prefix]bool{}, fail: map[netip.Prefix]error{}}
}

func (f *fakeDataplane) Routes(context.Context) (map[netip.Prefix]Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return cloneRoutes(f.routes), nil
}

func (f *fakeDataplane) do(verb string, r Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[r.Dst]; err != nil {
		return err
	}
	switch verb {
	case "add":
		if f.foreign[r.Dst] {
			return fmt.Errorf("add %s: %w", r, ErrForeignRoute)
		}
		if _, ok := f.routes[r.Dst]; ok {
			return errors.New("fake: add of an existing owned route")
		}
		f.routes[r.Dst] = r
	case "replace":
		f.routes[r.Dst] = r
	case "del":
		delete(f.routes, r.Dst)
	}
	f.ops = append(f.ops, fakeOp{At: time.Now(), Verb: verb, R: r})
	return nil
}

func (f *fakeDataplane) Add(_ context.Context, r Route) error     { return f.do("add", r) }
func (f *fakeDataplane) Replace(_ context.Context, r Route) error { return f.do("replace", r) }
func (f *fakeDataplane) Delete(_ context.Context, r Route) error  { return f.do("del", r) }

// lines returns the routes as sorted "prefix via gw" lines.
func (f *fakeDataplane) lines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.routes {
		out = append(out, r.String())
	}
	slices.Sort(out)
	return out
}

func (f *fakeDataplane) has(r string) bool { return slices.Contains(f.lines(), r) }

// deletes returns the delete operations of prefix p.
func (f *fakeDataplane) deletes(p netip.Prefix) []fakeOp {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakeOp
	for _, op := range f.ops {
		if op.Verb == "del" && op.R.Dst == p {
			out = append(out, op)
		}
	}
	return out
}

func (f *fakeDataplane) opCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.ops)
}

// logRecorder is a slog handler that keeps Info-and-above records and
// forwards them to the test output.
type logRecorder struct {
	level  slog.Level // what is printed
	record slog.Level // what is kept
	out    slog.Handler
	mu     *sync.Mutex
	lines  *[]string
	attrs  []slog.Attr
}

func newLogRecorder(w io.Writer) *logRecorder {
	level := slog.LevelInfo
	if os.Getenv("BGP_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return &logRecorder{
		level:  level,
		record: slog.LevelInfo,
		out:    slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}),
		mu:     &sync.Mutex{},
		lines:  new([]string),
	}
}

func (h *logRecorder) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *logRecorder) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < h.record {
		return h.out.Handle(ctx, r)
	}
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	for _, a := range h.attrs {
		b.WriteString(" " + a.String())
	}
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	h.mu.Lock()
	*h.lines = append(*h.lines, b.String())
	h.mu.Unlock()
	return h.out.Handle(ctx, r)
}

func (h *logRecorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.out = h.out.WithAttrs(attrs)
	c.attrs = append(slices.Clone(h.attrs), attrs...)
	return &c
}

func (h *logRecorder) WithGroup(name string) slog.Handler {
	c := *h
	c.out = h.out.WithGroup(name)
	return &c
}

// count returns how many recorded lines contain every one of subs.
func (h *logRecorder) count(subs ...string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, l := range *h.lines {
		if !slices.ContainsFunc(subs, func(s string) bool { return !strings.Contains(l, s) }) {
			n++
		}
	}
	return n
}

func (h *logRecorder) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(*h.lines)
}

// freePort returns a TCP port free on addr right now.
func freePort(t *testing.T, addr netip.Addr) int {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatalf("find a free port on %s: %v", addr, err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// node is one in-process speaker of a test topology.
type node struct {
	name string
	addr netip.Addr
	port int
	cfg  Config
	dp   *fakeDataplane
	log  *logRecorder
	s    *Speaker
	stop func()
}

const testASN = 4200000001 // a 4-byte ASN

// newNode builds a speaker on addr (a 127/8 address) with a free port,
// test timers and a fake dataplane; edit its cfg before calling start.
func newNode(t *testing.T, name, addr string) *node {
	t.Helper()
	a := netip.MustParseAddr(addr)
	n := &node{name: name, addr: a, port: freePort(t, a), dp: newFakeDataplane(), log: newLogRecorder(t.Output())}
	n.cfg = Config{
		RouterID:       a,
		ASN:            testASN,
		HoldTime:       3 * time.Second,
		KeepAlive:      time.Second,
		ConnectRetry:   time.Second,
		StaleRouteTime: 20 * time.Second,
		Dataplane:      n.dp,
		// See integration: graceful restart triggers a race inside gobgp.
		DisableGracefulRestart: raceEnabled,
	}
	return n
}

// Reasons an integration test cannot run under the race detector. gobgp
// v3 has data races of its own that only show with several servers in one
// process or with graceful restart: every StartBgp writes package-level
// variables (table.SelectionOptions, UseMultiplePaths) that path selection
// in the other servers reads, and ListPath converts paths outside gobgp's
// goroutine while graceful restart marks them stale. skeind runs one server
// per process; the races are gobgp's, not Skein's.
const (
	raceStart = "gobgp v3 races on package globals when a server starts while another one computes routes"
	raceGR    = "gobgp v3 races between ListPath and graceful-restart stale marking"
)

// integration prepares a test that runs gobgp servers. Without the race
// detector it runs in parallel with the others. With it, a test that gives
// a reason (see raceStart, raceGR) skips, and the others run one at a time
// with graceful restart off (newNode) and servers started before any has
// routes (start waits until gobgp runs, which orders the writes).
func integration(t *testing.T, raceReason string) {
	t.Helper()
	switch {
	case raceEnabled && raceReason != "":
		t.Skip(raceReason + "; run without -race")
	case !raceEnabled:
		t.Parallel()
	}
}

// start creates and runs the speaker and waits until gobgp runs; the
// test's cleanup stops it.
func (n *node) start(t *testing.T) {
	t.Helper()
	cfg := n.cfg
	cfg.ListenPort = n.port
	cfg.Dataplane = n.dp
	cfg.Log = slog.New(n.log).With("node", n.name)
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", n.name, err)
	}
	n.s = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	n.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run(%s) = %v", n.name, err)
			}
		})
	}
	t.Cleanup(n.stop)
	if len(n.dp.lines()) == 0 { // else it waits restartDelay first
		waitFor(t, 5*time.Second, n.name+" runs", func() bool { return s.Debug().Running })
	}
}

// peer returns n as a peer of another node.
func (n *node) peer() Peer {
	return Peer{Name: n.name, Address: n.addr, ASN: n.cfg.ASN, Port: n.port}
}

// neighbor returns n's debug view of the peer named name.
func (n *node) neighbor(name string) NeighborState {
	for _, nb := range n.s.Debug().Neighbors {
		if nb.Name == name {
			return nb
		}
	}
	return NeighborState{}
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
