package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// The join watcher is a helper subprocess, `bench join-watch ENDPOINT
// PREFIX`, that the bench runs at real-time priority (chrt) so that the
// moments it records are when etcd and the kernel announced them, not when a
// busy bench process got around to reading them. It watches the node records
// in etcd and, for each namespace named on stdin ("sub NS"), the routes Skein
// adds there, and prints one line per first sighting with CLOCK_MONOTONIC
// nanoseconds:
//
//	ready                     the etcd watch is established
//	subscribed NS             the route subscription in NS is established
//	node NAME T               node record NAME created
//	route NS PREFIX T         route to PREFIX (Skein's protocol) added in NS
//	error MESSAGE

// monoNow returns CLOCK_MONOTONIC in nanoseconds (comparable across processes).
func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // cannot fail for CLOCK_MONOTONIC
	return ts.Nano()
}

// lineWriter serializes output lines.
type lineWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (lw *lineWriter) printf(format string, args ...any) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	fmt.Fprintf(lw.w, format+"\n", args...)
	_ = lw.w.Flush() // the reader gone means we are being stopped
}

// joinWatch is the helper's body; it returns when stdin closes.
func joinWatch(endpoint, prefix string, stdin io.Reader, stdout io.Writer) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lineWriter{w: bufio.NewWriter(stdout)}
	sc, err := store.New(ctx, store.Config{Endpoints: []string{endpoint}, Prefix: prefix, DialTimeout: 10 * time.Second, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer sc.Close()
	nodes := sc.Prefix() + "nodes/"
	wch := sc.Etcd().Watch(ctx, nodes, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	if resp, ok := <-wch; !ok || !resp.Created {
		return fmt.Errorf("watch %s not established", nodes)
	}
	go func() {
		for resp := range wch {
			t := monoNow()
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypePut && ev.IsCreate() {
					out.printf("node %s %d", strings.TrimPrefix(string(ev.Kv.Key), nodes), t)
				}
			}
		}
	}()
	out.printf("ready")

	var subs []chan struct{}
	defer func() {
		for _, d := range subs {
			close(d)
		}
	}()
	in := bufio.NewScanner(stdin)
	for in.Scan() {
		cmd, ns, ok := strings.Cut(strings.TrimSpace(in.Text()), " ")
		if !ok || cmd != "sub" {
			out.printf("error unknown command %q", in.Text())
			continue
		}
		done, err := subscribeSkeinRoutes(ns, out)
		if err != nil {
			out.printf("error %v", err)
			continue
		}
		subs = append(subs, done)
		out.printf("subscribed %s", ns)
	}
	return in.Err()
}

// subscribeSkeinRoutes prints the first addition of each route carrying
// Skein's protocol in the named namespace.
func subscribeSkeinRoutes(ns string, out *lineWriter) (chan struct{}, error) {
	h, err := netns.GetFromPath(nsPath(ns))
	if err != nil {
		return nil, fmt.Errorf("open namespace %s: %w", ns, err)
	}
	defer h.Close() // the subscription's socket keeps the namespace
	done := make(chan struct{})
	ch := make(chan netlink.RouteUpdate, 4096)
	err = netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{
		Namespace:         &h,
		ReceiveBufferSize: 1 << 20,
		ErrorCallback: func(err error) {
			select {
			case <-done: // closing the subscription makes the receive fail
			default:
				out.printf("error routes in %s: %v", ns, err)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to routes in %s: %w", ns, err)
	}
	go func() {
		seen := map[netip.Prefix]bool{}
		for u := range ch {
			t := monoNow()
			if u.Type != unix.RTM_NEWROUTE || u.Dst == nil || u.Protocol != api.RouteProtocol {
				continue
			}
			a, ok := netip.AddrFromSlice(u.Dst.IP)
			if !ok {
				continue
			}
			bits, _ := u.Dst.Mask.Size()
			p := netip.PrefixFrom(a.Unmap(), bits)
			if !seen[p] {
				seen[p] = true
				out.printf("route %s %s %d", ns, p, t)
			}
		}
	}()
	return done, nil
}

// joinWatcher is the bench's side of the helper.
type joinWatcher struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	rt    bool // runs at real-time priority

	mu     sync.Mutex
	nodes  map[string]int64                  // guarded by mu
	routes map[string]map[netip.Prefix]int64 // guarded by mu
	acks   map[string]chan struct{}          // guarded by mu
	errs   []string                          // guarded by mu
	ready  chan struct{}
}

// startJoinWatcher starts the helper, at real-time priority when chrt works.
func (b *bench) startJoinWatcher(ctx context.Context, endpoint, prefix string) (*joinWatcher, error) {
	argv := []string{b.self, "join-watch", endpoint, prefix}
	w := &joinWatcher{nodes: map[string]int64{}, routes: map[string]map[netip.Prefix]int64{}, acks: map[string]chan struct{}{}, ready: make(chan struct{})}
	if p, err := exec.LookPath("chrt"); err == nil && exec.CommandContext(ctx, p, "-f", "10", "true").Run() == nil {
		argv = append([]string{p, "-f", "10"}, argv...)
		w.rt = true
	}
	w.cmd = exec.Command(argv[0], argv[1:]...)
	w.cmd.SysProcAttr = &unix.SysProcAttr{Pdeathsig: unix.SIGKILL}
	var err error
	if w.stdin, err = w.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := w.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	w.cmd.Stderr = &stderr
	if err := w.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start join watcher: %w", err)
	}
	b.mu.Lock()
	b.procs = append(b.procs, w.cmd)
	b.mu.Unlock()
	go w.read(stdout)
	select {
	case <-w.ready:
		return w, nil
	case <-time.After(15 * time.Second):
		return nil, fmt.Errorf("join watcher not ready: %s", stderr.String())
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// read parses the helper's lines into the watcher's maps.
func (w *joinWatcher) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		w.mu.Lock()
		switch {
		case f[0] == "ready":
			close(w.ready)
		case f[0] == "subscribed" && len(f) == 2:
			if c, ok := w.acks[f[1]]; ok {
				close(c)
				delete(w.acks, f[1])
			}
		case f[0] == "node" && len(f) == 3:
			if t, err := strconv.ParseInt(f[2], 10, 64); err == nil {
				w.nodes[f[1]] = t
			}
		case f[0] == "route" && len(f) == 4:
			p, perr := netip.ParsePrefix(f[2])
			t, terr := strconv.ParseInt(f[3], 10, 64)
			if perr == nil && terr == nil {
				if w.routes[f[1]] == nil {
					w.routes[f[1]] = map[netip.Prefix]int64{}
				}
				w.routes[f[1]][p] = t
			}
		default:
			w.errs = append(w.errs, sc.Text())
		}
		w.mu.Unlock()
	}
}

// subscribe asks the helper to follow routes in ns and waits until it does.
func (w *joinWatcher) subscribe(ctx context.Context, ns string) error {
	ack := make(chan struct{})
	w.mu.Lock()
	w.acks[ns] = ack
	w.mu.Unlock()
	if _, err := fmt.Fprintf(w.stdin, "sub %s\n", ns); err != nil {
		return fmt.Errorf("join watcher: %w", err)
	}
	select {
	case <-ack:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("join watcher: no subscription in %s after 10s: %s", ns, w.errors())
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *joinWatcher) errors() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.errs, "; ")
}

// node returns when the node record was created, if seen.
func (w *joinWatcher) node(name string) (int64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.nodes[name]
	return t, ok
}

// routesIn returns when the last of ps first appeared in ns, if all did.
func (w *joinWatcher) routesIn(ns string, ps []netip.Prefix) (int64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var last int64
	for _, p := range ps {
		t, ok := w.routes[ns][p]
		if !ok {
			return 0, false
		}
		last = max(last, t)
	}
	return last, true
}

// stop ends the helper.
func (w *joinWatcher) stop() error {
	_ = w.stdin.Close() // the helper exits on EOF
	done := make(chan error, 1)
	go func() { done <- w.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		_ = w.cmd.Process.Kill() // it did not exit on EOF
		return errors.Join(errors.New("join watcher killed"), <-done)
	}
}

// joinWatchMain runs the helper subcommand.
func joinWatchMain(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: bench join-watch ENDPOINT PREFIX")
	}
	return joinWatch(args[0], args[1], os.Stdin, os.Stdout)
}
