package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// testLog logs to the test's output.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startEtcd starts an embedded etcd in a fresh directory, stopped at cleanup.
func startEtcd(t *testing.T) *Embedded {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped under -short: needs an embedded etcd")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	e, err := StartEmbedded(ctx, EmbeddedConfig{Dir: t.TempDir(), UnsafeNoFsync: true, Log: testLog(t)})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// newClient connects to e under a prefix of the test's own, closed at cleanup.
func newClient(t *testing.T, e *Embedded) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := New(ctx, Config{Endpoints: e.Endpoints(), Log: testLog(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// ctxTimeout returns a context for one test step.
func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestIsUnavailable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{fmt.Errorf("put endpoint x: %w", context.DeadlineExceeded), true},
		{fmt.Errorf("put endpoint x: %w", rpctypes.ErrNoLeader), true},
		{fmt.Errorf("put endpoint x: %w", rpctypes.ErrPermissionDenied), false},
		{fmt.Errorf("put endpoint x: %w", rpctypes.ErrRequestTooLarge), false},
		{errors.New("decode value: bad"), false},
		{fmt.Errorf("create x: %w", status.Error(codes.Unavailable, "error reading from server: connection timed out")), true},
		{fmt.Errorf("create x: %w", status.Error(codes.PermissionDenied, "no")), false},
	} {
		if got := IsUnavailable(tc.err); got != tc.want {
			t.Errorf("IsUnavailable(%v) = %t, want %t", tc.err, got, tc.want)
		}
	}
}
