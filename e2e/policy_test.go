//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
	"github.com/skeinnet/skein/policy"
)

// The policy suite runs on its own dual-stack lab, with the upstream e2e
// model: namespaces x, y, z labelled ns=<name>, pods a, b, c in each
// labelled pod=<name>, spread over three hosts, every pod serving TCP and
// UDP on 80 and 81 with named ports serve-<port>-<proto>, over IPv4 and
// IPv6. Each case applies policies, probes every ordered pair with real
// connections over both families, and checks three things agree cell by
// cell: the truth table written here from the spec, `skein policy matrix
// --family 4|6 -o json` (the compiled program), and the probes (the
// dataplane). A NetworkPolicy selects pods, not addresses, so one truth
// table holds for both families unless a case names addresses (ipBlock,
// networks): then each family has its own.

// polLabName follows the shared lab's name, so runs that rename that one to
// stay apart (say, two sessions on one machine) also get their own policy lab.
var polLabName = labName + "pol"

// The policy lab's pools: one per family.
const (
	polPool4 = "10.244.0.0/16"
	polPool6 = "fd00:10:244::/56"
)

const (
	// polProbeTimeout bounds one probe: a TCP connect, or a UDP send and
	// wait for the echo (with retries inside it).
	polProbeTimeout = time.Second
	// polParallel bounds concurrent probes. Denied probes only wait, so
	// more than the core count is fine; both families go in one pass.
	polParallel = 64
	// polEnforceWait is how long a case waits for the dataplane to agree
	// with the matrix after a change.
	polEnforceWait = 10 * time.Second
	// polSpoofAddr and polSpoofAddr6 are the addresses a pod tries to send
	// from without owning them.
	polSpoofAddr  = "10.99.99.99"
	polSpoofAddr6 = "fd00:99:99::99"
)

var (
	tcp80 = polPort{"TCP", 80}
	tcp81 = polPort{"TCP", 81}
	udp80 = polPort{"UDP", 80}
	udp81 = polPort{"UDP", 81}
	all4  = []polPort{tcp80, tcp81, udp80, udp81}
)

// polPort is a destination protocol and port.
type polPort struct {
	proto string
	port  int
}

func (p polPort) String() string { return fmt.Sprintf("%s/%d", p.proto, p.port) }

// polPod is one pod of the model.
type polPod struct {
	ns, name string
	c        lab.Container
	srv      *polServers
}

func (p *polPod) key() string { return p.ns + "/" + p.name }

// polCell names one probe: fam is the address family, 4 or 6.
type polCell struct {
	from, to string
	pp       polPort
	fam      int
}

// polWant is a truth table written from the spec; traffic from a pod to
// itself is always allowed and never asked.
type polWant func(from, to *polPod, pp polPort) bool

// polSuite is the lab, its pods and the CLI.
type polSuite struct {
	l       *lab.Lab
	bin     string
	podCIDR string // the lab's pools, comma separated
	// dual says the lab is dual-stack: every check, matrix and probe runs
	// over IPv4 and IPv6.
	dual  bool
	pods  []*polPod // x/a, x/b, x/c, y/a, ..., z/c
	byKey map[string]*polPod
	// nextPort hands out UDP source ports, so no probe reuses an earlier
	// probe's 5-tuple (and so its conntrack entry) within the suite.
	nextPort atomic.Uint32
}

func TestPolicy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("policy e2e: needs root to create network namespaces")
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := polSetup(ctx, t)
	t.Logf("policy lab up with 9 dual-stack pods in %s", time.Since(start).Round(time.Millisecond))

	t.Run("NoPolicy", func(t *testing.T) {
		s.check(ctx, t, "no policy", all4, func(_, _ *polPod, _ polPort) bool { return true })
	})
	t.Run("AntiSpoofing", func(t *testing.T) { s.testAntiSpoofing(ctx, t) })
	t.Run("DropsLogged", func(t *testing.T) { s.testDrops(ctx, t) })
	for _, c := range polCases(ctx, s) {
		t.Run(c.name, func(t *testing.T) {
			defer s.deleteAllPolicies(ctx, t)
			s.apply(ctx, t, c.policies)
			want6 := c.want
			if c.want6 != nil {
				want6 = c.want6
			}
			s.checkFamilies(ctx, t, c.name, c.probes, c.want, want6)
			s.expectCaseTraces(ctx, t, c)
			if c.extra != nil {
				c.extra(t)
			}
		})
	}
	t.Run("RelabelPod", func(t *testing.T) { s.testRelabelPod(ctx, t) })
	t.Run("RelabelNamespace", func(t *testing.T) { s.testRelabelNamespace(ctx, t) })
	t.Run("NewPods", func(t *testing.T) { s.testNewPods(ctx, t) })
	t.Run("UpdateReplaces", func(t *testing.T) { s.testUpdateReplaces(ctx, t) })
	t.Run("AgentDown", func(t *testing.T) { s.testAgentDown(ctx, t) })
	t.Run("DeleteRestoresAll", func(t *testing.T) { s.testDelete(ctx, t) })
	t.Run("EstablishedSurvivesDeny", func(t *testing.T) { s.testEstablished(ctx, t) })
	t.Logf("policy suite took %s", time.Since(start).Round(time.Millisecond))
}

