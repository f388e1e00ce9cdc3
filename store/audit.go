package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
)

// ErrChanged reports that a guarded release did nothing because what it was
// about to remove changed since it was read (a new claim, a new endpoint, a
// node that came back). Re-read and decide again.
var ErrChanged = errors.New("changed since read")

// ErrHistoryCompacted reports that etcd no longer holds the history a
// question needs.
var ErrHistoryCompacted = errors.New("etcd history compacted")

// Inventory is the whole cluster read at one revision, for audits (`skein
// status`, `skein ipam check`): the typed snapshot plus what Watch leaves out.
type Inventory struct {
	Snapshot
	// Status holds the raw status/<node> values by node; callers decode them
	// into api.NodeStatus or a superset of it.
	Status map[string][]byte
	// ModRevs holds each key's mod revision, by key without the prefix
	// ("blocks/10.244.0.0-26", "endpoints/n1/c1/eth0"), for guarded releases.
	ModRevs map[string]int64
}

// Inventory reads everything under the prefix at one revision. Undecodable
// values are listed in Errors (as in a Snapshot), never fatal.
func (c *Client) Inventory(ctx context.Context) (Inventory, error) {
	resp, err := c.cli.Get(ctx, c.prefix, clientv3.WithPrefix())
	if err != nil {
		return Inventory{}, fmt.Errorf("get %s*: %w", c.prefix, err)
	}
	st := newState(c.prefix)
	st.rev = resp.Header.Revision
	inv := Inventory{Status: map[string][]byte{}, ModRevs: make(map[string]int64, len(resp.Kvs))}
	statusPrefix := c.key(kindStatus) + "/"
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		inv.ModRevs[strings.TrimPrefix(key, c.prefix)] = kv.ModRevision
		if node, ok := strings.CutPrefix(key, statusPrefix); ok {
			if oneSegment(node) != nil || !json.Valid(kv.Value) {
				st.errs[key] = "undecodable status record"
				continue
			}
			inv.Status[node] = kv.Value
			continue
		}
		st.apply(key, putValue(kv.Value))
	}
	inv.Snapshot = st.snapshot()
	return inv, nil
}

// StatusRecords returns the raw status/<node> values by node, without
// decoding them: one corrupt record must not hide the others.
func (c *Client) StatusRecords(ctx context.Context) (map[string][]byte, error) {
	p := c.key(kindStatus) + "/"
	resp, err := c.cli.Get(ctx, p, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", p, err)
	}
	out := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[string(kv.Key[len(p):])] = kv.Value
	}
	return out, nil
}

// BlockModRevKey returns the key Inventory.ModRevs uses for a block.
func BlockModRevKey(cidr netip.Prefix) string { return kindBlocks + "/" + api.BlockKeyName(cidr) }

// EndpointModRevKey returns the key Inventory.ModRevs uses for an endpoint.
func EndpointModRevKey(node string, o api.Owner) string {
	return kindEndpoints + "/" + node + "/" + o.ContainerID + "/" + o.IfName
}

// Guard is what must still hold, in the same transaction, for a guarded
// release to go ahead.
type Guard struct {
	// NodesAbsent are nodes that must have no node record.
	NodesAbsent []string
	// Blocks maps block CIDRs to the mod revision they had when read; 0
	// means the block must still be unclaimed.
	Blocks map[netip.Prefix]int64
}

func (c *Client) guardCmps(g Guard) ([]clientv3.Cmp, error) {
	var cmps []clientv3.Cmp
	for _, n := range g.NodesAbsent {
		if err := segment("node name", n); err != nil {
			return nil, err
		}
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(c.key(kindNodes, n)), "=", 0))
	}
	for cidr, rev := range g.Blocks {
		if !cidr.IsValid() || cidr != cidr.Masked() {
			return nil, fmt.Errorf("block %s: not a network prefix", cidr)
		}
		key := c.key(kindBlocks, api.BlockKeyName(cidr))
		if rev == 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", rev))
		}
	}
	return cmps, nil
}

// ReleaseBlockIf deletes block cidr if its key is unchanged since modRev and
// g holds, all in one transaction; ErrChanged when not.
func (c *Client) ReleaseBlockIf(ctx context.Context, cidr netip.Prefix, modRev int64, g Guard) error {
	if !cidr.IsValid() || cidr != cidr.Masked() {
		return fmt.Errorf("release block %s: not a network prefix", cidr)
	}
	key := c.key(kindBlocks, api.BlockKeyName(cidr))
	cmps, err := c.guardCmps(g)
	if err != nil {
		return fmt.Errorf("release %s: %w", key, err)
	}
	cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", modRev))
	rec, err := c.guardedDeleteRecord(ctx, key)
	if err != nil {
		return fmt.Errorf("release %s: %w", key, err)
	}
	resp, err := c.cli.Txn(ctx).If(cmps...).Then(append([]clientv3.Op{clientv3.OpDelete(key)}, rec...)...).Commit()
	if err != nil {
		return fmt.Errorf("release %s: %w", key, c.writeErr(ctx, key, err))
	}
	if !resp.Succeeded {
		return fmt.Errorf("release %s: %w", key, ErrChanged)
	}
	c.log.Info("block released", "prefix", cidr)
	return nil
}

