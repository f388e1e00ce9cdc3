package main

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/lab"
)

// Names of everything the bench creates.
var (
	// nsPrefix starts every namespace name; the lab is named after it, so
	// its namespaces are "skbench-*" as well. SKEIN_BENCH_LAB replaces it,
	// so that runs sharing a machine never stop each other's namespaces.
	nsPrefix = benchPrefix()
	labName  = nsPrefix
	// runDir holds the lab's run directory and the bench's own files.
	runDir = "/run/skein-bench" + strings.TrimPrefix("-"+nsPrefix, "-skbench")
)

const (
	// cniCacheDir is where cnitool (libcni) caches results.
	cniCacheDir = "/var/lib/cni/results"
	// cleanupTimeout bounds the final cleanup.
	cleanupTimeout = 3 * time.Minute
)

// benchPrefix is SKEIN_BENCH_LAB when set to a short lowercase name, else
// "skbench"; a bad value ends the run before anything is created.
func benchPrefix() string {
	p := os.Getenv("SKEIN_BENCH_LAB")
	if p == "" {
		return "skbench"
	}
	if len(p) > 8 || strings.Trim(p, "abcdefghijklmnopqrstuvwxyz") != "" {
		fmt.Fprintf(os.Stderr, "bench: SKEIN_BENCH_LAB=%q: want 1-8 lowercase letters\n", p)
		os.Exit(2)
	}
	return p
}

// bench is one run's state: what it started, so that cleanup can end it.
type bench struct {
	cfg  config
	log  *slog.Logger
	self string // this program, for the rr helper subcommands

	mu    sync.Mutex
	procs []*exec.Cmd // guarded by mu
	nss   []string    // guarded by mu: namespaces made outside the lab
	// dlServers: the drop-log phase's servers run (guarded by mu).
	dlServers bool
}

// addNS creates a namespace and records it for cleanup.
func (b *bench) addNS(ctx context.Context, name string) error {
	b.mu.Lock()
	b.nss = append(b.nss, name)
	b.mu.Unlock()
	return addNS(ctx, name)
}

// startTracked starts cmd inside ns and records it for cleanup.
func (b *bench) startTracked(ns string, cmd *exec.Cmd) error {
	cmd.SysProcAttr = &unix.SysProcAttr{Pdeathsig: unix.SIGKILL}
	if err := startIn(ns, cmd); err != nil {
		return err
	}
	b.mu.Lock()
	b.procs = append(b.procs, cmd)
	b.mu.Unlock()
	return nil
}

func run(ctx context.Context, cfg config, log *slog.Logger) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root: it creates network namespaces")
	}
	bin, err := filepath.Abs(cfg.bin)
	if err != nil {
		return err
	}
	cfg.bin = bin
	if err := checkTools(cfg.bin); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	b := &bench{cfg: cfg, log: log, self: self}

	// A killed earlier run may have left its lab and namespaces behind.
	if err := b.cleanup(ctx); err != nil {
		return fmt.Errorf("clean up an earlier run: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if cerr := b.cleanup(cctx); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", cerr))
		}
	}()

	rep := &Report{
		Started:  time.Now(),
		Machine:  machineInfo(ctx),
		Settings: Settings{Rounds: cfg.rounds, IperfSeconds: cfg.iperfSeconds, RRCount: cfg.rrCount, CNICount: cfg.cniCount, Joins: cfg.joins, Restarts: cfg.restarts, IdleWindow: cfg.idle},
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return err
	}
	// The policy and BGP phases bring up labs of their own; the others
	// share this one.
	var l *lab.Lab
	if needsMainLab(cfg.phases) {
		log.Info("lab up", "name", labName)
		l, err = lab.Up(ctx, lab.Config{
			Name:              labName,
			Hosts:             2,
			ContainersPerHost: 1,
			BinDir:            cfg.bin,
			RunDir:            filepath.Join(runDir, "lab"),
			Log:               log,
		})
		if err != nil {
			return err
		}
	}

	phase := func(name string, fn func() error) {
		if ctx.Err() != nil || !cfg.phases[phaseKey(name)] {
			return
		}
		start := time.Now()
		log.Info("phase start", "phase", name)
		if err := fn(); err != nil {
			rep.Failures = append(rep.Failures, fmt.Sprintf("%s: %v", name, err))
			log.Error("phase failed", "phase", name, "err", err)
			return
		}
		log.Info("phase done", "phase", name, "dur", time.Since(start).Round(time.Millisecond))
	}
	phase("data plane", func() (err error) { rep.Dataplane, err = b.measureDataplane(ctx, l); return err })
	b.stopProcs() // the data-plane servers must not disturb what follows
	phase("agent memory and idle CPU", func() (err error) { rep.Agents, err = b.measureAgents(ctx, l); return err })
	phase("CNI", func() (err error) { rep.CNI, err = b.measureCNI(ctx, l); return err })
	phase("agent start → ready", func() (err error) { rep.Ready, err = b.measureReady(ctx, l); return err })
	phase("node join", func() (err error) { rep.Join, err = b.measureJoin(ctx, l); return err })
	phase("policy", func() (err error) { rep.Policy, err = b.measurePolicy(ctx); return err })
	phase("bgp", func() (err error) { rep.BGP, err = b.measureBGP(ctx); return err })
	phase("scale", func() (err error) { rep.Scale, err = b.measureScale(ctx); return err })
	phase("fanout", func() (err error) { rep.Fanout, err = b.measureFanout(ctx); return err })
	phase("kube", func() (err error) { rep.Kube, err = b.measureKube(ctx); return err })
	phase("droplog", func() (err error) { rep.DropLog, err = b.measureDropLog(ctx); return err })
	phase("wireguard", func() (err error) { rep.WireGuard, err = b.measureWireGuard(ctx); return err })
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted; no report written: %w", context.Cause(ctx))
	}

	rep.Machine.LoadEnd = loadAvg()
	rep.Took = time.Since(rep.Started)
	var buf bytes.Buffer
	if err := rep.render(&buf); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(cfg.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(cfg.out, buf.Bytes(), 0o644); err != nil {
		return err
	}
	if rep.Scale != nil {
		if err := os.WriteFile(filepath.Join(filepath.Dir(cfg.out), scaleSVGName), []byte(rep.Scale.scaleSVG()), 0o644); err != nil {
			return err
		}
	}
	log.Info("report written", "path", cfg.out, "took", rep.Took.Round(time.Second), "failures", len(rep.Failures))
	return nil
}

