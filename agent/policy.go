package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/policy"
	"github.com/skeinnet/skein/policyinput"
	"github.com/skeinnet/skein/store"
)

// policyWaitTimeout bounds how long a CNI commit waits for the new
// endpoint's rules; past it the ADD fails rather than start a container
// without its policy.
const policyWaitTimeout = 10 * time.Second

// enforcer compiles the cluster's policies for this node and keeps the
// nftables program in place. Changes (watch snapshots, CNI commits) only
// mark the input dirty; one loop (run) compiles the newest input at a time,
// so a burst of commits costs one compile, and a program is never replaced
// by one compiled from older input.
type enforcer struct {
	node string
	rec  *policy.Reconciler
	log  *slog.Logger
	// vxlanPort, when not 0, limits VXLAN to the cluster's nodes.
	vxlanPort uint16
	// dirty has capacity 1: a pending signal covers every change before it.
	dirty chan struct{}

	// view runs a function with the agent's view of the cluster, read-locked
	// (Agent.readView); nil in tests that hand snapshots in with update.
	view func(func(store.Snapshot))

	mu sync.Mutex
	// snap is the newest snapshot, for enforcers without a view (tests);
	// guarded by mu.
	snap *store.Snapshot
	// loaded is set once the cluster has been loaded; guarded by mu.
	loaded bool
	// full asks the next compile for the whole input: a policy, namespace or
	// node changed, an endpoint of this node, a commit; guarded by mu.
	full bool
	// remote are the changes of other nodes' endpoints since the last
	// compile, in order: they only move set elements; guarded by mu.
	remote []store.Change[api.Endpoint]
	// nodesChanged says node records changed since the last compile: they
	// move the VXLAN filter's peers and the node addresses, never a rule;
	// guarded by mu.
	nodesChanged bool
	// gen counts changes to the input (snap, pending); guarded by mu.
	gen uint64
	// pending holds endpoints committed here but not yet seen back from the
	// watch, so their rules go in before the CNI ADD returns; guarded by mu.
	pending map[api.Owner]api.Endpoint
	// invalid are the stored policies that do not decode, as of the last
	// compile; guarded by mu.
	invalid []api.InvalidPolicy
	// logged is the error last logged per invalid policy key, so each
	// change is logged once; guarded by mu.
	logged map[string]string
	// decoded caches stored policies by key, so an update decodes only what
	// changed (decoding 10 000 policies takes ~0.6 s); guarded by mu.
	decoded map[string]decodedPolicy

	setMu sync.Mutex
	// setGen is the input generation of the program last given to rec;
	// guarded by setMu.
	setGen uint64
	// inc holds the compiled program and moves it for remote endpoints;
	// guarded by setMu.
	inc *policy.Incremental
}

// decodedPolicy is one stored policy and what its raw value decoded to.
// obj is the last valid value when err is set after a valid one.
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
	var pods []netip.Prefix
	if !a.cfg.ConntrackAllPods {
		for _, p := range a.cluster.Pools {
			pods = append(pods, p.CIDR)
		}
	}
	rec, err := policy.NewReconciler(policy.ReconcilerConfig{
		Dataplane: policy.NewApplierWith(policy.ApplierConfig{Conn: conn, Log: a.log, PodCIDRs: pods, NoDropLog: a.cfg.NoDropLog}),
		Log:       a.log,
		Resync:    a.cfg.Resync,
	})
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	e := newEnforcerWith(node, rec, a.log)
	e.view = a.readView
	return e, nil
}

// newEnforcerWith returns an enforcer that hands its programs to rec.
func newEnforcerWith(node string, rec *policy.Reconciler, log *slog.Logger) *enforcer {
	return &enforcer{
		node:    node,
		rec:     rec,
		log:     log.With("component", "policy"),
		dirty:   make(chan struct{}, 1),
		pending: map[api.Owner]api.Endpoint{},
		logged:  map[string]string{},
		decoded: map[string]decodedPolicy{},
	}
}

// markDirtyLocked records a change of the input and wakes run; e.mu must
// be held.
func (e *enforcer) markDirtyLocked() {
	e.gen++
	select {
	case e.dirty <- struct{}{}:
	default: // a compile is already due; it will see this change
	}
}

