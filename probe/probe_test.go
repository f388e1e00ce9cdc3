package probe

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/depcheck"
	"github.com/skeinnet/skein/store"
)

func TestAddr(t *testing.T) {
	t.Parallel()
	n := api.Node{Name: "n1", UnderlayIP: netip.MustParseAddr("10.0.0.1"), DebugAddr: "127.0.0.1:9595"}
	for _, tc := range []struct {
		node, status, want string
	}{
		{"127.0.0.1:9595", "", "127.0.0.1:9595"},
		{"127.0.0.1:9595", "10.0.0.1:9600", "10.0.0.1:9600"},
		{":9595", "", "10.0.0.1:9595"},
		{"0.0.0.0:9595", "", "10.0.0.1:9595"},
		{"[::]:9595", "", "10.0.0.1:9595"},
		{"off", "", ""},
		{"", "", ""},
		{"garbage", "", ""},
	} {
		n.DebugAddr = tc.node
		if got := Addr(n, api.NodeStatus{DebugAddr: tc.status}); got != tc.want {
			t.Errorf("Addr(node %q, status %q) = %q, want %q", tc.node, tc.status, got, tc.want)
		}
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	inv := store.Inventory{Status: map[string][]byte{"good": []byte(`{"node":"good","ready":true}`), "bad": []byte(`{`)}}
	if st, ok, err := Status(inv, "good"); !ok || err != nil || !st.Ready {
		t.Errorf("good: %+v %v %v", st, ok, err)
	}
	if _, ok, err := Status(inv, "bad"); ok || err == nil || !strings.Contains(err.Error(), "status record of bad") {
		t.Errorf("bad: ok %v, err %v; want an error naming the record", ok, err)
	}
	if _, ok, err := Status(inv, "none"); ok || err != nil {
		t.Errorf("none: ok %v, err %v", ok, err)
	}
}

// TestEach asks real HTTP servers: one answers, one fails, one node has no
// debug address; every node gets exactly one result.
func TestEach(t *testing.T) {
	t.Parallel()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/thing" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"node": "n1"}) // the test reads what arrived
	}))
	t.Cleanup(ok.Close)
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	t.Cleanup(broken.Close)
	inv := store.Inventory{Snapshot: store.Snapshot{Nodes: map[string]api.Node{
		"n1": {Name: "n1", DebugAddr: strings.TrimPrefix(ok.URL, "http://")},
		"n2": {Name: "n2", DebugAddr: strings.TrimPrefix(broken.URL, "http://")},
		"n3": {Name: "n3"},
	}}}
	got := Each(context.Background(), inv, 5*time.Second, func(msg string) string { return "failed: " + msg },
		func(ctx context.Context, hc *http.Client, name string, _ api.Node, addr string) string {
			var v map[string]string
			if err := Get(ctx, hc, addr, "/debug/thing", &v); err != nil {
				if strings.Contains(err.Error(), "500") {
					return "error 500"
				}
				return err.Error()
			}
			return name + " answered as " + v["node"]
		})
	want := map[string]string{"n1": "n1 answered as n1", "n2": "error 500", "n3": "failed: " + NoAddr}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Each mismatch (-want +got):\n%s", d)
	}
}

// TestImports keeps the prober free of kernel access: the CLI links it on
// every OS.
func TestImports(t *testing.T) {
	t.Parallel()
	depcheck.Check(t, 1, depcheck.Rule{Banned: []string{"github.com/vishvananda/", "github.com/google/nftables", "github.com/osrg/gobgp", "golang.org/x/sys/unix", "os/exec"}, Why: "the prober only speaks HTTP"})
}
