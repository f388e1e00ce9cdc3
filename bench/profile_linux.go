package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// profileHz is perf's sampling frequency per CPU: 2 ms between samples
// keeps its own cost well under the differences it measures.
const profileHz = 499

// profiler samples every CPU with perf while a phase's rounds run and
// attributes the netfilter samples to the rows' iperf3 windows.
type profiler struct {
	cmd  *exec.Cmd
	file string

	mu      sync.Mutex
	windows []profWindow
}

// startProfiler starts perf record, or returns nil (and logs why) where
// perf is missing or cannot sample.
func (b *bench) startProfiler(ctx context.Context) *profiler {
	if !b.cfg.profile {
		return nil
	}
	perf, err := exec.LookPath("perf")
	if err != nil {
		b.log.Info("no netfilter CPU profile: perf is not installed (Debian: linux-perf)")
		return nil
	}
	dir, err := os.MkdirTemp("", "skein-bench-perf")
	if err != nil {
		b.log.Warn("no netfilter CPU profile", "err", err)
		return nil
	}
	p := &profiler{file: filepath.Join(dir, "perf.data")}
	// -k mono: sample times on CLOCK_MONOTONIC, the clock windows use.
	p.cmd = exec.CommandContext(ctx, perf, "record", "-a", "-q", "-F", fmt.Sprint(profileHz), "-k", "mono", "-o", p.file)
	p.cmd.Cancel = func() error { return p.cmd.Process.Signal(syscall.SIGINT) }
	if err := p.cmd.Start(); err != nil {
		b.log.Warn("no netfilter CPU profile: perf record", "err", err)
		_ = os.RemoveAll(dir)
		return nil
	}
	return p
}

// monotonic returns CLOCK_MONOTONIC in seconds.
func monotonic() float64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

// record adds one iperf3 run of path that moved gbps for secs seconds.
func (p *profiler) record(path string, start, end, gbps float64, secs int) {
	if p == nil || gbps <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.windows = append(p.windows, profWindow{path: path, start: start, end: end, gb: gbps * float64(secs) / 8})
}

// stop ends perf record and returns each row's netfilter CPU per GB (see
// attributeSamples); nil on a nil profiler or a failure, which it logs.
func (b *bench) stopProfiler(p *profiler) map[string]map[string]float64 {
	if p == nil {
		return nil
	}
	defer func() { _ = os.RemoveAll(filepath.Dir(p.file)) }()
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	// perf exits non-zero on SIGINT; what counts is the file it wrote.
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	script := exec.CommandContext(ctx, p.cmd.Path, "script", "-i", p.file, "-F", "time,ip,sym")
	out, err := script.StdoutPipe()
	if err != nil {
		b.log.Warn("no netfilter CPU profile: perf script", "err", err)
		return nil
	}
	if err := script.Start(); err != nil {
		b.log.Warn("no netfilter CPU profile: perf script", "err", err)
		return nil
	}
	p.mu.Lock()
	windows := p.windows
	p.mu.Unlock()
	res, aerr := attributeSamples(out, windows, profileHz)
	if err := script.Wait(); err != nil || aerr != nil {
		b.log.Warn("no netfilter CPU profile: perf script", "err", err, "read", aerr)
		return nil
	}
	return res
}
