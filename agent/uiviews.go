package agent

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/policy"
	"github.com/skeinnet/skein/policyinput"
	"github.com/skeinnet/skein/store"
)

// The /ui's endpoint and matrix views read these. Both answer from the
// agent's view on request, never on the hot path, and both are bounded: a
// cluster of 50 000 endpoints must not make a 50 MB page.
const (
	// endpointsDefaultLimit and endpointsMaxLimit bound one page of
	// /debug/endpoints.
	endpointsDefaultLimit = 200
	endpointsMaxLimit     = 2000
	// matrixMaxEndpoints is the largest namespace /debug/matrix computes:
	// the cells grow as its square.
	matrixMaxEndpoints = 100
	// matrixMaxKinds bounds ports × protocols of one matrix.
	matrixMaxKinds = 8
)

// endpointQuery is a parsed /debug/endpoints request.
type endpointQuery struct {
	namespace, node string
	// text matches a substring of the name, an address, the node or a
	// label "key=value", case-insensitively.
	text          string
	offset, limit int
}

func parseEndpointQuery(q url.Values) (endpointQuery, error) {
	eq := endpointQuery{namespace: q.Get("namespace"), node: q.Get("node"), text: strings.ToLower(q.Get("q")), limit: endpointsDefaultLimit}
	for _, f := range []struct {
		name string
		dst  *int
		max  int
	}{{"offset", &eq.offset, -1}, {"limit", &eq.limit, endpointsMaxLimit}} {
		s := q.Get(f.name)
		if s == "" {
			continue
		}
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 || (f.max > 0 && (v < 1 || v > f.max)) {
			if f.max > 0 {
				return eq, fmt.Errorf("%s=%q: want a number from 1 to %d", f.name, s, f.max)
			}
			return eq, fmt.Errorf("%s=%q: want a number from 0", f.name, s)
		}
		*f.dst = v
	}
	return eq, nil
}

func (q endpointQuery) matches(ep *api.Endpoint) bool {
	if (q.namespace != "" && ep.Namespace != q.namespace) || (q.node != "" && ep.Node != q.node) {
		return false
	}
	if q.text == "" {
		return true
	}
	has := func(s string) bool { return strings.Contains(strings.ToLower(s), q.text) }
	if has(ep.Namespace+"/"+ep.Name) || has(ep.Node) {
		return true
	}
	for _, ip := range ep.IPs {
		if has(ip.String()) {
			return true
		}
	}
	for k, v := range ep.Labels {
		if has(k + "=" + v) {
			return true
		}
	}
	return false
}

// endpointPage selects one page of snap's endpoints.
func endpointPage(snap *store.Snapshot, q endpointQuery) api.EndpointPage {
	page := api.EndpointPage{StoreRev: snap.Rev, Offset: q.offset, Limit: q.limit, Endpoints: []api.Endpoint{}}
	var match []*api.Endpoint
	for _, ep := range snap.Endpoints {
		if q.matches(&ep) {
			match = append(match, &ep)
		}
	}
	slices.SortFunc(match, func(a, b *api.Endpoint) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.IfName, b.IfName), cmp.Compare(a.ContainerID, b.ContainerID))
	})
	page.Total = len(match)
	from := min(q.offset, len(match))
	to := min(from+q.limit, len(match))
	for _, ep := range match[from:to] {
		page.Endpoints = append(page.Endpoints, *ep)
	}
	page.More = len(match) - to
	return page
}

func (d *debugServer) serveEndpoints(w http.ResponseWriter, r *http.Request) {
	q, err := parseEndpointQuery(r.URL.Query())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "/debug/endpoints: " + err.Error()})
		return
	}
	page := api.EndpointPage{Endpoints: []api.Endpoint{}, Offset: q.offset, Limit: q.limit}
	d.a.readView(func(snap store.Snapshot) { page = endpointPage(&snap, q) })
	page.Node, page.Now = d.a.cfg.NodeName, time.Now().UTC()
	writeJSON(w, http.StatusOK, &page)
}

// matrixQuery is a parsed /debug/matrix request.
type matrixQuery struct {
	namespace string
	ports     []int
	protocols []string
}

