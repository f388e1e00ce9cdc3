package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
)

// DefaultHeartbeatTTL is the lease TTL Heartbeat uses when given none.
const DefaultHeartbeatTTL = 30 * time.Second

// requestTimeout bounds each etcd call made by the long-running loops
// (Heartbeat, Watch), whose own ctx has no deadline.
const requestTimeout = 5 * time.Second

// Alive is the value at alive/<node>.
type Alive struct {
	Node  string    `json:"node"`
	Since time.Time `json:"since"`
	// Identity is the agent's identity hash (api.Node.Identity), so that a
	// second agent under the same name knows whose heartbeat it sees.
	Identity string `json:"identity,omitempty"`
}

// Heartbeat keeps alive/<node> on a lease of the given ttl (default 30s)
// until ctx is done, then revokes the lease so that the node shows as down at
// once. Each status received from statusUpdates is put at status/<node> on
// the same lease; after the lease is lost (expired while etcd was unreachable,
// revoked, etcd data lost) Heartbeat grants a new one with backoff and re-puts
// alive and the latest status. statusUpdates may be nil. It returns nil when
// ctx is done, or an error for invalid arguments.
func (c *Client) Heartbeat(ctx context.Context, node string, ttl time.Duration, statusUpdates <-chan api.NodeStatus) error {
	return c.HeartbeatIdentity(ctx, node, "", ttl, statusUpdates)
}

// HeartbeatIdentity is Heartbeat with the agent's identity hash in the
// alive value.
func (c *Client) HeartbeatIdentity(ctx context.Context, node, identity string, ttl time.Duration, statusUpdates <-chan api.NodeStatus) error {
	if err := segment("node name", node); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	if ttl <= 0 {
		ttl = DefaultHeartbeatTTL
	}
	h := &heartbeat{
		c:       c,
		node:    node,
		ident:   identity,
		ttl:     int64(math.Ceil(ttl.Seconds())),
		updates: statusUpdates,
		bo:      backoff{min: 200 * time.Millisecond, max: min(5*time.Second, max(ttl/3, time.Second))},
		since:   time.Now().UTC(),
	}
	return h.run(ctx)
}

// heartbeat is the state of one Heartbeat call.
type heartbeat struct {
	c       *Client
	node    string
	ident   string
	ttl     int64
	updates <-chan api.NodeStatus
	bo      backoff
	since   time.Time

	latest *api.NodeStatus
	// down records that the loss of the heartbeat has been logged, so that
	// each transition is logged once.
	down bool
}

func (h *heartbeat) run(ctx context.Context) error {
	log := h.c.log.With("node", h.node)
	for {
		lease, err := h.establish(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !h.down {
				log.Warn("heartbeat lost", "err", err)
				h.down = true
			} else {
				log.Debug("heartbeat retry failed", "err", err)
			}
			if !h.wait(ctx, h.bo.next()) {
				return nil
			}
			continue
		}
		h.bo.reset()
		if h.down {
			log.Info("heartbeat restored")
			h.down = false
		} else {
			log.Info("heartbeat established")
		}
		if done := h.keep(ctx, lease); done {
			return nil
		}
	}
}

// establish grants a lease and puts alive and the latest status on it.
func (h *heartbeat) establish(ctx context.Context) (clientv3.LeaseID, error) {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	g, err := h.c.cli.Grant(rctx, h.ttl)
	if err != nil {
		return 0, fmt.Errorf("grant lease: %w", err)
	}
	aliveKey := h.c.key(kindAlive, h.node)
	b, err := json.Marshal(Alive{Node: h.node, Since: h.since, Identity: h.ident})
	if err != nil {
		return 0, fmt.Errorf("encode %s: %w", aliveKey, err)
	}
	ops := []clientv3.Op{clientv3.OpPut(aliveKey, string(b), clientv3.WithLease(g.ID))}
	if h.latest != nil {
		op, err := h.statusOp(*h.latest, g.ID)
		if err != nil {
			return 0, err
		}
		ops = append(ops, op)
	}
	if _, err := h.c.cli.Txn(rctx).Then(ops...).Commit(); err != nil {
		h.revoke(ctx, g.ID)
		return 0, fmt.Errorf("put %s: %w", aliveKey, err)
	}
	h.c.log.Debug("heartbeat lease granted", "node", h.node, "lease", fmt.Sprintf("%x", int64(g.ID)))
	return g.ID, nil
}

