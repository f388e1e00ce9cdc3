package store

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
)

// casAttempts bounds read-compare-write retries under contention.
const casAttempts = 10

// maxTxnBlocks keeps a DeleteNode transaction under etcd's default limit of
// 128 operations per transaction.
const maxTxnBlocks = 100

// GetCluster returns the cluster configuration; ErrNotFound before `skein cluster init`.
func (c *Client) GetCluster(ctx context.Context) (api.Cluster, error) {
	var cl api.Cluster
	err := c.get(ctx, c.key(kindCluster), &cl)
	return cl, err
}

// CreateCluster writes the cluster configuration unless one exists (ErrExists).
func (c *Client) CreateCluster(ctx context.Context, cl api.Cluster) error {
	key := c.key(kindCluster)
	b, err := json.Marshal(cl)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return c.createKey(ctx, key, b)
}

// createKey writes key with its audit record unless it exists (ErrExists).
func (c *Client) createKey(ctx context.Context, key string, b []byte) error {
	_, _, err := c.replaceKey(ctx, key, func(old []byte) ([]byte, bool, error) {
		if old != nil {
			return nil, false, ErrExists
		}
		return b, true, nil
	})
	if err != nil {
		return fmt.Errorf("create %s: %w", key, err)
	}
	return nil
}

// PutCluster overwrites the cluster configuration.
func (c *Client) PutCluster(ctx context.Context, cl api.Cluster) error {
	key := c.key(kindCluster)
	b, err := json.Marshal(cl)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return c.putKey(ctx, key, b)
}

// putKey writes key with its audit record unless it already holds b.
func (c *Client) putKey(ctx context.Context, key string, b []byte) error {
	_, _, err := c.replaceKey(ctx, key, func(old []byte) ([]byte, bool, error) {
		return b, !bytes.Equal(old, b), nil
	})
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// PutNode creates or replaces a node record.
func (c *Client) PutNode(ctx context.Context, n api.Node) error {
	if err := segment("node name", n.Name); err != nil {
		return fmt.Errorf("put node: %w", err)
	}
	return c.put(ctx, c.key(kindNodes, n.Name), n)
}

// GetNode returns one node record; ErrNotFound when absent.
func (c *Client) GetNode(ctx context.Context, name string) (api.Node, error) {
	var n api.Node
	if err := segment("node name", name); err != nil {
		return n, fmt.Errorf("get node: %w", err)
	}
	err := c.get(ctx, c.key(kindNodes, name), &n)
	return n, err
}

// ListNodes returns every node record, sorted by name.
func (c *Client) ListNodes(ctx context.Context) ([]api.Node, error) {
	return list[api.Node](ctx, c, c.key(kindNodes)+"/")
}

// DeleteNode removes a node and everything that is its: its node record, its
// alive and status keys, the blocks whose value names it and its endpoints.
// Blocks are deleted only if unchanged since read, in the same transaction as
// the rest when the node owns at most 100 blocks (in chunks, the node record
// last, otherwise). It returns ErrNotFound only when there was nothing to delete.
func (c *Client) DeleteNode(ctx context.Context, name string) error {
	if err := segment("node name", name); err != nil {
		return fmt.Errorf("delete node: %w", err)
	}
	nodeKey := c.key(kindNodes, name)
	for range casAttempts {
		nresp, err := c.cli.Get(ctx, nodeKey)
		if err != nil {
			return fmt.Errorf("delete node %s: %w", name, err)
		}
		var nodeVal []byte
		if len(nresp.Kvs) > 0 {
			nodeVal = nresp.Kvs[0].Value
		}
		resp, err := c.cli.Get(ctx, c.key(kindBlocks)+"/", clientv3.WithPrefix())
		if err != nil {
			return fmt.Errorf("delete node %s: list blocks: %w", name, err)
		}
		var owned []*mvccpb.KeyValue
		for _, kv := range resp.Kvs {
			var b api.Block
			if err := api.UnmarshalJSON(kv.Value, &b); err != nil {
				// Its owner is unknown: leave it for an operator rather than guess.
				c.log.Warn("undecodable block skipped", "key", string(kv.Key), "node", name, "err", err)
				continue
			}
			if b.Node == name {
				owned = append(owned, kv)
			}
		}
		chunks := slices.Collect(slices.Chunk(owned, maxTxnBlocks))
		if len(chunks) == 0 {
			chunks = [][]*mvccpb.KeyValue{nil}
		}
		deleted := int64(0)
		conflict := false
		for i, chunk := range chunks {
			cmps := make([]clientv3.Cmp, 0, len(chunk))
			ops := make([]clientv3.Op, 0, len(chunk)+4)
			for _, kv := range chunk {
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision))
				ops = append(ops, clientv3.OpDelete(string(kv.Key)))
			}
			if i == len(chunks)-1 {
				rec, err := c.auditOps(nodeKey, nodeVal, nil)
				if err != nil {
					return err
				}
				ops = append(ops, rec...)
				ops = append(ops,
					clientv3.OpDelete(c.key(kindEndpoints, name)+"/", clientv3.WithPrefix()),
					clientv3.OpDelete(c.key(kindAlive, name)),
					clientv3.OpDelete(c.key(kindStatus, name)),
					clientv3.OpDelete(nodeKey),
				)
			}
			tresp, err := c.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
			if err != nil {
				return fmt.Errorf("delete node %s: %w", name, c.writeErr(ctx, nodeKey, err))
			}
			if !tresp.Succeeded {
				conflict = true
				break
			}
			for _, r := range tresp.Responses {
				deleted += r.GetResponseDeleteRange().GetDeleted()
			}
		}
		if conflict {
			continue // a block changed hands meanwhile: look again
		}
		if deleted == 0 {
			return fmt.Errorf("delete node %s: %s: %w", name, nodeKey, ErrNotFound)
		}
		c.log.Info("node deleted", "node", name, "count", len(owned))
		return nil
	}
	return fmt.Errorf("delete node %s: blocks kept changing, gave up after %d attempts", name, casAttempts)
}

