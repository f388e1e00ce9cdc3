// Package policyinput builds the policy compiler's input from a store
// snapshot. The agent compiles its share of it and `skein policy trace` and
// `matrix` the whole of it, so both answer from the same input: every
// stored policy that does not decode is quarantined or keeps its last valid
// value, never dropped.
package policyinput

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/policy"
	"github.com/skeinnet/skein/store"
)

// Decoder decodes the stored policy at key (of kind, from raw). When it
// returns an error with a non-nil object, that object (the last valid
// value) stays enforced.
type Decoder func(key, kind string, raw []byte) (api.Object, error)

// Decode is the Decoder of a reader that has seen no earlier value: an
// invalid policy is quarantined.
func Decode(_, kind string, raw []byte) (api.Object, error) {
	return api.DecodePolicy(kind, raw)
}

// FromSnapshot turns a snapshot into the compiler's input for node ("" for
// every endpoint). It also returns the stored policies that do not decode:
// each is quarantined (the pods it names are isolated) unless decode still
// returns its last valid value. None is ever dropped silently.
func FromSnapshot(node string, snap *store.Snapshot, decode Decoder) (policy.Input, []api.InvalidPolicy) {
	in := policy.Input{Node: node}
	for _, ep := range snap.Endpoints {
		in.Endpoints = append(in.Endpoints, ep)
	}
	// Map order is random; a stable order keeps the program stable.
	slices.SortFunc(in.Endpoints, func(a, b api.Endpoint) int {
		return cmp.Or(cmp.Compare(a.ContainerID, b.ContainerID), cmp.Compare(a.IfName, b.IfName))
	})
	for _, ns := range snap.Namespaces {
		in.Namespaces = append(in.Namespaces, ns)
	}
	slices.SortFunc(in.Namespaces, func(a, b api.Namespace) int { return cmp.Compare(a.Name, b.Name) })
	for _, n := range snap.Nodes {
		in.Nodes = append(in.Nodes, n)
	}
	slices.SortFunc(in.Nodes, func(a, b api.Node) int { return cmp.Compare(a.Name, b.Name) })
	invalid := addStored(&in, snap.Other, decode)
	return in, invalid
}

// addStored adds the policies among other (keys of other kinds are
// skipped) to in: valid ones as they are, invalid ones as quarantines
// unless decode still returns their last valid value.
func addStored(in *policy.Input, other map[string][]byte, decode Decoder) []api.InvalidPolicy {
	var invalid []api.InvalidPolicy
	keys := make([]string, 0, len(other))
	for k := range other {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		raw := other[k]
		kind, ns, name, ok := api.ParsePolicyKey(k)
		if !ok {
			if inv, q, isPolicy := unknownPolicy(k, raw); isPolicy {
				invalid = append(invalid, inv)
				if q != nil {
					in.Quarantines = append(in.Quarantines, *q)
				}
			}
			continue
		}
		obj, err := decode(k, kind, raw)
		if err != nil {
			inv := api.InvalidPolicy{Key: k, Error: err.Error(), Enforced: api.EnforcedLastValid}
			if obj == nil {
				inv.Enforced = api.EnforcedQuarantine
				in.Quarantines = append(in.Quarantines, policy.Quarantine{Target: api.ReadPolicyTarget(kind, ns, name, raw), Reason: inv.Error})
			}
			invalid = append(invalid, inv)
		}
		if obj != nil {
			in.AddPolicy(obj)
		}
	}
	return invalid
}

// unknownPolicy handles a key under policies/ that ParsePolicyKey refuses.
// A kind this reader does not know (written by a newer Skein or another
// tool) at policies/<kind>/<ns or _>/<name> is quarantined: its namespace,
// or every pod when it is cluster-scoped. Other keys there cannot name
// pods; they are reported only. isPolicy is false outside policies/.
func unknownPolicy(key string, raw []byte) (inv api.InvalidPolicy, q *policy.Quarantine, isPolicy bool) {
	rest, ok := strings.CutPrefix(key, api.PolicyKeyKind+"/")
	if !ok {
		return inv, nil, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || slices.Contains(parts, "") {
		return api.InvalidPolicy{Key: key, Error: "not a policy key: want policies/<kind>/<namespace or _>/<name>", Enforced: "nothing: names no pods"}, nil, true
	}
	ns := parts[1]
	if ns == "_" {
		ns = ""
	}
	inv = api.InvalidPolicy{Key: key, Error: fmt.Sprintf("unknown policy kind %q", parts[0]), Enforced: api.EnforcedQuarantine}
	return inv, &policy.Quarantine{Target: api.ReadPolicyTarget(parts[0], ns, parts[2], raw), Reason: inv.Error}, true
}