func (h *heartbeat) statusOp(st api.NodeStatus, lease clientv3.LeaseID) (clientv3.Op, error) {
	key := h.c.key(kindStatus, h.node)
	b, err := json.Marshal(st)
	if err != nil {
		return clientv3.Op{}, fmt.Errorf("encode %s: %w", key, err)
	}
	return clientv3.OpPut(key, string(b), clientv3.WithLease(lease)), nil
}

// keep keeps lease alive and puts status updates on it until ctx is done
// (it reports true, having revoked the lease) or the lease is lost (false).
func (h *heartbeat) keep(ctx context.Context, lease clientv3.LeaseID) (done bool) {
	log := h.c.log.With("node", h.node)
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ka, err := h.c.cli.KeepAlive(kctx, lease)
	if err != nil {
		if ctx.Err() != nil {
			return true
		}
		log.Warn("heartbeat lost", "err", fmt.Errorf("keep lease alive: %w", err))
		h.down = true
		return false
	}
	statusFailing := false
	for {
		select {
		case <-ctx.Done():
			h.revoke(ctx, lease)
			log.Info("heartbeat stopped")
			return true
		case _, ok := <-ka:
			if !ok {
				if ctx.Err() != nil {
					continue // the Done case revokes
				}
				log.Warn("heartbeat lost", "err", errors.New("lease expired or revoked"))
				h.down = true
				return false
			}
		case st, ok := <-h.updates:
			if !ok {
				h.updates = nil
				continue
			}
			if st.Node == "" {
				st.Node = h.node
			}
			h.latest = &st
			err := h.putStatus(ctx, st, lease)
			switch {
			case err == nil:
				if statusFailing {
					log.Info("status published again")
					statusFailing = false
				}
			case errors.Is(err, rpctypes.ErrLeaseNotFound):
				log.Warn("heartbeat lost", "err", err)
				h.down = true
				return false
			case ctx.Err() != nil:
			case !statusFailing:
				log.Warn("status not published, will retry", "err", err)
				statusFailing = true
			default:
				log.Debug("status not published", "err", err)
			}
		}
	}
}

func (h *heartbeat) putStatus(ctx context.Context, st api.NodeStatus, lease clientv3.LeaseID) error {
	op, err := h.statusOp(st, lease)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if _, err := h.c.cli.Do(rctx, op); err != nil {
		return fmt.Errorf("put %s: %w", op.KeyBytes(), err)
	}
	return nil
}

// revoke drops lease and with it the keys on it; best effort, as the lease
// expires by itself anyway.
func (h *heartbeat) revoke(ctx context.Context, lease clientv3.LeaseID) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if _, err := h.c.cli.Revoke(rctx, lease); err != nil {
		h.c.log.Debug("heartbeat lease not revoked", "node", h.node, "err", err)
	}
}

// wait sleeps for d while recording status updates; it reports false when
// ctx is done first.
func (h *heartbeat) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case st, ok := <-h.updates:
			if !ok {
				h.updates = nil
				continue
			}
			if st.Node == "" {
				st.Node = h.node
			}
			h.latest = &st
		}
	}
}

// backoff is a capped exponential delay with jitter.
type backoff struct {
	min, max time.Duration
	cur      time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	// ±20% so that agents restarted together do not retry in step.
	return time.Duration(float64(b.cur) * (0.8 + 0.4*rand.Float64()))
}

func (b *backoff) reset() { b.cur = 0 }
