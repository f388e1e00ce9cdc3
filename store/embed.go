package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"
)

// embedStartTimeout bounds how long StartEmbedded waits for etcd to serve.
const embedStartTimeout = 60 * time.Second

// EmbeddedConfig configures an in-process etcd: a single member, or one
// member of a cluster when InitialCluster is set.
type EmbeddedConfig struct {
	// Dir is the data directory; required. Restarting on the same Dir keeps the data.
	Dir string
	// ClientURLs are where etcd serves clients; optional, default one
	// http://127.0.0.1:<free port> (https:// with CertFile). unix:///abs/path
	// serves on a unix socket, which other network namespaces can reach.
	ClientURLs []string
	// PeerURL is the raft peer URL; optional, default http://127.0.0.1:<free port>.
	PeerURL string
	// CertFile and KeyFile are the server certificate for https:// client
	// URLs; optional.
	CertFile, KeyFile string
	// ClientCAFile, when set, makes etcd require client certificates signed
	// by it; optional.
	ClientCAFile string
	// UnsafeNoFsync skips fsync, which speeds up tests; optional, default false.
	UnsafeNoFsync bool

	// Name is this member's name; optional, default "skein".
	Name string
	// InitialCluster lists every member as name=peerURL,... for the first
	// start of a cluster; optional, default this member alone. A restart on
	// a Dir with data ignores it, as etcd does.
	InitialCluster string
	// ClusterToken tells clusters bootstrapped from the same InitialCluster
	// apart; optional, default etcd's.
	ClusterToken string
	// PeerCertFile and PeerKeyFile make the peer URL serve TLS and present
	// this certificate to the other members, which must be signed by
	// PeerCAFile; optional (all three together).
	PeerCertFile, PeerKeyFile, PeerCAFile string
	// HeartbeatInterval and ElectionTimeout tune raft; optional, default
	// etcd's (100 ms, 1 s).
	HeartbeatInterval, ElectionTimeout time.Duration
	// Log receives etcd's errors; optional, default discard.
	Log *slog.Logger
}

// Embedded is a running in-process etcd.
type Embedded struct {
	etcd      *embed.Etcd
	endpoints []string
	closeOnce sync.Once
	closing   *atomic.Bool // demotes etcd's shutdown "errors"
}

// StartEmbedded starts etcd and returns once it serves clients. Ports left
// to choose are picked free on 127.0.0.1; a start that loses the race for
// one retries with other ports.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.Dir == "" {
		return nil, errors.New("embedded etcd: no data dir")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With("component", "etcd")
	var lastErr error
	for range 5 {
		e, err := startEmbedded(ctx, cfg, log)
		if err == nil {
			log.Info("embedded etcd started", "dir", cfg.Dir, "endpoints", strings.Join(e.endpoints, ","))
			return e, nil
		}
		lastErr = err
		// Only a port we picked ourselves can be picked again.
		inUse := errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
		if !inUse || (len(cfg.ClientURLs) > 0 && cfg.PeerURL != "") {
			break
		}
	}
	return nil, lastErr
}

