//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skeinnet/skein/lab"
)

// shared is the lab most tests run on: 3 hosts × 2 containers. Tests that
// change its shape (join, delete) add what they need and leave the rest.
var shared *lab.Lab

// labName is the shared lab's name; SKEIN_E2E_LAB changes it so two runs
// on one machine do not tear each other's lab down.
var labName = envOr("SKEIN_E2E_LAB", "ske2e")

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("e2e: skipped: needs root to create network namespaces")
		return 0
	}
	bin := os.Getenv("SKEIN_BIN")
	if bin == "" {
		wd, _ := os.Getwd()
		bin = filepath.Join(wd, "..", "bin")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// A crashed earlier run may have left a lab behind.
	_ = lab.Down(ctx, labName, "") // best effort: nothing there is the usual case
	l, err := lab.Up(ctx, lab.Config{
		Name:              labName,
		Hosts:             3,
		ContainersPerHost: 2,
		BinDir:            bin,
		Out:               os.Stdout,
		Log:               slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		fmt.Println("e2e: lab up:", err)
		return 1
	}
	shared = l
	code := m.Run()
	dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer dcancel()
	if err := l.Down(dctx); err != nil {
		fmt.Println("e2e: lab down:", err)
		code = 1
	}
	return code
}
