package policy

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/skeinnet/skein/api"
)

// Incremental keeps one node's compiled Program current as the cluster
// changes, so that the work per change follows the change, not the cluster.
//
// A remote endpoint (one on another node) can only move elements of the
// selector sets its node's rules use: rules name sets, never their members.
// So PutEndpoint of a remote endpoint evaluates that one endpoint against
// the used set definitions and returns the elements that changed, and an
// endpoint no used selector matches changes nothing. Everything else (a
// local endpoint, a policy, a namespace, a node) recompiles the node's
// program with Compile; those are rare on one node and Compile stays the one
// definition of the semantics. The Program after every call equals Compile
// of the same input (a randomized test checks it).
//
// Programs are copy-on-write: a Program returned earlier is never modified,
// so it can be handed to the Reconciler while Incremental moves on.
type Incremental struct {
	in Input // Endpoints is unused: local and pods hold them
	// local are this node's endpoints, whole; pods the others, by key,
	// reduced to what selectors and sets read.
	local map[string]api.Endpoint
	pods  map[string]podRef
	// byIP finds the endpoints holding an address (almost always one).
	byIP map[netip.Addr]holders
	// nsLabels are the effective labels of namespaces with a record.
	nsLabels map[string]map[string]string
	nsMatch  map[nsSelKey]bool

	prog     *Program
	defs     map[string]*setDef // the sets prog uses
	compiles int
}

type nsSelKey struct{ sel, ns string }

// podRef is what Incremental keeps of another node's endpoint: what selectors
// and sets read, 88 bytes where the record takes 192 (its label map and
// strings are the store's, shared).
type podRef struct {
	namespace, node string
	labels          map[string]string
	ports           []api.NamedPort
	ips             []netip.Addr
}

func podOf(ep *api.Endpoint) podRef {
	return podRef{namespace: ep.Namespace, node: ep.Node, labels: ep.Labels, ports: ep.Ports, ips: ep.IPs}
}

// endpoint is p as the compiler takes it.
func (p podRef) endpoint() api.Endpoint {
	return api.Endpoint{Namespace: p.namespace, Node: p.node, Labels: p.labels, Ports: p.ports, IPs: p.ips}
}

// holders are the keys of the endpoints with one address: first, and the
// rare others (an address reused before its old record is gone).
type holders struct {
	first string
	more  []string
}

func (h holders) each(fn func(string)) {
	if h.first != "" {
		fn(h.first)
	}
	for _, k := range h.more {
		fn(k)
	}
}

// SetChanges are the elements a change added to and removed from each set.
type SetChanges struct {
	AddPrefixes map[string][]netip.Prefix
	DelPrefixes map[string][]netip.Prefix
	AddPorts    map[string][]AddrPort
	DelPorts    map[string][]AddrPort
	// AddVXLAN and DelVXLAN change the VXLAN source filter's peers.
	AddVXLAN, DelVXLAN []netip.Addr
}

// Len returns how many elements c adds or removes.
func (c SetChanges) Len() int {
	n := len(c.AddVXLAN) + len(c.DelVXLAN)
	for _, m := range []map[string][]netip.Prefix{c.AddPrefixes, c.DelPrefixes} {
		for _, l := range m {
			n += len(l)
		}
	}
	for _, m := range []map[string][]AddrPort{c.AddPorts, c.DelPorts} {
		for _, l := range m {
			n += len(l)
		}
	}
	return n
}

// NewIncremental compiles in (for one node: in.Node must be set) and keeps
// it. The endpoints are keyed by their position; callers that change them
// later use SetInput's keys (see EndpointKey).
func NewIncremental(in Input) *Incremental {
	x := &Incremental{}
	x.SetInput(in)
	return x
}

// EndpointKey is the key Incremental files an endpoint under: node,
// container and interface, as the store does.
func EndpointKey(ep *api.Endpoint) string {
	return ep.Node + "/" + ep.ContainerID + "/" + ep.IfName
}

// SetInput replaces everything (a resync) and recompiles.
func (x *Incremental) SetInput(in Input) *Program {
	x.local = map[string]api.Endpoint{}
	x.pods = make(map[string]podRef, len(in.Endpoints))
	x.byIP = make(map[netip.Addr]holders, len(in.Endpoints))
	eps := in.Endpoints
	in.Endpoints = nil
	x.in = in // before index: it files by in.Node
	for _, ep := range eps {
		x.index(EndpointKey(&ep), &ep)
	}
	x.setNamespaces(in.Namespaces)
	return x.recompile()
}

