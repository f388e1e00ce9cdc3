package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
)

// ErrConflict reports that a compare-and-swap lost: the key changed since it
// was read.
var ErrConflict = errors.New("changed concurrently")

// GetNodeRecord returns one node record and the revision it was last written
// at, for PutNodeIf; ErrNotFound (and revision 0) when absent.
func (c *Client) GetNodeRecord(ctx context.Context, name string) (api.Node, int64, error) {
	var n api.Node
	if err := segment("node name", name); err != nil {
		return n, 0, fmt.Errorf("get node: %w", err)
	}
	key := c.key(kindNodes, name)
	resp, err := c.cli.Get(ctx, key)
	if err != nil {
		return n, 0, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return n, 0, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &n); err != nil {
		return n, 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return n, resp.Kvs[0].ModRevision, nil
}

// PutNodeIf writes a node record only if it is unchanged since revision rev
// (0: only if absent); ErrConflict otherwise. It returns the new revision.
func (c *Client) PutNodeIf(ctx context.Context, n api.Node, rev int64) (int64, error) {
	if err := segment("node name", n.Name); err != nil {
		return 0, fmt.Errorf("put node: %w", err)
	}
	key := c.key(kindNodes, n.Name)
	b, err := json.Marshal(n)
	if err != nil {
		return 0, fmt.Errorf("encode %s: %w", key, err)
	}
	cmp := clientv3.Compare(clientv3.ModRevision(key), "=", rev)
	if rev == 0 {
		cmp = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	resp, err := c.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, string(b))).Commit()
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("put %s at revision %d: %w", key, rev, ErrConflict)
	}
	return resp.Header.Revision, nil
}

// GetAlive returns a node's heartbeat value; ok is false when the node has
// no current heartbeat.
func (c *Client) GetAlive(ctx context.Context, node string) (a Alive, ok bool, err error) {
	if err := segment("node name", node); err != nil {
		return a, false, fmt.Errorf("get heartbeat: %w", err)
	}
	err = c.get(ctx, c.key(kindAlive, node), &a)
	switch {
	case errors.Is(err, ErrNotFound):
		return a, false, nil
	case err != nil:
		return a, false, err
	}
	return a, true, nil
}
