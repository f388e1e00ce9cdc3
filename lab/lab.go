package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Timeouts of the lab's waits.
const (
	// AgentReadyTimeout bounds the wait for an agent to report ready.
	AgentReadyTimeout = 60 * time.Second
	// EtcdReadyTimeout bounds the wait for the lab's etcd to answer.
	EtcdReadyTimeout = 30 * time.Second
	// stopGrace is how long a SIGTERMed process has before SIGKILL.
	stopGrace = 15 * time.Second
	// cleanupTimeout bounds the rollback of a failed Up or AddContainer.
	cleanupTimeout = 60 * time.Second
)

// maxUnixPath is the longest path a unix socket address holds (sun_path less its NUL).
const maxUnixPath = 107

// Lab is a running lab. Its methods are safe for concurrent use.
type Lab struct {
	log *slog.Logger

	outMu sync.Mutex
	out   io.Writer // guarded by outMu

	// hostMu serializes AddHost so host indices are never handed out twice.
	hostMu sync.Mutex

	mu sync.Mutex
	st State // guarded by mu
}

// Up creates a lab: the underlay, the etcd with the cluster config, the
// hosts with their agents (waiting until each is ready), and the containers.
// It refuses (ErrExists) when a lab of that name exists; on failure it
// removes everything it made.
func Up(ctx context.Context, cfg Config) (_ *Lab, err error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	binDir, err := filepath.Abs(cfg.BinDir)
	if err != nil {
		return nil, fmt.Errorf("lab up: bin dir: %w", err)
	}
	runDir := filepath.Clean(cfg.RunDir)
	if err := checkBinaries(binDir, cfg); err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	if err := checkAbsent(cfg.Name, runDir); err != nil {
		return nil, err
	}
	members := etcdMembers(cfg.Name, runDir, cfg.EtcdMembers, cfg.EtcdTLS, cfg.Underlay)
	for _, m := range members {
		_, sock, _ := strings.Cut(m.AdminURL, "://")
		if n := len(sock); n > maxUnixPath {
			return nil, fmt.Errorf("lab up: run dir %s is too long for unix sockets (%d > %d characters)", runDir, n, maxUnixPath)
		}
	}
	etcdCmd := cfg.etcdCommand
	if len(etcdCmd) == 0 {
		etcdCmd = []string{filepath.Join(binDir, binSkein)}
	}

	start := time.Now()
	l := &Lab{
		log: cfg.Log.With("component", "lab", "lab", cfg.Name),
		out: cfg.Out,
		st: State{
			Name:        cfg.Name,
			RunDir:      runDir,
			BinDir:      binDir,
			Backend:     cfg.Backend,
			PodCIDR:     cfg.PodCIDR,
			BlockSize:   cfg.BlockSize,
			UnderlayNS:  underlayNS(cfg.Name),
			Underlay:    cfg.Underlay,
			Subnets:     cfg.Subnets,
			Etcd:        members,
			EtcdCommand: etcdCmd,
		},
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	defer func() {
		if err == nil {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if derr := Down(cctx, cfg.Name, runDir); derr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", derr))
		}
	}()
	if err := os.WriteFile(filepath.Join(runDir, markerFile), []byte(cfg.Name+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	if err := l.save(); err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}

	cl, err := cfg.cluster()
	if err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	if cfg.ToR != "" {
		if _, err := torPrograms(cfg.ToR); err != nil {
			return nil, fmt.Errorf("lab up: %w", err)
		}
		t := newToR(cfg.Name, runDir, cfg.ToR, torASN(cl))
		t.IPv6Sessions = cfg.ToRIPv6Sessions
		l.mu.Lock()
		l.st.ToR = &t
		err = l.saveLocked()
		l.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("lab up: %w", err)
		}
	}

	if err := l.upUnderlay(ctx); err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	if cfg.ToR != "" {
		if err := l.upToRNetwork(ctx); err != nil {
			return nil, fmt.Errorf("lab up: %w", err)
		}
	}
	if err := l.upEtcd(ctx, cl, cfg.EtcdTLS); err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}

	var names []string
	var hosts []Host
	for i := 1; i <= cfg.Hosts; i++ {
		h, err := l.createHost(ctx, i)
		if err != nil {
			return nil, fmt.Errorf("lab up: %w", err)
		}
		names = append(names, h.Name)
		hosts = append(hosts, h)
	}
	if cfg.ToR != "" {
		// The ToR and its peer records go first, so that every agent finds
		// its sessions configured on both ends when it starts.
		if err := l.putToRPeers(ctx, hosts); err != nil {
			return nil, fmt.Errorf("lab up: %w", err)
		}
		if err := l.startToR(ctx); err != nil {
			return nil, fmt.Errorf("lab up: %w", err)
		}
	}
	if cfg.noAgents {
		l.progress("lab %s up without agents (%s)", cfg.Name, since(start))
		return l, nil
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, n := range names {
		g.Go(func() error { return l.startAgent(gctx, n) })
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	for _, n := range names {
		for j := 0; j < cfg.ContainersPerHost; j++ {
			if _, err := l.AddContainer(ctx, n, ContainerOpts{}); err != nil {
				return nil, fmt.Errorf("lab up: %w", err)
			}
		}
	}
	l.progress("lab %s up: %d hosts, %d containers (%s)", cfg.Name, len(names), len(names)*cfg.ContainersPerHost, since(start))
	return l, nil
}

// Load returns the lab described by runDir/lab.json (runDir "" means the
// default for name).
func Load(name, runDir string) (*Lab, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if runDir == "" {
		runDir = DefaultRunDir(name)
	}
	st, err := readState(runDir)
	if err != nil {
		return nil, fmt.Errorf("load lab %s: %w", name, err)
	}
	if st.Name != name {
		return nil, fmt.Errorf("load lab %s: %s describes lab %q", name, filepath.Join(runDir, stateFile), st.Name)
	}
	return &Lab{log: slog.New(slog.DiscardHandler), st: st}, nil
}

// SetOutput directs progress lines to w and debug events to log; nil leaves
// each unchanged. It is for labs returned by Load.
func (l *Lab) SetOutput(w io.Writer, log *slog.Logger) {
	if w != nil {
		l.outMu.Lock()
		l.out = w
		l.outMu.Unlock()
	}
	if log != nil {
		l.log = log.With("component", "lab", "lab", l.Name())
	}
}

// checkBinaries verifies that BinDir holds what the configuration runs.
func checkBinaries(binDir string, cfg Config) error {
	var need []string
	if len(cfg.etcdCommand) == 0 {
		need = append(need, binSkein)
	}
	if !cfg.noAgents {
		need = append(need, binSkeind, binCNI)
	}
	var errs []error
	for _, b := range need {
		p := filepath.Join(binDir, b)
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("bin dir %s: %w", binDir, err))
		case fi.IsDir() || fi.Mode()&0o111 == 0:
			errs = append(errs, fmt.Errorf("bin dir %s: %s is not executable", binDir, b))
		}
	}
	return errors.Join(errs...)
}

