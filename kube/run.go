package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"
	"k8s.io/client-go/kubernetes"
	npclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// Config configures skein-kube.
type Config struct {
	// Kube is the Kubernetes client; required.
	Kube kubernetes.Interface
	// Policy is the network-policy-api client; required.
	Policy npclient.Interface
	// Store is Skein's etcd; required.
	Store *store.Client
	// Identity names this replica in the election and the status record
	// (the pod name); required.
	Identity string
	// LeaseTTL is how long a dead leader keeps the lead; optional,
	// default 15s (etcd rounds to whole seconds).
	LeaseTTL time.Duration
	// Resync is the informers' resync period; optional, default 10m.
	Resync time.Duration
	// Workers reconcile keys in parallel; optional, default 4.
	Workers int
	// StatusInterval is how often the status record is written; optional,
	// default 5s.
	StatusInterval time.Duration
	// Log receives lifecycle events; optional, default discard.
	Log *slog.Logger
}

// ErrLostLead is returned when the replica's etcd session ended while it
// led: it stops mirroring at once, since another replica may lead now.
var ErrLostLead = errors.New("skein-kube: lost the lead (etcd session ended)")

func (c *Config) defaults() error {
	switch {
	case c.Kube == nil:
		return errors.New("skein-kube: no Kubernetes client")
	case c.Policy == nil:
		return errors.New("skein-kube: no network-policy-api client")
	case c.Store == nil:
		return errors.New("skein-kube: no store")
	case c.Identity == "":
		return errors.New("skein-kube: no identity")
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 15 * time.Second
	}
	if c.Resync <= 0 {
		c.Resync = 10 * time.Minute
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.StatusInterval <= 0 {
		c.StatusInterval = 5 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c.Log = c.Log.With("component", "kube")
	return nil
}

// Run campaigns for the lead and, once it leads, mirrors Kubernetes into
// etcd until ctx ends (nil) or the lead is lost (ErrLostLead).
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	cli := cfg.Store.Etcd()
	prefix := cfg.Store.Prefix()
	ttl := max(int(cfg.LeaseTTL.Round(time.Second)/time.Second), 1)
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("etcd session: %w", err)
	}
	defer func() {
		// Resign by revoking the lease, so a standby takes over at once.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = cli.Revoke(rctx, sess.Lease()) // best effort: the lease expires anyway
	}()
	el := concurrency.NewElection(sess, prefix+api.KubeLeaderKey)
	cfg.Log.Info("campaigning", "node", cfg.Identity)
	if err := el.Campaign(ctx, cfg.Identity); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("campaign: %w", err)
	}
	cfg.Log.Info("leading", "node", cfg.Identity)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lost := make(chan struct{})
	go func() {
		select {
		case <-sess.Done():
			close(lost)
			cancel()
		case <-lctx.Done():
		}
	}()
	st := newStatusTracker()
	c, err := newController(lctx, cfg, &mirror{cli: cli, prefix: prefix}, st)
	if err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		publishStatus(lctx, cli, prefix+api.KubeStatusKey, cfg.Identity, st, cfg.StatusInterval, ping(cfg.Kube))
	}()
	err = c.run(lctx, cfg.Workers)
	cfg.Log.Info("mirroring stopped", "node", cfg.Identity, "err", err)
	cancel()
	<-done
	select {
	case <-lost:
		return ErrLostLead
	default:
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// ping asks the API server's /readyz within ctx. A client without a REST
// client (the fakes of unit tests) asks for the server version instead.
func ping(kc kubernetes.Interface) func(context.Context) error {
	return func(ctx context.Context) error {
		rc := kc.Discovery().RESTClient()
		if rc == nil {
			_, err := kc.Discovery().ServerVersion()
			return err
		}
		_, err := rc.Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	}
}
