//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/lab"
	"github.com/skeinnet/skein/policy"
)

// chromiumFlags run a headless browser that talks to nothing but the page.
func chromiumFlags(userDir string) []string {
	return []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
		"--user-data-dir=" + userDir, "--virtual-time-budget=8000"}
}

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestUIInBrowser opens /ui of a lab agent in headless Chromium, run inside
// the host's namespace where the debug endpoint listens, waits for the page
// to draw the graph, and checks that every lab host is in it with its
// tunnel from that host up. The screenshot goes to docs/artifacts/ui.png
// (and to $SKEIN_UI_SCREENSHOT when set, e.g. docs/ui.png for the README).
func TestUIInBrowser(t *testing.T) {
	browser := findChromium()
	if browser == "" {
		t.Skip("skipped: no chromium found (Debian: apt-get install chromium)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	waitHealthy(ctx, t)
	h := shared.Hosts()[0]
	url := "http://" + h.DebugAddr + "/ui"

	run := func(extra ...string) (string, string) {
		t.Helper()
		args := append(chromiumFlags(t.TempDir()), extra...)
		cmd, err := shared.Command(ctx, h.Name, append(append([]string{browser}, args...), url)...)
		if err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium %v: %v\n%s", extra, err, uiTail(errb.String(), 20))
		}
		return out.String(), errb.String()
	}

	dom, stderr := run("--dump-dom")
	if !strings.Contains(dom, `data-rendered="true"`) {
		t.Fatalf("the page never drew the topology (no data-rendered):\n%s\n%s", uiTail(dom, 40), uiTail(stderr, 20))
	}
	for _, host := range shared.Hosts() {
		if !regexp.MustCompile(`<g class="host" data-node="` + regexp.QuoteMeta(host.Name) + `"`).MatchString(dom) {
			t.Errorf("host %s is not drawn in the graph", host.Name)
		}
		if host.Name == h.Name {
			continue
		}
		link := regexp.MustCompile(`<line [^>]*data-from="[^"]*" data-to="[^"]*" data-state="up"`)
		found := false
		for _, m := range link.FindAllString(dom, -1) {
			if strings.Contains(m, `"`+h.Name+`"`) && strings.Contains(m, `"`+host.Name+`"`) {
				found = true
			}
		}
		if !found {
			t.Errorf("no tunnel drawn up between %s and %s", h.Name, host.Name)
		}
	}
	if n := strings.Count(dom, `<tr data-node=`); n != len(shared.Hosts()) {
		t.Errorf("node table has %d rows, want %d", n, len(shared.Hosts()))
	}

	shot := filepath.Join(t.TempDir(), "ui.png")
	run("--hide-scrollbars", "--window-size=1280,1000", "--screenshot="+shot)
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	if len(png) < 10000 || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot is not a plausible PNG (%d bytes)", len(png))
	}
	dests := []string{filepath.Join("..", "docs", "artifacts", "ui.png")}
	if p := os.Getenv("SKEIN_UI_SCREENSHOT"); p != "" {
		dests = append(dests, p)
	}
	for _, d := range dests {
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(d, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot of %s saved to %s", url, d)
	}
}

func uiTail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// uiEvilLabel is a label value that would run a script if the page
// rendered it as HTML (the page's CSP allows inline handlers).
const uiEvilLabel = `<img src=x onerror="document.body.setAttribute('data-pwned','1')">`

// uiBrowse loads url in headless Chromium inside host's namespace (where
// the agent's debug endpoint listens) with extra flags and returns stdout.
func uiBrowse(ctx context.Context, t *testing.T, host, url string, extra ...string) string {
	t.Helper()
	args := append(chromiumFlags(t.TempDir()), extra...)
	cmd, err := shared.Command(ctx, host, append(append([]string{findChromium()}, args...), url)...)
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s %v: %v\n%s", url, extra, err, uiTail(errb.String(), 20))
	}
	return out.String()
}

