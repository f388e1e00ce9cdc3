//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
)

// linkStatusReport is the part of `skein status -o json` about link state.
type linkStatusReport struct {
	Nodes []struct {
		Name       string              `json:"name"`
		Alive      bool                `json:"alive"`
		AgentState string              `json:"agentState"`
		Links      map[string]api.Link `json:"links"`
		LinkStates map[string]string   `json:"linkStates"`
	} `json:"nodes"`
}

// linkGraph is the part of `skein topology -o json` about links.
type linkGraph struct {
	Links []api.PairLink `json:"links"`
}

// pairKey names a link the same way whichever end comes first.
func pairKey(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return a + "-" + b
}

// TestLinkStateAgentDown: with one agent stopped, traffic to and from its
// containers still flows, and `skein status` and `skein topology` (from the
// root namespace and from another host), the other agent's /debug/topology
// (what /ui draws) and its skein_peers metric all agree on the links to that
// host: up, with the host's agent down and its data path kept; none says down.
func TestLinkStateAgentDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	waitHealthy(ctx, t)
	hosts := shared.Hosts()
	if len(hosts) < 3 {
		t.Fatalf("need 3 lab hosts, have %d", len(hosts))
	}
	observer, victim := hosts[0], hosts[len(hosts)-1]
	src, dst := containerOn(t, observer.Name), containerOn(t, victim.Name)

	if err := shared.StopAgent(ctx, victim.Name); err != nil {
		t.Fatalf("stop agent %s: %v", victim.Name, err)
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer ccancel()
		if err := shared.StartAgent(cctx, victim.Name); err != nil {
			t.Errorf("restart agent %s: %v", victim.Name, err)
			return
		}
		waitHealthy(cctx, t)
		// The observer's /debug/topology caches status records for a
		// moment: wait until it shows the victim back, for the next tests.
		hc, err := shared.HTTPClient(observer.Name)
		if err != nil {
			t.Error(err)
			return
		}
		waitFor(cctx, t, 30*time.Second, observer.Name+"'s /debug/topology with "+victim.Name+" back", func() (bool, string) {
			_, body := httpGet(cctx, t, hc, "http://"+observer.DebugAddr+"/debug/topology")
			var topo api.Topology
			if err := json.Unmarshal([]byte(body), &topo); err != nil {
				return false, body
			}
			for _, n := range topo.Nodes {
				if n.Name == victim.Name {
					return n.Alive && n.Status != nil, body
				}
			}
			return false, body
		})
	})

	// The heartbeat lapses (at once on a clean stop, within the lease TTL
	// otherwise).
	waitFor(ctx, t, 60*time.Second, victim.Name+" without heartbeat", func() (bool, string) {
		r := opsSkein(ctx, t, "status", "-o", "json", "--agents=false")
		var rep linkStatusReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			return false, r.String()
		}
		for _, n := range rep.Nodes {
			if n.Name == victim.Name {
				return !n.Alive, r.String()
			}
		}
		return false, r.String()
	})

	ping := func(from lab.Container, to lab.Container) {
		t.Helper()
		pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
		defer pcancel()
		if err := shared.Ping(pctx, from.Name, to.IP); err != nil {
			t.Fatalf("ping %s (%s) -> %s (%s) with %s's agent stopped: %v", from.Name, from.Host, to.Name, to.Host, victim.Name, err)
		}
	}
	ping(src, dst)
	ping(dst, src)

	// seen collects, per view, the state each view gives each link to the
	// victim's host.
	seen := map[string]map[string]string{}
	note := func(view, a, b, state string) {
		if a != victim.Name && b != victim.Name {
			return
		}
		if seen[view] == nil {
			seen[view] = map[string]string{}
		}
		seen[view][pairKey(a, b)] = state
	}

	statusViews := func(view string, r opsResult, wantObserved bool) {
		t.Helper()
		if r.code != 2 {
			t.Errorf("%s: want exit 2 (an agent is down)\n%s", view, r)
		}
		var rep linkStatusReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("%s: %v\n%s", view, err, r)
		}
		for _, n := range rep.Nodes {
			if n.Name == victim.Name {
				if n.AgentState != api.AgentDownDataPathKept {
					t.Errorf("%s: %s agentState %q, want %q", view, n.Name, n.AgentState, api.AgentDownDataPathKept)
				}
				continue
			}
			if n.AgentState != "up" {
				t.Errorf("%s: %s agentState %q, want up", view, n.Name, n.AgentState)
			}
			state, ok := n.LinkStates[victim.Name]
			if !ok {
				t.Errorf("%s: %s has no state for its link to %s: %v", view, n.Name, victim.Name, n.LinkStates)
			}
			note(view, n.Name, victim.Name, state)
			if wantObserved && n.Name == observer.Name {
				if l, ok := n.Links[victim.Name]; !ok || l.State != state {
					t.Errorf("%s: %s's observed link to %s is %+v, linkStates says %q", view, n.Name, victim.Name, l, state)
				}
			}
		}
	}
	statusViews("skein status (root namespace)", opsSkein(ctx, t, "status", "-o", "json"), false)
	statusViews("skein status (on "+observer.Name+")", opsSkeinIn(ctx, t, observer.Name, "status", "-o", "json"), true)

	graphView := func(view string, r opsResult, observed string) {
		t.Helper()
		if r.code != 2 {
			t.Errorf("%s: want exit 2 (an agent is down)\n%s", view, r)
		}
		var g linkGraph
		if err := json.Unmarshal([]byte(r.stdout), &g); err != nil {
			t.Fatalf("%s: %v\n%s", view, err, r)
		}
		checkPairLinks(t, view, g.Links, victim.Name, observed)
		for _, l := range g.Links {
			note(view, l.From, l.To, l.State)
		}
	}
	graphView("skein topology (root namespace)", opsSkein(ctx, t, "topology", "-o", "json"), "")
	graphView("skein topology (on "+observer.Name+")", opsSkeinIn(ctx, t, observer.Name, "topology", "-o", "json"), observer.Name)

	hc, err := shared.HTTPClient(observer.Name)
	if err != nil {
		t.Fatal(err)
	}
	code, body := httpGet(ctx, t, hc, "http://"+observer.DebugAddr+"/debug/topology")
	if code != http.StatusOK {
		t.Fatalf("/debug/topology on %s: %d\n%s", observer.Name, code, body)
	}
	var topo api.Topology
	if err := json.Unmarshal([]byte(body), &topo); err != nil {
		t.Fatalf("/debug/topology on %s: %v", observer.Name, err)
	}
	view := "/debug/topology (/ui) on " + observer.Name
	checkPairLinks(t, view, topo.Links, victim.Name, observer.Name)
	for _, l := range topo.Links {
		note(view, l.From, l.To, l.State)
	}
	for _, n := range topo.Nodes {
		if n.Name == victim.Name && (n.Agent != api.AgentDownDataPathKept || n.Link.State != api.LinkUp) {
			t.Errorf("%s: node %s is agent %q, link %+v; want %q and up", view, n.Name, n.Agent, n.Link, api.AgentDownDataPathKept)
		}
	}

	// skein_peers counts the observer's side of each link: all peers up,
	// the stopped one included.
	code, metrics := httpGet(ctx, t, hc, "http://"+observer.DebugAddr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics on %s: %d", observer.Name, code)
	}
	for _, state := range []string{api.LinkUp, api.LinkPartial, api.LinkPending, api.LinkDown, api.LinkNone} {
		want := 0.0
		if state == api.LinkUp {
			want = float64(len(hosts) - 1)
		}
		series := `skein_peers{state="` + state + `"}`
		if v, ok := metricValue(metrics, series); !ok || v != want {
			t.Errorf("%s on %s: %v (found %v), want %v", series, observer.Name, v, ok, want)
		}
	}
	note("skein_peers on "+observer.Name, observer.Name, victim.Name, api.LinkUp)

	// Every view names every link to the victim, and all say the same: up.
	var views []string
	for v := range seen {
		views = append(views, v)
	}
	sort.Strings(views)
	for _, v := range views {
		for link, state := range seen[v] {
			if state != api.LinkUp {
				t.Errorf("%s: link %s is %q while traffic flows, want up", v, link, state)
			}
		}
	}
	for _, h := range hosts[:len(hosts)-1] {
		key := pairKey(h.Name, victim.Name)
		for _, v := range views {
			if _, ok := seen[v][key]; !ok && !strings.HasPrefix(v, "skein_peers") {
				t.Errorf("%s: no state for link %s", v, key)
			}
		}
	}
	// And traffic still flows after all the asking.
	ping(src, dst)
}

