package vxlan

import "bytes"

// Drift kinds: what a foreign change touched.
const (
	DriftRoute = "route"
	DriftNeigh = "neigh"
	DriftFDB   = "fdb"
	DriftLink  = "link"
)

// Event is a kernel change to an object of a kind the overlay owns, as the
// netlink watch reports it: exactly one of Route, Neigh, FDB is set, or
// LinkDown/LinkGone for the VXLAN device.
type Event struct {
	Del   bool
	Route *Route
	Neigh *Neigh
	FDB   *FDBEntry
	// LinkGone and LinkDown report the VXLAN device deleted or set down.
	LinkGone, LinkDown bool
}

// Drift tells whether ev contradicts the desired state: an object Skein wants
// was removed or changed, the device went away or down, or a marked route it
// does not want appeared. Echoes of the reconciler's own operations match
// the desired state and are not drift. It returns the drift kind, "" for
// none. Routes compare by destination and gateway only, so a kernel detail
// the applier does not set can never make the reconciler fight itself.
func (s *State) Drift(ev Event) string {
	switch {
	case ev.LinkGone || ev.LinkDown:
		return DriftLink
	case ev.Route != nil:
		want, ok := s.Routes[ev.Route.Dst]
		switch {
		case ev.Del && ok && want.Gw == ev.Route.Gw:
			return DriftRoute
		case !ev.Del && (!ok || want.Gw != ev.Route.Gw):
			return DriftRoute
		}
	case ev.Neigh != nil:
		want, ok := s.Neighs[ev.Neigh.IP]
		switch {
		case !ok:
			// Not ours to judge: the kernel may add entries of its own.
		case ev.Del || !bytes.Equal(want.MAC, ev.Neigh.MAC):
			return DriftNeigh
		}
	case ev.FDB != nil:
		_, wanted := s.FDB[ev.FDB.Key()]
		if ev.Del {
			if wanted {
				return DriftFDB
			}
			break
		}
		if wanted {
			break // an echo of our own set
		}
		for _, e := range s.FDB { // rare: an entry we did not write
			if bytes.Equal(e.MAC, ev.FDB.MAC) {
				return DriftFDB
			}
		}
	}
	return ""
}

// String describes the event for logs.
func (ev Event) String() string {
	verb := "added"
	if ev.Del {
		verb = "removed"
	}
	switch {
	case ev.LinkGone:
		return "link removed"
	case ev.LinkDown:
		return "link set down"
	case ev.Route != nil:
		return ev.Route.String() + " " + verb
	case ev.Neigh != nil:
		return ev.Neigh.String() + " " + verb
	case ev.FDB != nil:
		return ev.FDB.String() + " " + verb
	}
	return "nothing " + verb
}

// KernelEvent judges a kernel change against the desired state; on drift it
// counts it by kind, logs what changed at warn, and schedules a full sync,
// which repairs it. It returns the drift kind, "" for none. Before the first
// Set nothing is drift.
func (r *Reconciler) KernelEvent(ev Event) string {
	r.mu.Lock()
	if r.desired == nil {
		r.mu.Unlock()
		return ""
	}
	kind := r.desired.Drift(ev)
	if kind != "" {
		if r.drifts == nil {
			r.drifts = map[string]int{}
		}
		r.drifts[kind]++
		r.full = true
	}
	r.mu.Unlock()
	if kind != "" {
		r.log.Warn("foreign change to the overlay; repairing", "kind", kind, "op", ev.String())
		r.loop.Trigger()
	}
	return kind
}

// Drifts returns how many foreign changes of each kind were seen.
func (r *Reconciler) Drifts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.drifts))
	for k, v := range r.drifts {
		out[k] = v
	}
	return out
}
