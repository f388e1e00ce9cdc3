package bgp

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/osrg/gobgp/v3/pkg/log"
)

func newAdapter(t *testing.T) (*gobgpLogger, *logRecorder, *time.Time) {
	rec := newLogRecorder(t.Output())
	rec.level, rec.record = slog.LevelDebug, slog.LevelDebug
	l := newGobgpLogger(slog.New(rec))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }
	return l, rec, &now
}

func TestGobgpLoggerLevels(t *testing.T) {
	t.Parallel()
	l, rec, _ := newAdapter(t)
	peer := log.Fields{"Topic": "Peer", "Key": "10.0.0.2"}
	l.Info("Add a peer configuration", peer)
	l.Info("Peer Up", peer)
	l.Warn("Closed an accepted connection", peer)
	l.Warn("hold timer expired", peer)
	l.Info("Can't find configuration for a new passive connection", log.Fields{"Topic": "Peer", "Key": "10.0.0.9"})
	l.Error("failed to update prefixLimit", log.Fields{"Topic": "Peer", "Key": "10.0.0.2", "Err": errors.New("boom")})
	l.Debug("try to connect", peer)
	l.Fatal("failed to listen grpc port", nil)
	want := []string{
		"DEBUG Add a peer configuration",
		"DEBUG Peer Up",
		"DEBUG Closed an accepted connection",
		"WARN hold timer expired",
		"WARN Can't find configuration for a new passive connection",
		"ERROR failed to update prefixLimit",
		"DEBUG try to connect",
		"ERROR failed to listen grpc port",
	}
	var got []string
	for _, line := range rec.all() {
		got = append(got, line[:strings.Index(line, " component=")])
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("levels mismatch (-want +got):\n%s", d)
	}
	if !strings.Contains(rec.all()[5], "peer=10.0.0.2 err=boom topic=Peer") {
		t.Errorf("attributes = %q, want peer, err and topic", rec.all()[5])
	}
	if l.GetLevel() != log.DebugLevel {
		t.Errorf("GetLevel() = %v, want Debug so that gobgp reports connect errors", l.GetLevel())
	}
}

func TestGobgpLoggerDemotesRepeats(t *testing.T) {
	t.Parallel()
	l, rec, now := newAdapter(t)
	for range 5 {
		l.Warn("hold timer expired", log.Fields{"Key": "10.0.0.2"})
	}
	l.Warn("hold timer expired", log.Fields{"Key": "10.0.0.3"}) // another peer: its own budget
	*now = now.Add(logRepeatWindow)
	l.Warn("hold timer expired", log.Fields{"Key": "10.0.0.2"})
	if n := rec.count("WARN hold timer expired"); n != 3 {
		t.Errorf("%d Warn lines, want 3 (first per peer, then after the window):\n%s", n, strings.Join(rec.all(), "\n"))
	}
	if n := rec.count("DEBUG hold timer expired"); n != 4 {
		t.Errorf("%d demoted lines, want 4", n)
	}
}

func TestGobgpLoggerRecordsPeerErrors(t *testing.T) {
	t.Parallel()
	l, _, now := newAdapter(t)
	l.Debug("failed to connect", log.Fields{"Key": "10.0.0.2", "Error": errors.New("dial tcp 10.0.0.2:179: connect: connection refused")})
	e, ok := l.lastPeerError("10.0.0.2")
	if !ok || e.Text != "connect: dial tcp 10.0.0.2:179: connect: connection refused" || !e.At.Equal(*now) {
		t.Errorf("lastPeerError = %+v, %v", e, ok)
	}
	l.Warn("received notification", log.Fields{"Key": "10.0.0.2", "Code": uint8(2), "Subcode": uint8(2), "Data": []byte{}})
	if e, _ := l.lastPeerError("10.0.0.2"); !strings.HasPrefix(e.Text, "received notification: code 2(open) subcode 2(bad peer as)") {
		t.Errorf("after a notification: %q", e.Text)
	}
	l.Debug("sent update", log.Fields{"Key": "10.0.0.2"}) // not an error
	if e, _ := l.lastPeerError("10.0.0.2"); !strings.HasPrefix(e.Text, "received notification") {
		t.Errorf("an ordinary line replaced the error: %q", e.Text)
	}
	l.forgetPeer("10.0.0.2")
	if _, ok := l.lastPeerError("10.0.0.2"); ok {
		t.Error("forgetPeer kept the error")
	}
}

func TestGobgpLoggerPanics(t *testing.T) {
	t.Parallel()
	l, rec, _ := newAdapter(t)
	defer func() {
		if recover() == nil {
			t.Error("Panic did not panic")
		}
		if rec.count("ERROR code logic bug") != 1 {
			t.Error("Panic was not logged")
		}
	}()
	l.Panic("code logic bug", log.Fields{"Key": "10.0.0.2"})
}
