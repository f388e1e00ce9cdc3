package store

import (
	"context"
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
)

// PutRotateKey asks node's agent for a new WireGuard key; a request
// already pending is replaced (the agent acts on the newest).
func (c *Client) PutRotateKey(ctx context.Context, r api.RotateKeyRequest) error {
	if err := segment("node name", r.Node); err != nil {
		return fmt.Errorf("rotate key: %w", err)
	}
	return c.put(ctx, c.prefix+api.RotateKeyKey(r.Node), r)
}

// DeleteRotateKey removes node's request once the agent acted on it, only
// if it is still the request with id: a newer one stays.
func (c *Client) DeleteRotateKey(ctx context.Context, node, id string) error {
	key := c.prefix + api.RotateKeyKey(node)
	resp, err := c.cli.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	var r api.RotateKeyRequest
	if err := json.Unmarshal(resp.Kvs[0].Value, &r); err == nil && r.ID != id {
		return nil
	}
	_, err = c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)).
		Then(clientv3.OpDelete(key)).Commit()
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}
