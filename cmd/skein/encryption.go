package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// applyEncryption sets cluster init's --encryption and --wireguard-port on
// c and validates the result against the backend.
func applyEncryption(c *api.Cluster, encryption string, port int) error {
	switch api.Encryption(encryption) {
	case api.EncryptionWireGuard:
		c.Encryption = api.EncryptionWireGuard
		c.WireGuard = &api.WireGuardConfig{Port: port}
	case "none", api.EncryptionNone:
		return nil
	default:
		return fmt.Errorf("--encryption %q: want wireguard or none", encryption)
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("--encryption wireguard: %w", err)
	}
	return nil
}

// newRotateKeyCmd is `skein node rotate-key`.
func newRotateKeyCmd(g *globalFlags) *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "rotate-key NAME",
		Short: "Give a node a new WireGuard key (encryption wireguard)",
		Long: `Ask a node's agent for a new WireGuard key: the agent writes a new private key to its --state-dir,
sets it on its device and publishes the new public key in its node record; every other agent then
updates that peer. Sessions with the node re-handshake within seconds; nothing restarts.

Waits (up to --wait, 0: not at all) until the node record carries a new key.`,
		Example:           "  skein node rotate-key h2\n  skein node rotate-key h2 --wait 0   # request only",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeNodeNames(g),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			return g.withStore(cmd, func(ctx context.Context, cl *store.Client) error {
				c, err := cl.GetCluster(ctx)
				if err != nil {
					return err
				}
				if c.Encryption != api.EncryptionWireGuard {
					return errors.New("the cluster does not encrypt with WireGuard (skein cluster init --encryption wireguard): there is no key to rotate")
				}
				n, err := cl.GetNode(ctx, name)
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("node %q not found (see skein node list)", name)
				}
				if err != nil {
					return err
				}
				id := make([]byte, 8)
				_, _ = rand.Read(id)
				r := api.RotateKeyRequest{Node: name, ID: hex.EncodeToString(id), Requested: time.Now().UTC()}
				if err := cl.PutRotateKey(ctx, r); err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if wait <= 0 {
					fmt.Fprintf(out, "key rotation of node %s requested (%s)\n", name, r.ID)
					return nil
				}
				// Each read takes its own --timeout; the wait is --wait.
				deadline := time.Now().Add(wait)
				for time.Now().Before(deadline) {
					cctx, cancel := g.ctx(cmd)
					cur, err := cl.GetNode(cctx, name)
					cancel()
					if err == nil && cur.WireGuardKey != "" && cur.WireGuardKey != n.WireGuardKey {
						fmt.Fprintf(out, "node %s: new WireGuard public key %s (was %s)\n", name, cur.WireGuardKey, orNone(n.WireGuardKey))
						return nil
					}
					select {
					case <-cmd.Context().Done():
						return cmd.Context().Err()
					case <-time.After(200 * time.Millisecond):
					}
				}
				return fmt.Errorf("node %s: no new key published within %s (is its agent running? the request stays pending and the agent acts on it when it runs)", name, wait)
			})
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long to wait for the new public key (0: do not wait)")
	return cmd
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
