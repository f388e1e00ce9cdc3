package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// EtcdConfig configures one lab etcd process (`skein lab etcd`): a single
// member, or one member of the lab's cluster.
type EtcdConfig struct {
	// Dir is the data directory; required.
	Dir string
	// ClientURLs are the client listeners (http(s):// and unix(s)://); required.
	ClientURLs []string
	// PeerURL is the raft peer URL; optional, default a free loopback port.
	PeerURL string
	// Name, InitialCluster and ClusterToken make the process one member of
	// a cluster (see store.EmbeddedConfig); optional, default a lone member.
	Name, InitialCluster, ClusterToken string
	// CertFile and KeyFile are the member's certificate, for its https and
	// unixs client listeners and its https peer URL; CAFile then is required
	// of every client and peer. Optional, default plaintext.
	CertFile, KeyFile, CAFile string
	// Log receives etcd's errors; optional, default discard.
	Log *slog.Logger
}

// RegisterFlags defines the flags of `skein lab etcd` on fs, the ones
// etcdArgs passes.
func (c *EtcdConfig) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Dir, EtcdFlagDir, "", "data directory")
	fs.StringSliceVar(&c.ClientURLs, EtcdFlagClientURLs, nil, "client URLs (http(s):// and unix(s)://)")
	fs.StringVar(&c.PeerURL, EtcdFlagPeerURL, "", "peer URL")
	fs.StringVar(&c.Name, EtcdFlagName, "", "member name")
	fs.StringVar(&c.InitialCluster, EtcdFlagInitialCluster, "", "every member as name=peerURL,...")
	fs.StringVar(&c.ClusterToken, EtcdFlagClusterToken, "", "initial cluster token")
	fs.StringVar(&c.CertFile, EtcdFlagCert, "", "server certificate (TLS)")
	fs.StringVar(&c.KeyFile, EtcdFlagKey, "", "server key (TLS)")
	fs.StringVar(&c.CAFile, EtcdFlagCA, "", "CA that clients and peers must be signed by (TLS)")
}

// RunEtcd serves an embedded etcd until ctx ends or etcd fails. The lab
// runs it in its underlay namespace, so its TCP listener is on the underlay
// while its unix socket is reachable from the root namespace.
func RunEtcd(ctx context.Context, cfg EtcdConfig) error {
	if cfg.Dir == "" || len(cfg.ClientURLs) == 0 {
		return errors.New("lab etcd: data dir and client URLs are required")
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") || (cfg.CertFile != "" && cfg.CAFile == "") {
		return errors.New("lab etcd: TLS needs --cert, --key and --ca together")
	}
	ec := store.EmbeddedConfig{
		Dir:            cfg.Dir,
		ClientURLs:     cfg.ClientURLs,
		PeerURL:        cfg.PeerURL,
		Name:           cfg.Name,
		InitialCluster: cfg.InitialCluster,
		ClusterToken:   cfg.ClusterToken,
		// The lab's data is thrown away with the lab.
		UnsafeNoFsync: true,
		Log:           cfg.Log,
	}
	if cfg.CertFile != "" {
		ec.CertFile, ec.KeyFile, ec.ClientCAFile = cfg.CertFile, cfg.KeyFile, cfg.CAFile
		if strings.HasPrefix(cfg.PeerURL, "https://") {
			ec.PeerCertFile, ec.PeerKeyFile, ec.PeerCAFile = cfg.CertFile, cfg.KeyFile, cfg.CAFile
		}
	}
	e, err := store.StartEmbedded(ctx, ec)
	if err != nil {
		return fmt.Errorf("lab etcd: %w", err)
	}
	defer e.Close()
	select {
	case <-ctx.Done():
		return nil
	case err := <-e.Etcd().Err():
		return fmt.Errorf("lab etcd: %w", err)
	}
}

// upEtcd writes the TLS files when asked for, starts every etcd member in
// the underlay namespace, waits until they form a cluster and writes the
// cluster config.
func (l *Lab) upEtcd(ctx context.Context, cl api.Cluster, withTLS bool) error {
	st := l.State()
	if withTLS {
		files, err := writePKI(filepath.Join(st.RunDir, tlsDir), st.Name, st.Etcd)
		if err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
		l.mu.Lock()
		l.st.TLS = &files
		err = l.saveLocked()
		l.mu.Unlock()
		if err != nil {
			return err
		}
		l.progress("etcd TLS: CA %s, client certificate %s", files.CA, files.Cert)
	}
	for i := range st.Etcd {
		if _, err := l.startEtcdProc(i + 1); err != nil {
			return err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, EtcdReadyTimeout)
	defer cancel()
	for i := range st.Etcd {
		if err := l.waitEtcdMember(wctx, i+1); err != nil {
			return err
		}
	}
	if err := writeCluster(wctx, l.StoreConfig(), cl, l.log); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	for _, m := range l.State().Etcd {
		l.progress("etcd %s up at %s (pid %d, admin endpoint %s)", m.Name, m.ClientURL, m.PID, m.AdminURL)
	}
	var pools []string
	for _, p := range cl.Pools {
		pools = append(pools, fmt.Sprintf("%s (blocks /%d)", p.CIDR, p.BlockSize))
	}
	l.progress("cluster config written: pool %s, backend %s", strings.Join(pools, ", "), cl.Backend)
	return nil
}

// writeCluster writes the cluster record; one that exists is left alone.
func writeCluster(ctx context.Context, cfg store.Config, cl api.Cluster, log *slog.Logger) error {
	cfg.DialTimeout, cfg.Log = 10*time.Second, log
	c, err := store.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	cl.Created = time.Now().UTC()
	if err := c.CreateCluster(ctx, cl); err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("write cluster config: %w", err)
	}
	return nil
}

