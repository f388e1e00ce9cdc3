//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/lab"
)

// cnitool runs the reference client cnitool inside a lab host against the
// host's skein conflist, as an operator would on a real node.
func cnitool(ctx context.Context, t *testing.T, host lab.Host, args ...string) (string, error) {
	t.Helper()
	bin := shared.State().BinDir
	tool := filepath.Join(bin, "cnitool")
	if _, err := os.Stat(tool); err != nil {
		t.Skipf("cnitool not built (make tools): %v", err)
	}
	env := []string{"env", "NETCONFPATH=" + filepath.Dir(host.CNIConfig), "CNI_PATH=" + bin, tool}
	out, err := shared.Exec(ctx, host.Name, append(env, args...)...)
	return string(out), err
}

// testNetns makes a named namespace with the lab prefix (so lab down would
// also remove it) and removes it at the end of the test.
func testNetns(t *testing.T, name string) string {
	t.Helper()
	ns := labName + "-" + name
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v %s", ns, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() }) // best effort: lab down removes leftovers
	return "/var/run/netns/" + ns
}

// TestCnitool: the reference client drives ADD/CHECK/STATUS/DEL/GC against
// skein-cni on a lab host; GC without a valid list leaves other pods alone.
func TestCnitool(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h := shared.Hosts()[0]
	nsPath := testNetns(t, "cnitool")

	out, err := cnitool(ctx, t, h, "add", "skein", nsPath)
	if err != nil {
		t.Fatalf("cnitool add: %v\n%s", err, out)
	}
	var res struct {
		CNIVersion string `json:"cniVersion"`
		Interfaces []struct {
			Name    string `json:"name"`
			Sandbox string `json:"sandbox"`
		} `json:"interfaces"`
		IPs []struct {
			Address string `json:"address"`
			Gateway string `json:"gateway"`
		} `json:"ips"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("cnitool add output is not a CNI result: %v\n%s", err, out)
	}
	if res.CNIVersion != "1.1.0" || len(res.IPs) != 1 || res.IPs[0].Gateway != "169.254.1.1" || len(res.Interfaces) != 2 || res.Interfaces[1].Sandbox != nsPath {
		t.Fatalf("unexpected ADD result: %+v", res)
	}
	ip := strings.TrimSuffix(res.IPs[0].Address, "/32")
	// The new container reaches a container on another host.
	other := shared.Hosts()[1]
	for _, c := range shared.Containers() {
		if c.Host == other.Name {
			if out, err := exec.CommandContext(ctx, "ip", "netns", "exec", filepath.Base(nsPath), "ping", "-c1", "-W2", c.IP.String()).CombinedOutput(); err != nil {
				t.Errorf("cnitool container %s -> %s: %v\n%s", ip, c.IP, err, out)
			}
			break
		}
	}
	if out, err := cnitool(ctx, t, h, "check", "skein", nsPath); err != nil {
		t.Errorf("cnitool check after add: %v\n%s", err, out)
	}
	if out, err := cnitool(ctx, t, h, "status", "skein", nsPath); err != nil {
		t.Errorf("cnitool status: %v\n%s", err, out)
	}
	if out, err := cnitool(ctx, t, h, "del", "skein", nsPath); err != nil {
		t.Errorf("cnitool del: %v\n%s", err, out)
	}
	if out, err := cnitool(ctx, t, h, "del", "skein", nsPath); err != nil {
		t.Errorf("cnitool del (again): %v\n%s", err, out)
	}
	if out, err := cnitool(ctx, t, h, "check", "skein", nsPath); err == nil {
		t.Errorf("cnitool check after del succeeded:\n%s", out)
	}

	// GC: cnitool DELs what it cached and calls GC without a valid list,
	// which must not touch the lab's own containers on this host.
	if out, err := cnitool(ctx, t, h, "add", "skein", nsPath); err != nil {
		t.Fatalf("cnitool add (for gc): %v\n%s", err, out)
	}
	if out, err := cnitool(ctx, t, h, "gc", "skein", nsPath); err != nil {
		t.Errorf("cnitool gc: %v\n%s", err, out)
	}
	// Every address, not eth0's: gc may have taken eth0 with it.
	if out := inNetns(ctx, t, nsPath, "ip", "-4", "-o", "addr", "show"); strings.Contains(string(out), " eth0 ") {
		t.Errorf("cnitool container still addressed after gc: %s", out)
	}
	for _, c := range shared.Containers() {
		if c.Host != h.Name {
			continue
		}
		if err := shared.Ping(ctx, c.Name, shared.Containers()[len(shared.Containers())-1].IP); err != nil {
			t.Errorf("lab container %s lost connectivity after cnitool gc: %v", c.Name, err)
		}
	}
}

// runPlugin execs skein-cni in a lab host as a runtime would, with the
// host's network config on stdin, and returns its stdout.
func runPlugin(ctx context.Context, h lab.Host, command, containerID, netns string) (string, error) {
	conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"skein","type":"skein-cni","socket":%q}`, h.Socket)
	cmd, err := shared.Command(ctx, h.Name, "env", "CNI_COMMAND="+command, "CNI_CONTAINERID="+containerID,
		"CNI_NETNS="+netns, "CNI_IFNAME=eth0", "CNI_PATH="+shared.State().BinDir, filepath.Join(shared.State().BinDir, "skein-cni"))
	if err != nil {
		return "", err
	}
	cmd.Stdin = strings.NewReader(conf)
	var stdout strings.Builder
	cmd.Stdout = &stdout
	err = cmd.Run()
	return stdout.String(), err
}

