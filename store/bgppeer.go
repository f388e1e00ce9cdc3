package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
)

// bgpPeerKey returns the full key of an external BGP peer after checking
// its name.
func (c *Client) bgpPeerKey(name string) (string, error) {
	if err := segment("bgp peer name", name); err != nil {
		return "", err
	}
	return c.prefix + api.BGPPeerKey(name), nil
}

// encodeBGPPeer validates p and returns its key and value.
func (c *Client) encodeBGPPeer(p api.BGPPeer) (key, value string, err error) {
	if err := p.Validate(); err != nil {
		return "", "", err
	}
	key, err = c.bgpPeerKey(p.Name)
	if err != nil {
		return "", "", err
	}
	b, err := json.Marshal(p)
	if err != nil {
		return "", "", fmt.Errorf("encode %s: %w", key, err)
	}
	return key, string(b), nil
}

// CreateBGPPeer writes an external BGP peer at bgppeers/<name> unless a peer
// of that name exists (ErrExists). Invalid peers are refused.
func (c *Client) CreateBGPPeer(ctx context.Context, p api.BGPPeer) error {
	key, value, err := c.encodeBGPPeer(p)
	if err != nil {
		return fmt.Errorf("create bgp peer: %w", err)
	}
	return c.createKey(ctx, key, []byte(value))
}

// PutBGPPeer creates or replaces an external BGP peer. Invalid peers are
// refused.
func (c *Client) PutBGPPeer(ctx context.Context, p api.BGPPeer) error {
	key, value, err := c.encodeBGPPeer(p)
	if err != nil {
		return fmt.Errorf("put bgp peer: %w", err)
	}
	return c.putKey(ctx, key, []byte(value))
}

// GetBGPPeer returns one external BGP peer; ErrNotFound when absent.
func (c *Client) GetBGPPeer(ctx context.Context, name string) (api.BGPPeer, error) {
	key, err := c.bgpPeerKey(name)
	if err != nil {
		return api.BGPPeer{}, fmt.Errorf("get bgp peer: %w", err)
	}
	resp, err := c.cli.Get(ctx, key)
	if err != nil {
		return api.BGPPeer{}, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return api.BGPPeer{}, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	p, err := api.DecodeBGPPeer(resp.Kvs[0].Value)
	if err != nil {
		return api.BGPPeer{}, fmt.Errorf("decode %s: %w", key, err)
	}
	return p, nil
}

// ListBGPPeers returns every external BGP peer, sorted by name. A stored
// value that does not decode is left out and reported in the error, naming
// its key, alongside the peers that did decode.
func (c *Client) ListBGPPeers(ctx context.Context) ([]api.BGPPeer, error) {
	p := c.prefix + api.BGPPeerKeyKind + "/"
	resp, err := c.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", p, err)
	}
	out := make([]api.BGPPeer, 0, len(resp.Kvs))
	var errs []error
	for _, kv := range resp.Kvs {
		name := strings.TrimPrefix(string(kv.Key), p)
		peer, err := api.DecodeBGPPeer(kv.Value)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("decode %s: %w", kv.Key, err))
		case peer.Name != name:
			errs = append(errs, fmt.Errorf("decode %s: value names peer %q", kv.Key, peer.Name))
		default:
			out = append(out, peer)
		}
	}
	return out, errors.Join(errs...)
}

// DeleteBGPPeer removes an external BGP peer; ErrNotFound when it does not
// exist.
func (c *Client) DeleteBGPPeer(ctx context.Context, name string) error {
	key, err := c.bgpPeerKey(name)
	if err != nil {
		return fmt.Errorf("delete bgp peer: %w", err)
	}
	return c.deleteKey(ctx, key)
}
