package depcheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// NotLinked fails for every package that the package in the current
// directory links when built for goos ("" for the host's) and whose import
// path starts with one of banned. It reads the whole graph from `go list
// -deps`, so what a dependency pulls in counts too (Check reads a
// package's own imports only).
func NotLinked(t *testing.T, goos string, banned []string, why string) {
	t.Helper()
	cmd := exec.Command(goTool(), "list", "-deps", ".")
	if goos != "" {
		cmd.Env = append(os.Environ(), "GOOS="+goos, "CGO_ENABLED=0")
	}
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list -deps (GOOS=%s): %v\n%s", goos, err, stderr)
	}
	deps := strings.Fields(string(out))
	// A graph without the standard library's own packages was not read.
	if len(deps) < 10 {
		t.Fatalf("go list -deps printed %d packages, want the full graph:\n%s", len(deps), out)
	}
	for _, dep := range deps {
		for _, b := range banned {
			if strings.HasPrefix(dep, b) {
				t.Errorf("links %s (GOOS=%s); %s", dep, goosOr(goos), why)
			}
		}
	}
}

func goosOr(goos string) string {
	if goos == "" {
		return runtime.GOOS
	}
	return goos
}

// goTool finds the go command that built the test.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go") //nolint:staticcheck // SA1019: the test binary runs where it was built
}
