package agent

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinnet/skein/store"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestConnectStoreRetries: with etcd unreachable at start the agent retries
// with growing backoff, logs each attempt with the endpoint, and gives up
// only when told to stop.
func TestConnectStoreRetries(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	_, err := connectStore(ctx, store.Config{Endpoints: []string{"http://127.0.0.1:1"}, DialTimeout: 200 * time.Millisecond}, log)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("connectStore = %v, want an error naming the endpoint", err)
	}
	out := buf.String()
	attempts := strings.Count(out, "etcd unreachable; retrying")
	if attempts < 2 || attempts > 6 {
		t.Errorf("%d retry lines in 2.5 s, want a handful with backoff:\n%s", attempts, out)
	}
	if !strings.Contains(out, "retry_in=500ms") {
		t.Errorf("backoff does not grow:\n%s", out)
	}
}
