package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
)

func getJSON[T any](t *testing.T, f *debugFixture, path string, wantCode int) (T, string) {
	t.Helper()
	var v T
	resp, body := f.get(t, path)
	if resp.StatusCode != wantCode {
		t.Fatalf("%s: %s, want %d\n%s", path, resp.Status, wantCode, body)
	}
	if wantCode == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("%s: %v\n%s", path, err, body)
		}
	}
	return v, body
}

// TestDebugEndpointPages: /debug/endpoints serves every node's endpoints
// sorted, filtered, and paged with the count of what follows.
func TestDebugEndpointPages(t *testing.T) {
	f := newDebugFixture(t, "127.0.0.1:0")
	all, _ := getJSON[api.EndpointPage](t, f, "/debug/endpoints", http.StatusOK)
	var names []string
	for _, ep := range all.Endpoints {
		names = append(names, ep.Namespace+"/"+ep.Name+"@"+ep.Node)
	}
	if got := strings.Join(names, " "); got != "x/a@n1 x/b@n2 x/c@n2" || all.Total != 3 || all.More != 0 || all.StoreRev != 42 || all.Node != "n1" {
		t.Errorf("all endpoints: %s total %d more %d rev %d node %q", got, all.Total, all.More, all.StoreRev, all.Node)
	}
	page, _ := getJSON[api.EndpointPage](t, f, "/debug/endpoints?limit=1&offset=1", http.StatusOK)
	if len(page.Endpoints) != 1 || page.Endpoints[0].Name != "b" || page.Total != 3 || page.More != 1 {
		t.Errorf("page 2 of 1: %+v", page)
	}
	byNode, _ := getJSON[api.EndpointPage](t, f, "/debug/endpoints?node=n2&q=.3", http.StatusOK)
	if len(byNode.Endpoints) != 1 || byNode.Endpoints[0].Name != "c" || byNode.Total != 1 {
		t.Errorf("n2 endpoints with .3 in an address: %+v", byNode)
	}
	for _, bad := range []string{"limit=0", "limit=100000", "offset=-1", "limit=x"} {
		_, body := getJSON[api.EndpointPage](t, f, "/debug/endpoints?"+bad, http.StatusBadRequest)
		name, _, _ := strings.Cut(bad, "=")
		if !strings.Contains(body, name) {
			t.Errorf("%s: error does not name the parameter: %s", bad, body)
		}
	}
}

// TestDebugMatrix: /debug/matrix gives the namespace's pairs with the
// deciding rules, refuses a namespace above the bound with a clear message
// and bad parameters by name.
func TestDebugMatrix(t *testing.T) {
	f := newDebugFixture(t, "127.0.0.1:0")
	snap := f.a.snap.Load()
	snap.Namespaces = map[string]api.Namespace{"x": {Name: "x"}}
	snap.Other = map[string][]byte{api.PolicyKey("NetworkPolicy", "x", "deny"): []byte(`{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"deny","namespace":"x"},"spec":{"podSelector":{"matchLabels":{"pod":"c"}}}}`)}
	snap.Endpoints["n2/c3/eth0"] = api.Endpoint{Namespace: "x", Name: "c", Node: "n2", ContainerID: "c3", IfName: "eth0",
		Labels: map[string]string{"pod": "c"}, IPs: snap.Endpoints["n2/c3/eth0"].IPs}
	m, _ := getJSON[api.PolicyMatrix](t, f, "/debug/matrix?namespace=x&port=80,81", http.StatusOK)
	if got := strings.Join(m.Endpoints, " "); got != "x/a x/b x/c" || len(m.Cells) != 2*9 {
		t.Fatalf("matrix endpoints %s, %d cells; want x/a x/b x/c and 18 cells", got, len(m.Cells))
	}
	for _, c := range m.Cells {
		wantAllowed := c.To != "x/c" || c.From == "x/c"
		if c.Allowed != wantAllowed {
			t.Errorf("cell %+v: allowed %v, want %v", c, c.Allowed, wantAllowed)
		}
		if !c.Allowed && c.Rule != "x/c is isolated for ingress by NetworkPolicy x/deny and no rule allows it: Deny" {
			t.Errorf("cell %+v: rule %q", c, c.Rule)
		}
	}
	empty, _ := getJSON[api.PolicyMatrix](t, f, "/debug/matrix?namespace=nope", http.StatusOK)
	if len(empty.Cells) != 0 || len(empty.Endpoints) != 0 {
		t.Errorf("namespace without endpoints: %+v", empty)
	}

	for _, tc := range []struct{ query, want string }{
		{"", "namespace: required"},
		{"namespace=x&port=0", "port="},
		{"namespace=x&protocol=ICMP", "protocol="},
		{"namespace=x&port=1,2,3,4,5&protocol=TCP,UDP", "at most 8"},
	} {
		if _, body := getJSON[api.PolicyMatrix](t, f, "/debug/matrix?"+tc.query, http.StatusBadRequest); !strings.Contains(body, tc.want) {
			t.Errorf("?%s: %s, want %q", tc.query, body, tc.want)
		}
	}

	base := netip.MustParseAddr("10.244.9.0")
	for i := range matrixMaxEndpoints {
		base = base.Next()
		snap.Endpoints[fmt.Sprintf("n2/big%d/eth0", i)] = api.Endpoint{Namespace: "big", Name: fmt.Sprint("p", i), Node: "n2", IPs: []netip.Addr{base}}
	}
	if _, body := getJSON[api.PolicyMatrix](t, f, "/debug/matrix?namespace=big", http.StatusOK); body == "" {
		t.Error("no answer at the bound")
	}
	snap.Endpoints["n2/bigger/eth0"] = api.Endpoint{Namespace: "big", Name: "one-more", Node: "n2", IPs: []netip.Addr{base.Next()}}
	_, body := getJSON[api.PolicyMatrix](t, f, "/debug/matrix?namespace=big", http.StatusRequestEntityTooLarge)
	if !strings.Contains(body, `namespace \"big\" has 101 endpoints`) || !strings.Contains(body, "skein policy matrix --namespace big") {
		t.Errorf("too big: %s", body)
	}
}

