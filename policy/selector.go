package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"

	"github.com/skeinnet/skein/api"
)

// selectorText renders s canonically, in the kubectl style:
// `{app=web,tier in (a,b),!legacy,env}`; `{}` selects everything and a nil
// selector renders as `<none>`. Equal selectors always render equally, so the
// text identifies a set.
func selectorText(s *api.LabelSelector) string {
	if s == nil {
		return "<none>"
	}
	var reqs []string
	for k, v := range s.MatchLabels {
		reqs = append(reqs, k+"="+v)
	}
	for _, r := range s.MatchExpressions {
		vals := slices.Clone(r.Values)
		slices.Sort(vals)
		vals = slices.Compact(vals)
		switch r.Operator {
		case api.LabelSelectorOpIn:
			reqs = append(reqs, r.Key+" in ("+strings.Join(vals, ",")+")")
		case api.LabelSelectorOpNotIn:
			reqs = append(reqs, r.Key+" notin ("+strings.Join(vals, ",")+")")
		case api.LabelSelectorOpExists:
			reqs = append(reqs, r.Key+existsSuffix(vals))
		case api.LabelSelectorOpDoesNotExist:
			reqs = append(reqs, "!"+r.Key+existsSuffix(vals))
		default:
			reqs = append(reqs, r.Key+" "+string(r.Operator)+" ("+strings.Join(vals, ",")+")")
		}
	}
	slices.Sort(reqs)
	reqs = slices.Compact(reqs)
	return "{" + strings.Join(reqs, ",") + "}"
}

// existsSuffix keeps invalid Exists/DoesNotExist selectors (with values,
// which match nothing) distinct from valid ones.
func existsSuffix(vals []string) string {
	if len(vals) == 0 {
		return ""
	}
	return " (invalid values " + strings.Join(vals, ",") + ")"
}

// setName derives a set's name from its description: a kind letter and 12
// hex digits of a hash, short enough for nftables and stable across compiles.
func setName(kind SetKind, desc string) string {
	sum := sha256.Sum256([]byte(desc))
	prefix := "p-"
	switch kind {
	case SetCIDRs:
		prefix = "c-"
	case SetAddrPorts:
		prefix = "n-"
	}
	return prefix + hex.EncodeToString(sum[:6])
}

// podPeer is a normalized pod selector peer: pods matching podSel in
// namespace scope (when nsSel is nil) or in every namespace nsSel matches.
type podPeer struct {
	scope  string
	nsSel  *api.LabelSelector
	podSel *api.LabelSelector
}

// desc is the canonical text of p, which names its set.
func (p podPeer) desc() string {
	if p.nsSel == nil {
		return "pods " + selectorText(p.podSel) + " in namespace " + p.scope
	}
	return "pods " + selectorText(p.podSel) + " in namespaces " + selectorText(p.nsSel)
}

var selectAll = &api.LabelSelector{}

// index answers selector queries over the cluster's endpoints and
// namespaces, caching answers by canonical selector text.
type index struct {
	eps      []api.Endpoint
	order    []int            // endpoint indexes sorted by namespace, name, iface
	byNS     map[string][]int // namespace → endpoint indexes, in order
	nsLabels map[string]map[string]string
	nsNames  []string // sorted

	nsCache  map[string][]string // ns selector text → namespaces
	podCache map[string][]int    // podPeer desc → endpoint indexes, in order
}

func newIndex(eps []api.Endpoint, nss []api.Namespace) *index {
	ix := &index{
		eps:      eps,
		byNS:     map[string][]int{},
		nsLabels: map[string]map[string]string{},
		nsCache:  map[string][]string{},
		podCache: map[string][]int{},
	}
	for _, ns := range nss {
		ix.nsLabels[ns.Name] = ns.EffectiveLabels()
	}
	ix.order = make([]int, len(eps))
	for i := range eps {
		ix.order[i] = i
		// An endpoint's namespace exists even without a Namespace object:
		// it has the implied name label only.
		if _, ok := ix.nsLabels[eps[i].Namespace]; !ok {
			ix.nsLabels[eps[i].Namespace] = api.Namespace{Name: eps[i].Namespace}.EffectiveLabels()
		}
	}
	slices.SortFunc(ix.order, func(a, b int) int {
		ea, eb := &eps[a], &eps[b]
		if c := strings.Compare(ea.Namespace, eb.Namespace); c != 0 {
			return c
		}
		if c := strings.Compare(ea.Name, eb.Name); c != 0 {
			return c
		}
		return strings.Compare(ea.HostIface, eb.HostIface)
	})
	for _, i := range ix.order {
		ns := eps[i].Namespace
		ix.byNS[ns] = append(ix.byNS[ns], i)
	}
	for name := range ix.nsLabels {
		ix.nsNames = append(ix.nsNames, name)
	}
	slices.Sort(ix.nsNames)
	return ix
}

// namespaces returns the names of the namespaces sel matches.
func (ix *index) namespaces(sel *api.LabelSelector) []string {
	key := selectorText(sel)
	if out, ok := ix.nsCache[key]; ok {
		return out
	}
	var out []string
	for _, name := range ix.nsNames {
		if sel.Matches(ix.nsLabels[name]) {
			out = append(out, name)
		}
	}
	ix.nsCache[key] = out
	return out
}

// pods returns the indexes of the endpoints p selects, in order.
func (ix *index) pods(p podPeer) []int {
	key := p.desc()
	if out, ok := ix.podCache[key]; ok {
		return out
	}
	var out []int
	if p.nsSel == nil {
		out = ix.podsIn(p.scope, p.podSel)
	} else {
		for _, ns := range ix.namespaces(p.nsSel) {
			out = append(out, ix.podsIn(ns, p.podSel)...)
		}
	}
	ix.podCache[key] = out
	return out
}

func (ix *index) podsIn(ns string, sel *api.LabelSelector) []int {
	all := ix.byNS[ns]
	if sel.Empty() {
		return all
	}
	var out []int
	for _, i := range all {
		if sel.Matches(ix.eps[i].Labels) {
			out = append(out, i)
		}
	}
	return out
}