// Program returns the current program; it is never modified afterwards.
func (x *Incremental) Program() *Program { return x.prog }

// Compiles counts the full compiles so far.
func (x *Incremental) Compiles() int { return x.compiles }

// SetPolicies replaces the policies and recompiles.
func (x *Incremental) SetPolicies(nps []api.NetworkPolicy, anps []api.AdminNetworkPolicy, banps []api.BaselineAdminNetworkPolicy, cnps []api.ClusterNetworkPolicy) *Program {
	x.in.NetworkPolicies, x.in.ANPs, x.in.BANPs, x.in.CNPs = nps, anps, banps, cnps
	return x.recompile()
}

// SetNamespaces replaces the namespaces and recompiles: a namespace's labels
// move every selector with a namespace selector.
func (x *Incremental) SetNamespaces(nss []api.Namespace) *Program {
	x.setNamespaces(nss)
	return x.recompile()
}

// SetNodes replaces the nodes and the VXLAN filter. Nodes name no pod, so
// rules stay: the program gets the new node addresses and filter, the sets
// of nodes peers get the underlay addresses of the nodes they now select,
// and the changes list the elements that come and go (full is false). A
// filter that appears, goes or changes port recompiles (full true).
func (x *Incremental) SetNodes(nodes []api.Node, vxlan *VXLANFilter) (SetChanges, bool) {
	old := x.in.VXLAN
	x.in.Nodes, x.in.VXLAN = nodes, vxlan
	if x.prog == nil || (old == nil) != (vxlan == nil) || (old != nil && old.Port != vxlan.Port) {
		x.recompile()
		return SetChanges{}, true
	}
	p := *x.prog
	p.NodeAddrs = nodeAddrs(nodes)
	p.VXLAN = vxlan
	var ch SetChanges
	if vxlan != nil {
		ch.AddVXLAN, ch.DelVXLAN = diffSorted(old.Peers, vxlan.Peers)
	}
	cloned := false
	for _, name := range slices.Sorted(maps.Keys(x.defs)) {
		def := x.defs[name]
		if def.nodes == nil {
			continue
		}
		was, is := p.Sets[name].Prefixes, nodeAddrsOf(def.nodes, nodes)
		add, del := diffPrefixes(was, is)
		if len(add)+len(del) == 0 {
			continue
		}
		if !cloned {
			p.Sets, cloned = maps.Clone(p.Sets), true // copy on write
		}
		s := p.Sets[name]
		s.Prefixes = is
		p.Sets[name] = s
		putList(&ch.AddPrefixes, name, add)
		putList(&ch.DelPrefixes, name, del)
	}
	x.prog = &p
	return ch, false
}

// diffPrefixes returns what is in b and not in a, and what is in a and not
// in b; both sorted, as a and b are.
func diffPrefixes(a, b []netip.Prefix) (add, del []netip.Prefix) {
	for _, x := range b {
		if _, ok := slices.BinarySearchFunc(a, x, comparePrefix); !ok {
			add = append(add, x)
		}
	}
	for _, x := range a {
		if _, ok := slices.BinarySearchFunc(b, x, comparePrefix); !ok {
			del = append(del, x)
		}
	}
	return add, del
}

// diffSorted returns what is in b and not in a, and what is in a and not in
// b; both lists sorted.
func diffSorted(a, b []netip.Addr) (add, del []netip.Addr) {
	for _, x := range b {
		if _, ok := slices.BinarySearchFunc(a, x, netip.Addr.Compare); !ok {
			add = append(add, x)
		}
	}
	for _, x := range a {
		if _, ok := slices.BinarySearchFunc(b, x, netip.Addr.Compare); !ok {
			del = append(del, x)
		}
	}
	return add, del
}

func (x *Incremental) setNamespaces(nss []api.Namespace) {
	x.in.Namespaces = nss
	x.nsLabels = make(map[string]map[string]string, len(nss))
	for _, ns := range nss {
		x.nsLabels[ns.Name] = ns.EffectiveLabels()
	}
}

// PutEndpoint records a put (ep set) or delete (ep nil) of the endpoint
// under key. For a remote endpoint it returns the set elements that changed
// and full false; for a local one it recompiles and returns full true.
func (x *Incremental) PutEndpoint(key string, ep *api.Endpoint) (SetChanges, bool) {
	oldp := x.endpoint(key)
	x.unindex(key, oldp)
	if ep != nil {
		x.index(key, ep)
	}
	if x.isLocal(oldp) || x.isLocal(ep) {
		x.recompile()
		return SetChanges{}, true
	}
	return x.moveElements(key, oldp, ep), false
}

