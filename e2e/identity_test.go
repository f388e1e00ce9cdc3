//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
	"github.com/skeinnet/skein/store"
)

// identityFingerprint is the short identity skeind prints for the secret in
// stateDir.
func identityFingerprint(t *testing.T, stateDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stateDir, api.IdentityFile))
	if err != nil {
		t.Fatalf("read identity: %v", err)
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(string(b))))
	return hex.EncodeToString(sum[:])[:12]
}

// recordFingerprint is the short form of a node record's identity.
func recordFingerprint(n api.Node) string {
	return strings.TrimPrefix(n.Identity, "sha256:")[:12]
}

var equateAddr = cmpopts.EquateComparable(netip.Addr{})

// nodeState is what a second agent under the same name must not change.
type nodeState struct {
	Record api.Node
	Rev    int64
	Blocks []string
}

func readNodeState(ctx context.Context, t *testing.T, cl *store.Client, node string) nodeState {
	t.Helper()
	rec, rev, err := cl.GetNodeRecord(ctx, node)
	if err != nil {
		t.Fatalf("node record %s: %v", node, err)
	}
	blocks, err := cl.ListBlocks(ctx)
	if err != nil {
		t.Fatalf("list blocks: %v", err)
	}
	st := nodeState{Record: rec, Rev: rev}
	for _, b := range blocks {
		if b.Node == node {
			st.Blocks = append(st.Blocks, b.CIDR.String())
		}
	}
	slices.Sort(st.Blocks)
	return st
}

// runImpostor runs a skeind under node's name in the namespace of host
// (another machine of the lab) with a fresh state dir, and returns its
// output once it exited, the state dir and its exit error.
func runImpostor(ctx context.Context, t *testing.T, host, node string, extra ...string) (string, string, error) {
	t.Helper()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	args := append([]string{
		filepath.Join(binDir(), "skeind"),
		"--node-name", node,
		"--etcd-endpoints", strings.Join(shared.EtcdUnderlayEndpoints(), ","),
		"--iface", lab.HostIface,
		"--socket", filepath.Join(dir, "skeind.sock"),
		"--state-dir", state,
		"--debug-addr", "off",
	}, extra...)
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd, err := shared.Command(rctx, host, args...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if rctx.Err() != nil {
		t.Fatalf("second skeind as %s on %s still running after a minute: it should have refused\n%s", node, host, out)
	}
	return string(out), state, err
}

func binDir() string {
	if b := os.Getenv("SKEIN_BIN"); b != "" {
		return b
	}
	wd, _ := os.Getwd()
	return filepath.Join(wd, "..", "bin")
}

// TestDuplicateNodeName: a second skeind started on another host with the
// node name of a running one (a cloned image) exits non-zero with an error
// naming the node, both identities, the holder's underlay address and that
// it is alive, also with --take-over-node; the real host's record and
// blocks are untouched and its containers stay reachable.
func TestDuplicateNodeName(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hosts := shared.Hosts()
	real, other := hosts[0], hosts[1]
	cl := storeClient(ctx, t)
	before := readNodeState(ctx, t, cl, real.Name)
	if before.Record.Identity == "" {
		t.Fatalf("node record of %s carries no identity: %+v", real.Name, before.Record)
	}

	for _, extra := range [][]string{nil, {"--take-over-node"}} {
		out, state, err := runImpostor(ctx, t, other.Name, real.Name, extra...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Fatalf("second skeind %v as %s: exit %v, want a non-zero exit\n%s", extra, real.Name, err, out)
		}
		want := []string{
			"node name held by another identity",
			`node "` + real.Name + `"`,
			recordFingerprint(before.Record),
			identityFingerprint(t, state),
			real.UnderlayIP.String(),
			"alive: heartbeat current",
		}
		if len(extra) > 0 {
			want = append(want, "--take-over-node is refused while the holder is alive")
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("second skeind %v: output lacks %q:\n%s", extra, w, out)
			}
		}
		for _, f := range []string{"ipam.json", "ipam.state.0", "ipam.state.1"} {
			if _, err := os.Stat(filepath.Join(state, f)); err == nil {
				t.Errorf("second skeind %v wrote an ipam state (%s): it must refuse before adopting blocks", extra, f)
			}
		}
	}

	if d := cmp.Diff(before, readNodeState(ctx, t, cl, real.Name), equateAddr); d != "" {
		t.Errorf("node %s changed by the second agent (-before +after):\n%s", real.Name, d)
	}
	src, dst := containerOn(t, other.Name), containerOn(t, real.Name)
	for _, p := range [][2]lab.Container{{src, dst}, {dst, src}} {
		pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
		if err := shared.Ping(pctx, p[0].Name, p[1].IP); err != nil {
			t.Errorf("ping %s -> %s (%s) after the clash: %v", p[0].Name, p[1].Name, p[1].IP, err)
		}
		pcancel()
	}
}

