package agent

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestListenSocketMode: the socket is 0600 even under umask 0, no private
// directory is left behind, and Close removes the socket.
func TestListenSocketMode(t *testing.T) {
	old := syscall.Umask(0) // process-wide: this test is not parallel
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "run")
	path := filepath.Join(dir, "skeind.sock")
	ln, err := listenSocket(path, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a 0600 socket", fi.Mode())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("socket dir holds %v, want only skeind.sock", entries)
	}
	if _, err := listenSocket(path, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "another agent") {
		t.Errorf("second listenSocket = %v, want another agent serving", err)
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket still there after Close: %v", err)
	}
}

// peerCredEnv makes the test binary act as a socket client (see
// TestPeerCredHelper) instead of running tests.
const peerCredEnv = "SKEIN_TEST_PEERCRED_SOCKET"

// TestPeerCredHelper is the client TestSocketPeerCred runs as another user:
// it asks the socket for /status and prints how many bytes came back.
func TestPeerCredHelper(t *testing.T) {
	path := os.Getenv(peerCredEnv)
	if path == "" {
		t.Skip("helper process only")
	}
	fmt.Println("uid", os.Getuid(), "reply bytes", askSocket(path))
}

// askSocket sends one HTTP request over the socket and returns the number
// of reply bytes, or -1 when it could not connect.
func askSocket(path string) int {
	c, err := net.Dial("unix", path)
	if err != nil {
		return -1
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second)) // test helper
	if _, err := io.WriteString(c, "GET /status HTTP/1.0\r\n\r\n"); err != nil {
		return 0
	}
	b, _ := io.ReadAll(c)
	return len(b)
}

// TestSocketPeerCred: a connection from a user other than root is closed
// unanswered and logged, even when the socket file's mode lets it connect;
// root is served.
func TestSocketPeerCred(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	dir, err := os.MkdirTemp("", "skein-peercred-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A copy of this test binary, which the other user can execute.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "helper")
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}

	var logBuf syncBuffer
	path := filepath.Join(dir, "skeind.sock")
	ln, err := listenSocket(path, slog.New(slog.NewTextHandler(&logBuf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	// Open the file mode up: only the peer check stands in the way now.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n") // test server
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }() // ends with Close below
	t.Cleanup(func() { _ = srv.Close() })

	if n := askSocket(path); n <= 0 {
		t.Errorf("root client got %d reply bytes, want an answer", n)
	}
	const nobody = 65534
	cmd := exec.Command(bin, "-test.run=^TestPeerCredHelper$", "-test.v")
	cmd.Env = append(os.Environ(), peerCredEnv+"="+path)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("helper as uid %d: %v\n%s", nobody, err, out.String())
	}
	if !strings.Contains(out.String(), fmt.Sprintf("uid %d reply bytes 0", nobody)) {
		t.Errorf("client as uid %d was answered, want the connection closed unanswered:\n%s", nobody, out.String())
	}
	if !strings.Contains(logBuf.String(), "peer is not root") || !strings.Contains(logBuf.String(), fmt.Sprintf("uid=%d", nobody)) {
		t.Errorf("refusal not logged with the uid:\n%s", logBuf.String())
	}
}