func (x *Incremental) isLocal(ep *api.Endpoint) bool {
	return ep != nil && (x.in.Node == "" || ep.Node == x.in.Node)
}

// endpoint returns the endpoint filed under key, nil when none is.
func (x *Incremental) endpoint(key string) *api.Endpoint {
	if ep, ok := x.local[key]; ok {
		return &ep
	}
	if p, ok := x.pods[key]; ok {
		ep := p.endpoint()
		return &ep
	}
	return nil
}

func (x *Incremental) index(key string, ep *api.Endpoint) {
	if x.isLocal(ep) {
		x.local[key] = *ep
	} else {
		x.pods[key] = podOf(ep)
	}
	for _, ip := range ep.IPs {
		h, ok := x.byIP[ip]
		switch {
		case !ok:
			h.first = key
		case h.first != key && !slices.Contains(h.more, key):
			h.more = append(h.more, key)
		}
		x.byIP[ip] = h
	}
}

func (x *Incremental) unindex(key string, ep *api.Endpoint) {
	if ep == nil {
		return
	}
	delete(x.local, key)
	delete(x.pods, key)
	for _, ip := range ep.IPs {
		h := x.byIP[ip]
		if h.first == key {
			h.first = ""
			if len(h.more) > 0 {
				h.first, h.more = h.more[0], h.more[1:]
			}
		} else {
			h.more = slices.DeleteFunc(h.more, func(k string) bool { return k == key })
		}
		if len(h.more) == 0 {
			h.more = nil
		}
		if h.first == "" {
			delete(x.byIP, ip)
		} else {
			x.byIP[ip] = h
		}
	}
}

func (x *Incremental) recompile() *Program {
	in := x.in
	in.Endpoints = make([]api.Endpoint, 0, len(x.local)+len(x.pods))
	keys := slices.Collect(maps.Keys(x.local))
	keys = append(keys, slices.Collect(maps.Keys(x.pods))...)
	slices.Sort(keys)
	for _, k := range keys {
		in.Endpoints = append(in.Endpoints, *x.endpoint(k))
	}
	x.prog, x.defs = compile(in)
	x.nsMatch = map[nsSelKey]bool{}
	x.compiles++
	return x.prog
}

// moveElements compares what old and nw contribute to each used pod set
// and copies the changed sets into a new Program.
func (x *Incremental) moveElements(key string, old, nw *api.Endpoint) SetChanges {
	var ch SetChanges
	var sets map[string]Set // copy of x.prog.Sets, made on the first change
	edit := func(name string, f func(*Set)) {
		if sets == nil {
			sets = maps.Clone(x.prog.Sets)
		}
		s := sets[name]
		f(&s)
		sets[name] = s
	}
	for _, name := range slices.Sorted(maps.Keys(x.defs)) {
		def := x.defs[name]
		if def.nodes != nil {
			continue // node addresses: SetNodes moves them
		}
		switch def.kind {
		case SetAddrs:
			of := func(ep *api.Endpoint) []netip.Prefix { return x.addrsOf(def, ep) }
			add, del := settleList(key, of(old), of(nw), x.byIP, netip.Prefix.Addr, x.endpoint, of, comparePrefix)
			if len(add)+len(del) > 0 {
				edit(name, func(s *Set) { s.Prefixes = moveSorted(s.Prefixes, add, del, comparePrefix) })
				putList(&ch.AddPrefixes, name, add)
				putList(&ch.DelPrefixes, name, del)
			}
		case SetAddrPorts:
			of := func(ep *api.Endpoint) []AddrPort { return x.portsOf(def, ep) }
			add, del := settleList(key, of(old), of(nw), x.byIP, func(a AddrPort) netip.Addr { return a.Addr }, x.endpoint, of, compareAddrPort)
			if len(add)+len(del) > 0 {
				edit(name, func(s *Set) { s.AddrPorts = moveSorted(s.AddrPorts, add, del, compareAddrPort) })
				putList(&ch.AddPorts, name, add)
				putList(&ch.DelPorts, name, del)
			}
		}
	}
	if sets != nil {
		p := *x.prog
		p.Sets = sets
		x.prog = &p
	}
	return ch
}