// member returns a copy of member i (1-based); for l.st, l.mu must be held.
func (st *State) member(i int) (Etcd, error) {
	if i < 1 || i > len(st.Etcd) {
		return Etcd{}, fmt.Errorf("etcd member %d: lab %s has members 1 to %d: %w", i, st.Name, len(st.Etcd), ErrNotFound)
	}
	return st.Etcd[i-1], nil
}

// startEtcdProc starts member i's process without waiting for it.
func (l *Lab) startEtcdProc(i int) (int, error) {
	l.mu.Lock()
	m, err := l.st.member(i)
	ms, name, tls := append([]Etcd(nil), l.st.Etcd...), l.st.Name, l.st.TLS
	cmd := l.st.EtcdCommand
	runDir := l.st.RunDir
	l.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if procAlive(m.PID) && procOfRunDir(m.PID, runDir) {
		return 0, fmt.Errorf("etcd %s: already running (pid %d)", m.Name, m.PID)
	}
	if err := os.MkdirAll(m.Dir, 0o700); err != nil {
		return 0, fmt.Errorf("etcd %s: %w", m.Name, err)
	}
	argv := append(append([]string(nil), cmd...), etcdArgs(m, ms, name, tls)...)
	pid, err := startInNetNS(m.NetNS, m.LogPath, argv)
	if err != nil {
		return 0, fmt.Errorf("etcd %s: %w", m.Name, err)
	}
	l.mu.Lock()
	l.st.Etcd[i-1].PID = pid
	err = l.saveLocked()
	l.mu.Unlock()
	return pid, err
}

