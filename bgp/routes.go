package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"github.com/skeinnet/skein/internal/reconcile"
)

// ErrForeignRoute is returned (wrapped) by RouteDataplane.Add when the
// kernel already has a route to the destination that the speaker does not
// own, e.g. a connected subnet a top-of-rack router also announces. The
// speaker never replaces such a route.
var ErrForeignRoute = errors.New("a route not owned by skein bgp has this destination")

// RouteDataplane is the kernel routing table as the Speaker sees it.
type RouteDataplane interface {
	// Routes returns the routes the speaker owns, by destination: those
	// marked with its route protocol, in its table, with a gateway, and not
	// on the VXLAN device.
	Routes(ctx context.Context) (map[netip.Prefix]Route, error)
	// Add installs a route to a destination that has no owned route. When
	// another route has the destination it fails with ErrForeignRoute.
	Add(ctx context.Context, r Route) error
	// Replace changes the gateway of an owned route.
	Replace(ctx context.Context, r Route) error
	// Delete removes an owned route; deleting a missing one succeeds.
	Delete(ctx context.Context, r Route) error
}

// routeSyncer keeps the kernel's owned routes at a desired set.
type routeSyncer struct {
	dp  RouteDataplane
	log *slog.Logger

	mu        sync.Mutex
	installed map[netip.Prefix]Route  // owned routes as of the last sync
	blocked   map[netip.Prefix]string // wanted but a foreign route is in the way
}

func newRouteSyncer(dp RouteDataplane, log *slog.Logger) *routeSyncer {
	return &routeSyncer{dp: dp, log: log, installed: map[netip.Prefix]Route{}, blocked: map[netip.Prefix]string{}}
}

// sync makes the owned routes match want: adds and replaces first, then
// deletes. Owned routes that are not wanted are kept when keep says so
// (stale routes of an earlier run, kept while the speaker re-learns them).
// It keeps going after a failed route and returns how many routes changed,
// how many unwanted ones were kept, and every failure joined. A route
// blocked by a foreign one is logged once and is not a failure.
func (s *routeSyncer) sync(ctx context.Context, want map[netip.Prefix]Route, keep func(Route) bool) (ops, kept int, err error) {
	have, err := s.dp.Routes(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("list routes: %w", err)
	}
	have = cloneRoutes(have)
	d := reconcile.Diff(want, have, func(a, b Route) bool { return a == b })
	d.Sort(comparePrefix)

	var errs []error
	blocked := map[netip.Prefix]string{}
	for _, it := range d.Add {
		if ctx.Err() != nil {
			break
		}
		err := s.dp.Add(ctx, it.Value)
		switch {
		case errors.Is(err, ErrForeignRoute):
			blocked[it.Key] = err.Error()
			if _, known := s.blocked[it.Key]; !known {
				s.log.Warn("route not installed: another route has the destination", "prefix", it.Key, "gw", it.Value.Gw)
			}
		case err != nil:
			errs = append(errs, fmt.Errorf("add route %s: %w", it.Value, err))
		default:
			s.log.Debug("route added", "prefix", it.Key, "gw", it.Value.Gw)
			have[it.Key] = it.Value
			ops++
		}
	}
	for _, it := range d.Change {
		if ctx.Err() != nil {
			break
		}
		if err := s.dp.Replace(ctx, it.Value); err != nil {
			errs = append(errs, fmt.Errorf("replace route %s: %w", it.Value, err))
			continue
		}
		s.log.Debug("route replaced", "prefix", it.Key, "gw", it.Value.Gw)
		have[it.Key] = it.Value
		ops++
	}
	for _, it := range d.Delete {
		if ctx.Err() != nil {
			break
		}
		if keep != nil && keep(it.Value) {
			kept++
			continue
		}
		if err := s.dp.Delete(ctx, it.Value); err != nil {
			errs = append(errs, fmt.Errorf("delete route %s: %w", it.Value, err))
			continue
		}
		s.log.Debug("route deleted", "prefix", it.Key, "gw", it.Value.Gw)
		delete(have, it.Key)
		ops++
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	s.mu.Lock()
	s.installed, s.blocked = have, blocked
	s.mu.Unlock()
	return ops, kept, errors.Join(errs...)
}

// state returns the owned routes and the blocked destinations as of the
// last sync, sorted.
func (s *routeSyncer) state() (installed []Route, blocked []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.installed {
		installed = append(installed, r)
	}
	slices.SortFunc(installed, func(a, b Route) int { return comparePrefix(a.Dst, b.Dst) })
	for p, reason := range s.blocked {
		blocked = append(blocked, p.String()+": "+reason)
	}
	slices.Sort(blocked)
	return installed, blocked
}

func cloneRoutes(m map[netip.Prefix]Route) map[netip.Prefix]Route {
	out := make(map[netip.Prefix]Route, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