// settleList returns the elements of is not in was (added) and of was not
// in is (removed), less those another endpoint with the same address still
// contributes: an element leaves a set only when no member gives it.
func settleList[E comparable](key string, was, is []E, byIP map[netip.Addr]holders, addr func(E) netip.Addr, endpoint func(string) *api.Endpoint, of func(*api.Endpoint) []E, compare func(a, b E) int) (add, del []E) {
	if slices.Equal(was, is) {
		return nil, nil
	}
	others := func(e E) bool {
		found := false
		byIP[addr(e)].each(func(k string) {
			if k != key && !found && slices.Contains(of(endpoint(k)), e) {
				found = true
			}
		})
		return found
	}
	for _, e := range is {
		if !slices.Contains(was, e) && !others(e) {
			add = append(add, e)
		}
	}
	for _, e := range was {
		if !slices.Contains(is, e) && !others(e) {
			del = append(del, e)
		}
	}
	slices.SortFunc(add, compare)
	slices.SortFunc(del, compare)
	return add, del
}

// member reports whether ep belongs to the pods of def.
func (x *Incremental) member(def *setDef, ep *api.Endpoint) bool {
	if ep == nil || def.nodes != nil { // a nodes set holds no pod
		return false
	}
	p := def.pods
	if p == nil {
		return true // a named port on all pods
	}
	if p.nsSel == nil {
		if ep.Namespace != p.scope {
			return false
		}
	} else if !x.nsMatches(p.nsSel, ep.Namespace) {
		return false
	}
	return p.podSel.Empty() || p.podSel.Matches(ep.Labels)
}

func (x *Incremental) nsMatches(sel *api.LabelSelector, ns string) bool {
	k := nsSelKey{selectorText(sel), ns}
	if m, ok := x.nsMatch[k]; ok {
		return m
	}
	labels, ok := x.nsLabels[ns]
	if !ok {
		labels = api.Namespace{Name: ns}.EffectiveLabels()
	}
	m := sel.Matches(labels)
	x.nsMatch[k] = m
	return m
}

// addrsOf is what ep gives a SetAddrs set: its addresses as /32s and /128s.
func (x *Incremental) addrsOf(def *setDef, ep *api.Endpoint) []netip.Prefix {
	if !x.member(def, ep) {
		return nil
	}
	var out []netip.Prefix
	for _, ip := range ep.IPs {
		out = append(out, onePrefix(ip))
	}
	slices.SortFunc(out, comparePrefix)
	return slices.Compact(out)
}

// portsOf is what ep gives a SetAddrPorts set.
func (x *Incremental) portsOf(def *setDef, ep *api.Endpoint) []AddrPort {
	if !x.member(def, ep) {
		return nil
	}
	var out []AddrPort
	for _, pm := range resolve(ep.Ports, def.port) {
		for _, ip := range ep.IPs {
			out = append(out, AddrPort{Addr: ip.Unmap(), Proto: pm.Proto, Port: pm.From})
		}
	}
	slices.SortFunc(out, compareAddrPort)
	return slices.Compact(out)
}

func compareAddrPort(a, b AddrPort) int {
	return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port))
}

// moveSorted returns a new sorted list: list less del plus add.
func moveSorted[E any](list, add, del []E, compare func(a, b E) int) []E {
	out := make([]E, 0, len(list)+len(add))
	for _, e := range list {
		if _, found := slices.BinarySearchFunc(del, e, compare); !found {
			out = append(out, e)
		}
	}
	for _, e := range add {
		i, found := slices.BinarySearchFunc(out, e, compare)
		if !found {
			out = slices.Insert(out, i, e)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func putList[E any](m *map[string][]E, name string, l []E) {
	if len(l) == 0 {
		return
	}
	if *m == nil {
		*m = map[string][]E{}
	}
	(*m)[name] = l
}

// String renders c for logs and tests, sorted.
func (c SetChanges) String() string {
	var lines []string
	for name, l := range c.AddPrefixes {
		for _, p := range l {
			lines = append(lines, "add "+name+" "+p.String())
		}
	}
	for name, l := range c.DelPrefixes {
		for _, p := range l {
			lines = append(lines, "del "+name+" "+p.String())
		}
	}
	for name, l := range c.AddPorts {
		for _, p := range l {
			lines = append(lines, "add "+name+" "+p.String())
		}
	}
	for name, l := range c.DelPorts {
		for _, p := range l {
			lines = append(lines, "del "+name+" "+p.String())
		}
	}
	for _, a := range c.AddVXLAN {
		lines = append(lines, "add "+VXLANPeers+" "+a.String())
	}
	for _, a := range c.DelVXLAN {
		lines = append(lines, "del "+VXLANPeers+" "+a.String())
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