// checkAbsent reports ErrExists when any trace of the lab exists: its state,
// its marker, or a namespace with its prefix. A non-empty run directory that
// is not a lab's is refused too, since Down would not remove it.
func checkAbsent(name, runDir string) error {
	exists := func(what string) error {
		return fmt.Errorf("lab %s: %s: %w (remove it with `skein lab down --name %s`)", name, what, ErrExists, name)
	}
	for _, f := range []string{stateFile, markerFile} {
		if _, err := os.Stat(filepath.Join(runDir, f)); err == nil {
			return exists(filepath.Join(runDir, f) + " exists")
		}
	}
	nss, err := listNetNS()
	if err != nil {
		return err
	}
	for _, n := range nss {
		if strings.HasPrefix(n, name+"-") {
			return exists("network namespace " + n + " exists")
		}
	}
	ents, err := os.ReadDir(runDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("lab %s: %w", name, err)
	}
	if len(ents) > 0 {
		return fmt.Errorf("lab %s: run dir %s is not empty and holds no lab; choose another run dir", name, runDir)
	}
	return nil
}

// upUnderlay creates the underlay namespace and bridge.
func (l *Lab) upUnderlay(ctx context.Context) error {
	l.mu.Lock()
	ns, fams := l.st.UnderlayNS, l.st.Underlay
	l.mu.Unlock()
	if err := addNetNS(ctx, ns); err != nil {
		return fmt.Errorf("underlay: %w", err)
	}
	gws := underlayPrefixes(fams, 0, 254)
	if err := setupUnderlay(ns, gws); err != nil {
		return err
	}
	l.progress("underlay up: namespace %s, bridge %s %s", ns, BridgeName, joinPrefixes(gws))
	return nil
}

// Name returns the lab's name.
func (l *Lab) Name() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.Name
}

// RunDir returns the lab's run directory.
func (l *Lab) RunDir() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.RunDir
}

// State returns a copy of the lab's state (what lab.json holds).
func (l *Lab) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.st
	st.Hosts = append([]Host(nil), l.st.Hosts...)
	st.Containers = append([]Container(nil), l.st.Containers...)
	st.Etcd = append([]Etcd(nil), l.st.Etcd...)
	st.EtcdCommand = append([]string(nil), l.st.EtcdCommand...)
	if l.st.TLS != nil {
		f := *l.st.TLS
		st.TLS = &f
	}
	if l.st.ToR != nil {
		t := *l.st.ToR
		t.PIDs = append([]int(nil), l.st.ToR.PIDs...)
		st.ToR = &t
	}
	return st
}