// TestAgentDownDuringAdd: with the agent stopped, ADD fails with CNI code 11
// (try again later) and leaves no interface behind; DEL still cleans up.
func TestAgentDownDuringAdd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h := shared.Hosts()[len(shared.Hosts())-1]
	nsPath := testNetns(t, "agentdown")
	before, _ := shared.Exec(ctx, h.Name, "ip", "-o", "link", "show")
	if err := shared.StopAgent(ctx, h.Name); err != nil {
		t.Fatalf("stop agent: %v", err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), time.Minute)
		defer scancel()
		if err := shared.StartAgent(sctx, h.Name); err != nil {
			t.Errorf("restart agent: %v", err)
		}
	})
	out, err := runPlugin(ctx, h, "ADD", "agentdown-1", nsPath)
	if err == nil {
		t.Fatalf("ADD with the agent down succeeded:\n%s", out)
	}
	var cniErr struct {
		Code uint   `json:"code"`
		Msg  string `json:"msg"`
	}
	if jerr := json.Unmarshal([]byte(out), &cniErr); jerr != nil || cniErr.Code != 11 {
		t.Errorf("ADD with the agent down: want CNI error JSON with code 11, got (%v):\n%s", jerr, out)
	}
	if out, err := runPlugin(ctx, h, "DEL", "agentdown-1", nsPath); err == nil {
		t.Errorf("DEL with the agent down succeeded; want code 11 so the runtime retries:\n%s", out)
	}
	after, _ := shared.Exec(ctx, h.Name, "ip", "-o", "link", "show")
	if strings.Count(string(after), ": sk") != strings.Count(string(before), ": sk") {
		t.Errorf("a host veth was left behind by the failed ADD:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if out := inNetns(ctx, t, nsPath, "ip", "-o", "link", "show"); strings.Contains(string(out), "eth0") {
		t.Errorf("container interface left behind by the failed ADD:\n%s", out)
	}
}

// inNetns runs args in the network namespace at nsPath (one the test made,
// not a lab member) and fails the test when that cannot be done, so a check
// on its output never passes because the command did not run.
func inNetns(ctx context.Context, t *testing.T, nsPath string, args ...string) []byte {
	t.Helper()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", filepath.Base(nsPath)}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %s: %v\n%s", nsPath, strings.Join(args, " "), err, out)
	}
	return out
}
