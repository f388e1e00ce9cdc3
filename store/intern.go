package store

import (
	"slices"
	"strings"
	"unique"

	"github.com/skeinnet/skein/api"
)

// labelSets shares identical label maps between the endpoints that carry
// them: the pods of one workload have the same labels, so at 50 000
// endpoints most label maps are copies. Each set counts its endpoints and is
// dropped with the last, so churn (a new pod-template hash per rollout)
// does not grow it. Shared maps are read-only, as Snapshot says.
type labelSets struct {
	sets map[string]*labelSet
}

type labelSet struct {
	m    map[string]string
	refs int
}

// labelsKey is m in a canonical form: sorted key=value pairs.
func labelsKey(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(m[k])
		b.WriteByte(0)
	}
	return b.String()
}

// acquire returns the shared map equal to m and counts one more user.
func (l *labelSets) acquire(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	if l.sets == nil {
		l.sets = map[string]*labelSet{}
	}
	k := labelsKey(m)
	s, ok := l.sets[k]
	if !ok {
		shared := make(map[string]string, len(m))
		for k, v := range m {
			shared[intern(k)] = intern(v)
		}
		s = &labelSet{m: shared}
		l.sets[k] = s
	}
	s.refs++
	return s.m
}

// release counts one user of the shared map equal to m less.
func (l *labelSets) release(m map[string]string) {
	if len(m) == 0 {
		return
	}
	k := labelsKey(m)
	if s, ok := l.sets[k]; ok {
		if s.refs--; s.refs <= 0 {
			delete(l.sets, k)
		}
	}
}

// intern returns the one copy of s that the whole process shares (strings
// that repeat across endpoints: namespaces, nodes, interface names).
func intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

// compactEndpoint shares what ep repeats with other endpoints: its label
// map (counted in l) and its common strings.
func compactEndpoint(ep *api.Endpoint, l *labelSets) {
	ep.Labels = l.acquire(ep.Labels)
	ep.Namespace = intern(ep.Namespace)
	ep.Node = intern(ep.Node)
	ep.IfName = intern(ep.IfName)
	ep.HostIface = intern(ep.HostIface)
	ep.Network = intern(ep.Network)
	for i := range ep.Ports {
		ep.Ports[i].Name = intern(ep.Ports[i].Name)
		ep.Ports[i].Protocol = intern(ep.Ports[i].Protocol)
	}
	ep.IPs = slices.Clip(ep.IPs)
	ep.Ports = slices.Clip(ep.Ports)
}