// Hosts returns the lab's hosts by index.
func (l *Lab) Hosts() []Host { return l.State().Hosts }

// Containers returns the lab's containers by host and index.
func (l *Lab) Containers() []Container { return l.State().Containers }

// Host returns the host named name ("sklab-h1" or "h1").
func (l *Lab) Host(name string) (Host, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, err := l.st.host(name)
	if err != nil {
		return Host{}, err
	}
	return *h, nil
}

// Container returns the container named name: "sklab-h1-c1", "h1-c1", or
// its pod name when unambiguous.
func (l *Lab) Container(name string) (Container, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, err := l.st.container(name)
	if err != nil {
		return Container{}, err
	}
	return l.st.Containers[i], nil
}

// NetNS returns the network namespace name of a host, container or the
// underlay ("ul"), given in full or short form.
func (l *Lab) NetNS(name string) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.resolveNS(name)
}

// CNIConfigPath returns the conflist of host ("" for an unknown host).
func (l *Lab) CNIConfigPath(host string) string {
	h, err := l.Host(host)
	if err != nil {
		return ""
	}
	return h.CNIConfig
}

// Command returns a command that runs args inside the network namespace of a
// host, container or the underlay (`ip netns exec`).
func (l *Lab) Command(ctx context.Context, name string, args ...string) (*exec.Cmd, error) {
	if len(args) == 0 {
		return nil, errors.New("lab exec: no command")
	}
	ns, err := l.NetNS(name)
	if err != nil {
		return nil, err
	}
	return exec.CommandContext(ctx, ipCommand(), append([]string{"netns", "exec", ns}, args...)...), nil
}

// Exec runs args inside the network namespace of a host, container or the
// underlay and returns the combined output. A non-zero exit wraps
// *exec.ExitError.
func (l *Lab) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd, err := l.Command(ctx, name, args...)
	if err != nil {
		return nil, err
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("exec %s in %s: %w", strings.Join(args, " "), name, err)
	}
	return out, nil
}

// Dial connects to address from inside the network namespace of a host,
// container or the underlay. Addresses must be IP literals.
func (l *Lab) Dial(ctx context.Context, name, network, address string) (net.Conn, error) {
	ns, err := l.NetNS(name)
	if err != nil {
		return nil, err
	}
	return dialIn(ctx, ns, network, address)
}

// Listen listens on address inside the network namespace of a host,
// container or the underlay.
func (l *Lab) Listen(ctx context.Context, name, network, address string) (net.Listener, error) {
	ns, err := l.NetNS(name)
	if err != nil {
		return nil, err
	}
	return listenIn(ctx, ns, network, address)
}

// ListenPacket opens a packet socket on address inside the network
// namespace of a host, container or the underlay.
func (l *Lab) ListenPacket(ctx context.Context, name, network, address string) (net.PacketConn, error) {
	ns, err := l.NetNS(name)
	if err != nil {
		return nil, err
	}
	return listenPacketIn(ctx, ns, network, address)
}

// Ping sends ICMP echo requests from the namespace of a host, container or
// the underlay to dst until one is answered (nil) or ctx ends (error; after
// 5 s when ctx has no deadline).
func (l *Lab) Ping(ctx context.Context, name string, dst netip.Addr) error {
	ns, err := l.NetNS(name)
	if err != nil {
		return err
	}
	return pingIn(ctx, ns, dst)
}

// HTTPClient returns a client whose connections start inside the namespace
// of a host, container or the underlay, e.g. for an agent's debug address.
func (l *Lab) HTTPClient(name string) (*http.Client, error) {
	ns, err := l.NetNS(name)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialIn(ctx, ns, network, addr)
		},
		DisableKeepAlives: true,
	}}, nil
}

// save writes lab.json.
func (l *Lab) save() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.saveLocked()
}

// saveLocked writes lab.json; l.mu must be held.
func (l *Lab) saveLocked() error {
	l.st.sortState()
	return writeState(l.st)
}

// progress writes one line to the progress writer, if any.
func (l *Lab) progress(format string, args ...any) {
	l.outMu.Lock()
	defer l.outMu.Unlock()
	if l.out != nil {
		_, _ = fmt.Fprintf(l.out, format+"\n", args...) // progress is best effort
	}
}

// since formats the time since t in milliseconds.
func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

// tailFile returns up to the last n lines of path (at most 4 KiB), for errors.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	const maxTail = 4096
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	off := max(0, fi.Size()-maxTail)
	b := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
