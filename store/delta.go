package store

import (
	"net/netip"
	"reflect"
	"strings"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/audit"
)

// Change is one typed change of a stored object. Old is nil when the key was
// created, New is nil when it was deleted; both are set on an update. The
// values are shared with the watch's cache and must be treated as read-only.
type Change[T any] struct {
	// Key names the object within its kind: a node or namespace name, a
	// block's key name, "node/container/ifname" for an endpoint, or the key
	// without the prefix for Other.
	Key string
	Old *T
	New *T
}

// AliveChange says a node's heartbeat appeared (Alive) or expired.
type AliveChange struct {
	Node  string
	Alive bool
}

// Delta is what one watch response changed, typed per kind, each list in
// etcd's order. A put that leaves a value equal to the old one is not listed,
// so consumers never do work for a rewrite of the same record.
//
// A Delta with Reset set carries the whole state in Snapshot and no change
// lists: it comes on the first load and on every resync (compaction, a broken
// watch, etcd restored), and consumers rebuild from it. That rebuild is the
// only O(cluster) step; every other Delta costs what it lists.
type Delta struct {
	// Rev is the etcd revision the consumer's view reaches with this delta.
	Rev int64
	// Reset marks a full reload; Snapshot is set exactly then.
	Reset    bool
	Snapshot *Snapshot

	Cluster    []Change[api.Cluster]
	Nodes      []Change[api.Node]
	Blocks     []Change[api.Block]
	Endpoints  []Change[api.Endpoint]
	Namespaces []Change[api.Namespace]
	Alive      []AliveChange
	// Other holds kinds this package keeps raw (policies/, bgppeers/).
	Other []Change[[]byte]
	// Errors is the full sorted list of undecodable keys ("key: error"),
	// set when that list changed (ErrorsChanged); a bad value never stops
	// the watch, and the key's previous value is reported deleted.
	ErrorsChanged bool
	Errors        []string
}

// Empty reports whether d carries nothing for a consumer.
func (d *Delta) Empty() bool {
	return !d.Reset && !d.ErrorsChanged && len(d.Cluster)+len(d.Nodes)+len(d.Blocks)+
		len(d.Endpoints)+len(d.Namespaces)+len(d.Alive)+len(d.Other) == 0
}

// Count returns how many objects d changes (0 for a Reset).
func (d *Delta) Count() int {
	return len(d.Cluster) + len(d.Nodes) + len(d.Blocks) + len(d.Endpoints) +
		len(d.Namespaces) + len(d.Alive) + len(d.Other)
}

// applyDelta is apply that also records the typed change in d. Only the
// entry of key is read before and after, so the cost is one object's.
func (s *state) applyDelta(key string, value []byte, d *Delta) {
	rest, ok := strings.CutPrefix(key, s.prefix)
	if !ok {
		return
	}
	_, hadErr := s.errs[key]
	do := func() {
		if s.apply(key, value) {
			_, hasErr := s.errs[key]
			if hadErr || hasErr {
				d.ErrorsChanged = true
			}
		}
	}
	kind, name, _ := strings.Cut(rest, "/")
	switch kind {
	case kindCluster:
		if name != "" {
			track(s.other, rest, rest, &d.Other, do)
			return
		}
		old := s.cluster
		do()
		if c, ok := change(name, old, s.cluster); ok {
			d.Cluster = append(d.Cluster, c)
		}
	case kindNodes:
		track(s.nodes, name, name, &d.Nodes, do)
	case kindEndpoints:
		track(s.endpoints, name, name, &d.Endpoints, do)
	case kindNamespaces:
		track(s.namespaces, name, name, &d.Namespaces, do)
	case kindBlocks:
		cidr, err := api.ParseBlockKeyName(name)
		if err != nil {
			do() // records the key error
			return
		}
		track(s.blocks, cidr, name, &d.Blocks, do)
	case kindAlive:
		was := s.alive[name]
		do()
		if is := s.alive[name]; is != was {
			d.Alive = append(d.Alive, AliveChange{Node: name, Alive: is})
		}
	case kindStatus, audit.KeyKind, kindAuth:
		do()
	default:
		track(s.other, rest, rest, &d.Other, do)
	}
}

// track runs apply and appends the change it made to m[k], if any.
func track[K comparable, T any](m map[K]T, k K, name string, out *[]Change[T], apply func()) {
	var old *T
	if v, ok := m[k]; ok {
		old = &v
	}
	apply()
	var nw *T
	if v, ok := m[k]; ok {
		nw = &v
	}
	if c, ok := change(name, old, nw); ok {
		*out = append(*out, c)
	}
}

// change builds the Change from old to nw; ok is false when nothing changed.
func change[T any](name string, old, nw *T) (Change[T], bool) {
	switch {
	case old == nil && nw == nil:
		return Change[T]{}, false
	case old != nil && nw != nil && equalValue(*old, *nw):
		return Change[T]{}, false
	}
	return Change[T]{Key: name, Old: old, New: nw}, true
}

// equalValue compares two decoded records. Records are small (a node, an
// endpoint) and this runs once per event, so reflection is cheap enough.
func equalValue[T any](a, b T) bool {
	switch x := any(a).(type) {
	case []byte:
		return string(x) == string(any(b).([]byte))
	case netip.Prefix:
		return x == any(b).(netip.Prefix)
	}
	return reflect.DeepEqual(a, b)
}

// Apply moves s by d in place, so that a consumer can keep one typed view of
// the cluster without copying it per change. d must not be a Reset (take
// d.Snapshot instead). Values are shared with d: treat them as read-only.
func (s *Snapshot) Apply(d Delta) {
	s.Rev = d.Rev
	for _, c := range d.Cluster {
		s.Cluster = c.New
	}
	applyTo(&s.Nodes, d.Nodes, func(c Change[api.Node]) string { return c.Key })
	applyTo(&s.Blocks, d.Blocks, func(c Change[api.Block]) netip.Prefix {
		if c.New != nil {
			return c.New.CIDR
		}
		return c.Old.CIDR
	})
	applyTo(&s.Endpoints, d.Endpoints, func(c Change[api.Endpoint]) string { return c.Key })
	applyTo(&s.Namespaces, d.Namespaces, func(c Change[api.Namespace]) string { return c.Key })
	applyTo(&s.Other, d.Other, func(c Change[[]byte]) string { return c.Key })
	if s.Alive == nil {
		s.Alive = map[string]bool{}
	}
	for _, a := range d.Alive {
		if a.Alive {
			s.Alive[a.Node] = true
		} else {
			delete(s.Alive, a.Node)
		}
	}
	if d.ErrorsChanged {
		s.Errors = d.Errors
	}
}

func applyTo[K comparable, T any](m *map[K]T, cs []Change[T], key func(Change[T]) K) {
	if *m == nil {
		*m = map[K]T{}
	}
	for _, c := range cs {
		if c.New == nil {
			delete(*m, key(c))
		} else {
			(*m)[key(c)] = *c.New
		}
	}
}