// polSetup brings up the lab, labels namespaces, adds the nine pods and
// starts their servers. Everything goes in t.Cleanup, also on failure.
func polSetup(ctx context.Context, t *testing.T) *polSuite {
	t.Helper()
	bin := os.Getenv("SKEIN_BIN")
	if bin == "" {
		wd, _ := os.Getwd()
		bin = filepath.Join(wd, "..", "bin")
	}
	_ = lab.Down(ctx, polLabName, "") // best effort: a crashed earlier run may have left it
	l, err := lab.Up(ctx, lab.Config{
		Name:              polLabName,
		Hosts:             3,
		ContainersPerHost: -1,
		PodCIDR:           polPool4 + "," + polPool6,
		BinDir:            bin,
		Log:               slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("policy lab up: %v", err)
	}
	t.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := l.Down(dctx); err != nil {
			t.Errorf("policy lab down: %v", err)
		}
	})
	s := &polSuite{l: l, bin: filepath.Join(bin, "skein"), podCIDR: l.State().PodCIDR, dual: true, byKey: map[string]*polPod{}}
	s.nextPort.Store(uint32(time.Now().UnixNano() % 40000))

	for _, ns := range []string{"x", "y", "z"} {
		s.mustSkein(ctx, t, "namespace", "label", ns, "ns="+ns)
	}
	hosts := l.Hosts()
	i := 0
	for _, ns := range []string{"x", "y", "z"} {
		for _, name := range []string{"a", "b", "c"} {
			// Pod j of namespace n goes to host (n+j) mod 3: every host has
			// one pod of each namespace and one of each name.
			s.pods = append(s.pods, &polPod{ns: ns, name: name, c: lab.Container{Host: hosts[(i/3+i%3)%3].Name}})
			i++
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(s.pods))
	for i, p := range s.pods {
		wg.Go(func() {
			c, err := l.AddContainer(ctx, p.c.Host, lab.ContainerOpts{
				Name: p.name, Namespace: p.ns, Labels: map[string]string{"pod": p.name}, Ports: polNamedPorts(),
			})
			p.c, errs[i] = c, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("add pods: %v", err)
	}
	for _, p := range s.pods {
		if !p.c.IP.Is4() || !p.c.IP6.Is6() {
			t.Fatalf("pod %s has %v and %v; want an IPv4 and an IPv6 address", p.key(), p.c.IP, p.c.IP6)
		}
		s.byKey[p.key()] = p
		srv, err := polServe(ctx, l, p.c)
		if err != nil {
			t.Fatalf("servers in %s: %v", p.key(), err)
		}
		t.Cleanup(srv.close)
		p.srv = srv
	}
	return s
}

// polNamedPorts are every pod's named ports: serve-80-tcp, serve-80-udp,
// serve-81-tcp, serve-81-udp.
func polNamedPorts() []api.NamedPort {
	var ports []api.NamedPort
	for _, pp := range all4 {
		ports = append(ports, api.NamedPort{Name: fmt.Sprintf("serve-%d-%s", pp.port, strings.ToLower(pp.proto)), Port: pp.port, Protocol: pp.proto})
	}
	return ports
}

// polServers are one pod's TCP and UDP echo servers on 80 and 81.
type polServers struct {
	closers []io.Closer
	mu      sync.Mutex
	from    map[netip.Addr]int // UDP datagrams received, by source
}

func (s *polServers) close() {
	for _, c := range s.closers {
		c.Close()
	}
}

func (s *polServers) udpFrom(a netip.Addr) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.from[a]
}

// polServe starts c's servers on every family c has an address of.
func polServe(ctx context.Context, l *lab.Lab, c lab.Container) (*polServers, error) {
	s := &polServers{from: map[netip.Addr]int{}}
	fams := []int{4}
	if c.IP6.IsValid() {
		fams = append(fams, 6)
	}
	for _, fam := range fams {
		if err := s.serve(ctx, l, c, fam); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// serve starts TCP and UDP echo servers on 80 and 81 of family fam (4 or 6;
// the IPv6 sockets are IPv6-only, next to the IPv4 ones).
func (s *polServers) serve(ctx context.Context, l *lab.Lab, c lab.Container, fam int) error {
	unspec, tcp, udp := netip.IPv4Unspecified(), "tcp4", "udp4"
	if fam == 6 {
		unspec, tcp, udp = netip.IPv6Unspecified(), "tcp6", "udp6"
	}
	for _, port := range []int{80, 81} {
		addr := netip.AddrPortFrom(unspec, uint16(port)).String()
		ln, err := l.Listen(ctx, c.Name, tcp, addr)
		if err != nil {
			return err
		}
		s.closers = append(s.closers, ln)
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer conn.Close()
					_ = conn.SetDeadline(time.Now().Add(30 * time.Second)) // bounded: a test conn
					_, _ = io.Copy(conn, conn)                             // echo until the client closes
				}()
			}
		}()
		pc, err := l.ListenPacket(ctx, c.Name, udp, addr)
		if err != nil {
			return err
		}
		s.closers = append(s.closers, pc)
		go func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				if ua, ok := from.(*net.UDPAddr); ok {
					a, _ := netip.AddrFromSlice(ua.IP)
					s.mu.Lock()
					s.from[a.Unmap()]++
					s.mu.Unlock()
				}
				_, _ = pc.WriteTo(buf[:n], from) // an echo the prober may miss; it retries
			}
		}()
	}
	return nil
}

// --- probing ---

// addr is p's address of family fam (4 or 6).
func (p *polPod) addr(fam int) netip.Addr {
	if fam == 6 {
		return p.c.IP6
	}
	return p.c.IP
}

// families are the address families the suite checks: IPv4, and IPv6 too
// on a dual-stack lab.
func (s *polSuite) families() []int {
	if s.dual {
		return []int{4, 6}
	}
	return []int{4}
}

// pool is the lab's pool of family fam (invalid when it has none).
func (s *polSuite) pool(fam int) netip.Prefix {
	for f := range strings.SplitSeq(s.podCIDR, ",") {
		if p, err := netip.ParsePrefix(strings.TrimSpace(f)); err == nil && p.Addr().Is6() == (fam == 6) {
			return p
		}
	}
	return netip.Prefix{}
}

// probe makes one real IPv4 connection and reports whether it got through.
func (s *polSuite) probe(ctx context.Context, from, to *polPod, pp polPort) bool {
	return s.probeFamily(ctx, from, to, pp, 4)
}

