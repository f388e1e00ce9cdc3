package store

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/audit"
)

// Snapshot is the cluster as an agent sees it at one revision. Each Snapshot
// handed out has maps of its own, which later changes never touch; the values
// in them (and their Labels maps) are shared and must be treated as read-only.
type Snapshot struct {
	// Rev is the etcd revision the snapshot reflects.
	Rev int64
	// Cluster is nil before `skein cluster init`.
	Cluster *api.Cluster
	// Nodes by name.
	Nodes map[string]api.Node
	// Blocks by CIDR.
	Blocks map[netip.Prefix]api.Block
	// Endpoints by "node/container/ifname".
	Endpoints map[string]api.Endpoint
	// Namespaces by name.
	Namespaces map[string]api.Namespace
	// Alive holds the nodes whose heartbeat is current.
	Alive map[string]bool
	// Other holds the raw values of keys of kinds this package does not type
	// (policies/, bgppeers/), by key without the prefix.
	Other map[string][]byte
	// Errors lists undecodable keys as "key: error", sorted; such a key is
	// otherwise left out of the snapshot.
	Errors []string
}

// state is Watch's working copy of the keys under the prefix, updated in
// place per event and copied out as Snapshots.
type state struct {
	prefix     string
	rev        int64
	cluster    *api.Cluster
	nodes      map[string]api.Node
	blocks     map[netip.Prefix]api.Block
	endpoints  map[string]api.Endpoint
	namespaces map[string]api.Namespace
	alive      map[string]bool
	other      map[string][]byte
	errs       map[string]string // by full key
	// labels shares the endpoints' label maps.
	labels labelSets
}

func newState(prefix string) *state {
	return &state{
		prefix:     prefix,
		nodes:      map[string]api.Node{},
		blocks:     map[netip.Prefix]api.Block{},
		endpoints:  map[string]api.Endpoint{},
		namespaces: map[string]api.Namespace{},
		alive:      map[string]bool{},
		other:      map[string][]byte{},
		errs:       map[string]string{},
	}
}

// errIgnored marks keys Watch does not follow: status changes every few
// seconds per node and no agent decision depends on it.
var errIgnored = errors.New("ignored kind")

// apply records a put (value non-nil) or delete (value nil) of key. It
// reports whether the snapshot changed in a way callers see.
func (s *state) apply(key string, value []byte) bool {
	rest, ok := strings.CutPrefix(key, s.prefix)
	if !ok {
		return false
	}
	_, hadErr := s.errs[key]
	delete(s.errs, key)
	err := s.set(rest, value)
	switch {
	case errors.Is(err, errIgnored):
		return hadErr
	case err != nil:
		s.errs[key] = err.Error()
	}
	return true
}

// set applies one key (without prefix) to the typed maps. On a put whose
// value does not decode, the old entry is removed and the error returned.
func (s *state) set(rest string, value []byte) error {
	kind, name, _ := strings.Cut(rest, "/")
	del := value == nil
	switch kind {
	case kindCluster:
		if name != "" {
			return s.setOther(rest, value)
		}
		s.cluster = nil
		if del {
			return nil
		}
		var cl api.Cluster
		if err := api.UnmarshalJSON(value, &cl); err != nil {
			return err
		}
		s.cluster = &cl
	case kindNodes:
		return setTyped(s.nodes, name, value, oneSegment)
	case kindEndpoints:
		if old, ok := s.endpoints[name]; ok {
			s.labels.release(old.Labels)
		}
		if err := setTyped(s.endpoints, name, value, threeSegments); err != nil {
			return err
		}
		if ep, ok := s.endpoints[name]; ok {
			compactEndpoint(&ep, &s.labels)
			s.endpoints[name] = ep
		}
	case kindNamespaces:
		return setTyped(s.namespaces, name, value, oneSegment)
	case kindAlive:
		if err := oneSegment(name); err != nil {
			return err
		}
		if del {
			delete(s.alive, name)
		} else {
			s.alive[name] = true
		}
	case kindBlocks:
		cidr, err := api.ParseBlockKeyName(name)
		if err != nil {
			return fmt.Errorf("key: %w", err)
		}
		delete(s.blocks, cidr)
		if del {
			return nil
		}
		b, err := decodeBlockValue(cidr, value)
		if err != nil {
			return err
		}
		s.blocks[cidr] = b
	case kindStatus, audit.KeyKind, kindAuth:
		return errIgnored
	default:
		return s.setOther(rest, value)
	}
	return nil
}

func (s *state) setOther(rest string, value []byte) error {
	if value == nil {
		delete(s.other, rest)
	} else {
		s.other[rest] = value
	}
	return nil
}

func oneSegment(name string) error {
	if name == "" || strings.Contains(name, "/") {
		return errors.New("key: want one segment after the kind")
	}
	return nil
}

func threeSegments(name string) error {
	parts := strings.Split(name, "/")
	if len(parts) != 3 || slices.Contains(parts, "") {
		return errors.New("key: want node/container/ifname after the kind")
	}
	return nil
}

func setTyped[T any](m map[string]T, name string, value []byte, check func(string) error) error {
	if err := check(name); err != nil {
		return err
	}
	delete(m, name)
	if value == nil {
		return nil
	}
	var v T
	if err := api.UnmarshalJSON(value, &v); err != nil {
		return err
	}
	m[name] = v
	return nil
}

// snapshot copies the state out.
func (s *state) snapshot() Snapshot {
	snap := Snapshot{
		Rev:        s.rev,
		Nodes:      maps.Clone(s.nodes),
		Blocks:     maps.Clone(s.blocks),
		Endpoints:  maps.Clone(s.endpoints),
		Namespaces: maps.Clone(s.namespaces),
		Alive:      maps.Clone(s.alive),
		Other:      maps.Clone(s.other),
	}
	if s.cluster != nil {
		cl := *s.cluster
		snap.Cluster = &cl
	}
	snap.Errors = s.errorList()
	return snap
}

// shared is a Snapshot whose maps are the state's own: they move with
// every event the state applies (see WatchView).
func (s *state) shared() *Snapshot {
	return &Snapshot{
		Rev:        s.rev,
		Cluster:    s.cluster,
		Nodes:      s.nodes,
		Blocks:     s.blocks,
		Endpoints:  s.endpoints,
		Namespaces: s.namespaces,
		Alive:      s.alive,
		Other:      s.other,
		Errors:     s.errorList(),
	}
}

// errorList returns the undecodable keys as "key: error", sorted.
func (s *state) errorList() []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(s.errs)) {
		out = append(out, k+": "+s.errs[k])
	}
	return out
}
