package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// registerAttempts bounds the compare-and-swap retries of one registration.
const registerAttempts = 5

// ErrNodeTakenOver reports that the node record changed to another identity
// while this agent ran.
var ErrNodeTakenOver = errors.New("node record taken over by another identity")

// registerNode writes the node record as build makes it from the current
// one (nil when absent), after decideClaim allowed it, in a transaction
// that fails if the record changed since read: of two agents starting at
// once under one name, one wins and the other sees the winner's identity.
func (a *Agent) registerNode(ctx context.Context, takeOver bool, build func(cur *api.Node) api.Node) (claimAction, error) {
	name := a.cfg.NodeName
	for range registerAttempts {
		cur, rev, err := a.store.GetNodeRecord(ctx, name)
		var rec *api.Node
		switch {
		case err == nil:
			rec = &cur
		case errors.Is(err, store.ErrNotFound):
		default:
			return 0, fmt.Errorf("register node %s: %w", name, err)
		}
		alive, ok, err := a.store.GetAlive(ctx, name)
		if err != nil {
			return 0, fmt.Errorf("register node %s: %w", name, err)
		}
		in := claimInput{Node: name, Mine: a.id, Record: rec, TakeOver: takeOver}
		if ok {
			in.Alive = &alive
		}
		action, err := decideClaim(in)
		if err != nil {
			return 0, err
		}
		next := build(rec)
		next.Name, next.Identity = name, a.id.Hash
		if len(next.Labels) == 0 {
			next.Labels = nil // as it reads back
		}
		if rec != nil && reflect.DeepEqual(*rec, next) {
			return action, nil
		}
		if _, err := a.store.PutNodeIf(ctx, next, rev); errors.Is(err, store.ErrConflict) {
			a.log.Debug("node record changed while registering; reading it again", "err", err)
			continue
		} else if err != nil {
			return 0, fmt.Errorf("register node %s: %w", name, err)
		}
		switch action {
		case claimAdopt:
			a.log.Info("node record from an earlier version adopted", "identity", fingerprint(a.id.Hash))
		case claimTakeOver:
			a.log.Warn("node record taken over (--take-over-node)", "identity", fingerprint(a.id.Hash), "previous_identity", fingerprint(rec.Identity), "previous_ip", rec.UnderlayIP)
		}
		return action, nil
	}
	return 0, fmt.Errorf("register node %s: the record changed %d times while writing it", name, registerAttempts)
}

// claimNode makes the node name this agent's before anything acts on it
// (ipam.New adopts the blocks the name holds). A new record carries only the
// name and underlay address until putNode completes it.
func (a *Agent) claimNode(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	_, err := a.registerNode(cctx, a.cfg.TakeOverNode, func(cur *api.Node) api.Node {
		if cur == nil {
			return api.Node{UnderlayIP: a.ul.IP, UnderlayIP6: a.ul.IP6, Version: a.cfg.Version}
		}
		n := *cur
		n.Labels = maps.Clone(cur.Labels)
		n.UnderlayIP, n.UnderlayIP6 = a.ul.IP, a.ul.IP6
		return n
	})
	return err
}

// putNode writes this agent's full node record; it refuses, like claimNode,
// when another identity holds the name.
func (a *Agent) putNode(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	_, err := a.registerNode(cctx, false, func(cur *api.Node) api.Node {
		// Labels an admin set on the record survive the agent's restarts; the
		// agent's own --labels win on conflict. a.self is not changed: it is
		// read concurrently once the agent runs.
		rec := a.self
		if a.wg != nil {
			rec.WireGuardKey = a.wg.publicKey() // changes with rotate-key
		}
		rec.Labels = maps.Clone(a.self.Labels)
		if cur != nil && len(cur.Labels) > 0 {
			rec.Labels = maps.Clone(cur.Labels)
			maps.Copy(rec.Labels, a.self.Labels)
		}
		return rec
	})
	if err != nil {
		return err
	}
	a.log.Info("node registered", "ip", a.self.UnderlayIP, "ip6", a.self.UnderlayIP6, "mac", a.self.VTEPMAC.String(), "vtep", a.self.VTEPIP, "vtep6", a.self.VTEPIP6, "blocks", a.alloc.Blocks(), "identity", fingerprint(a.id.Hash))
	return nil
}
