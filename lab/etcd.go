package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/skeinnet/skein/store"
)

// EtcdConfig configures the lab's etcd process (`skein lab etcd`).
type EtcdConfig struct {
	// Dir is the data directory; required.
	Dir string
	// ClientURLs are the client listeners (http:// and unix://); required.
	ClientURLs []string
	// PeerURL is the raft peer URL; optional, default a free loopback port.
	PeerURL string
	// Log receives etcd's errors; optional, default discard.
	Log *slog.Logger
}

// RunEtcd serves an embedded etcd until ctx ends or etcd fails. The lab
// runs it in its underlay namespace, so its TCP listener is on the underlay
// while its unix socket is reachable from the root namespace.
func RunEtcd(ctx context.Context, cfg EtcdConfig) error {
	if cfg.Dir == "" || len(cfg.ClientURLs) == 0 {
		return errors.New("lab etcd: data dir and client URLs are required")
	}
	e, err := store.StartEmbedded(ctx, store.EmbeddedConfig{
		Dir:        cfg.Dir,
		ClientURLs: cfg.ClientURLs,
		PeerURL:    cfg.PeerURL,
		// The lab's data is thrown away with the lab.
		UnsafeNoFsync: true,
		Log:           cfg.Log,
	})
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