// update says the whole input changed (a load or resync, or a change of
// policies, namespaces or nodes); run recompiles. snap is for enforcers
// without a view (tests); with a view it is ignored and may be nil.
func (e *enforcer) update(snap *store.Snapshot) {
	e.mu.Lock()
	if snap != nil {
		e.snap = snap
	}
	e.loaded, e.full = true, true
	e.markDirtyLocked()
	e.mu.Unlock()
}

// nodes says node records changed.
func (e *enforcer) nodes() {
	e.mu.Lock()
	e.nodesChanged = true
	e.markDirtyLocked()
	e.mu.Unlock()
}

// endpoints queues endpoint changes. Those of other nodes only move the
// elements of the sets that select them (policy.Incremental); one of this
// node's changes its chains and recompiles.
func (e *enforcer) endpoints(cs []store.Change[api.Endpoint]) {
	e.mu.Lock()
	for _, c := range cs {
		if (c.Old != nil && c.Old.Node == e.node) || (c.New != nil && c.New.Node == e.node) {
			e.full = true
			continue
		}
		e.remote = append(e.remote, c)
	}
	e.markDirtyLocked()
	e.mu.Unlock()
}

// run compiles and hands on the newest input each time it changes, until
// ctx is done.
func (e *enforcer) run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-e.dirty:
		}
		e.compile()
	}
}

// compile brings the desired program to the newest input: the whole input
// recompiled when something beyond remote endpoints changed, else only
// the set elements those endpoints move (their cost, not the cluster's).
// A program of older input never replaces a newer one.
func (e *enforcer) compile() {
	e.mu.Lock()
	if !e.loaded {
		e.mu.Unlock()
		return
	}
	e.setMu.Lock()
	defer e.setMu.Unlock()
	full := e.full || e.inc == nil
	remote, nodesChanged := e.remote, e.nodesChanged
	e.full, e.remote, e.nodesChanged = false, nil, false
	var (
		in     policy.Input
		nodes  []api.Node
		filter *policy.VXLANFilter
	)
	switch {
	case full:
		in = e.inputLocked()
	case nodesChanged:
		nodes, filter = e.nodesLocked()
	}
	gen := e.gen
	e.mu.Unlock()
	if gen <= e.setGen {
		return
	}
	e.setGen = gen
	if full {
		if e.inc == nil {
			e.inc = policy.NewIncremental(in)
		} else {
			e.inc.SetInput(in)
		}
		e.rec.Set(e.inc.Program())
		return
	}
	for _, c := range remote {
		ch, recompiled := e.inc.PutEndpoint(c.Key, c.New)
		if recompiled {
			e.rec.Set(e.inc.Program())
			continue
		}
		if ch.Len() > 0 {
			e.rec.Update(e.inc.Program(), ch)
		}
	}
	if nodesChanged {
		if ch, recompiled := e.inc.SetNodes(nodes, filter); recompiled {
			e.rec.Set(e.inc.Program())
		} else {
			e.rec.Update(e.inc.Program(), ch)
		}
	}
}

// nodesLocked reads the nodes and the VXLAN filter from the agent's view
// (or the newest snapshot); e.mu must be held.
func (e *enforcer) nodesLocked() ([]api.Node, *policy.VXLANFilter) {
	var (
		nodes  []api.Node
		filter *policy.VXLANFilter
	)
	read := func(snap store.Snapshot) {
		for _, n := range snap.Nodes {
			nodes = append(nodes, n)
		}
		slices.SortFunc(nodes, func(a, b api.Node) int { return strings.Compare(a.Name, b.Name) })
		if e.vxlanPort != 0 {
			filter = vxlanFilter(e.node, e.vxlanPort, &snap)
		}
	}
	switch {
	case e.view != nil:
		e.view(read)
	case e.snap != nil:
		read(*e.snap)
	}
	return nodes, filter
}