// uiScreenshot saves a screenshot of url to docs/img/name.
func uiScreenshot(ctx context.Context, t *testing.T, host, url, name string) {
	t.Helper()
	shot := filepath.Join(t.TempDir(), name)
	uiBrowse(ctx, t, host, url, "--hide-scrollbars", "--window-size=1280,900", "--screenshot="+shot)
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 10000 || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot of %s: %v (%d bytes)", url, err, len(png))
	}
	dst := filepath.Join("..", "docs", "img", name)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of %s saved to %s", url, dst)
}

// TestUIViews: on the shared lab with three pods of namespace uiv (one
// labelled with HTML) and a policy that lets only uiv/client reach uiv/web
// on TCP 80, the /ui of web's host shows every endpoint with its address
// (the HTML label as text), the matrix with the cells and rules `skein
// policy matrix` gives, and a denied connection in its denied flows.
func TestUIViews(t *testing.T) {
	if findChromium() == "" {
		t.Skip("skipped: no chromium found (Debian: apt-get install chromium)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	waitHealthy(ctx, t)
	bin := os.Getenv("SKEIN_BIN")
	if bin == "" {
		bin = filepath.Join("..", "bin")
	}
	s := &polSuite{l: shared, bin: filepath.Join(bin, "skein"), podCIDR: shared.State().PodCIDR, byKey: map[string]*polPod{}}
	hosts := shared.Hosts()
	web := s.addPod(ctx, t, "uiv", "web", "web", hosts[0].Name)
	client := s.addPod(ctx, t, "uiv", "client", "client", hosts[1].Name)
	evil, err := shared.AddContainer(ctx, hosts[2].Name, lab.ContainerOpts{Name: "evil", Namespace: "uiv", Labels: map[string]string{"pod": "evil", "note": uiEvilLabel}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shared.DelContainer(context.Background(), evil.Name) })
	evilPod := &polPod{ns: "uiv", name: "evil", c: evil}
	srv, err := polServe(ctx, shared, web.c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.close)
	s.apply(ctx, t, polNP("uiv", "web-from-client", `
podSelector: {matchLabels: {pod: web}}
ingress:
- from: [{podSelector: {matchLabels: {pod: client}}}]
  ports: [{protocol: TCP, port: 80}]`))
	t.Cleanup(func() {
		_, _ = s.skein(context.Background(), "policy", "delete", "NetworkPolicy", "uiv/web-from-client")
	})
	enforced := false
	for deadline := time.Now().Add(polEnforceWait); time.Now().Before(deadline) && !enforced; {
		enforced = !s.probe(ctx, evilPod, web, tcp80)
	}
	if !enforced || !s.probe(ctx, client, web, tcp80) {
		t.Fatalf("policy not enforced within %s (evil denied: %v)", polEnforceWait, enforced)
	}
	host := web.c.Host
	h, err := shared.Host(host)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + h.DebugAddr + "/ui"

	// Endpoints: every pod of uiv with its address; the label as text.
	dom := uiBrowse(ctx, t, host, base+"?view=endpoints&q=uiv/", "--dump-dom")
	if !strings.Contains(dom, `id="view-endpoints" data-rendered="true"`) {
		t.Fatalf("endpoints view not rendered:\n%s", uiTail(dom, 60))
	}
	for _, p := range []*polPod{web, client, evilPod} {
		row := regexp.MustCompile(`<tr data-endpoint="uiv/` + p.name + `"><td>uiv</td><td>` + p.name + `</td><td class="mono">` + regexp.QuoteMeta(p.c.IP.String()) + `</td>`)
		if !row.MatchString(dom) {
			t.Errorf("endpoint uiv/%s with %s not in the endpoints view", p.name, p.c.IP)
		}
	}
	if strings.Contains(dom, `data-pwned="1"`) || strings.Contains(dom, "<img") {
		t.Errorf("the label %q became HTML in the endpoints view", uiEvilLabel)
	}
	// A text node serializes with &, < and > escaped, quotes as they are.
	if !strings.Contains(dom, strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace("note="+uiEvilLabel)) {
		t.Errorf("the label %q is not shown as text", uiEvilLabel)
	}
	uiScreenshot(ctx, t, host, base+"?view=endpoints&q=uiv/", "ui-endpoints.png")

	// Matrix: one allowed and one denied cell as `skein policy matrix` has them.
	var cells []policy.Cell
	out := s.mustSkein(ctx, t, "policy", "matrix", "--namespace", "uiv", "--ports", "80", "-o", "json")
	if err := json.Unmarshal([]byte(out), &cells); err != nil {
		t.Fatalf("policy matrix -o json: %v\n%s", err, out)
	}
	want := map[[2]string]policy.Cell{}
	for _, c := range cells {
		want[[2]string{c.From, c.To}] = c
	}
	dom = uiBrowse(ctx, t, host, base+"?view=matrix&namespace=uiv&port=80", "--dump-dom")
	if !strings.Contains(dom, `id="view-matrix" data-rendered="true"`) {
		t.Fatalf("matrix view not rendered:\n%s", uiTail(dom, 60))
	}
	cellRE := regexp.MustCompile(`<td class="(?:allow|deny)" data-from="([^"]*)" data-to="([^"]*)" data-allowed="(true|false)" title="([^"]*)">`)
	got := map[[2]string][2]string{}
	for _, m := range cellRE.FindAllStringSubmatch(dom, -1) {
		got[[2]string{html.UnescapeString(m[1]), html.UnescapeString(m[2])}] = [2]string{m[3], html.UnescapeString(m[4])}
	}
	if len(got) != 9 || len(want) != 9 {
		t.Errorf("matrix view has %d cells, skein policy matrix %d; want 3×3", len(got), len(want))
	}
	for _, pair := range [][2]string{{"uiv/client", "uiv/web"}, {"uiv/evil", "uiv/web"}} {
		w, g := want[pair], got[pair]
		if g != [2]string{fmt.Sprint(w.Allowed), w.Rule} {
			t.Errorf("matrix cell %s -> %s: page %q, skein policy matrix allowed=%v %q", pair[0], pair[1], g, w.Allowed, w.Rule)
		}
	}
	if w := want[[2]string{"uiv/evil", "uiv/web"}]; w.Allowed || !want[[2]string{"uiv/client", "uiv/web"}].Allowed {
		t.Errorf("skein policy matrix: evil -> web allowed %v, client -> web allowed %v", w.Allowed, !w.Allowed)
	}
	uiScreenshot(ctx, t, host, base+"?view=matrix&namespace=uiv&port=80&hover=uiv/evil,uiv/web", "ui-matrix.png")

	// Denied flows: a new denied connection shows on web's node.
	start := time.Now()
	if s.probe(ctx, evilPod, web, tcp80) {
		t.Fatal("uiv/evil reached uiv/web on TCP/80")
	}
	rowRE := regexp.MustCompile(`<tr data-seq="\d+" data-src="` + regexp.QuoteMeta(evil.IP.String()) + `" data-dst="` + regexp.QuoteMeta(web.c.IP.String()) + `" data-port="80"><td class="mono">[^<]*</td><td>uiv/evil</td><td>uiv/web</td><td>TCP</td><td>80</td><td class="mono">([^<]*)</td>`)
	var m []string
	for deadline := time.Now().Add(dropsWait); time.Now().Before(deadline) && m == nil; {
		dom = uiBrowse(ctx, t, host, base+"?view=drops", "--dump-dom")
		m = rowRE.FindStringSubmatch(dom)
	}
	if m == nil {
		t.Fatalf("no denied flow uiv/evil -> uiv/web TCP/80 on the page within %s:\n%s", dropsWait, uiTail(dom, 80))
	}
	if rule := html.UnescapeString(m[1]); rule != want[[2]string{"uiv/evil", "uiv/web"}].Rule {
		t.Errorf("denied flow's rule %q, want the matrix's %q", rule, want[[2]string{"uiv/evil", "uiv/web"}].Rule)
	}
	if !strings.Contains(dom, `Denied flows logged by <b id="dr-node">`+host+`</b>`) {
		t.Errorf("the drops view does not say whose drops it shows")
	}
	t.Logf("denied flow shown by the page %s after the connection began", time.Since(start).Round(time.Millisecond))
	uiScreenshot(ctx, t, host, base+"?view=drops", "ui-drops.png")
	uiScreenshot(ctx, t, host, base, "ui-topology.png")
}