// TestUIViewsEscape opens the /ui's endpoint and matrix views in headless
// Chromium (skipped without it) over an agent whose endpoint names and
// labels carry HTML: they render as text, and no script of theirs runs.
func TestUIViewsEscape(t *testing.T) {
	browser := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		t.Skip("no chromium")
	}
	f := newDebugFixture(t, "127.0.0.1:0")
	// Changed under the view's lock, as the watch does: the server reads it
	// when the browser asks, which the race detector cannot see ordered.
	f.a.viewMu.Lock()
	snap := f.a.snap.Load()
	const evil = `<img src=x onerror="document.body.setAttribute('data-pwned','1')">`
	ep := snap.Endpoints["n2/c2/eth0"]
	ep.Labels = map[string]string{"note": evil}
	ep.Name = "<b>bold</b>"
	snap.Endpoints["n2/c2/eth0"] = ep
	// More than a page: the endpoints view says how many it leaves out.
	bulk := netip.MustParseAddr("10.244.20.0")
	for i := range endpointsDefaultLimit + 5 {
		bulk = bulk.Next()
		snap.Endpoints[fmt.Sprintf("n2/bulk%d/eth0", i)] = api.Endpoint{Namespace: "zbulk", Name: fmt.Sprint("p", i), Node: "n2", IPs: []netip.Addr{bulk}}
	}
	f.a.viewMu.Unlock()
	for _, view := range []string{"endpoints", "matrix&namespace=x"} {
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
			"--disable-dev-shm-usage", "--user-data-dir="+t.TempDir(), "--virtual-time-budget=5000", "--dump-dom",
			f.srv.URL+"/ui?view="+view)
		out, err := cmd.Output()
		cancel()
		if err != nil {
			t.Fatalf("chromium: %v", err)
		}
		dom := string(out)
		name, _, _ := strings.Cut(view, "&")
		if !strings.Contains(dom, `id="view-`+name+`" data-rendered="true"`) {
			t.Fatalf("view %s not rendered:\n%s", view, dom)
		}
		if strings.Contains(dom, `data-pwned="1"`) || strings.Contains(dom, "<img") || strings.Contains(dom, "<b>bold") {
			t.Errorf("view %s: user input became HTML:\n%s", view, dom)
		}
		if !strings.Contains(dom, "&lt;b&gt;bold&lt;/b&gt;") {
			t.Errorf("view %s: the endpoint name is not shown as text", view)
		}
		if view == "endpoints" && !strings.Contains(dom, "8 more matching endpoint(s) not shown") {
			t.Errorf("the endpoints view does not say what it leaves out:\n%s", dom)
		}
		if view == "endpoints" && !strings.Contains(dom, `note=&lt;img src=x onerror="document.body.setAttribute('data-pwned','1')"&gt;`) {
			t.Errorf("the label is not shown as text:\n%s", dom)
		}
	}
}