// inputLocked builds the compiler's input from the agent's view (or the
// newest snapshot) plus pending local endpoints; e.mu must be held.
func (e *enforcer) inputLocked() policy.Input {
	var (
		in      policy.Input
		invalid []api.InvalidPolicy
	)
	read := func(snap store.Snapshot) {
		e.predecodeLocked(snap.Other)
		in, invalid = policyinput.FromSnapshot(e.node, &snap, e.decodeLocked)
		if e.vxlanPort != 0 {
			in.VXLAN = vxlanFilter(e.node, e.vxlanPort, &snap)
		}
		for k := range e.decoded {
			if _, ok := snap.Other[k]; !ok {
				delete(e.decoded, k)
			}
		}
	}
	switch {
	case e.view != nil:
		e.view(read)
	case e.snap != nil:
		read(*e.snap)
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
	e.invalid = invalid
	e.logInvalidLocked(invalid)
	return in
}

// logInvalidLocked logs each invalid policy once per change of its error,
// and once when it is fixed or deleted; e.mu must be held.
func (e *enforcer) logInvalidLocked(invalid []api.InvalidPolicy) {
	now := make(map[string]bool, len(invalid))
	for _, p := range invalid {
		now[p.Key] = true
		if e.logged[p.Key] == p.Error+p.Enforced {
			continue
		}
		e.logged[p.Key] = p.Error + p.Enforced
		e.log.Warn("invalid stored policy", "key", p.Key, "enforced", p.Enforced, "err", p.Error)
	}
	for k := range e.logged {
		if !now[k] {
			delete(e.logged, k)
			e.log.Info("invalid stored policy fixed or deleted", "key", k)
		}
	}
}

// decodeLocked decodes a stored policy, reusing the last result while its
// raw value is unchanged; e.mu must be held. When a valid policy is
// updated to an invalid value, the last valid object is returned with the
// error and stays enforced. Entries of deleted keys are dropped by
// inputLocked's sweep.
func (e *enforcer) decodeLocked(key, kind string, raw []byte) (api.Object, error) {
	d, ok := e.decoded[key]
	if ok && bytes.Equal(d.raw, raw) {
		return d.obj, d.err
	}
	obj, err := api.DecodePolicy(kind, raw)
	if err != nil && ok {
		obj = d.obj
	}
	e.decoded[key] = decodedPolicy{raw: raw, obj: obj, err: err}
	return obj, err
}

// predecodeMin is the number of new or changed stored policies from which
// predecodeLocked decodes them on every core: an agent starting with 10 000
// policies spends most of its start decoding them.
const predecodeMin = 64

// predecodeLocked decodes the stored policies the cache does not hold yet,
// in parallel (decoding is pure), and files them as decodeLocked would;
// e.mu must be held.
func (e *enforcer) predecodeLocked(other map[string][]byte) {
	type job struct {
		key, kind string
		raw       []byte
		obj       api.Object
		err       error
	}
	var jobs []job
	for k, raw := range other {
		kind, _, _, ok := api.ParsePolicyKey(k)
		if !ok {
			continue
		}
		if d, cached := e.decoded[k]; cached && bytes.Equal(d.raw, raw) {
			continue
		}
		jobs = append(jobs, job{key: k, kind: kind, raw: raw})
	}
	if len(jobs) < predecodeMin {
		return // decodeLocked does them one by one
	}
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(jobs); i += workers {
				jobs[i].obj, jobs[i].err = api.DecodePolicy(jobs[i].kind, jobs[i].raw)
			}
		})
	}
	wg.Wait()
	for _, j := range jobs {
		obj := j.obj
		if d, ok := e.decoded[j.key]; j.err != nil && ok {
			obj = d.obj // the last valid value stays enforced
		}
		e.decoded[j.key] = decodedPolicy{raw: j.raw, obj: obj, err: j.err}
	}
}

// committed records a just-published endpoint and waits until its rules
// (at least its anti-spoofing entry and dispatch) are enforced.
func (e *enforcer) committed(ctx context.Context, ep api.Endpoint) error {
	e.mu.Lock()
	e.pending[api.Owner{ContainerID: ep.ContainerID, IfName: ep.IfName}] = ep
	e.full = true
	e.markDirtyLocked()
	e.mu.Unlock()
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

// debug is what /debug/policy and the topology show.
func (e *enforcer) debug() api.PolicyStatus {
	inv := e.invalidPolicies()
	bad := make([]string, len(inv))
	for i, p := range inv {
		bad[i] = p.String()
	}
	d := e.rec.Debug()
	d.BadPolicies = bad
	return d
}

// invalidPolicies returns the stored policies that do not decode, as of
// the last compile.
func (e *enforcer) invalidPolicies() []api.InvalidPolicy {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.invalid)
}

// policyDebug returns the policy enforcement state (program version, last
// sync, last error, rule and set counts), or nil before policy runs.
func (a *Agent) policyDebug() *api.PolicyStatus {
	if a.pol == nil {
		return nil
	}
	d := a.pol.debug()
	return &d
}
