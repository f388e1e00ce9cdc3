package agent

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

func TestDecideClaim(t *testing.T) {
	t.Parallel()
	mine := identity{Hash: "sha256:aaaaaaaaaaaa0000", Path: "/var/lib/skein/node-identity"}
	other := "sha256:bbbbbbbbbbbb1111"
	ip := netip.MustParseAddr("10.0.0.1")
	rec := func(id string) *api.Node { return &api.Node{Name: "h1", UnderlayIP: ip, Identity: id} }
	alive := func(id string) *store.Alive { return &store.Alive{Node: "h1", Identity: id} }
	for _, tc := range []struct {
		name     string
		record   *api.Node
		alive    *store.Alive
		takeOver bool
		want     claimAction
		// wantErr are substrings of the refusal; empty means no error.
		wantErr []string
	}{
		{name: "no record", want: claimCreate},
		{name: "no record, own stale heartbeat", alive: alive(mine.Hash), want: claimCreate},
		{name: "no record, another identity heartbeats", alive: alive(other),
			wantErr: []string{`node "h1"`, "bbbbbbbbbbbb", "aaaaaaaaaaaa", "alive"}},
		{name: "own record", record: rec(mine.Hash), want: claimOwn},
		{name: "own record, own heartbeat", record: rec(mine.Hash), alive: alive(mine.Hash), want: claimOwn},
		{name: "own record, another heartbeats", record: rec(mine.Hash), alive: alive(other),
			wantErr: []string{"bbbbbbbbbbbb", "alive"}},
		{name: "record of an earlier version", record: rec(""), want: claimAdopt},
		{name: "record of an earlier version, its agent alive", record: rec(""), alive: alive(""),
			wantErr: []string{"earlier version", "10.0.0.1", "alive: heartbeat current", "wait ~30 s"}},
		{name: "another identity alive", record: rec(other), alive: alive(other),
			wantErr: []string{`node "h1"`, "held by identity bbbbbbbbbbbb", "this agent is identity aaaaaaaaaaaa", "/var/lib/skein/node-identity", "underlay IP 10.0.0.1", "alive: heartbeat current", "--node-name", "cloned"}},
		{name: "another identity alive, take-over refused", record: rec(other), alive: alive(other), takeOver: true,
			wantErr: []string{"bbbbbbbbbbbb", "alive", "--take-over-node is refused while the holder is alive"}},
		{name: "another identity alive with an old heartbeat", record: rec(other), alive: alive(""), takeOver: true,
			wantErr: []string{"bbbbbbbbbbbb", "alive"}},
		{name: "another identity not alive", record: rec(other),
			wantErr: []string{"bbbbbbbbbbbb", "aaaaaaaaaaaa", "10.0.0.1", "not alive", "--take-over-node", "skein node delete h1"}},
		{name: "another identity, only our stale heartbeat", record: rec(other), alive: alive(mine.Hash),
			wantErr: []string{"not alive"}},
		{name: "another identity not alive, take-over", record: rec(other), takeOver: true, want: claimTakeOver},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decideClaim(claimInput{Node: "h1", Mine: mine, Record: tc.record, Alive: tc.alive, TakeOver: tc.takeOver})
			if len(tc.wantErr) == 0 {
				if err != nil || got != tc.want {
					t.Fatalf("decideClaim = %v, %v; want %v", got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("decideClaim = %v; want a refusal", got)
			}
			t.Log(err)
			if !errors.Is(err, ErrNodeNameTaken) {
				t.Errorf("error %v is not ErrNodeNameTaken", err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadIdentity(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	id, created, err := loadIdentity(dir)
	if err != nil || !created {
		t.Fatalf("first loadIdentity = %+v, %v, %v; want a new identity", id, created, err)
	}
	fi, err := os.Stat(filepath.Join(dir, IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("identity file mode %v, want 0600", fi.Mode().Perm())
	}
	secret, err := os.ReadFile(filepath.Join(dir, IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(id.Hash, strings.TrimSpace(string(secret))) || !strings.HasPrefix(id.Hash, "sha256:") {
		t.Errorf("identity hash %q: want sha256 of the secret, never the secret", id.Hash)
	}
	again, created, err := loadIdentity(dir)
	if err != nil || created || again.Hash != id.Hash {
		t.Errorf("second loadIdentity = %+v, %v, %v; want the same identity %s", again, created, err, id.Hash)
	}
	other, _, err := loadIdentity(t.TempDir())
	if err != nil || other.Hash == id.Hash {
		t.Errorf("identity of another state dir = %+v, %v; want a different one", other, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("state dir holds %d entries, want only %s", len(entries), IdentityFile)
	}

	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, IdentityFile), []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadIdentity(bad); err == nil || !strings.Contains(err.Error(), IdentityFile) {
		t.Errorf("loadIdentity of a truncated file = %v, want an error naming the file", err)
	}
}

// TestRegisterNodeRace: agents with distinct identities register one node
// name at once against a real etcd: exactly one wins, the others are refused
// and the record carries the winner's identity.
func TestRegisterNodeRace(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: needs an embedded etcd")
	}
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	e, err := store.StartEmbedded(ctx, store.EmbeddedConfig{Dir: t.TempDir(), UnsafeNoFsync: true, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	newAgent := func(i int) *Agent {
		c, err := store.New(ctx, store.Config{Endpoints: e.Endpoints(), Log: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() }) // test teardown
		id, _, err := loadIdentity(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return &Agent{
			cfg:   Config{NodeName: "h1", Version: "test"},
			log:   log,
			store: c,
			id:    id,
			ul:    underlay{IP: netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})},
		}
	}
	const n = 6
	agents := make([]*Agent, n)
	for i := range agents {
		agents[i] = newAgent(i)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, a := range agents {
		wg.Go(func() { errs[i] = a.claimNode(ctx) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("agents %d and %d both registered h1", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, ErrNodeNameTaken):
			t.Errorf("agent %d: %v, want ErrNodeNameTaken", i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("no agent registered h1: %v", errs)
	}
	rec, err := agents[0].store.GetNode(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Identity != agents[winner].id.Hash || rec.UnderlayIP != agents[winner].ul.IP {
		t.Errorf("record %+v, want the winner's identity %s and IP %s", rec, agents[winner].id.Hash, agents[winner].ul.IP)
	}

	// The winner registers again (a restart); a loser with --take-over-node
	// is refused while the winner heartbeats, and joins once it stopped.
	if err := agents[winner].claimNode(ctx); err != nil {
		t.Errorf("winner registering again: %v", err)
	}
	loser := agents[(winner+1)%n]
	loser.cfg.TakeOverNode = true
	hctx, hcancel := context.WithCancel(ctx)
	hdone := make(chan error, 1)
	go func() {
		hdone <- agents[winner].store.HeartbeatIdentity(hctx, "h1", agents[winner].id.Hash, 10*time.Second, nil)
	}()
	waitAlive(ctx, t, loser.store, "h1", true)
	if err := loser.claimNode(ctx); err == nil || !strings.Contains(err.Error(), "refused while the holder is alive") {
		t.Errorf("take-over while the holder heartbeats = %v, want a refusal", err)
	}
	hcancel()
	if err := <-hdone; err != nil {
		t.Fatal(err)
	}
	waitAlive(ctx, t, loser.store, "h1", false)
	if err := loser.claimNode(ctx); err != nil {
		t.Fatalf("take-over after the holder stopped: %v", err)
	}
	if rec, _ := loser.store.GetNode(ctx, "h1"); rec.Identity != loser.id.Hash {
		t.Errorf("record identity after take-over %s, want %s", fingerprint(rec.Identity), fingerprint(loser.id.Hash))
	}
	// The old holder, back, is refused.
	if err := agents[winner].claimNode(ctx); !errors.Is(err, ErrNodeNameTaken) {
		t.Errorf("old holder registering after the take-over = %v, want ErrNodeNameTaken", err)
	}
}

// TestRegisterAdoptsLegacyRecord: a node record written before identities
// (no identity, an admin's label) is adopted on the first start, keeping the
// label; the agent's heartbeat of an earlier version blocks the adoption.
func TestRegisterAdoptsLegacyRecord(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: needs an embedded etcd")
	}
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	e, err := store.StartEmbedded(ctx, store.EmbeddedConfig{Dir: t.TempDir(), UnsafeNoFsync: true, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	c, err := store.New(ctx, store.Config{Endpoints: e.Endpoints(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() }) // test teardown
	legacy := api.Node{Name: "h1", UnderlayIP: netip.MustParseAddr("10.0.0.1"), Labels: map[string]string{"rack": "r1"}}
	if err := c.PutNode(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	id, _, err := loadIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{cfg: Config{NodeName: "h1"}, log: log, store: c, id: id, ul: underlay{IP: legacy.UnderlayIP}}

	// The old agent still heartbeats (no identity in its alive value).
	hctx, hcancel := context.WithCancel(ctx)
	hdone := make(chan error, 1)
	go func() { hdone <- c.Heartbeat(hctx, "h1", 10*time.Second, nil) }()
	waitAlive(ctx, t, c, "h1", true)
	if err := a.claimNode(ctx); !errors.Is(err, ErrNodeNameTaken) || !strings.Contains(err.Error(), "earlier version") {
		t.Errorf("claim while the old agent heartbeats = %v, want a refusal naming the earlier version", err)
	}
	hcancel()
	if err := <-hdone; err != nil {
		t.Fatal(err)
	}
	waitAlive(ctx, t, c, "h1", false)

	if err := a.claimNode(ctx); err != nil {
		t.Fatalf("claim of a record from an earlier version: %v", err)
	}
	rec, err := c.GetNode(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Identity != id.Hash || rec.Labels["rack"] != "r1" {
		t.Errorf("adopted record %+v, want identity %s and the label rack=r1 kept", rec, fingerprint(id.Hash))
	}
	if !strings.Contains(buf.String(), "node record from an earlier version adopted") {
		t.Errorf("adoption not logged:\n%s", buf.String())
	}
}

func waitAlive(ctx context.Context, t *testing.T, c *store.Client, node string, want bool) {
	t.Helper()
	for {
		_, ok, err := c.GetAlive(ctx, node)
		if err != nil {
			t.Fatal(err)
		}
		if ok == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("heartbeat of %s present=%v never came", node, want)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestTakenOverWhileRunning: once the node record names another identity,
// the agent refuses every socket request and stops with an error naming both
// identities.
func TestTakenOverWhileRunning(t *testing.T) {
	t.Parallel()
	a := &Agent{
		cfg:   Config{NodeName: "n1"},
		log:   slog.New(slog.NewTextHandler(t.Output(), nil)),
		id:    identity{Hash: "sha256:aaaaaaaaaaaa0000"},
		fatal: make(chan error, 1),
	}
	served := false
	h := a.refuseWhenTakenOver(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served = true }))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/v1/add", nil))
	if !served {
		t.Fatal("request refused before any take-over")
	}

	a.onDelta(store.Delta{Reset: true, Snapshot: &store.Snapshot{Nodes: map[string]api.Node{"n1": {Name: "n1", UnderlayIP: netip.MustParseAddr("10.0.0.9"), Identity: "sha256:bbbbbbbbbbbb1111"}}}})
	select {
	case err := <-a.fatal:
		if !errors.Is(err, ErrNodeTakenOver) {
			t.Errorf("fatal error %v is not ErrNodeTakenOver", err)
		}
		for _, w := range []string{"n1", "bbbbbbbbbbbb", "aaaaaaaaaaaa", "10.0.0.9"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("fatal error %q lacks %q", err, w)
			}
		}
	default:
		t.Fatal("no fatal error after the take-over")
	}
	if ok, reason := a.readiness(); ok || !strings.Contains(reason, "taken over") {
		t.Errorf("readiness = %v, %q; want not ready, taken over", ok, reason)
	}
	served = false
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/add", nil))
	var ae api.AgentError
	if served || rec.Code != http.StatusServiceUnavailable || json.Unmarshal(rec.Body.Bytes(), &ae) != nil || ae.Code != codeTryAgainLater {
		t.Errorf("request after take-over: served=%v status %d body %s; want 503 with code %d", served, rec.Code, rec.Body, codeTryAgainLater)
	}
}