// checkTools verifies the binaries and commands the bench runs.
func checkTools(bin string) error {
	var errs []error
	for _, f := range []string{"skeind", "skein", "skein-cni", "cnitool", "ref/bridge", "ref/host-local"} {
		if _, err := os.Stat(filepath.Join(bin, f)); err != nil {
			errs = append(errs, fmt.Errorf("%w (make build tools)", err))
		}
	}
	for _, c := range []string{"ip", "bridge", "iperf3", "ethtool", "ss", "sh"} {
		if _, err := exec.LookPath(c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stopProcs kills the processes the bench started and waits for them.
func (b *bench) stopProcs() {
	b.mu.Lock()
	procs := b.procs
	b.procs = nil
	b.mu.Unlock()
	for _, p := range procs {
		_ = p.Process.Kill() // already gone is fine
		_ = p.Wait()         // its exit status is that of a killed process
	}
}

// cleanup removes everything a run creates: its processes, the cnitool
// cache entries of its namespaces, its namespaces, the lab and the run
// directory. It is safe to call when nothing exists.
func (b *bench) cleanup(ctx context.Context) error {
	b.stopProcs()
	var errs []error
	wgPlain, wgEnc := b.wgLabs()
	for _, name := range []string{b.cfg.scaleLab, b.cfg.fanoutLab, wgPlain, wgEnc} {
		if err := lab.Down(ctx, name, filepath.Join(runDir, name)); err != nil {
			errs = append(errs, err)
		}
	}
	if ownLabsOnly(b.cfg.phases) {
		// The scale and fan-out phases run on labs of their own names: a
		// run of only those leaves the shared bench labs (maybe another
		// run's) alone.
		return errors.Join(errs...)
	}
	nss, err := benchNamespaces()
	if err != nil {
		errs = append(errs, err)
	}
	b.mu.Lock()
	nss = append(nss, b.nss...)
	b.nss = nil
	b.mu.Unlock()
	slices.Sort(nss)
	nss = slices.Compact(nss)
	removeCNICache(nss)
	// Down stops every process running in a "skbench-*" namespace (also the
	// ones of a killed earlier run), then deletes the namespaces and the
	// lab's run directory.
	if err := lab.Down(ctx, labName, filepath.Join(runDir, "lab")); err != nil {
		errs = append(errs, err)
	}
	for _, name := range []string{polLabName, bgpLabName, birdLabName, directLabName, bgp6LabName, kubeLabName} {
		if err := lab.Down(ctx, name, filepath.Join(runDir, name)); err != nil {
			errs = append(errs, err)
		}
	}
	left, err := benchNamespaces()
	if err != nil {
		errs = append(errs, err)
	}
	for _, ns := range left {
		if err := delNS(ctx, ns); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(runDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeCNICache deletes cnitool's cached results for attachments in the
// given namespaces (cnitool names the container after a hash of the path).
func removeCNICache(nss []string) {
	for _, ns := range nss {
		sum := sha512.Sum512([]byte(nsPath(ns)))
		id := fmt.Sprintf("cnitool-%x", sum[:10])
		for _, net := range []string{lab.CNINetwork, refNetwork} {
			_ = os.Remove(filepath.Join(cniCacheDir, net+"-"+id+"-eth0")) // usually absent: DEL removed it
		}
	}
}

// needsMainLab reports whether a selected phase runs on the shared lab.
func needsMainLab(phases map[string]bool) bool {
	for p := range phases {
		if p != "policy" && p != "bgp" && p != "scale" && p != "fanout" && p != "kube" && p != "droplog" && p != "wireguard" {
			return true
		}
	}
	return false
}

// phaseKey maps a phase's name to its -phases key.
func phaseKey(name string) string {
	switch name {
	case "data plane":
		return "dataplane"
	case "agent memory and idle CPU":
		return "agent"
	case "CNI":
		return "cni"
	case "agent start → ready":
		return "ready"
	case "node join":
		return "join"
	}
	return name
}

// ownLabsOnly reports whether every selected phase runs on a lab named by
// its own flag.
func ownLabsOnly(phases map[string]bool) bool {
	for p := range phases {
		if p != "scale" && p != "fanout" && p != "wireguard" {
			return false
		}
	}
	return true
}

// labDown removes a phase's lab, after the processes the bench started
// (stopProcs) when asked, and adds a failure to *err. It is deferred by the
// phases that bring up a lab of their own.
func (b *bench) labDown(ctx context.Context, name, dir string, stopProcs bool, err *error) {
	if stopProcs {
		b.stopProcs()
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if derr := lab.Down(cctx, name, dir); derr != nil {
		*err = errors.Join(*err, derr)
	}
}