// ListBlocks returns every block affinity, sorted by CIDR. An undecodable
// block is an error: guessing its owner could hand it out twice.
func (c *Client) ListBlocks(ctx context.Context) ([]api.Block, error) {
	p := c.key(kindBlocks) + "/"
	resp, err := c.cli.Get(ctx, p, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", p, err)
	}
	out := make([]api.Block, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		b, err := decodeBlock(p, kv.Key, kv.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b api.Block) int { return comparePrefix(a.CIDR, b.CIDR) })
	return out, nil
}

// decodeBlock decodes the block at key; the CIDR comes from the key, which
// is what claims compete on.
func decodeBlock(blocksPrefix string, key, value []byte) (api.Block, error) {
	cidr, err := api.ParseBlockKeyName(string(key[len(blocksPrefix):]))
	if err != nil {
		return api.Block{}, fmt.Errorf("decode %s: key: %w", key, err)
	}
	b, err := decodeBlockValue(cidr, value)
	if err != nil {
		return b, fmt.Errorf("decode %s: %w", key, err)
	}
	return b, nil
}

func decodeBlockValue(cidr netip.Prefix, value []byte) (api.Block, error) {
	var b api.Block
	if err := api.UnmarshalJSON(value, &b); err != nil {
		return b, err
	}
	if b.Node == "" {
		return b, errors.New("block names no node")
	}
	b.CIDR = cidr
	return b, nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

func (c *Client) blockKey(cidr netip.Prefix, node string) (string, error) {
	if !cidr.IsValid() || cidr != cidr.Masked() {
		return "", fmt.Errorf("block %s: not a network prefix", cidr)
	}
	if err := segment("node name", node); err != nil {
		return "", fmt.Errorf("block %s: %w", cidr, err)
	}
	return c.key(kindBlocks, api.BlockKeyName(cidr)), nil
}

// ClaimBlock gives cidr to node unless another node holds it, in one
// create-if-absent transaction. It reports whether node owns the block now
// (also when it already did).
func (c *Client) ClaimBlock(ctx context.Context, cidr netip.Prefix, node string) (bool, error) {
	key, err := c.blockKey(cidr, node)
	if err != nil {
		return false, fmt.Errorf("claim block: %w", err)
	}
	b, err := json.Marshal(api.Block{CIDR: cidr, Node: node})
	if err != nil {
		return false, fmt.Errorf("encode %s: %w", key, err)
	}
	resp, err := c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return false, fmt.Errorf("claim %s: %w", key, err)
	}
	if resp.Succeeded {
		return true, nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		return false, fmt.Errorf("claim %s: exists but could not be read", key)
	}
	have, err := decodeBlock(c.key(kindBlocks)+"/", kvs[0].Key, kvs[0].Value)
	if err != nil {
		return false, fmt.Errorf("claim %s: %w", key, err)
	}
	return have.Node == node, nil
}

// ReleaseBlock deletes cidr's affinity if it still names node; releasing a
// block that is absent or someone else's does nothing.
func (c *Client) ReleaseBlock(ctx context.Context, cidr netip.Prefix, node string) error {
	key, err := c.blockKey(cidr, node)
	if err != nil {
		return fmt.Errorf("release block: %w", err)
	}
	for range casAttempts {
		resp, err := c.cli.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("release %s: %w", key, err)
		}
		if len(resp.Kvs) == 0 {
			return nil
		}
		kv := resp.Kvs[0]
		have, err := decodeBlock(c.key(kindBlocks)+"/", kv.Key, kv.Value)
		if err != nil {
			return fmt.Errorf("release %s: %w", key, err)
		}
		if have.Node != node {
			c.log.Debug("block release skipped, owned by another node", "prefix", cidr, "node", node, "peer", have.Node)
			return nil
		}
		tresp, err := c.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(clientv3.OpDelete(key)).
			Commit()
		if err != nil {
			return fmt.Errorf("release %s: %w", key, err)
		}
		if tresp.Succeeded {
			return nil
		}
	}
	return fmt.Errorf("release %s: value kept changing, gave up after %d attempts", key, casAttempts)
}

