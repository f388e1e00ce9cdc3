package agent

import (
	_ "embed" // the page is one self-contained file
	"net/http"
)

// uiPage is /ui: one HTML file with inline CSS, JS and SVG and no external
// assets, so it works on hosts without internet access. It polls
// /debug/topology and draws the cluster as this node sees it.
//
//go:embed ui/index.html
var uiPage []byte

func serveUI(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// Nothing on the page comes from elsewhere; say so to the browser.
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:")
	_, _ = w.Write(uiPage) // client gone: nothing to do
}
