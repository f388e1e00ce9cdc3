package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zapcore"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/audit"
)

// Sentinel errors callers branch on with errors.Is; they are always wrapped
// with the key concerned.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
)

// DefaultDialTimeout bounds New's reachability check.
const DefaultDialTimeout = 5 * time.Second

// Key kinds: the first segment of a key after the prefix.
const (
	kindCluster    = "cluster"
	kindNodes      = "nodes"
	kindAlive      = "alive"
	kindBlocks     = "blocks"
	kindEndpoints  = "endpoints"
	kindNamespaces = "namespaces"
	kindStatus     = "status"
)

// Config configures a Client.
type Config struct {
	// Endpoints are the etcd client URLs, e.g. http://127.0.0.1:2379 or
	// unix:///run/skein/etcd.sock; required.
	Endpoints []string
	// Prefix is the key prefix; optional, default api.DefaultPrefix. A
	// missing trailing "/" is added.
	Prefix string
	// CertFile and KeyFile are a client certificate; optional.
	CertFile, KeyFile string
	// CAFile verifies the servers; optional, default the system roots. TLS
	// is used when CAFile or CertFile is set.
	CAFile string
	// Username and Password authenticate with etcd's own users; optional.
	// Without them, etcd takes the identity from the client certificate's CN.
	Username, Password string
	// Audit, when set, makes every write method record the change under
	// audit/ in the same transaction (the CLI sets it); optional.
	Audit *audit.Actor
	// DialTimeout bounds the reachability check in New; optional, default 5s.
	DialTimeout time.Duration
	// Log receives lifecycle events and etcd client errors; optional, default discard.
	Log *slog.Logger
}

// Validate checks the parts of the configuration that need no connection.
// Its errors name the flags of skeind and skein (--etcd-cert, --etcd-key),
// which both map one to one onto these fields.
func (c Config) Validate() error {
	switch {
	case c.KeyFile != "" && c.CertFile == "":
		return fmt.Errorf("--etcd-key %s given without --etcd-cert: a client key needs its certificate", c.KeyFile)
	case c.CertFile != "" && c.KeyFile == "":
		return fmt.Errorf("--etcd-cert %s given without --etcd-key: a client certificate needs its key", c.CertFile)
	case c.Password != "" && c.Username == "":
		return errors.New("--etcd-password given without --etcd-user")
	}
	if c.CertFile != "" {
		return checkCertTime(c.CertFile, time.Now())
	}
	return nil
}

