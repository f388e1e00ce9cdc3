//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
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
