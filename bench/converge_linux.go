package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/skeinnet/skein/lab"
	"github.com/skeinnet/skein/store"
)

// joinConvergeTimeout bounds the wait for a joined node's routes everywhere.
const joinConvergeTimeout = 15 * time.Second

// measureJoin adds cfg.joins hosts one at a time and measures, for each, the
// time from its node record appearing in etcd to the route to its blocks on
// the other hosts. The moments come from the join-watch helper.
func (b *bench) measureJoin(ctx context.Context, l *lab.Lab) (*JoinResult, error) {
	return b.measureJoins(ctx, l, b.cfg.joins)
}

// measureJoins is measureJoin with n joins, on any lab (the BGP phase runs
// it on labs of its own).
func (b *bench) measureJoins(ctx context.Context, l *lab.Lab, n int) (*JoinResult, error) {
	return b.measureJoinsOf(ctx, l, n, nil)
}

// measureJoinsOf is measureJoins timed to the routes to the new node's
// blocks that keep accepts (nil: all of them).
func (b *bench) measureJoinsOf(ctx context.Context, l *lab.Lab, n int, keep func(netip.Prefix) bool) (*JoinResult, error) {
	endpoint := l.EtcdEndpoints()[0]
	sc, err := store.New(ctx, store.Config{Endpoints: []string{endpoint}, DialTimeout: 10 * time.Second, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	defer sc.Close()
	w, err := b.startJoinWatcher(ctx, endpoint, sc.Prefix())
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := w.stop(); err != nil {
			b.log.Warn("join watcher", "err", err)
		}
	}()
	var hosts []string
	for _, h := range l.Hosts() {
		if err := w.subscribe(ctx, h.Name); err != nil {
			return nil, err
		}
		hosts = append(hosts, h.Name)
	}

	res := &JoinResult{RealTime: w.rt}
	for i := range n {
		h, err := l.AddHost(ctx)
		if err != nil {
			return res, err
		}
		blocks, err := nodeBlocks(ctx, sc, h.Name)
		if err != nil {
			return res, err
		}
		if keep != nil {
			if blocks = slices.DeleteFunc(blocks, func(p netip.Prefix) bool { return !keep(p) }); len(blocks) == 0 {
				return res, fmt.Errorf("node %s holds no block of the kind measured", h.Name)
			}
		}
		t0, first, last, err := waitRoutes(ctx, w, h.Name, hosts, blocks)
		if err != nil {
			return res, err
		}
		all, one := time.Duration(last-t0), time.Duration(first-t0)
		res.Converge = append(res.Converge, all)
		res.First = append(res.First, one)
		res.Peers = append(res.Peers, len(hosts))
		b.log.Info("node join", "n", i+1, "node", h.Name, "peers", len(hosts), "all", all.Round(time.Microsecond), "first", one.Round(time.Microsecond))

		if err := w.subscribe(ctx, h.Name); err != nil {
			return res, err
		}
		hosts = append(hosts, h.Name)
	}
	return res, nil
}

// waitRoutes waits until the watcher has seen node's record and the routes
// to all its blocks on every host, and returns the moment the record was
// first known and those of the first and the last host to have all the
// routes.
func waitRoutes(ctx context.Context, w *joinWatcher, node string, hosts []string, blocks []netip.Prefix) (t0, first, last int64, err error) {
	deadline := time.Now().Add(joinConvergeTimeout)
	for {
		t0, ok := w.node(node)
		first, last = 0, 0
		for _, h := range hosts {
			t, seen := w.routesIn(h, blocks)
			if !seen {
				ok = false
				break
			}
			if first == 0 || t < first {
				first = t
			}
			last = max(last, t)
		}
		if ok {
			// The record was committed before anyone heard of it: the
			// earliest sign, the watcher's notification or the first route,
			// is the best bound on the commit there is (etcd serves the
			// agents' watches and the watcher's in no fixed order).
			return min(t0, first), first, last, nil
		}
		if time.Now().After(deadline) {
			return 0, 0, 0, fmt.Errorf("join of %s: record or routes to %v missing after %s (watcher: %s)", node, blocks, joinConvergeTimeout, w.errors())
		}
		select {
		case <-ctx.Done():
			return 0, 0, 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// nodeBlocks returns the blocks node holds (it claims them before it
// registers, so they exist once the node is ready).
func nodeBlocks(ctx context.Context, sc *store.Client, node string) ([]netip.Prefix, error) {
	bl, err := sc.ListBlocks(ctx)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, b := range bl {
		if b.Node == node {
			out = append(out, b.CIDR)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("node %s holds no block", node)
	}
	return out, nil
}