// checkCertTime says when a client certificate is outside its validity, so
// that an expired certificate reads as such rather than as a failed
// handshake. An unreadable file is left to the TLS setup to report.
func checkCertTime(path string, now time.Time) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil //nolint:nilerr // New reports the unreadable file with its context
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil //nolint:nilerr // as above: New's TLS setup names the problem
	}
	switch {
	case now.After(cert.NotAfter):
		return fmt.Errorf("--etcd-cert %s: certificate %q expired at %s", path, cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(cert.NotBefore):
		return fmt.Errorf("--etcd-cert %s: certificate %q is not valid before %s", path, cert.Subject.CommonName, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// Client is typed access to Skein's keys in etcd. It is safe for concurrent use.
type Client struct {
	cli    *clientv3.Client
	prefix string
	log    *slog.Logger
	// actor, when set, is recorded with every write (Config.Audit).
	actor *audit.Actor
	// identity is the etcd user this client acts as ("" without one), for
	// permission errors.
	identity string

	resyncs atomic.Int64

	// afterLoad, when set by tests, runs after Watch loaded revision rev and
	// before it starts watching.
	afterLoad func(rev int64)
}

// New connects to etcd and verifies that it answers a linearizable read
// within cfg.DialTimeout.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With("component", "store")
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = api.DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	timeout := cfg.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	eps := strings.Join(cfg.Endpoints, ",")

	var tlsCfg *tls.Config
	if cfg.CAFile != "" || cfg.CertFile != "" {
		for _, ep := range cfg.Endpoints {
			// clientv3 silently drops TLS for http:// endpoints.
			if strings.HasPrefix(ep, "http://") {
				return nil, fmt.Errorf("etcd endpoint %s: TLS is configured, use https://", ep)
			}
		}
		info := transport.TLSInfo{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, TrustedCAFile: cfg.CAFile}
		var err error
		tlsCfg, err = info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcd %s: load TLS files: %w", eps, err)
		}
	}

	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: timeout,
		TLS:         tlsCfg,
		Username:    cfg.Username,
		Password:    cfg.Password,
		// The client logs every retry at warn; only its errors are worth keeping.
		Logger:               newZapLogger(log, zapcore.ErrorLevel, nil),
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", eps, err)
	}
	cli.KV = endpointKV{KV: cli.KV, eps: eps}
	cli.Lease = endpointLease{Lease: cli.Lease, kv: endpointKV{eps: eps}}
	c := &Client{cli: cli, prefix: prefix, log: log, actor: cfg.Audit, identity: cfg.Username}
	if c.identity == "" && cfg.CertFile != "" {
		if cn, err := audit.CertCN(cfg.CertFile); err == nil {
			c.identity = cn
		}
	}

	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Probe alongside, within the same deadline, to say why etcd is
	// unreachable, and to stop waiting at once when every endpoint failed
	// in a way that waiting does not cure (a TLS setup that does not match).
	pctx, pcancel := context.WithCancel(cctx)
	defer pcancel()
	probed := make(chan []probeResult, 1)
	go func() { probed <- probeAll(pctx, cfg.Endpoints, tlsCfg, cfg) }()
	got := make(chan error, 1)
	go func() {
		_, err := cli.Get(cctx, prefix+kindCluster, clientv3.WithCountOnly())
		got <- err
	}()
	var res []probeResult
	select {
	case err = <-got:
		if err == nil {
			pcancel()
		} else {
			// Probes still under way get a moment to say why.
			t := time.AfterFunc(500*time.Millisecond, pcancel)
			defer t.Stop()
		}
		res = <-probed
	case res = <-probed:
		if allFatal(res, len(cfg.Endpoints)) {
			cancel()
			<-got           //nolint:errcheck // the dial's own error says less than the probe's
			_ = cli.Close() // the probe's error is the one to report
			return nil, fmt.Errorf("etcd %s: TLS setup does not match the server: %s", eps, describe(res, len(cfg.Endpoints)))
		}
		err = <-got
	}
	if err != nil && (errors.Is(err, rpctypes.ErrPermissionDenied) || errors.Is(err, rpctypes.ErrGRPCPermissionDenied)) {
		// etcd answered: the identity lacks a role, it is not a connection problem.
		_ = cli.Close() // the permission error is the one to report
		who := c.identity
		if who == "" {
			who = "this client"
		}
		return nil, fmt.Errorf("etcd %s: %s may not read %s (no Skein role granted? see skein auth grant): %w", eps, who, prefix, ErrPermissionDenied)
	}
	if err != nil {
		_ = cli.Close() // the reachability error is the one to report
		if len(res) > 0 {
			return nil, fmt.Errorf("etcd %s unreachable (waited %s): %w (%s)", eps, timeout, err, describe(res, len(cfg.Endpoints)))
		}
		return nil, fmt.Errorf("etcd %s unreachable (waited %s): %w", eps, timeout, err)
	}
	log.Debug("etcd connected", "endpoints", eps)
	return c, nil
}

// endpointKV names the endpoints in the errors of every read and write, so
// that a "context deadline exceeded" says which etcd did not answer.
type endpointKV struct {
	clientv3.KV
	eps string
}

func (k endpointKV) wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("etcd %s: %w", k.eps, err)
}

func (k endpointKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	r, err := k.KV.Get(ctx, key, opts...)
	return r, k.wrap(err)
}

func (k endpointKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	r, err := k.KV.Put(ctx, key, val, opts...)
	return r, k.wrap(err)
}

