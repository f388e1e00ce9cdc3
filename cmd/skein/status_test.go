package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/report"
)

// TestStatusCommand: exit 0 on a healthy cluster, 2 once an agent stops;
// agents are asked each with its own deadline, and one that hangs does not
// hold the command up.
func TestStatusCommand(t *testing.T) {
	tc := newTestCluster(t)
	// n1's agent answers; n2's hangs; n3's address reaches n1's agent.
	topo := api.Topology{Node: api.Node{Name: "n1"}, Ready: true, Nodes: []api.TopologyNode{
		{Node: api.Node{Name: "n1"}, Self: true},
		{Node: api.Node{Name: "n2"}, Link: api.Link{Kind: "vxlan", State: api.LinkUp}},
		{Node: api.Node{Name: "n3"}, Link: api.Link{Kind: "vxlan", State: api.LinkUp}},
	}}
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/topology" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(topo)
	}))
	defer good.Close()
	hang := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	tc.node(t, "n1", 1, true, good.Listener.Addr().String())
	tc.node(t, "n2", 2, true, hang.Listener.Addr().String())
	tc.node(t, "n3", 3, true, good.Listener.Addr().String())
	tc.setPeers(t, 2)

	start := time.Now()
	out, err := run(t, newStatusCmd(tc.g), "--agent-timeout", "300ms")
	if err != nil {
		t.Fatalf("status of a healthy cluster: %v\n%s", err, out)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("status took %s with a hanging agent and a 300ms agent timeout", d)
	}
	if !strings.Contains(out, "3 nodes, 3 alive") || !strings.Contains(out, ": healthy") {
		t.Errorf("healthy status output:\n%s", out)
	}

	tc.g.Output = "json"
	out, err = run(t, newStatusCmd(tc.g), "--agent-timeout", "300ms")
	if err != nil {
		t.Fatal(err)
	}
	var rep report.Cluster
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out)
	}
	agents := map[string]string{}
	for _, n := range rep.Nodes {
		agents[n.Name] = n.Agent
	}
	if agents["n1"] != "ok" || !strings.Contains(agents["n2"], "Timeout") || !strings.Contains(agents["n3"], `answered as node "n1"`) {
		t.Errorf("agent columns: %q", agents)
	}

	// n2's agent stops: its heartbeat and status vanish.
	ctx := tc.ctx(t)
	if _, err := tc.cl.Etcd().Delete(ctx, tc.cl.Prefix()+"alive/n2"); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.cl.Etcd().Delete(ctx, tc.cl.Prefix()+"status/n2"); err != nil {
		t.Fatal(err)
	}
	tc.g.Output = "table"
	out, err = run(t, newStatusCmd(tc.g), "--agents=false")
	if exitCode(err) != exitUnhealthy {
		t.Fatalf("status with an agent down: exit %d (%v), want %d\n%s", exitCode(err), err, exitUnhealthy, out)
	}
	if !strings.Contains(out, "UNHEALTHY") || !regexpLine(out, `^n2\s+NO\s+-`) || !strings.Contains(out, "n2: no heartbeat") {
		t.Errorf("unhealthy status output:\n%s", out)
	}
	// The verdict is on stdout after the table, and only there.
	if unsaid(err) || strings.Index(out, "UNHEALTHY") < strings.Index(out, "NODE") {
		t.Errorf("verdict not after the table or repeated on stderr (%v):\n%s", err, out)
	}
	out, err = run(t, newTopologyCmd(tc.g), "--agents=false")
	if exitCode(err) != exitUnhealthy || !strings.Contains(out, "└── n3") || !strings.Contains(out, "no heartbeat") {
		t.Errorf("topology with an agent down: exit %d\n%s", exitCode(err), out)
	}
}

func regexpLine(s, re string) bool {
	for _, l := range strings.Split(s, "\n") {
		if ok, _ := regexp.MatchString(re, l); ok {
			return true
		}
	}
	return false
}

