package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
)

// The watch fan-out phase (issue 9, item 4): N simulated agents, each its
// own etcd client with one watch on the range an agent watches (the
// cluster prefix up to "status/"), on a lab's etcd, while the bench puts
// endpoint records at a steady rate. It measures etcd's CPU and the delay
// from each put (the record's Created stamp, taken just before the put) to
// its delivery at every watcher.
//
// The watchers run in helper processes, `bench watch-fanout ENDPOINT PREFIX
// M`, of at most fanoutPerProc watchers each; a helper prints "ready" once
// all its watches are established and, when its stdin closes, one line per
// delivery ("d MICROSECONDS") and one "n WATCHER EVENTS" per watcher.

const (
	fanoutPerProc = 250
	// fanoutNode owns the records the writer puts.
	fanoutNode = scaleNodePrefix + "fanout"
	// fanoutReadyTimeout bounds the establishment of a helper's watches.
	fanoutReadyTimeout = 2 * time.Minute
)

// measureFanout runs the fan-out phase on a lab of its own.
func (b *bench) measureFanout(ctx context.Context) (res *FanoutResult, err error) {
	name := b.cfg.fanoutLab
	dir := filepath.Join(runDir, name)
	defer b.labDown(ctx, name, dir, true, &err)
	b.log.Info("fan-out lab up", "name", name)
	l, err := lab.Up(ctx, lab.Config{Name: name, Hosts: 1, ContainersPerHost: -1, PodCIDR: scalePodCIDR, BlockSize: scaleBlockBits, BinDir: b.cfg.bin, RunDir: dir, Log: b.log})
	if err != nil {
		return nil, err
	}
	if err := checkUnroutable(l); err != nil {
		return nil, err
	}
	st := l.State()
	if len(st.Etcd) == 0 || st.Etcd[0].PID == 0 {
		return nil, errors.New("fan-out lab: no etcd pid")
	}
	etcdPID := st.Etcd[0].PID
	cfg := l.StoreConfig()
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: 10 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	defer cli.Close()
	prefix := api.DefaultPrefix
	res = &FanoutResult{Rate: b.cfg.fanoutRate, Window: b.cfg.fanoutWindow}
	for _, n := range append([]int{0}, b.cfg.fanoutWatchers...) {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		step, err := b.fanoutStep(ctx, cli, cfg.Endpoints[0], prefix, etcdPID, n)
		if err != nil {
			step.Err = err.Error()
			b.log.Warn("fan-out step failed", "watchers", n, "err", err)
		}
		res.Steps = append(res.Steps, step)
	}
	return res, nil
}

// fanoutHelper is one watch-fanout helper process.
type fanoutHelper struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	ready  chan struct{}
	mu     sync.Mutex
	delays []int64 // guarded by mu, microseconds
	counts []int   // guarded by mu, events per watcher
	errs   []string
	done   chan struct{}
}

func (h *fanoutHelper) read(r io.Reader) {
	defer close(h.done)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		h.mu.Lock()
		switch {
		case len(f) == 1 && f[0] == "ready":
			close(h.ready)
		case len(f) == 2 && f[0] == "d":
			if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				h.delays = append(h.delays, v)
			}
		case len(f) == 3 && f[0] == "n":
			if v, err := strconv.Atoi(f[2]); err == nil {
				h.counts = append(h.counts, v)
			}
		default:
			h.errs = append(h.errs, sc.Text())
		}
		h.mu.Unlock()
	}
}