func startEmbedded(ctx context.Context, cfg EmbeddedConfig, log *slog.Logger) (*Embedded, error) {
	closing := new(atomic.Bool)
	ec := embed.NewConfig()
	ec.Name = "skein"
	if cfg.Name != "" {
		ec.Name = cfg.Name
	}
	if cfg.HeartbeatInterval > 0 {
		ec.TickMs = uint(cfg.HeartbeatInterval.Milliseconds())
	}
	if cfg.ElectionTimeout > 0 {
		ec.ElectionMs = uint(cfg.ElectionTimeout.Milliseconds())
	}
	ec.Dir = cfg.Dir
	ec.Logger = "zap"
	ec.LogLevel = "error"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newZapLogger(log, zapcore.ErrorLevel, closing))
	ec.UnsafeNoFsync = cfg.UnsafeNoFsync
	// Keep history bounded for a long-running lab; watchers resync on compaction.
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = "1h"

	scheme := "http"
	if cfg.CertFile != "" {
		scheme = "https"
		ec.ClientTLSInfo.CertFile = cfg.CertFile
		ec.ClientTLSInfo.KeyFile = cfg.KeyFile
		if cfg.ClientCAFile != "" {
			ec.ClientTLSInfo.TrustedCAFile = cfg.ClientCAFile
			ec.ClientTLSInfo.ClientCertAuth = true
		}
	}
	clientURLs := cfg.ClientURLs
	if len(clientURLs) == 0 {
		port, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("embedded etcd: %w", err)
		}
		clientURLs = []string{fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)}
	}
	curls, err := parseURLs(clientURLs)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: client URLs: %w", err)
	}
	peerURL := cfg.PeerURL
	if peerURL == "" {
		port, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("embedded etcd: %w", err)
		}
		peerURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	}
	purls, err := parseURLs([]string{peerURL})
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: peer URL: %w", err)
	}
	for _, u := range plaintextOffLoopback(append(curls, purls...)) {
		log.Warn("embedded etcd serves plaintext off loopback: whoever reaches it reads and writes the whole cluster state; give it a certificate (skeind --embedded-etcd-cert, --embedded-etcd-key, --embedded-etcd-client-ca) or listen on 127.0.0.1",
			"endpoint", u)
	}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = curls, curls
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = purls, purls
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	if cfg.InitialCluster != "" {
		ec.InitialCluster = cfg.InitialCluster
	}
	if cfg.ClusterToken != "" {
		ec.InitialClusterToken = cfg.ClusterToken
	}
	if cfg.PeerCertFile != "" {
		ec.PeerTLSInfo.CertFile = cfg.PeerCertFile
		ec.PeerTLSInfo.KeyFile = cfg.PeerKeyFile
		ec.PeerTLSInfo.TrustedCAFile = cfg.PeerCAFile
		ec.PeerTLSInfo.ClientCertAuth = cfg.PeerCAFile != ""
	}

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s on %s: %w", cfg.Dir, strings.Join(clientURLs, ","), err)
	}
	timer := time.NewTimer(embedStartTimeout)
	defer timer.Stop()
	stop := func() {
		closing.Store(true)
		e.Close()
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		stop()
		return nil, fmt.Errorf("start embedded etcd in %s: %w", cfg.Dir, err)
	case <-ctx.Done():
		stop()
		return nil, fmt.Errorf("start embedded etcd in %s: %w", cfg.Dir, ctx.Err())
	case <-timer.C:
		stop()
		return nil, fmt.Errorf("start embedded etcd in %s: not ready after %s", cfg.Dir, embedStartTimeout)
	}
	eps := make([]string, len(curls))
	for i, u := range curls {
		eps[i] = u.String()
	}
	return &Embedded{etcd: e, endpoints: eps, closing: closing}, nil
}

// Endpoints returns the client URLs etcd listens on, with the chosen ports.
func (e *Embedded) Endpoints() []string {
	return append([]string(nil), e.endpoints...)
}

// Etcd returns the embedded server, for what this package does not wrap.
func (e *Embedded) Etcd() *embed.Etcd { return e.etcd }

// Close stops etcd and waits for it; later calls do nothing.
func (e *Embedded) Close() {
	e.closeOnce.Do(func() {
		e.closing.Store(true)
		e.etcd.Close()
	})
}

func parseURLs(ss []string) ([]url.URL, error) {
	out := make([]url.URL, 0, len(ss))
	for _, s := range ss {
		u, err := url.Parse(s)
		if err != nil {
			return nil, err
		}
		switch u.Scheme {
		case "http", "https", "unix", "unixs":
		default:
			return nil, fmt.Errorf("%s: scheme must be http, https, unix or unixs", s)
		}
		out = append(out, *u)
	}
	return out, nil
}

// plaintextOffLoopback returns the URLs that serve without TLS on an
// address other hosts can reach (unix sockets are local).
func plaintextOffLoopback(urls []url.URL) []string {
	var out []string
	for _, u := range urls {
		if u.Scheme != "http" {
			continue
		}
		host := u.Hostname()
		if host == "localhost" {
			continue
		}
		if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
			continue
		}
		out = append(out, u.String())
	}
	return out
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	return port, nil
}