// waitEtcdMember waits until member i answers and knows a leader. Errors
// carry the tail of its log.
func (l *Lab) waitEtcdMember(ctx context.Context, i int) error {
	l.mu.Lock()
	m, err := l.st.member(i)
	tls := l.st.TLS
	l.mu.Unlock()
	if err != nil {
		return err
	}
	last := "no answer"
	err = poll(ctx, func() (bool, error) {
		if !procAlive(m.PID) {
			return false, errExited
		}
		s, err := memberStatus(ctx, m, tls)
		switch {
		case err != nil:
			last = err.Error()
			return false, nil
		case s.Leader == 0:
			last = "no leader"
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("etcd %s (pid %d) not ready: %w (last: %s)\n--- tail of %s ---\n%s", m.Name, m.PID, err, last, m.LogPath, tailFile(m.LogPath, 30))
	}
	return nil
}

// StartEtcdMember starts member i (1-based) again on its data and waits
// until it is back in the cluster (it answers and knows a leader).
func (l *Lab) StartEtcdMember(ctx context.Context, i int) error {
	start := time.Now()
	pid, err := l.startEtcdProc(i)
	if err != nil {
		return fmt.Errorf("start etcd member: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, EtcdReadyTimeout)
	defer cancel()
	if err := l.waitEtcdMember(wctx, i); err != nil {
		return fmt.Errorf("start etcd member: %w", err)
	}
	l.progress("etcd member %d up (%s, pid %d)", i, since(start), pid)
	return nil
}

// StopEtcdMember stops member i (1-based) as an operator would: SIGTERM,
// so a leader hands leadership over first (SIGKILL after 15 s).
func (l *Lab) StopEtcdMember(ctx context.Context, i int) error {
	return l.stopEtcdMember(ctx, i, false)
}

// KillEtcdMember kills member i (1-based) with SIGKILL, as a crash or a
// power cut would: a leader leaves without handing over.
func (l *Lab) KillEtcdMember(ctx context.Context, i int) error {
	return l.stopEtcdMember(ctx, i, true)
}

func (l *Lab) stopEtcdMember(ctx context.Context, i int, kill bool) error {
	l.mu.Lock()
	m, err := l.st.member(i)
	runDir := l.st.RunDir
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("stop etcd member: %w", err)
	}
	if procAlive(m.PID) && procOfRunDir(m.PID, runDir) {
		if kill {
			err = killProcs(ctx, []int{m.PID})
		} else {
			err = terminate(ctx, []int{m.PID}, stopGrace)
		}
		if err != nil {
			return fmt.Errorf("stop etcd %s: %w", m.Name, err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st.Etcd[i-1].PID == m.PID {
		l.st.Etcd[i-1].PID = 0
	}
	if err := l.saveLocked(); err != nil {
		return err
	}
	l.log.Info("etcd member stopped", "member", m.Name, "pid", m.PID, "killed", kill)
	return nil
}

// EtcdLeader returns the index (1-based) of the member that leads the
// etcd cluster, asking every running member; an error when none does.
func (l *Lab) EtcdLeader(ctx context.Context) (int, error) {
	st := l.State()
	ss := etcdStatuses(ctx, st)
	for i, s := range ss {
		if s.Leader {
			return i + 1, nil
		}
	}
	var why []string
	for _, s := range ss {
		why = append(why, s.Name+": "+s.Reason)
	}
	return 0, fmt.Errorf("etcd of lab %s has no leader (%s)", st.Name, strings.Join(why, "; "))
}

// etcdStatuses asks each running member for its status, in parallel. When
// two members claim the lead (one cut off from the rest), the one with the
// newer raft term is the leader.
func etcdStatuses(ctx context.Context, st State) []EtcdStatus {
	out := make([]EtcdStatus, len(st.Etcd))
	terms := make([]uint64, len(st.Etcd))
	done := make(chan struct{}, len(st.Etcd))
	for i, m := range st.Etcd {
		out[i] = EtcdStatus{Name: m.Name, PID: m.PID, ClientURL: m.ClientURL, AdminURL: m.AdminURL}
		go func() {
			defer func() { done <- struct{}{} }()
			s := &out[i]
			s.Alive = procAlive(m.PID) && procOfRunDir(m.PID, st.RunDir)
			if !s.Alive {
				s.Reason = "not running"
				return
			}
			resp, err := memberStatus(ctx, m, st.TLS)
			switch {
			case err != nil:
				s.Reason = err.Error()
			case resp.Leader == 0:
				s.Reason = "no leader"
			default:
				s.Leader = resp.Leader == resp.Header.MemberId
				terms[i] = resp.RaftTerm
			}
		}()
	}
	for range st.Etcd {
		<-done
	}
	lead := -1
	for i := range out {
		if out[i].Leader && (lead < 0 || terms[i] > terms[lead]) {
			lead = i
		}
	}
	for i := range out {
		out[i].Leader = i == lead
	}
	return out
}

// memberStatus asks member m alone for its status over its admin socket.
func memberStatus(ctx context.Context, m Etcd, tls *TLSFiles) (*clientv3.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cfg := clientv3.Config{Endpoints: []string{m.AdminURL}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()}
	if tls != nil {
		info := transport.TLSInfo{CertFile: tls.Cert, KeyFile: tls.Key, TrustedCAFile: tls.CA}
		c, err := info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcd %s: TLS files: %w", m.Name, err)
		}
		cfg.TLS = c
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", m.Name, err)
	}
	defer cli.Close()
	resp, err := cli.Status(ctx, m.AdminURL)
	if err != nil {
		return nil, fmt.Errorf("etcd %s status: %w", m.Name, err)
	}
	return resp, nil
}

// EtcdEndpoints returns the etcd endpoints for clients in the root network
// namespace: every member's unix socket.
func (l *Lab) EtcdEndpoints() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var eps []string
	for _, m := range l.st.Etcd {
		eps = append(eps, m.AdminURL)
	}
	return eps
}

// EtcdUnderlayEndpoints returns the etcd endpoints for clients inside the
// lab's hosts: every member's underlay URL.
func (l *Lab) EtcdUnderlayEndpoints() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var eps []string
	for _, m := range l.st.Etcd {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// EtcdTLS returns the files an etcd client needs, nil when etcd serves
// plaintext.
func (l *Lab) EtcdTLS() *TLSFiles {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st.TLS == nil {
		return nil
	}
	f := *l.st.TLS
	return &f
}

// StoreConfig returns a store configuration that reaches the lab's etcd from
// the root namespace, certificates included.
func (l *Lab) StoreConfig() store.Config {
	cfg := store.Config{Endpoints: l.EtcdEndpoints()}
	if f := l.EtcdTLS(); f != nil {
		cfg.CAFile, cfg.CertFile, cfg.KeyFile = f.CA, f.Cert, f.Key
	}
	return cfg
}

// EtcdEnv returns the environment (KEY=value) with which the admin CLI in
// the root namespace reaches the lab's etcd.
func (l *Lab) EtcdEnv() []string {
	env := []string{"SKEIN_ETCD_ENDPOINTS=" + strings.Join(l.EtcdEndpoints(), ",")}
	if f := l.EtcdTLS(); f != nil {
		env = append(env, "SKEIN_ETCD_CA="+f.CA, "SKEIN_ETCD_CERT="+f.Cert, "SKEIN_ETCD_KEY="+f.Key)
	}
	return env
}