// fanoutStep measures one watcher count.
func (b *bench) fanoutStep(ctx context.Context, cli *clientv3.Client, endpoint, prefix string, etcdPID, n int) (FanoutStep, error) {
	step := FanoutStep{Watchers: n}
	var helpers []*fanoutHelper
	defer func() {
		for _, h := range helpers {
			_ = h.cmd.Process.Kill() // normally already gone
			_ = h.cmd.Wait()
		}
	}()
	for left := n; left > 0; left -= fanoutPerProc {
		m := min(left, fanoutPerProc)
		h := &fanoutHelper{ready: make(chan struct{}), done: make(chan struct{})}
		h.cmd = exec.Command(b.self, "watch-fanout", endpoint, prefix, strconv.Itoa(m))
		h.cmd.SysProcAttr = &unix.SysProcAttr{Pdeathsig: unix.SIGKILL}
		h.cmd.Stderr = os.Stderr
		var err error
		if h.stdin, err = h.cmd.StdinPipe(); err != nil {
			return step, err
		}
		out, err := h.cmd.StdoutPipe()
		if err != nil {
			return step, err
		}
		if err := h.cmd.Start(); err != nil {
			return step, fmt.Errorf("start watch-fanout: %w", err)
		}
		helpers = append(helpers, h)
		go h.read(out)
		select {
		case <-h.ready:
		case <-h.done:
			return step, fmt.Errorf("watch-fanout helper exited before ready: %v", h.errs)
		case <-time.After(fanoutReadyTimeout):
			return step, fmt.Errorf("watch-fanout helper: %d watches not ready after %s", m, fanoutReadyTimeout)
		case <-ctx.Done():
			return step, ctx.Err()
		}
	}
	if err := sleepCtx(ctx, scaleSettle); err != nil {
		return step, err
	}
	ticks0, err := procCPUTicks(etcdPID)
	if err != nil {
		return step, fmt.Errorf("etcd: %w", err)
	}
	t0 := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(b.cfg.fanoutRate))
	defer tick.Stop()
	puts := 0
	for time.Since(t0) < b.cfg.fanoutWindow {
		a := netip.AddrFrom4([4]byte{10, 67, 255, byte(puts%250 + 1)})
		ep := api.Endpoint{Namespace: polFakeNamespace(0), Name: fmt.Sprintf("fan-%d", puts), IPs: []netip.Addr{a}, Node: fanoutNode,
			ContainerID: fmt.Sprintf("fan%06d", puts), IfName: lab.ContainerIface, HostIface: "skfan", Created: time.Now()}
		v, err := json.Marshal(ep)
		if err != nil {
			return step, err
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = cli.Put(pctx, prefix+simEndpointKey(ep), string(v))
		cancel()
		if err != nil {
			return step, fmt.Errorf("put %s: %w", simEndpointKey(ep), err)
		}
		puts++
		select {
		case <-ctx.Done():
			return step, ctx.Err()
		case <-tick.C:
		}
	}
	window := time.Since(t0)
	ticks1, err := procCPUTicks(etcdPID)
	if err != nil {
		return step, fmt.Errorf("etcd: %w", err)
	}
	step.Puts = puts
	step.EtcdCPUPct = float64(ticks1-ticks0) / clockTicks / window.Seconds() * 100
	if rss, _, _, err := procStatus(etcdPID); err == nil {
		step.EtcdRSS = rss
	}
	// Deliveries still in flight get a moment before the helpers report.
	if err := sleepCtx(ctx, scaleSettle); err != nil {
		return step, err
	}
	var delays []time.Duration
	for _, h := range helpers {
		_ = h.stdin.Close() // the helper reports and exits on EOF
		select {
		case <-h.done:
		case <-time.After(time.Minute):
			return step, errors.New("watch-fanout helper did not report")
		}
		_ = h.cmd.Wait() // its status adds nothing to what it printed
		h.mu.Lock()
		for _, d := range h.delays {
			delays = append(delays, time.Duration(d)*time.Microsecond)
		}
		for _, c := range h.counts {
			step.Missed += max(0, puts-c)
		}
		h.mu.Unlock()
	}
	helpers = nil
	step.Deliveries = len(delays)
	if len(delays) > 0 {
		step.P50, step.P99, step.Max = percentile(delays, 50), percentile(delays, 99), percentile(delays, 100)
	}
	b.log.Info("fan-out", "watchers", n, "puts", puts, "etcd_cpu_pct", fmt.Sprintf("%.1f", step.EtcdCPUPct), "p50", step.P50, "p99", step.P99, "missed", step.Missed)
	return step, nil
}

// watchFanout is the helper's body: m clients, each with one watch on
// [prefix, prefix+"status/"), as an agent watches; it reports when stdin
// closes.
func watchFanout(endpoint, prefix string, m int, stdin io.Reader, stdout io.Writer) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lineWriter{w: bufio.NewWriter(stdout)}
	type watcher struct {
		mu     sync.Mutex
		delays []int64
		events int
	}
	ws := make([]*watcher, m)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range m {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 10 * time.Second})
		if err != nil {
			return fmt.Errorf("watcher %d: %w", i, err)
		}
		defer cli.Close()
		wch := cli.Watch(ctx, prefix, clientv3.WithRange(prefix+"status/"), clientv3.WithCreatedNotify())
		if resp, ok := <-wch; !ok || !resp.Created {
			return fmt.Errorf("watcher %d: watch not established", i)
		}
		w := &watcher{}
		ws[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for resp := range wch {
				now := time.Now()
				for _, ev := range resp.Events {
					var ep struct {
						Created time.Time `json:"created"`
					}
					// As an agent would, decode what arrives.
					if json.Unmarshal(ev.Kv.Value, &ep) != nil || ep.Created.IsZero() {
						continue
					}
					w.mu.Lock()
					w.events++
					w.delays = append(w.delays, now.Sub(ep.Created).Microseconds())
					w.mu.Unlock()
				}
			}
		}()
	}
	out.printf("ready")
	_, _ = io.Copy(io.Discard, stdin) // until the bench closes it
	bw := bufio.NewWriter(stdout)
	for i, w := range ws {
		w.mu.Lock()
		for _, d := range w.delays {
			fmt.Fprintf(bw, "d %d\n", d)
		}
		fmt.Fprintf(bw, "n %d %d\n", i, w.events)
		w.mu.Unlock()
	}
	return bw.Flush()
}

// watchFanoutMain runs the helper subcommand.
func watchFanoutMain(args []string) error {
	if len(args) != 3 {
		return errors.New("usage: bench watch-fanout ENDPOINT PREFIX M")
	}
	m, err := strconv.Atoi(args[2])
	if err != nil || m < 1 {
		return fmt.Errorf("watch-fanout: M %q: want a positive number", args[2])
	}
	return watchFanout(args[0], args[1], m, os.Stdin, os.Stdout)
}