// probeFamily makes one real connection over family fam (4 or 6).
func (s *polSuite) probeFamily(ctx context.Context, from, to *polPod, pp polPort, fam int) bool {
	dst := netip.AddrPortFrom(to.addr(fam), uint16(pp.port))
	ctx, cancel := context.WithTimeout(ctx, polProbeTimeout)
	defer cancel()
	if pp.proto == "TCP" {
		c, err := s.l.Dial(ctx, from.c.Name, fmt.Sprintf("tcp%d", fam), dst.String())
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	pc, err := s.udpSocketFamily(ctx, from, fam)
	if err != nil {
		return false
	}
	defer pc.Close()
	return udpEcho(ctx, pc, dst, []byte("probe "+from.key()))
}

// udpSocket binds a UDP socket in from's namespace to from's IPv4 address
// and a source port no earlier probe used.
func (s *polSuite) udpSocket(ctx context.Context, from *polPod) (net.PacketConn, error) {
	return s.udpSocketFamily(ctx, from, 4)
}

// udpSocketFamily is udpSocket on from's address of family fam.
func (s *polSuite) udpSocketFamily(ctx context.Context, from *polPod, fam int) (net.PacketConn, error) {
	var err error
	for range 5 {
		port := 20000 + s.nextPort.Add(1)%40000
		var pc net.PacketConn
		pc, err = s.l.ListenPacket(ctx, from.c.Name, fmt.Sprintf("udp%d", fam), netip.AddrPortFrom(from.addr(fam), uint16(port)).String())
		if err == nil {
			return pc, nil
		}
	}
	return nil, err
}

// udpEcho sends msg to dst up to three times until the echo comes back
// or ctx ends.
func udpEcho(ctx context.Context, pc net.PacketConn, dst netip.AddrPort, msg []byte) bool {
	to := net.UDPAddrFromAddrPort(dst)
	buf := make([]byte, 1500)
	deadline, _ := ctx.Deadline()
	for try := range 3 {
		if _, err := pc.WriteTo(msg, to); err != nil {
			return false
		}
		wait := time.Now().Add(polProbeTimeout / 3)
		if try == 2 || wait.After(deadline) {
			wait = deadline
		}
		_ = pc.SetReadDeadline(wait)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				break // this try timed out
			}
			if ua, ok := from.(*net.UDPAddr); ok && ua.AddrPort().Addr().Unmap() == dst.Addr() && bytes.Equal(buf[:n], msg) {
				return true
			}
		}
		if ctx.Err() != nil {
			return false
		}
	}
	return false
}