// checkPairLinks: every link is shown, none is down, the links to the
// stopped host name its agent as down, and the link from observer (when
// set) was observed.
func checkPairLinks(t *testing.T, view string, links []api.PairLink, victim, observer string) {
	t.Helper()
	n := len(shared.Hosts())
	if len(links) != n*(n-1)/2 {
		t.Errorf("%s: %d links, want %d: %+v", view, len(links), n*(n-1)/2, links)
	}
	for _, l := range links {
		if l.State == api.LinkDown {
			t.Errorf("%s: link %s-%s shown down while traffic flows: %+v", view, l.From, l.To, l)
		}
		touches := l.From == victim || l.To == victim
		if touches != slices.Contains(l.AgentDown, victim) {
			t.Errorf("%s: link %s-%s agentDown %v (agent of %s stopped)", view, l.From, l.To, l.AgentDown, victim)
		}
		if touches && !strings.Contains(l.Detail, api.AgentDownDataPathKept) {
			t.Errorf("%s: link %s-%s detail %q does not say %q", view, l.From, l.To, l.Detail, api.AgentDownDataPathKept)
		}
		if observer != "" && pairKey(l.From, l.To) == pairKey(observer, victim) && l.Basis != api.BasisObserved {
			t.Errorf("%s: link %s-%s basis %q, want observed", view, l.From, l.To, l.Basis)
		}
	}
}
