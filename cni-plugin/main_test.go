package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// pluginBin is the skein-cni binary TestMain builds once for the tests that
// exec it the way a runtime does.
var pluginBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "skein-cni-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, "make bin dir:", err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }() // best effort: a temporary directory
	pluginBin = filepath.Join(dir, "skein-cni")
	build := exec.Command(goTool(), "build", "-o", pluginBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build skein-cni:", err)
		return 1
	}
	return m.Run()
}

// goTool finds the go command that runs the tests.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go") //nolint:staticcheck // SA1019: the test binary runs where it was built
}

// execResult is what a runtime sees of one plugin run.
type execResult struct {
	Stdout []byte
	Stderr string
	Exit   int
}

// Error decodes the CNI error object a failed run printed on stdout.
func (r execResult) Error(t *testing.T) *types.Error {
	t.Helper()
	if r.Exit == 0 {
		t.Fatalf("plugin succeeded, want an error; stdout: %s", r.Stdout)
	}
	var e types.Error
	if err := json.Unmarshal(r.Stdout, &e); err != nil {
		t.Fatalf("stdout of a failed run is not a CNI error: %v\nstdout: %s\nstderr: %s", err, r.Stdout, r.Stderr)
	}
	return &e
}

// OK fails the test unless the run succeeded.
func (r execResult) OK(t *testing.T, what string) {
	t.Helper()
	if r.Exit != 0 {
		t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", what, r.Exit, r.Stdout, r.Stderr)
	}
}

// newPluginCmd prepares a run of the plugin binary with only env set, as a
// runtime execs it.
func newPluginCmd(env []string, stdin []byte) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(pluginBin)
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return cmd, &stdout, &stderr
}

// waitPlugin waits for a started run and collects its result.
func waitPlugin(t *testing.T, cmd *exec.Cmd, stdout, stderr *bytes.Buffer) execResult {
	t.Helper()
	err := cmd.Wait()
	res := execResult{Stdout: stdout.Bytes(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.Exit = ee.ExitCode()
	case err != nil:
		t.Fatalf("run plugin: %v", err)
	}
	return res
}

// runHere runs the plugin in the test's own network namespace. Only for
// requests that never reach the kernel (VERSION, STATUS, malformed input).
func runHere(t *testing.T, env []string, stdin []byte) execResult {
	t.Helper()
	cmd, stdout, stderr := newPluginCmd(env, stdin)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start plugin: %v", err)
	}
	return waitPlugin(t, cmd, stdout, stderr)
}