// probeAll probes every ordered pair of distinct pods on every pp over
// every family, all in one parallel pass.
func (s *polSuite) probeAll(ctx context.Context, pps []polPort) map[polCell]bool {
	type job struct {
		from, to *polPod
		pp       polPort
		fam      int
	}
	var jobs []job
	for _, fam := range s.families() {
		for _, pp := range pps {
			for _, f := range s.pods {
				for _, to := range s.pods {
					if f != to {
						jobs = append(jobs, job{f, to, pp, fam})
					}
				}
			}
		}
	}
	out := make(map[polCell]bool, len(jobs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, polParallel)
	for _, j := range jobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ok := s.probeFamily(ctx, j.from, j.to, j.pp, j.fam)
			mu.Lock()
			out[polCell{j.from.key(), j.to.key(), j.pp, j.fam}] = ok
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// --- matrix and comparison ---

// matrix runs `skein policy matrix --family F -o json` against the live
// cluster for every family, at once.
func (s *polSuite) matrix(ctx context.Context, t *testing.T, pps []polPort) map[polCell]policy.Cell {
	t.Helper()
	var ports, protos []string
	for _, pp := range pps {
		if p := strconv.Itoa(pp.port); !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
		if !slices.Contains(protos, pp.proto) {
			protos = append(protos, pp.proto)
		}
	}
	fams := s.families()
	outs := make([]string, len(fams))
	errs := make([]error, len(fams))
	var wg sync.WaitGroup
	for i, fam := range fams {
		wg.Go(func() {
			outs[i], errs[i] = s.skein(ctx, "policy", "matrix", "--family", strconv.Itoa(fam),
				"--ports", strings.Join(ports, ","), "--protocols", strings.Join(protos, ","), "-o", "json")
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	m := map[polCell]policy.Cell{}
	for i, fam := range fams {
		var cells []policy.Cell
		if err := json.Unmarshal([]byte(outs[i]), &cells); err != nil {
			t.Fatalf("policy matrix --family %d -o json: %v\n%s", fam, err, outs[i])
		}
		for _, c := range cells {
			m[polCell{c.From, c.To, polPort{c.Protocol, c.Port}, fam}] = c
		}
	}
	return m
}

// check is checkFamilies with one truth table for every family: what a
// policy decides by pods and namespaces holds for IPv4 and IPv6 alike.
func (s *polSuite) check(ctx context.Context, t *testing.T, what string, pps []polPort, want polWant) {
	t.Helper()
	s.checkFamilies(ctx, t, what, pps, want, want)
}

// checkFamilies compares, for every ordered pair of distinct pods, every pp
// and every family of the suite, the truth table (want4 for IPv4, want6
// for IPv6), the live matrix and real probes. The probes are repeated
// until they agree with the matrix or polEnforceWait passes (the agents
// enforce a change within moments, not at once).
func (s *polSuite) checkFamilies(ctx context.Context, t *testing.T, what string, pps []polPort, want4, want6 polWant) {
	t.Helper()
	mx := s.matrix(ctx, t, pps)
	expect := map[polCell]bool{}
	matrix := map[polCell]bool{}
	var missing []string
	for _, fam := range s.families() {
		want := want4
		if fam == 6 {
			want = want6
		}
		for _, pp := range pps {
			for _, f := range s.pods {
				// Self: the matrix must allow it whatever the policies (the
				// probes leave it out, as upstream does).
				if c, ok := mx[polCell{f.key(), f.key(), pp, fam}]; !ok || !c.Allowed {
					t.Errorf("%s: matrix IPv%d %s -> itself %s: %+v, want allowed", what, fam, f.key(), pp, c)
				}
				for _, to := range s.pods {
					if f == to {
						continue
					}
					k := polCell{f.key(), to.key(), pp, fam}
					expect[k] = want(f, to, pp)
					c, ok := mx[k]
					if !ok {
						missing = append(missing, fmt.Sprintf("IPv%d %s->%s %s", fam, k.from, k.to, pp))
					}
					matrix[k] = c.Allowed
				}
			}
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%s: matrix lacks %d cells, e.g. %v", what, len(missing), missing[:min(5, len(missing))])
	}
	begin := time.Now()
	deadline := begin.Add(polEnforceWait)
	var probed map[polCell]bool
	rounds := 0
	for {
		probed = s.probeAll(ctx, pps)
		rounds++
		if polEqual(probed, matrix) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		var diff []string
		for _, k := range polSortedCells(probed) {
			if probed[k] != matrix[k] {
				diff = append(diff, fmt.Sprintf("IPv%d %s->%s %s probe=%v", k.fam, k.from, k.to, k.pp, probed[k]))
			}
		}
		t.Logf("%s: probe round %d at %s: %d cells differ from the matrix, e.g. %v", what, rounds,
			time.Since(begin).Round(time.Millisecond), len(diff), diff[:min(4, len(diff))])
		select { // a short pause between rounds, each of which already waits for its timeouts
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	dataplaneOK := polEqual(probed, matrix)
	specOK := polEqual(matrix, expect)
	t.Logf("%s: %d cells, %d probe round(s), %s", what, len(expect), rounds, time.Since(begin).Round(time.Millisecond))
	if dataplaneOK && specOK {
		return
	}
	if !dataplaneOK {
		t.Errorf("%s: probes disagree with `skein policy matrix` after %s", what, polEnforceWait)
	}
	if !specOK {
		t.Errorf("%s: `skein policy matrix` disagrees with the spec's truth table", what)
	}
	t.Logf("truth tables (probe result; ! = matrix says otherwise, ~ = spec says otherwise):\n%s", s.table(pps, probed, matrix, expect))
	shown := 0
	for _, k := range polSortedCells(probed) {
		if probed[k] == matrix[k] && matrix[k] == expect[k] {
			continue
		}
		if shown++; shown > 12 {
			t.Logf("  (more differing cells not shown)")
			break
		}
		t.Logf("  IPv%d %s -> %s %s: probe=%v matrix=%v spec=%v; matrix rule: %s", k.fam, k.from, k.to, k.pp, probed[k], matrix[k], expect[k], mx[k].Rule)
	}
}

func polEqual(a, b map[polCell]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func polSortedCells(m map[polCell]bool) []polCell {
	keys := make([]polCell, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b polCell) int {
		return strings.Compare(fmt.Sprint(a.fam, a.pp, a.from, a.to), fmt.Sprint(b.fam, b.pp, b.from, b.to))
	})
	return keys
}

// table renders upstream-style truth tables of the probes, marking cells
// where the matrix (!) or the spec (~) differs.
func (s *polSuite) table(pps []polPort, probed, matrix, expect map[polCell]bool) string {
	var b strings.Builder
	for _, fam := range s.families() {
		for _, pp := range pps {
			s.tableOne(&b, pp, fam, probed, matrix, expect)
		}
	}
	return b.String()
}

func (s *polSuite) tableOne(b *strings.Builder, pp polPort, fam int, probed, matrix, expect map[polCell]bool) {
	fmt.Fprintf(b, "IPv%d %s\n%-4s", fam, pp, "")
	for _, to := range s.pods {
		fmt.Fprintf(b, " %-4s", to.key())
	}
	b.WriteByte('\n')
	for _, f := range s.pods {
		fmt.Fprintf(b, "%-4s", f.key())
		for _, to := range s.pods {
			mark := "-"
			if f != to {
				k := polCell{f.key(), to.key(), pp, fam}
				mark = "X"
				if probed[k] {
					mark = "."
				}
				if probed[k] != matrix[k] {
					mark += "!"
				}
				if matrix[k] != expect[k] {
					mark += "~"
				}
			}
			fmt.Fprintf(b, " %-4s", mark)
		}
		b.WriteByte('\n')
	}
}

// --- the CLI ---

func (s *polSuite) skein(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Env = append(os.Environ(), "SKEIN_ETCD_ENDPOINTS="+s.l.EtcdEndpoints()[0])
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("skein %s: %w\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), nil
}

func (s *polSuite) mustSkein(ctx context.Context, t *testing.T, args ...string) string {
	t.Helper()
	out, err := s.skein(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// apply writes docs to a file and runs `skein policy apply -f` on it.
func (s *polSuite) apply(ctx context.Context, t *testing.T, docs string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(f, []byte(docs), 0o644); err != nil {
		t.Fatal(err)
	}
	s.mustSkein(ctx, t, "policy", "apply", "-f", f)
}

// deleteAllPolicies deletes every stored policy, so the next case starts
// from none.
func (s *polSuite) deleteAllPolicies(ctx context.Context, t *testing.T) {
	t.Helper()
	out := s.mustSkein(ctx, t, "policy", "list", "-o", "json")
	var objs []struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(out), &objs); err != nil {
		t.Fatalf("policy list -o json: %v\n%s", err, out)
	}
	for _, o := range objs {
		ref := o.Metadata.Name
		if o.Metadata.Namespace != "" {
			ref = o.Metadata.Namespace + "/" + ref
		}
		s.mustSkein(ctx, t, "policy", "delete", o.Kind, ref)
	}
}

// polTrace is one expected `skein policy trace` answer.
type polTrace struct {
	from, to string
	pp       polPort
	allowed  bool
	// rule must match the verdict's rule text.
	rule string
}

func (s *polSuite) expectTrace(ctx context.Context, t *testing.T, tr polTrace) {
	t.Helper()
	if err := s.traceMismatch(ctx, tr, 0); err != nil {
		t.Error(err)
	}
}

// expectCaseTraces checks c's traces over every family of the suite (its
// traces6 for IPv6 when it has them), all at once.
func (s *polSuite) expectCaseTraces(ctx context.Context, t *testing.T, c polCase) {
	t.Helper()
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, fam := range s.families() {
		traces := c.traces
		if fam == 6 && c.traces6 != nil {
			traces = c.traces6
		}
		for _, tr := range traces {
			wg.Go(func() {
				if err := s.traceMismatch(ctx, tr, fam); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
}

// traceMismatch runs `skein policy trace` (with --family fam unless fam is
// 0) and says how its answer differs from tr, or nil.
func (s *polSuite) traceMismatch(ctx context.Context, tr polTrace, fam int) error {
	args := []string{"policy", "trace", "--from", tr.from, "--to", tr.to,
		"--port", strconv.Itoa(tr.pp.port), "--protocol", tr.pp.proto, "-o", "json"}
	what := fmt.Sprintf("trace %s -> %s %s", tr.from, tr.to, tr.pp)
	if fam != 0 {
		args = append(args, "--family", strconv.Itoa(fam))
		what += fmt.Sprintf(" over IPv%d", fam)
	}
	out, err := s.skein(ctx, args...)
	if err != nil {
		return err
	}
	var v policy.Verdict
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return fmt.Errorf("%s -o json: %w\n%s", what, err, out)
	}
	if v.Allowed != tr.allowed || !regexp.MustCompile(tr.rule).MatchString(v.Rule) {
		return fmt.Errorf("%s: allowed=%v rule %q; want allowed=%v, rule matching %q\nsteps: %q",
			what, v.Allowed, v.Rule, tr.allowed, tr.rule, v.Steps)
	}
	return nil
}

// testHostToPod: a host reaches its own pods in x over each family
// although x denies all ingress (kubelet probes), and trace agrees.
func (s *polSuite) testHostToPod(ctx context.Context, t *testing.T) {
	for _, fam := range s.families() {
		for _, p := range s.pods {
			if p.ns != "x" {
				continue
			}
			dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			c, err := s.l.Dial(dctx, p.c.Host, fmt.Sprintf("tcp%d", fam), netip.AddrPortFrom(p.addr(fam), 80).String())
			cancel()
			if err != nil {
				t.Errorf("host %s -> its pod %s (isolated) over IPv%d: %v; want allowed", p.c.Host, p.key(), fam, err)
				continue
			}
			src := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
			c.Close()
			s.expectTrace(ctx, t, polTrace{src.String(), p.key(), tcp80, true, `from its own node`})
		}
	}
}

// testRemoteHostToPod: another host reaches a pod as any address outside
// the cluster does (only the pod's own host is exempt), over each family;
// probe and trace agree, tracing the source address the host's routing
// picks. Every host and family at once: the denied ones wait.
func (s *polSuite) testRemoteHostToPod(ctx context.Context, t *testing.T, to *polPod, allowed bool, rule string) {
	var wg sync.WaitGroup
	for _, fam := range s.families() {
		for _, h := range s.l.Hosts() {
			if h.Name == to.c.Host {
				continue
			}
			wg.Go(func() {
				out, err := s.l.Exec(ctx, h.Name, "ip", "-o", "route", "get", to.addr(fam).String())
				m := regexp.MustCompile(`\bsrc (\S+)`).FindStringSubmatch(string(out))
				if err != nil || m == nil {
					t.Errorf("route to %s in %s: %v\n%s", to.addr(fam), h.Name, err, out)
					return
				}
				dctx, cancel := context.WithTimeout(ctx, polProbeTimeout)
				c, err := s.l.Dial(dctx, h.Name, fmt.Sprintf("tcp%d", fam), netip.AddrPortFrom(to.addr(fam), 80).String())
				cancel()
				if c != nil {
					c.Close()
				}
				if (err == nil) != allowed {
					t.Errorf("host %s (from %s) -> %s on another host over IPv%d: err=%v; want allowed=%v", h.Name, m[1], to.key(), fam, err, allowed)
				}
				s.expectTrace(ctx, t, polTrace{m[1], to.key(), tcp80, allowed, rule})
			})
		}
	}
	wg.Wait()
}

// polHostAddrs are each host's addresses a pod reaches it by, per family:
// its underlay address for IPv4 and, on a dual-stack lab, its VXLAN
// device's IPv6 address (the underlay is IPv4 only).
func (s *polSuite) polHostAddrs(ctx context.Context, t *testing.T, fam int) map[string]netip.Addr {
	t.Helper()
	out := map[string]netip.Addr{}
	if fam == 4 {
		for _, h := range s.l.Hosts() {
			out[h.Name] = h.UnderlayIP
		}
		return out
	}
	cl := labStore(ctx, t, s.l)
	for _, h := range s.l.Hosts() {
		n, err := cl.GetNode(ctx, h.Name)
		if err != nil {
			t.Fatalf("get node %s: %v", h.Name, err)
		}
		if !n.VTEPIP6.IsValid() {
			t.Fatalf("node %s has no IPv6 VTEP address", h.Name)
		}
		out[h.Name] = n.VTEPIP6
	}
	return out
}

// testPodToHosts: a pod reaches its own host whatever its egress policy
// (the traffic never crosses the forward hook), and reaches other hosts
// only as its egress allows, over each family; probe and trace agree on
// each. Every host and family at once: the denied ones wait.
func (s *polSuite) testPodToHosts(ctx context.Context, t *testing.T, from *polPod, remoteAllowed bool) {
	var wg sync.WaitGroup
	for _, fam := range s.families() {
		addrs := s.polHostAddrs(ctx, t, fam)
		for _, h := range s.l.Hosts() {
			wg.Go(func() { s.podToHost(ctx, t, from, h.Name, addrs[h.Name], fam, remoteAllowed) })
		}
	}
	wg.Wait()
}

// podToHost is one host of testPodToHosts: it listens on addr (of family
// fam) of host, from dials it.
func (s *polSuite) podToHost(ctx context.Context, t *testing.T, from *polPod, host string, addr netip.Addr, fam int, remoteAllowed bool) {
	dst := netip.AddrPortFrom(addr, 8088).String()
	ln, err := s.l.Listen(ctx, host, fmt.Sprintf("tcp%d", fam), dst)
	if err != nil {
		t.Errorf("listen in %s: %v", host, err)
		return
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	dctx, cancel := context.WithTimeout(ctx, polProbeTimeout)
	c, err := s.l.Dial(dctx, from.c.Name, fmt.Sprintf("tcp%d", fam), dst)
	cancel()
	ln.Close()
	if c != nil {
		c.Close()
	}
	own := host == from.c.Host
	want := own || remoteAllowed
	if (err == nil) != want {
		t.Errorf("%s -> host %s (%s, own host %v): err=%v; want allowed=%v", from.key(), host, addr, own, err, want)
	}
	rule := `isolated for egress`
	if own {
		rule = `to its own node`
	} else if remoteAllowed {
		rule = `.`
	}
	s.expectTrace(ctx, t, polTrace{from.key(), addr.String(), polPort{"TCP", 8088}, want, rule})
}

// testAntiSpoofing: a pod that adds an address it does not own and sends
// from it gets nothing through, over each family (in parallel). Two
// counters in a table of the test's own in the pod's host, before and after
// Skein's raw prerouting chain, show where the packets stop; the target's
// echo server shows none arrive.
func (s *polSuite) testAntiSpoofing(ctx context.Context, t *testing.T) {
	for _, fam := range s.families() {
		t.Run(fmt.Sprintf("IPv%d", fam), func(t *testing.T) {
			t.Parallel()
			s.testAntiSpoofingFamily(ctx, t, fam)
		})
	}
}

func (s *polSuite) testAntiSpoofingFamily(ctx context.Context, t *testing.T, fam int) {
	src := s.byKey["y/a"]
	var dst, local *polPod // a pod on another host, another on src's host
	for _, p := range s.pods {
		switch {
		case p == src:
		case p.c.Host != src.c.Host && dst == nil:
			dst = p
		case p.c.Host == src.c.Host && local == nil:
			local = p
		}
	}
	if dst == nil || local == nil {
		t.Fatalf("placement: no pod on %s's host or on another", src.key())
	}
	spoofAddr, bits, ipKw, udp, ping := polSpoofAddr, 32, "ip", "udp4", []string{"ping", "-4"}
	if fam == 6 {
		// nodad: usable at once, as the pod's own addresses are.
		spoofAddr, bits, ipKw, udp, ping = polSpoofAddr6, 128, "ip6", "udp6", []string{"ping", "-6"}
	}
	host, table := src.c.Host, fmt.Sprintf("skpoltest%d", fam)
	ruleset := fmt.Sprintf(`table inet %[1]s {
	chain before { type filter hook prerouting priority -310; policy accept; %[2]s saddr %[3]s counter; }
	chain after { type filter hook prerouting priority -290; policy accept; %[2]s saddr %[3]s counter; }
}`, table, ipKw, spoofAddr)
	cmd, err := s.l.Command(ctx, host, "nft", "-f", "-")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f in %s: %v\n%s", host, err, out)
	}
	t.Cleanup(func() { _, _ = s.l.Exec(context.Background(), host, "nft", "delete", "table", "inet", table) })

	// The same pod from its own address gets through: the path works (and
	// its neighbour entry for the gateway is fresh, so the spoofed packets
	// below leave the pod without a neighbour solicitation first).
	real, err := s.udpSocketFamily(ctx, src, fam)
	if err != nil {
		t.Fatal(err)
	}
	defer real.Close()
	ectx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if !udpEcho(ectx, real, netip.AddrPortFrom(dst.addr(fam), 80), []byte("real")) {
		t.Errorf("%s -> %s UDP/80 over IPv%d from its own address: no echo", src.key(), dst.key(), fam)
	}

	addr := []string{"ip", "addr", "add", fmt.Sprintf("%s/%d", spoofAddr, bits), "dev", src.c.IfName}
	if fam == 6 {
		addr = append(addr, "nodad")
	}
	if out, err := s.l.Exec(ctx, src.c.Name, addr...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Cleanup(func() {
		_, _ = s.l.Exec(context.Background(), src.c.Name, "ip", "addr", "del", fmt.Sprintf("%s/%d", spoofAddr, bits), "dev", src.c.IfName)
	})

	// ICMP from the fake address (ping -I) gets no answer...
	if out, err := s.l.Exec(ctx, src.c.Name, append(ping, "-n", "-c", "2", "-W", "1", "-I", spoofAddr, dst.addr(fam).String())...); err == nil {
		t.Errorf("ping -I %s from %s to %s answered; want dropped\n%s", spoofAddr, src.key(), dst.key(), out)
	}
	// ...and UDP from it reaches no server, on another host or the same.
	pc, err := s.l.ListenPacket(ctx, src.c.Name, udp, netip.AddrPortFrom(netip.MustParseAddr(spoofAddr), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	const sent = 5
	for _, to := range []*polPod{dst, local} {
		for range sent {
			if _, err := pc.WriteTo([]byte("spoofed"), net.UDPAddrFromAddrPort(netip.AddrPortFrom(to.addr(fam), 80))); err != nil {
				t.Fatalf("send spoofed: %v", err)
			}
		}
	}

	// Echoes from the pod's own address after the spoofed datagrams: had
	// those got through, they would have arrived before these.
	for _, to := range []*polPod{dst, local} {
		ectx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok := udpEcho(ectx, real, netip.AddrPortFrom(to.addr(fam), 80), []byte("real again"))
		cancel()
		if !ok {
			t.Errorf("%s -> %s UDP/80 over IPv%d from its own address, after the spoofed ones: no echo", src.key(), to.key(), fam)
		}
	}
	spoof := netip.MustParseAddr(spoofAddr)
	for _, to := range []*polPod{dst, local} {
		if n := to.srv.udpFrom(spoof); n != 0 {
			t.Errorf("%s received %d datagrams from %s sent by %s; want 0", to.key(), n, spoofAddr, src.key())
		}
	}
	out, err := s.l.Exec(ctx, host, "nft", "list", "table", "inet", table)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	counts := regexp.MustCompile(`counter packets (\d+)`).FindAllStringSubmatch(string(out), -1)
	if len(counts) != 2 {
		t.Fatalf("counters in %s:\n%s", host, out)
	}
	before, _ := strconv.Atoi(counts[0][1])
	after, _ := strconv.Atoi(counts[1][1])
	if before < 2*sent || after != 0 {
		t.Errorf("packets from %s in %s: %d before Skein's prerouting chain, %d after; want >= %d and 0\n%s", spoofAddr, host, before, after, 2*sent, out)
	}
	t.Logf("spoofed packets: %d reached %s, %d passed Skein's anti-spoofing", before, host, after)
}

// testRelabelPod: the peer side (y/c becomes pod=b) and the subject side
// (x/a stops being pod=a) of a policy follow `skein endpoint label`.
func (s *polSuite) testRelabelPod(ctx context.Context, t *testing.T) {
	defer func() { // also on failure, so later cases see the model's labels
		s.mustSkein(ctx, t, "endpoint", "label", "y/c", "pod=c")
		s.mustSkein(ctx, t, "endpoint", "label", "x/a", "pod=a")
		s.deleteAllPolicies(ctx, t)
	}()
	s.apply(ctx, t, polNP("x", "a-from-b", `
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {}
    podSelector: {matchLabels: {pod: b}}`))
	base := func(from, to *polPod, _ polPort) bool { return to.key() != "x/a" || from.name == "b" }
	s.check(ctx, t, "x/a from pods b", []polPort{tcp80}, base)

	s.mustSkein(ctx, t, "endpoint", "label", "y/c", "pod=b")
	s.check(ctx, t, "y/c relabelled pod=b", []polPort{tcp80}, func(from, to *polPod, pp polPort) bool {
		return base(from, to, pp) || from.key() == "y/c"
	})
	s.mustSkein(ctx, t, "endpoint", "label", "y/c", "pod=c")

	s.mustSkein(ctx, t, "endpoint", "label", "x/a", "pod=q")
	s.check(ctx, t, "x/a relabelled pod=q (no longer selected)", []polPort{tcp80}, func(_, _ *polPod, _ polPort) bool { return true })
	s.mustSkein(ctx, t, "endpoint", "label", "x/a", "pod=a")
	s.check(ctx, t, "labels restored", []polPort{tcp80}, base)
}

// testRelabelNamespace: namespace selectors follow `skein namespace
// label`, and the implied kubernetes.io/metadata.name label stays.
func (s *polSuite) testRelabelNamespace(ctx context.Context, t *testing.T) {
	defer func() {
		s.mustSkein(ctx, t, "namespace", "label", "y", "ns=y")
		s.mustSkein(ctx, t, "namespace", "label", "z", "ns=z")
		s.deleteAllPolicies(ctx, t)
	}()
	s.apply(ctx, t, polNP("x", "from-ns-y", `
podSelector: {}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: z}}
    podSelector: {matchLabels: {pod: a}}`))
	base := func(from, to *polPod, _ polPort) bool {
		return to.ns != "x" || from.ns == "y" || from.key() == "z/a"
	}
	s.check(ctx, t, "x from ns=y or z/a", []polPort{tcp80}, base)

	s.mustSkein(ctx, t, "namespace", "label", "z", "ns=y")
	s.check(ctx, t, "z relabelled ns=y", []polPort{tcp80}, func(from, to *polPod, _ polPort) bool {
		return to.ns != "x" || from.ns == "y" || from.ns == "z"
	})
	s.mustSkein(ctx, t, "namespace", "label", "y", "ns-")
	s.check(ctx, t, "y's ns label removed", []polPort{tcp80}, func(from, to *polPod, _ polPort) bool {
		return to.ns != "x" || from.ns == "z"
	})
	s.mustSkein(ctx, t, "namespace", "label", "y", "ns=y")
	s.mustSkein(ctx, t, "namespace", "label", "z", "ns=z")
	s.check(ctx, t, "namespace labels restored", []polPort{tcp80}, base)
}

// testUpdateReplaces: applying a policy of the same name replaces its
// spec; nothing of the old one stays.
func (s *polSuite) testUpdateReplaces(ctx context.Context, t *testing.T) {
	defer s.deleteAllPolicies(ctx, t)
	from := func(ns string) string {
		return fmt.Sprintf(`
podSelector: {}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: %s}}`, ns)
	}
	s.apply(ctx, t, polNP("x", "p", from("y")))
	s.check(ctx, t, "x/p from y", []polPort{tcp80}, func(f, to *polPod, _ polPort) bool { return to.ns != "x" || f.ns == "y" })
	s.apply(ctx, t, polNP("x", "p", from("z")))
	s.check(ctx, t, "x/p replaced: from z", []polPort{tcp80}, func(f, to *polPod, _ polPort) bool { return to.ns != "x" || f.ns == "z" })
	out := s.mustSkein(ctx, t, "policy", "get", "np", "x/p", "-o", "json")
	var got api.NetworkPolicy
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("policy get: %v\n%s", err, out)
	}
	if n := len(got.Spec.Ingress); n != 1 || len(got.Spec.Ingress[0].From) != 1 || got.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels["ns"] != "z" {
		t.Errorf("stored x/p after update: %s; want one rule from ns=z", out)
	}
}

// testDelete: deleting every policy of a restrictive set opens everything
// again.
func (s *polSuite) testDelete(ctx context.Context, t *testing.T) {
	s.apply(ctx, t, polNP("x", "deny-ingress", polDenyIngressX)+polNP("y", "deny-egress", "podSelector: {}\npolicyTypes: [Egress]")+
		polANP("deny-z", 1, "subject: {namespaces: {matchLabels: {ns: z}}}\ningress:\n- action: Deny\n  from:\n  - namespaces: {}")+
		polBANP("default", "subject: {namespaces: {}}\negress:\n- action: Deny\n  to:\n  - namespaces: {}"))
	// Nothing passes: x is isolated for ingress without rules, y for
	// egress; the ANP denies all ingress to z; the BANP denies the egress
	// of x and z (no NetworkPolicy selects them for egress), so x <-> z
	// and x, z -> y are denied too.
	s.check(ctx, t, "restrictive set", []polPort{tcp80}, func(_, _ *polPod, _ polPort) bool { return false })
	s.deleteAllPolicies(ctx, t)
	if out := s.mustSkein(ctx, t, "policy", "list", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("policies left after delete: %s", out)
	}
	s.check(ctx, t, "all policies deleted", all4, func(_, _ *polPod, _ polPort) bool { return true })
}

// testEstablished: a TCP connection and a UDP flow set up before a
// deny policy keep working after it (policy decides new connections only),
// over each family, while new connections are denied.
func (s *polSuite) testEstablished(ctx context.Context, t *testing.T) {
	defer s.deleteAllPolicies(ctx, t)
	from, to := s.byKey["y/a"], s.byKey["x/a"] // different hosts
	type flows struct {
		fam  int
		conn net.Conn
		udp  net.PacketConn
	}
	var fs []flows
	for _, fam := range s.families() {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := s.l.Dial(dctx, from.c.Name, fmt.Sprintf("tcp%d", fam), netip.AddrPortFrom(to.addr(fam), 80).String())
		cancel()
		if err != nil {
			t.Fatalf("connect over IPv%d before the policy: %v", fam, err)
		}
		defer conn.Close()
		if err := polRoundTrip(conn, "before"); err != nil {
			t.Fatalf("TCP over IPv%d before the policy: %v", fam, err)
		}
		udp, err := s.udpSocketFamily(ctx, from, fam)
		if err != nil {
			t.Fatal(err)
		}
		defer udp.Close()
		uctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok := udpEcho(uctx, udp, netip.AddrPortFrom(to.addr(fam), 80), []byte("before"))
		cancel()
		if !ok {
			t.Fatalf("UDP over IPv%d before the policy: no echo", fam)
		}
		fs = append(fs, flows{fam, conn, udp})
	}

	s.apply(ctx, t, polNP("x", "deny-ingress", polDenyIngressX))
	s.check(ctx, t, "deny ingress x (new connections)", []polPort{tcp80, udp80}, func(_, to *polPod, _ polPort) bool { return to.ns != "x" })
	for _, f := range fs {
		if err := polRoundTrip(f.conn, "after"); err != nil {
			t.Errorf("TCP connection over IPv%d established before the deny: %v; want it to keep working", f.fam, err)
		}
		uctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok := udpEcho(uctx, f.udp, netip.AddrPortFrom(to.addr(f.fam), 80), []byte("after"))
		cancel()
		if !ok {
			t.Errorf("UDP flow over IPv%d established before the deny: no echo; want it to keep working", f.fam)
		}
	}
}

// polRoundTrip writes msg on an echo connection and reads it back.
func polRoundTrip(conn net.Conn, msg string) error {
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second)) // bounded: a test conn
	if _, err := io.WriteString(conn, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

// testNewPods: a pod created in an isolated namespace is isolated when its
// CNI ADD returns (a first SYN, before anything listens, is dropped, not
// refused), while an allowed peer reaches it at once (refused: nothing
// listens yet); a new pod elsewhere becomes a peer on every host; deleting
// pods leaves the rest as it was.
func (s *polSuite) testNewPods(ctx context.Context, t *testing.T) {
	defer s.deleteAllPolicies(ctx, t)
	s.apply(ctx, t, polNP("x", "from-b", `
podSelector: {}
ingress:
- from:
  - namespaceSelector: {}
    podSelector: {matchLabels: {pod: b}}`))
	fromB := func(from, to *polPod, _ polPort) bool { return to.ns != "x" || from.name == "b" }
	s.check(ctx, t, "x from pods b", []polPort{tcp80}, fromB)

	hosts := s.l.Hosts()
	xd := s.addPod(ctx, t, "x", "d", "d", hosts[0].Name)
	var wg sync.WaitGroup // every source and family at once: the denied ones wait
	for _, src := range []string{"y/a", "z/b"} {
		for _, fam := range s.families() {
			wg.Go(func() {
				from := s.byKey[src]
				dctx, cancel := context.WithTimeout(ctx, polProbeTimeout)
				c, err := s.l.Dial(dctx, from.c.Name, fmt.Sprintf("tcp%d", fam), netip.AddrPortFrom(xd.addr(fam), 80).String())
				cancel()
				if c != nil {
					c.Close()
				}
				refused := errors.Is(err, syscall.ECONNREFUSED)
				if want := from.name == "b"; refused != want {
					t.Errorf("%s -> new pod x/d over IPv%d right after its CNI ADD: %v; want refused=%v (reached it, nothing listens yet)", src, fam, err, want)
				}
			})
		}
	}
	wg.Wait()
	yd := s.addPod(ctx, t, "y", "d", "b", hosts[2].Name) // a pod b elsewhere
	for _, p := range []*polPod{xd, yd} {
		srv, err := polServe(ctx, s.l, p.c)
		if err != nil {
			t.Fatalf("servers in %s: %v", p.key(), err)
		}
		p.srv = srv
	}
	s.check(ctx, t, "with x/d and y/d (pod=b)", []polPort{tcp80, udp80}, func(from, to *polPod, pp polPort) bool {
		return fromB(from, to, pp) || (to.ns == "x" && from.key() == "y/d")
	})
	for _, p := range []*polPod{xd, yd} {
		s.delPod(ctx, t, p)
	}
	s.check(ctx, t, "x/d and y/d deleted", []polPort{tcp80}, fromB)
}

// addPod adds a pod (without servers) to the model and the lab.
func (s *polSuite) addPod(ctx context.Context, t *testing.T, ns, name, podLabel, host string) *polPod {
	t.Helper()
	c, err := s.l.AddContainer(ctx, host, lab.ContainerOpts{
		Name: name, Namespace: ns, Labels: map[string]string{"pod": podLabel}, Ports: polNamedPorts(),
	})
	if err != nil {
		t.Fatalf("add pod %s/%s: %v", ns, name, err)
	}
	p := &polPod{ns: ns, name: name, c: c}
	s.pods = append(s.pods, p)
	s.byKey[p.key()] = p
	t.Cleanup(func() {
		if _, ok := s.byKey[p.key()]; ok {
			s.delPod(context.Background(), t, p)
		}
	})
	return p
}

// delPod stops a pod's servers and deletes it from the lab and the model.
func (s *polSuite) delPod(ctx context.Context, t *testing.T, p *polPod) {
	t.Helper()
	if p.srv != nil {
		p.srv.close()
	}
	s.pods = slices.DeleteFunc(s.pods, func(q *polPod) bool { return q == p })
	delete(s.byKey, p.key())
	if err := s.l.DelContainer(ctx, p.c.Name); err != nil {
		t.Errorf("delete pod %s: %v", p.key(), err)
	}
}

// testAgentDown: a host whose agent is down keeps enforcing the last
// program it applied (the table outlives the agent), also when policies
// change meanwhile; the restarted agent catches up.
func (s *polSuite) testAgentDown(ctx context.Context, t *testing.T) {
	defer s.deleteAllPolicies(ctx, t)
	xa := s.byKey["x/a"]
	host := xa.c.Host
	s.apply(ctx, t, polNP("x", "deny-ingress", polDenyIngressX))
	denyX := func(_, to *polPod, _ polPort) bool { return to.ns != "x" }
	s.check(ctx, t, "deny ingress x", []polPort{tcp80}, denyX)

	if err := s.l.StopAgent(ctx, host); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if h, err := s.l.Host(host); err == nil && h.AgentPID == 0 {
			if err := s.l.StartAgent(ctx, host); err != nil {
				t.Errorf("restart agent on %s: %v", host, err)
			}
		}
	}()
	s.check(ctx, t, "deny ingress x, agent of "+host+" down", []polPort{tcp80}, denyX)

	s.deleteAllPolicies(ctx, t)
	// Every other host opens x; x's pods on the stopped agent's host stay
	// isolated until it is back.
	stale := func(to *polPod) bool { return to.ns == "x" && to.c.Host == host }
	var wrong []string
	for deadline := time.Now().Add(polEnforceWait); ; {
		wrong = wrong[:0]
		for k, ok := range s.probeAll(ctx, []polPort{tcp80}) {
			if ok == stale(s.byKey[k.to]) {
				wrong = append(wrong, fmt.Sprintf("%s->%s allowed=%v", k.from, k.to, ok))
			}
		}
		if len(wrong) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(wrong) > 0 {
		slices.Sort(wrong)
		t.Errorf("policy deleted while the agent of %s is down; want only x's pods there still isolated; wrong: %v", host, wrong)
	}
	if err := s.l.StartAgent(ctx, host); err != nil {
		t.Fatal(err)
	}
	s.check(ctx, t, "policy deleted, agent back", []polPort{tcp80}, func(_, _ *polPod, _ polPort) bool { return true })
}