func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{
		"bash": "__start_skein",
		"zsh":  "#compdef skein",
		"fish": "complete -c skein",
	} {
		root := newRootCmd()
		if c, _, err := root.Find([]string{"completion"}); err != nil || c == root {
			root.AddCommand(newCompletionCmd())
		}
		out, err := run(t, root, "completion", shell)
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("completion %s: %v, output lacks %q", shell, err, want)
		}
	}
	root := newRootCmd()
	root.AddCommand(newCompletionCmd())
	if _, err := run(t, root, "completion", "powershell"); err == nil {
		t.Errorf("completion powershell: no error")
	}
}

// withoutExample lists the commands, in files of other owners, that had no
// example when this test was written. Add an example and drop the entry.
var withoutExample = []string{}

// TestEveryCommandHasExample: every --help shows an example.
func TestEveryCommandHasExample(t *testing.T) {
	root := newRootCmd()
	have := map[string]bool{}
	for _, c := range root.Commands() {
		have[c.Name()] = true
	}
	for _, c := range newOpsCmds(&globalFlags{}) {
		if !have[c.Name()] {
			root.AddCommand(c)
		}
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.Hidden && c.Example == "" && c != root && !slices.Contains(withoutExample, c.CommandPath()) {
			t.Errorf("%s: no Example in its --help", c.CommandPath())
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
}

// TestRenderStatus: the table has a row per node and the verdict after it.
func TestRenderStatus(t *testing.T) {
	now := time.Now()
	ready := true
	rep := report.Cluster{Backend: api.BackendVXLAN, Rev: 7, Checked: now, Healthy: true, Nodes: []report.Node{
		{Name: "n1", UnderlayIP: netip.MustParseAddr("10.0.0.1"), Alive: true, Ready: &ready, Peers: "1/1", Blocks: []string{"10.244.1.0/26"}, Endpoints: 1, Agent: "not asked", Healthy: true},
		{Name: "n2", UnderlayIP: netip.MustParseAddr("10.0.0.2"), Alive: true, Ready: &ready, Peers: "1/1", Blocks: []string{"10.244.2.0/26"}, Agent: `127.0.0.1:9595 answered as node "n1"`, Healthy: true},
	}}
	var b strings.Builder
	if err := (&globalFlags{Output: "wide"}).render(&b, rep, func(tw *tabwriter.Writer, wide bool) { renderStatus(tw, rep, wide) }); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"NODE", "n1", "10.0.0.1", "1/1", "answered as node", "2 nodes, 2 alive, 1 endpoints, backend vxlan, etcd rev 7: healthy"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

// TestRenderGraph: each node lists its links as a tree, with the basis of
// each state, and its problems.
func TestRenderGraph(t *testing.T) {
	now := time.Now()
	ready := true
	g := report.Graph{
		Cluster: report.Cluster{Backend: api.BackendVXLAN, Rev: 7, Checked: now, Nodes: []report.Node{
			{Name: "n1", Alive: true, Ready: &ready},
			{Name: "n2", Alive: true, Ready: &ready},
			{Name: "n3", Problems: []string{"no heartbeat: agent down, data path kept"}},
		}},
		Links: []api.PairLink{
			{From: "n1", To: "n2", State: "up", Basis: "observed"},
			{From: "n1", To: "n3", State: "down", Basis: "observed", AgentDown: []string{"n3"}},
			{From: "n2", To: "n3", State: "up", Basis: "reported", AgentDown: []string{"n3"}},
		},
	}
	var b strings.Builder
	if err := (&globalFlags{Output: "table"}).render(&b, g, func(tw *tabwriter.Writer, wide bool) { renderGraph(tw, g, wide) }); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"UNHEALTHY", "├── n2", "up", "(observed)", "└── n3", "down", "(reported)", "! no heartbeat"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("topology text lacks %q:\n%s", want, b.String())
		}
	}
}
