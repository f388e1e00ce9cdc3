package store

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/skeinnet/skein/api"
)

func TestEmbeddedUnixSocket(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: needs an embedded etcd")
	}
	dir := t.TempDir()
	sock := "unix://" + filepath.Join(dir, "etcd.sock")
	e, err := StartEmbedded(ctxTimeout(t), EmbeddedConfig{
		Dir:           filepath.Join(dir, "data"),
		ClientURLs:    []string{sock},
		UnsafeNoFsync: true,
		Log:           testLog(t),
	})
	if err != nil {
		t.Fatalf("StartEmbedded on %s: %v", sock, err)
	}
	t.Cleanup(e.Close)
	if got := e.Endpoints(); len(got) != 1 || got[0] != sock {
		t.Errorf("Endpoints = %v, want [%s]", got, sock)
	}
	c := newClient(t, e)
	ctx := ctxTimeout(t)
	if err := c.PutNode(ctx, api.Node{Name: "a"}); err != nil {
		t.Fatalf("PutNode over %s: %v", sock, err)
	}
	if n, err := c.GetNode(ctx, "a"); err != nil || n.Name != "a" {
		t.Errorf("GetNode over %s = %+v, %v", sock, n, err)
	}
}

// TestEmbeddedRestart restarts etcd on the same data dir and socket under a
// running Watch and Heartbeat: the data survives and both carry on.
func TestEmbeddedRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: needs an embedded etcd")
	}
	dir := t.TempDir()
	cfg := EmbeddedConfig{
		Dir:           filepath.Join(dir, "data"),
		ClientURLs:    []string{"unix://" + filepath.Join(dir, "etcd.sock")},
		UnsafeNoFsync: true,
		Log:           testLog(t),
	}
	e, err := StartEmbedded(ctxTimeout(t), cfg)
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	var e2 *Embedded
	// Registered first so that it runs last: etcd waits for open streams when it stops.
	t.Cleanup(func() {
		if e2 != nil {
			e2.Close()
		}
	})
	c := newClient(t, e)
	ctx := ctxTimeout(t)
	if err := c.PutNode(ctx, api.Node{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, c)
	w.waitFor(t, "node a", func(s Snapshot) bool { _, ok := s.Nodes["a"]; return ok })
	hctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Heartbeat(hctx, "a", 2*time.Second, nil) }()
	t.Cleanup(func() {
		cancel()
		<-done //nolint:errcheck // the cancelled context's error
	})
	waitKey(t, c, c.Prefix()+"alive/a", "present", func(kv *mvccpb.KeyValue) bool { return kv != nil })

	start := time.Now()
	e.Close() // waits for the open watch and keepalive streams, up to etcd's request timeout
	stopped := time.Now()
	e2, err = StartEmbedded(ctxTimeout(t), cfg)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Logf("stopped in %s, started in %s", stopped.Sub(start), time.Since(stopped))

	// A fresh deadline: the stop above may have used up most of the first one.
	if err := c.PutNode(ctxTimeout(t), api.Node{Name: "b"}); err != nil {
		t.Fatalf("PutNode after restart: %v", err)
	}
	w.waitFor(t, "nodes a and b", func(s Snapshot) bool { return len(s.Nodes) == 2 })
	waitKey(t, c, c.Prefix()+"alive/a", "present", func(kv *mvccpb.KeyValue) bool { return kv != nil })
}

func TestStartEmbeddedErrors(t *testing.T) {
	t.Parallel()
	if _, err := StartEmbedded(t.Context(), EmbeddedConfig{}); err == nil {
		t.Errorf("StartEmbedded without a dir succeeded")
	}
	_, err := StartEmbedded(t.Context(), EmbeddedConfig{Dir: t.TempDir(), ClientURLs: []string{"ftp://127.0.0.1:1"}})
	if err == nil || !strings.Contains(err.Error(), "ftp://") {
		t.Errorf("StartEmbedded with an ftp URL: err = %v, want one naming it", err)
	}
}

func TestPlaintextOffLoopback(t *testing.T) {
	t.Parallel()
	urls, err := parseURLs([]string{
		"http://127.0.0.1:2379", "http://localhost:2379", "http://[::1]:2379", "http://127.0.0.5:1",
		"https://10.0.0.1:2379", "unix:///run/skein/etcd.sock", "unixs:///run/etcd.sock",
		"http://10.0.0.1:2379", "http://0.0.0.0:2379", "http://[::]:2379", "http://etcd.lan:2379",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"http://10.0.0.1:2379", "http://0.0.0.0:2379", "http://[::]:2379", "http://etcd.lan:2379"}
	if d := cmp.Diff(want, plaintextOffLoopback(urls)); d != "" {
		t.Errorf("plaintextOffLoopback mismatch (-want +got):\n%s", d)
	}
}
