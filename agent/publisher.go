package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/ipam"
	"github.com/skeinnet/skein/store"
)

const (
	// publishTimeout bounds one store call of the publisher.
	publishTimeout = 3 * time.Second
	// publishRetryMax caps the publisher's backoff while etcd is away; it is
	// also how often a reachability probe runs while etcd is known down.
	publishRetryMax = 5 * time.Second
)

// etcdHealth remembers whether the last store call found etcd, so that once
// etcd is known down a CNI call goes to the journal at once instead of
// waiting out a store timeout every time.
type etcdHealth struct {
	mu      sync.Mutex
	down    bool
	since   time.Time
	lastErr string
}

// reachable reports whether etcd answered the last call.
func (h *etcdHealth) reachable() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.down
}

// observe records the outcome of a store call: only unavailability marks etcd
// down, and any answer marks it up. It reports whether err was unavailability.
func (h *etcdHealth) observe(err error, now time.Time) bool {
	unavailable := store.IsUnavailable(err)
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case unavailable && !h.down:
		h.down, h.since, h.lastErr = true, now, err.Error()
	case unavailable:
		h.lastErr = err.Error()
	case h.down:
		h.down, h.since, h.lastErr = false, now, ""
	}
	return unavailable
}

func (h *etcdHealth) state() api.EtcdState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return api.EtcdState{Reachable: !h.down, Since: h.since, LastError: h.lastErr}
}

// publisher replays the journal into the store, in order, as soon as etcd
// answers.
type publisher struct {
	j      *journal
	store  endpointStore
	health *etcdHealth
	// probe is a cheap read that tells whether etcd answers.
	probe func(ctx context.Context) error
	// published is told of each endpoint the store now holds.
	published func(ep api.Endpoint)
	// release frees an unpublished attachment's address; it runs under the
	// journal's lock (see journal.done), so it must not call back into the
	// journal (status, debug).
	release func(network string, o api.Owner)
	// changed is told, outside the journal's lock, that an entry landed.
	changed func()
	log     *slog.Logger
	// kick (capacity 1) asks for a drain now.
	kick chan struct{}

	mu sync.Mutex
	// lastErr is the last replay error; guarded by mu.
	lastErr string
}

func (p *publisher) signal() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run drains the journal whenever it is signalled and, while entries wait or
// etcd is known down, retries with backoff; it blocks until ctx is done.
func (p *publisher) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	for {
		wait := time.Duration(-1)
		if !p.j.empty() || !p.health.reachable() {
			if err := p.drain(ctx); err != nil {
				backoff = min(max(2*backoff, 250*time.Millisecond), publishRetryMax)
				wait = backoff
			} else {
				backoff = 0
			}
		}
		var t *time.Timer
		var timer <-chan time.Time
		if wait >= 0 {
			t = time.NewTimer(wait)
			timer = t.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-p.kick:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
	}
}

// drain replays every entry, oldest first; it stops at the first failure so
// the store sees the changes in the order they were made.
func (p *publisher) drain(ctx context.Context) error {
	e, ok := p.j.head()
	if !ok {
		// Nothing queued: only find out whether etcd is back.
		cctx, cancel := context.WithTimeout(ctx, publishTimeout)
		defer cancel()
		err := p.probe(cctx)
		p.health.observe(err, time.Now())
		return err
	}
	n := 0
	for ; ok; e, ok = p.j.head() {
		if err := p.apply(ctx, e); err != nil {
			if !p.health.observe(err, time.Now()) {
				// etcd answered and refused: that needs an operator, and the
				// entry stays (later ones wait behind it, in order).
				p.log.Error("journal entry refused by the store", "op", e.Op, "container_id", e.Endpoint.ContainerID, "ifname", e.Endpoint.IfName, "err", err)
			}
			p.setErr(err)
			return err
		}
		p.health.observe(nil, time.Now())
		n++
	}
	p.setErr(nil)
	p.log.Info("journal drained into the store", "count", n)
	return nil
}

func (p *publisher) apply(ctx context.Context, e journalEntry) error {
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	ep, o := e.Endpoint, e.owner()
	switch e.Op {
	case opPublish:
		if err := p.store.EnsureNamespace(ctx, ep.Namespace); err != nil {
			return fmt.Errorf("publish namespace %s of %s: %w", ep.Namespace, o, err)
		}
		if err := p.store.PutEndpoint(ctx, ep); err != nil {
			return fmt.Errorf("publish endpoint %s: %w", o, err)
		}
		if err := p.j.done(e.Seq, nil); err != nil {
			return err
		}
		p.published(ep)
		p.changed()
		p.log.Info("journaled endpoint published", "container_id", ep.ContainerID, "ifname", ep.IfName, "ip", ep.IPs, "dur", time.Since(e.Queued))
	case opUnpublish:
		if err := p.store.DeleteEndpoint(ctx, ep.Node, o); err != nil {
			return fmt.Errorf("unpublish endpoint %s: %w", o, err)
		}
		// The record is gone from etcd: only now may the address be reused.
		if err := p.j.done(e.Seq, func() { p.release(ep.Network, o) }); err != nil {
			return err
		}
		p.changed()
		p.log.Info("journaled endpoint unpublished", "container_id", ep.ContainerID, "ifname", ep.IfName, "dur", time.Since(e.Queued))
	default:
		return fmt.Errorf("journal entry %d: unknown op %q", e.Seq, e.Op)
	}
	return nil
}

func (p *publisher) setErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastErr = ""
	if err != nil {
		p.lastErr = err.Error()
	}
}

func (p *publisher) state() api.OfflineState {
	p.mu.Lock()
	last := p.lastErr
	p.mu.Unlock()
	return api.OfflineState{Etcd: p.health.state(), JournalStats: p.j.stats(), LastError: last}
}

// releaseAfterUnpublish is the publisher's release: free the address now that
// no endpoint record names it.
func releaseAfterUnpublish(alloc addrAllocator, forget func(api.Owner), log *slog.Logger) func(string, api.Owner) {
	return func(network string, o api.Owner) {
		freed, err := alloc.Release(context.Background(), network, o)
		switch {
		case errors.Is(err, ipam.ErrOtherNetwork):
			log.Warn("unpublished attachment now held by another network; address kept", "network", network, "container_id", o.ContainerID, "ifname", o.IfName, "err", err)
			return
		case err != nil:
			// The record is gone and the address stays held: a leak that
			// `skein ipam check` and GC find, never a duplicate.
			log.Error("release after unpublish", "network", network, "container_id", o.ContainerID, "ifname", o.IfName, "err", err)
			return
		}
		forget(o)
		if len(freed) > 0 {
			log.Info("endpoint released", "container_id", o.ContainerID, "ifname", o.IfName, "ip", freed)
		}
	}
}