// DeleteEndpointIf deletes an endpoint record if it is unchanged since
// modRev and g holds, all in one transaction; ErrChanged when not.
func (c *Client) DeleteEndpointIf(ctx context.Context, node string, o api.Owner, modRev int64, g Guard) error {
	key, err := c.endpointKey(node, o)
	if err != nil {
		return fmt.Errorf("delete endpoint: %w", err)
	}
	cmps, err := c.guardCmps(g)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", modRev))
	rec, err := c.guardedDeleteRecord(ctx, key)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	resp, err := c.cli.Txn(ctx).If(cmps...).Then(append([]clientv3.Op{clientv3.OpDelete(key)}, rec...)...).Commit()
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, c.writeErr(ctx, key, err))
	}
	if !resp.Succeeded {
		return fmt.Errorf("delete %s: %w", key, ErrChanged)
	}
	c.log.Info("endpoint record deleted", "node", node, "container_id", o.ContainerID, "ifname", o.IfName)
	return nil
}

// guardedDeleteRecord returns the audit op of deleting key as it is now; a
// value that changed meanwhile fails the caller's revision guard anyway.
func (c *Client) guardedDeleteRecord(ctx context.Context, key string) ([]clientv3.Op, error) {
	if c.actor == nil {
		return nil, nil
	}
	resp, err := c.cli.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	var before []byte
	if len(resp.Kvs) > 0 {
		before = resp.Kvs[0].Value
	}
	return c.auditOps(key, before, nil)
}

// maxLastSeenProbes bounds the reads LastSeen makes in etcd's history.
const maxLastSeenProbes = 80

// LastSeen returns when node's agent last published its status: the time in
// its current status record, or, once its heartbeat lease has ended (which
// removes alive/<node> and status/<node> together), the time in the last
// status record before the end, found in etcd's history (the heartbeat's
// start when the agent ended before it published any status). It returns
// ErrNotFound when the node had no heartbeat since its node record was
// written, and ErrHistoryCompacted when that history is gone. Times come
// from the agent's clock.
func (c *Client) LastSeen(ctx context.Context, node string) (time.Time, error) {
	if err := segment("node name", node); err != nil {
		return time.Time{}, fmt.Errorf("last seen: %w", err)
	}
	statusKey, aliveKey := c.key(kindStatus, node), c.key(kindAlive, node)
	resp, err := c.cli.Get(ctx, statusKey)
	if err != nil {
		return time.Time{}, fmt.Errorf("get %s: %w", statusKey, err)
	}
	if len(resp.Kvs) > 0 {
		return statusTime(statusKey, resp.Kvs[0].Value)
	}
	head := resp.Header.Revision
	nresp, err := c.cli.Get(ctx, c.key(kindNodes, node))
	if err != nil {
		return time.Time{}, fmt.Errorf("get node %s: %w", node, err)
	}
	floor := int64(1)
	if len(nresp.Kvs) > 0 {
		// The agent writes its node record before it starts its heartbeat.
		floor = nresp.Kvs[0].ModRevision
	}
	probes := 0
	at := func(key string, rev int64) ([]byte, error) {
		probes++
		if probes > maxLastSeenProbes {
			return nil, fmt.Errorf("last seen %s: gave up after %d reads of the history", node, maxLastSeenProbes)
		}
		r, err := c.cli.Get(ctx, key, clientv3.WithRev(rev))
		if errors.Is(err, rpctypes.ErrCompacted) {
			return nil, fmt.Errorf("last seen %s at rev %d: %w", node, rev, ErrHistoryCompacted)
		}
		if err != nil {
			return nil, fmt.Errorf("get %s at rev %d: %w", key, rev, err)
		}
		if len(r.Kvs) == 0 {
			return nil, nil
		}
		return r.Kvs[0].Value, nil
	}
	// The heartbeat puts alive/<node> as soon as it starts: gallop forward
	// from the node record's revision to a revision where it existed, then
	// bisect for the last such revision before the head. This assumes one
	// unbroken heartbeat since the node record was written; a heartbeat
	// lost and re-established on the way can make the answer earlier than
	// the truth, never later.
	present, absent := int64(0), head
	var alive []byte
	for step := int64(1); present == 0; step *= 2 {
		rev := min(floor+step, head)
		if rev == head {
			return time.Time{}, fmt.Errorf("last seen %s: no heartbeat since rev %d: %w", node, floor, ErrNotFound)
		}
		v, err := at(aliveKey, rev)
		if err != nil {
			return time.Time{}, err
		}
		if v != nil {
			present, alive = rev, v
		}
	}
	for absent-present > 1 {
		mid := present + (absent-present)/2
		v, err := at(aliveKey, mid)
		if err != nil {
			return time.Time{}, err
		}
		if v != nil {
			present, alive = mid, v
		} else {
			absent = mid
		}
	}
	// The status record lives on the same lease: its last value is there
	// at the heartbeat's last revision.
	st, err := at(statusKey, present)
	if err != nil {
		return time.Time{}, err
	}
	if st != nil {
		return statusTime(statusKey, st)
	}
	var a Alive
	if err := json.Unmarshal(alive, &a); err != nil {
		return time.Time{}, fmt.Errorf("decode %s: %w", aliveKey, err)
	}
	return a.Since, nil
}

func statusTime(key string, value []byte) (time.Time, error) {
	var st api.NodeStatus
	if err := json.Unmarshal(value, &st); err != nil {
		return time.Time{}, fmt.Errorf("decode %s: %w", key, err)
	}
	return st.Updated, nil
}
