package agent

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/policy"
	"github.com/skeinnet/skein/store"
)

// policyWaitTimeout bounds how long a CNI commit waits for the new
// endpoint's rules; past it the ADD fails rather than start a container
// without its policy.
const policyWaitTimeout = 10 * time.Second

// enforcer compiles the cluster's policies for this node and keeps the
// nftables program in place.
type enforcer struct {
	node string
	rec  *policy.Reconciler
	// view runs a function with the agent's view of the cluster (readView).
	view func(func(store.Snapshot))
	// vxlanPort, when not 0, limits VXLAN to the cluster's nodes.
	vxlanPort uint16

	mu sync.Mutex
	// pending holds endpoints committed here but not yet seen back from the
	// watch, so their rules go in before the CNI ADD returns; guarded by mu.
	pending map[api.Owner]api.Endpoint
	// badPolicies are stored policies that do not decode; guarded by mu.
	badPolicies []string
	// decoded caches stored policies by key, so an update decodes only what
	// changed (decoding 10 000 policies takes ~0.6 s); guarded by mu.
	decoded map[string]decodedPolicy
}

// decodedPolicy is one stored policy and what its raw value decoded to.
type decodedPolicy struct {
	raw []byte
	obj api.Object
	err error
}

func newEnforcer(node string, a *Agent) (*enforcer, error) {
	conn, err := policy.NewConn()
	if err != nil {
		return nil, err
	}
	rec, err := policy.NewReconciler(policy.ReconcilerConfig{
		Dataplane: policy.NewApplier(conn, a.log),
		Log:       a.log,
		Resync:    a.cfg.Resync,
	})
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return &enforcer{node: node, rec: rec, view: a.readView, pending: map[api.Owner]api.Endpoint{}, decoded: map[string]decodedPolicy{}}, nil
}

// update recompiles from the agent's view plus pending local endpoints.
func (e *enforcer) update() {
	var (
		in     policy.Input
		bad    []string
		loaded bool
	)
	e.mu.Lock()
	e.view(func(snap store.Snapshot) {
		loaded = true
		in, bad = policyInput(e.node, &snap, e.decodeLocked)
		if e.vxlanPort != 0 {
			in.VXLAN = vxlanFilter(e.node, e.vxlanPort, &snap)
		}
		for k := range e.decoded {
			if _, ok := snap.Other[k]; !ok {
				delete(e.decoded, k)
			}
		}
	})
	if !loaded {
		e.mu.Unlock()
		return
	}
	seen := map[api.Owner]bool{}
	for _, ep := range in.Endpoints {
		seen[api.Owner{ContainerID: ep.ContainerID, IfName: ep.IfName}] = true
	}
	for o, ep := range e.pending {
		if seen[o] {
			delete(e.pending, o) // the watch caught up
			continue
		}
		in.Endpoints = append(in.Endpoints, ep)
	}
	e.badPolicies = bad
	e.mu.Unlock()
	e.rec.Set(policy.Compile(in))
}

// decodeLocked decodes a stored policy, reusing the last result while its
// raw value is unchanged; e.mu must be held. Entries of deleted keys are
// dropped by update's sweep.
func (e *enforcer) decodeLocked(key, kind string, raw []byte) (api.Object, error) {
	if d, ok := e.decoded[key]; ok && bytes.Equal(d.raw, raw) {
		return d.obj, d.err
	}
	obj, err := api.DecodePolicy(kind, raw)
	e.decoded[key] = decodedPolicy{raw: raw, obj: obj, err: err}
	return obj, err
}

// committed records a just-published endpoint and waits until its rules
// (at least its anti-spoofing entry and dispatch) are enforced.
func (e *enforcer) committed(ctx context.Context, ep api.Endpoint) error {
	e.mu.Lock()
	e.pending[api.Owner{ContainerID: ep.ContainerID, IfName: ep.IfName}] = ep
	e.mu.Unlock()
	e.update()
	ctx, cancel := context.WithTimeout(ctx, policyWaitTimeout)
	defer cancel()
	if err := e.rec.WaitEndpoint(ctx, ep.HostIface); err != nil {
		return fmt.Errorf("enforce policy for %s: %w", ep.HostIface, err)
	}
	return nil
}

// released forgets a pending endpoint.
func (e *enforcer) released(o api.Owner) {
	e.mu.Lock()
	delete(e.pending, o)
	e.mu.Unlock()
}

// policyInput turns a snapshot into the compiler's input; it also returns
// the keys of stored policies that do not decode (shown, never fatal).
func policyInput(node string, snap *store.Snapshot, decode func(key, kind string, raw []byte) (api.Object, error)) (policy.Input, []string) {
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
	for _, n := range snap.Nodes {
		in.Nodes = append(in.Nodes, n)
	}
	var bad []string
	keys := make([]string, 0, len(snap.Other))
	for k := range snap.Other {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		kind, _, _, ok := api.ParsePolicyKey(k)
		if !ok {
			continue
		}
		obj, err := decode(k, kind, snap.Other[k])
		if err != nil {
			bad = append(bad, k+": "+err.Error())
			continue
		}
		switch p := obj.(type) {
		case *api.NetworkPolicy:
			in.NetworkPolicies = append(in.NetworkPolicies, *p)
		case *api.AdminNetworkPolicy:
			in.ANPs = append(in.ANPs, *p)
		case *api.BaselineAdminNetworkPolicy:
			in.BANPs = append(in.BANPs, *p)
		}
	}
	return in, bad
}

// vxlanFilter lists the underlay addresses VXLAN is accepted from: every
// other node's, dead or alive (a dead agent's host still forwards).
func vxlanFilter(self string, port uint16, snap *store.Snapshot) *policy.VXLANFilter {
	f := &policy.VXLANFilter{Port: port, Peers: []netip.Addr{}}
	for name, n := range snap.Nodes {
		if name != self && n.UnderlayIP.IsValid() {
			f.Peers = append(f.Peers, n.UnderlayIP)
		}
	}
	slices.SortFunc(f.Peers, func(a, b netip.Addr) int { return a.Compare(b) })
	f.Peers = slices.Compact(f.Peers)
	return f
}

// policyState is what /debug/policy and the topology show.
type policyState struct {
	policy.DebugState
	BadPolicies []string `json:"badPolicies,omitempty"`
}

func (e *enforcer) debug() policyState {
	e.mu.Lock()
	bad := append([]string(nil), e.badPolicies...)
	e.mu.Unlock()
	return policyState{DebugState: e.rec.Debug(), BadPolicies: bad}
}