func (c *Client) endpointKey(node string, o api.Owner) (string, error) {
	if err := errors.Join(segment("node name", node), segment("container id", o.ContainerID), segment("ifname", o.IfName)); err != nil {
		return "", err
	}
	return c.key(kindEndpoints, node, o.ContainerID, o.IfName), nil
}

// PutEndpoint publishes an endpoint under its node, container id and ifname.
func (c *Client) PutEndpoint(ctx context.Context, ep api.Endpoint) error {
	key, err := c.endpointKey(ep.Node, api.Owner{ContainerID: ep.ContainerID, IfName: ep.IfName})
	if err != nil {
		return fmt.Errorf("put endpoint: %w", err)
	}
	return c.put(ctx, key, ep)
}

// GetEndpoint returns one endpoint; ErrNotFound when absent.
func (c *Client) GetEndpoint(ctx context.Context, node string, o api.Owner) (api.Endpoint, error) {
	var ep api.Endpoint
	key, err := c.endpointKey(node, o)
	if err != nil {
		return ep, fmt.Errorf("get endpoint: %w", err)
	}
	err = c.get(ctx, key, &ep)
	return ep, err
}

// DeleteEndpoint unpublishes an endpoint; deleting an absent one is no error.
func (c *Client) DeleteEndpoint(ctx context.Context, node string, o api.Owner) error {
	key, err := c.endpointKey(node, o)
	if err != nil {
		return fmt.Errorf("delete endpoint: %w", err)
	}
	if _, err := c.cli.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// ListEndpoints returns every endpoint, sorted by node, container id and ifname.
func (c *Client) ListEndpoints(ctx context.Context) ([]api.Endpoint, error) {
	return list[api.Endpoint](ctx, c, c.key(kindEndpoints)+"/")
}

// ListNodeEndpoints returns the endpoints of one node, sorted by container id and ifname.
func (c *Client) ListNodeEndpoints(ctx context.Context, node string) ([]api.Endpoint, error) {
	if err := segment("node name", node); err != nil {
		return nil, fmt.Errorf("list endpoints: %w", err)
	}
	return list[api.Endpoint](ctx, c, c.key(kindEndpoints, node)+"/")
}

// PutNamespace creates or replaces a namespace's labels.
func (c *Client) PutNamespace(ctx context.Context, ns api.Namespace) error {
	if err := segment("namespace", ns.Name); err != nil {
		return fmt.Errorf("put namespace: %w", err)
	}
	return c.put(ctx, c.key(kindNamespaces, ns.Name), ns)
}

// EnsureNamespace creates a namespace record unless one exists; it never
// touches an existing record, so labels set concurrently are not lost.
func (c *Client) EnsureNamespace(ctx context.Context, name string) error {
	if err := segment("namespace", name); err != nil {
		return fmt.Errorf("ensure namespace: %w", err)
	}
	key := c.key(kindNamespaces, name)
	b, err := json.Marshal(api.Namespace{Name: name})
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	_, err = c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).
		Commit()
	if err != nil {
		return fmt.Errorf("create %s: %w", key, err)
	}
	return nil
}

// GetNamespace returns one namespace; ErrNotFound when absent.
func (c *Client) GetNamespace(ctx context.Context, name string) (api.Namespace, error) {
	var ns api.Namespace
	if err := segment("namespace", name); err != nil {
		return ns, fmt.Errorf("get namespace: %w", err)
	}
	err := c.get(ctx, c.key(kindNamespaces, name), &ns)
	return ns, err
}

// ListNamespaces returns every namespace, sorted by name.
func (c *Client) ListNamespaces(ctx context.Context) ([]api.Namespace, error) {
	return list[api.Namespace](ctx, c, c.key(kindNamespaces)+"/")
}

// DeleteNamespace removes a namespace record; deleting an absent one is no error.
func (c *Client) DeleteNamespace(ctx context.Context, name string) error {
	if err := segment("namespace", name); err != nil {
		return fmt.Errorf("delete namespace: %w", err)
	}
	key := c.key(kindNamespaces, name)
	if _, err := c.cli.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// GetStatus returns what a node last published about itself; ErrNotFound
// when absent (the agent is down or never ran).
func (c *Client) GetStatus(ctx context.Context, node string) (api.NodeStatus, error) {
	var st api.NodeStatus
	if err := segment("node name", node); err != nil {
		return st, fmt.Errorf("get status: %w", err)
	}
	err := c.get(ctx, c.key(kindStatus, node), &st)
	return st, err
}

// ListStatus returns the status of every live agent, sorted by node.
func (c *Client) ListStatus(ctx context.Context) ([]api.NodeStatus, error) {
	return list[api.NodeStatus](ctx, c, c.key(kindStatus)+"/")
}

// AliveNodes returns the nodes whose heartbeat lease is current.
func (c *Client) AliveNodes(ctx context.Context) (map[string]bool, error) {
	p := c.key(kindAlive) + "/"
	resp, err := c.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", p, err)
	}
	out := make(map[string]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[string(kv.Key[len(p):])] = true
	}
	return out, nil
}