func (k endpointKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	r, err := k.KV.Delete(ctx, key, opts...)
	return r, k.wrap(err)
}

func (k endpointKV) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	r, err := k.KV.Do(ctx, op)
	return r, k.wrap(err)
}

func (k endpointKV) Txn(ctx context.Context) clientv3.Txn {
	return endpointTxn{Txn: k.KV.Txn(ctx), kv: k}
}

// endpointTxn is a transaction whose Commit error names the endpoints.
type endpointTxn struct {
	clientv3.Txn
	kv endpointKV
}

func (t endpointTxn) If(cs ...clientv3.Cmp) clientv3.Txn {
	return endpointTxn{Txn: t.Txn.If(cs...), kv: t.kv}
}

func (t endpointTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	return endpointTxn{Txn: t.Txn.Then(ops...), kv: t.kv}
}

func (t endpointTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	return endpointTxn{Txn: t.Txn.Else(ops...), kv: t.kv}
}

func (t endpointTxn) Commit() (*clientv3.TxnResponse, error) {
	r, err := t.Txn.Commit()
	return r, t.kv.wrap(err)
}

// endpointLease names the endpoints in the errors of lease calls (the
// heartbeat's).
type endpointLease struct {
	clientv3.Lease
	kv endpointKV // only for wrap
}

func (l endpointLease) Grant(ctx context.Context, ttl int64) (*clientv3.LeaseGrantResponse, error) {
	r, err := l.Lease.Grant(ctx, ttl)
	return r, l.kv.wrap(err)
}

func (l endpointLease) Revoke(ctx context.Context, id clientv3.LeaseID) (*clientv3.LeaseRevokeResponse, error) {
	r, err := l.Lease.Revoke(ctx, id)
	return r, l.kv.wrap(err)
}

func (l endpointLease) KeepAlive(ctx context.Context, id clientv3.LeaseID) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	ch, err := l.Lease.KeepAlive(ctx, id)
	return ch, l.kv.wrap(err)
}

func (l endpointLease) KeepAliveOnce(ctx context.Context, id clientv3.LeaseID) (*clientv3.LeaseKeepAliveResponse, error) {
	r, err := l.Lease.KeepAliveOnce(ctx, id)
	return r, l.kv.wrap(err)
}

// Close closes the connection to etcd.
func (c *Client) Close() error {
	if err := c.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("close etcd client: %w", err)
	}
	return nil
}

// Etcd returns the underlying etcd client, for what this package does not wrap.
func (c *Client) Etcd() *clientv3.Client { return c.cli }

// Prefix returns the key prefix, ending with "/".
func (c *Client) Prefix() string { return c.prefix }

// key joins parts under the prefix.
func (c *Client) key(parts ...string) string {
	return c.prefix + strings.Join(parts, "/")
}

// segment checks that s can be one segment of a key.
func segment(what, s string) error {
	if s == "" {
		return fmt.Errorf("empty %s", what)
	}
	if strings.Contains(s, "/") {
		return fmt.Errorf("%s %q contains '/'", what, s)
	}
	return nil
}

// get reads key into v; ErrNotFound when absent.
func (c *Client) get(ctx context.Context, key string, v any) error {
	resp, err := c.cli.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	if err := api.UnmarshalJSON(resp.Kvs[0].Value, v); err != nil {
		return fmt.Errorf("decode %s: %w", key, err)
	}
	return nil
}

// put writes v as JSON at key.
func (c *Client) put(ctx context.Context, key string, v any, opts ...clientv3.OpOption) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	if _, err := c.cli.Put(ctx, key, string(b), opts...); err != nil {
		return fmt.Errorf("put %s: %w", key, c.writeErr(ctx, key, err))
	}
	return nil
}

// list decodes every value under prefix p, in key order.
func list[T any](ctx context.Context, c *Client, p string) ([]T, error) {
	resp, err := c.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", p, err)
	}
	out := make([]T, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var v T
		if err := api.UnmarshalJSON(kv.Value, &v); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out = append(out, v)
	}
	return out, nil
}