// TestWipedStateDirTakeOver: a host whose identity file was wiped is refused
// on restart (its old identity is not alive: the error says how to re-join)
// and joins with --take-over-node, keeping its blocks and reachability.
func TestWipedStateDirTakeOver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	h, err := shared.AddHost(ctx)
	if err != nil {
		t.Fatalf("add host: %v", err)
	}
	t.Cleanup(func() {
		// Leave the host running for the tests after this one.
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		_ = shared.StartAgentArgs(cctx, h.Name, "--take-over-node") // fails when it already runs
	})
	cl := storeClient(ctx, t)
	before := readNodeState(ctx, t, cl, h.Name)
	oldFP := identityFingerprint(t, h.StateDir)

	if err := os.Remove(filepath.Join(h.StateDir, api.IdentityFile)); err != nil {
		t.Fatal(err)
	}
	if err := shared.StopAgent(ctx, h.Name); err != nil {
		t.Fatal(err)
	}
	err = shared.StartAgent(ctx, h.Name)
	if err == nil {
		t.Fatalf("agent with a wiped identity started")
	}
	newFP := identityFingerprint(t, h.StateDir)
	for _, w := range []string{"node name held by another identity", oldFP, newFP, "not alive", "--take-over-node", "skein node delete " + h.Name} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("refusal lacks %q:\n%v", w, err)
		}
	}
	if d := cmp.Diff(before, readNodeState(ctx, t, cl, h.Name), equateAddr); d != "" {
		t.Errorf("node %s changed by the refused agent (-before +after):\n%s", h.Name, d)
	}

	if err := shared.StartAgentArgs(ctx, h.Name, "--take-over-node"); err != nil {
		t.Fatalf("start with --take-over-node: %v", err)
	}
	after := readNodeState(ctx, t, cl, h.Name)
	if got := recordFingerprint(after.Record); got != newFP {
		t.Errorf("record identity after take-over %s, want the new %s", got, newFP)
	}
	if !slices.Equal(before.Blocks, after.Blocks) {
		t.Errorf("blocks after take-over %v, want %v", after.Blocks, before.Blocks)
	}
	c, err := shared.AddContainer(ctx, h.Name, lab.ContainerOpts{Name: "taken"})
	if err != nil {
		t.Fatalf("add container after take-over: %v", err)
	}
	peer := containerOn(t, shared.Hosts()[0].Name)
	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	defer pcancel()
	if err := shared.Ping(pctx, peer.Name, c.IP); err != nil {
		t.Errorf("ping %s -> %s after take-over: %v", peer.Name, c.IP, err)
	}

	// Taken over while running (another identity rewrote the record): the
	// agent stops rather than fight over the record.
	running, err := shared.Host(h.Name)
	if err != nil {
		t.Fatal(err)
	}
	cur, rev, err := cl.GetNodeRecord(ctx, h.Name)
	if err != nil {
		t.Fatal(err)
	}
	rival := cur
	rival.Identity = "sha256:" + strings.Repeat("c", 64)
	if _, err := cl.PutNodeIf(ctx, rival, rev); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	for syscall.Kill(running.AgentPID, 0) == nil {
		select {
		case <-wctx.Done():
			t.Fatalf("agent %s (pid %d) still runs 20 s after its record was taken over", h.Name, running.AgentPID)
		case <-time.After(50 * time.Millisecond):
		}
	}
	log, _ := os.ReadFile(running.LogPath)
	if !strings.Contains(string(log), "node record taken over by another identity") || !strings.Contains(string(log), "cccccccccccc") {
		t.Errorf("agent log does not say the record was taken over:\n%s", log)
	}
	// Give the record back so that the cleanup restarts the host as it was.
	back, rev, err := cl.GetNodeRecord(ctx, h.Name)
	if err != nil {
		t.Fatal(err)
	}
	back.Identity = cur.Identity
	if _, err := cl.PutNodeIf(ctx, back, rev); err != nil {
		t.Fatal(err)
	}
}

// containerOn returns the first lab container on host.
func containerOn(t *testing.T, host string) lab.Container {
	t.Helper()
	for _, c := range shared.Containers() {
		if c.Host == host {
			return c
		}
	}
	t.Fatalf("no container on %s", host)
	return lab.Container{}
}