func parseMatrixQuery(q url.Values) (matrixQuery, error) {
	mq := matrixQuery{namespace: q.Get("namespace"), ports: []int{80}, protocols: []string{"TCP"}}
	if mq.namespace == "" {
		return mq, fmt.Errorf("namespace: required (/debug/matrix?namespace=NS[&port=80,81][&protocol=TCP,UDP])")
	}
	if s := q.Get("port"); s != "" {
		mq.ports = nil
		for f := range strings.SplitSeq(s, ",") {
			p, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || p < 1 || p > 65535 {
				return mq, fmt.Errorf("port=%q: want ports 1-65535, comma-separated", s)
			}
			mq.ports = append(mq.ports, p)
		}
	}
	if s := q.Get("protocol"); s != "" {
		mq.protocols = nil
		for f := range strings.SplitSeq(s, ",") {
			pr, err := policy.ParseProtocol(strings.TrimSpace(f))
			if err != nil {
				return mq, fmt.Errorf("protocol=%q: %w", s, err)
			}
			mq.protocols = append(mq.protocols, pr.String())
		}
	}
	if n := len(mq.ports) * len(mq.protocols); n > matrixMaxKinds {
		return mq, fmt.Errorf("%d ports × protocols: at most %d per matrix", n, matrixMaxKinds)
	}
	return mq, nil
}

// errMatrixTooBig refuses a namespace too large to show.
type errMatrixTooBig struct {
	namespace string
	n         int
}

func (e errMatrixTooBig) Error() string {
	return fmt.Sprintf("namespace %q has %d endpoints; the /ui matrix stops at %d (its cells grow as the square): use `skein policy matrix --namespace %s` instead",
		e.namespace, e.n, matrixMaxEndpoints, e.namespace)
}

// matrix computes q's matrix from snap with the compiler and evaluator of
// `skein policy matrix`, reading the stored policies as it does (an
// invalid one is quarantined).
func matrix(snap *store.Snapshot, q matrixQuery) (api.PolicyMatrix, error) {
	out := api.PolicyMatrix{StoreRev: snap.Rev, Namespace: q.namespace, Ports: q.ports, Protocols: q.protocols, Endpoints: []string{}, Cells: []api.MatrixCell{}}
	n := 0
	for _, ep := range snap.Endpoints {
		if ep.Namespace == q.namespace {
			n++
		}
	}
	if n > matrixMaxEndpoints {
		return out, errMatrixTooBig{namespace: q.namespace, n: n}
	}
	in, invalid := policyinput.FromSnapshot("", snap, policyinput.Decode)
	in.Namespace = q.namespace
	p := policy.Compile(in)
	cells, err := policy.Matrix(p, q.ports, q.protocols)
	if err != nil {
		return out, err
	}
	out.Warnings, out.Invalid = p.Warnings, invalid
	for i := range p.Endpoints {
		out.Endpoints = append(out.Endpoints, p.Endpoints[i].Key())
	}
	slices.Sort(out.Endpoints)
	out.Endpoints = slices.Compact(out.Endpoints)
	out.Cells = cells
	return out, nil
}

func (d *debugServer) serveMatrix(w http.ResponseWriter, r *http.Request) {
	q, err := parseMatrixQuery(r.URL.Query())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "/debug/matrix: " + err.Error()})
		return
	}
	// One at a time: a page polling many namespaces cannot take the cores
	// the agent needs.
	select {
	case d.matrixSem <- struct{}{}:
		defer func() { <-d.matrixSem }()
	case <-r.Context().Done():
		return
	}
	// The view moves in place: copy what the compiler reads (the values
	// are replaced, never changed, on an update) and compute outside the
	// lock, so the agent's updates keep flowing.
	var snap store.Snapshot
	d.a.readView(func(s store.Snapshot) {
		snap = store.Snapshot{Rev: s.Rev, Nodes: maps.Clone(s.Nodes), Endpoints: maps.Clone(s.Endpoints),
			Namespaces: maps.Clone(s.Namespaces), Other: maps.Clone(s.Other)}
	})
	m, err := matrix(&snap, q)
	if err != nil {
		code := http.StatusBadRequest
		if _, ok := err.(errMatrixTooBig); ok {
			code = http.StatusRequestEntityTooLarge
		}
		writeJSON(w, code, map[string]string{"error": "/debug/matrix: " + err.Error()})
		return
	}
	m.Node, m.Now = d.a.cfg.NodeName, time.Now().UTC()
	writeJSON(w, http.StatusOK, &m)
}
