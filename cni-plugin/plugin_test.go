package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/go-cmp/cmp"

	"github.com/skeinnet/skein/api"
)

// fakeDataplane records what the commands ask of the kernel; it lets the
// command logic (ordering, rollback, error codes) be tested without root.
type fakeDataplane struct {
	mu        sync.Mutex
	hostLinks map[string]wiring // host veth name → what was plumbed
	plumbErr  error
	unplumbed []string // host veth names, in order
	// observe, when set, edits the intact observation CHECK gets.
	observe func(*observed)
}

func newFakeDataplane() *fakeDataplane {
	return &fakeDataplane{hostLinks: map[string]wiring{}}
}

func (f *fakeDataplane) Preflight(netnsPath, hostIface string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !strings.HasPrefix(netnsPath, "/run/netns/") {
		return fmt.Errorf("open %s: %w", netnsPath, errNetns)
	}
	if _, ok := f.hostLinks[hostIface]; ok {
		return fmt.Errorf("%s: %w", hostIface, errHostIfaceExists)
	}
	return nil
}

func (f *fakeDataplane) Plumb(w wiring, _ string) (plumbed, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hostLinks[w.HostIface] = w // created, even if a later step fails
	if f.plumbErr != nil {
		return plumbed{}, f.plumbErr
	}
	return plumbed{ContainerMAC: w.CtrMAC, MTU: w.MTU}, nil
}

func (f *fakeDataplane) Unplumb(_ string, o api.Owner) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	hostIface := api.HostIfaceName(o)
	delete(f.hostLinks, hostIface)
	f.unplumbed = append(f.unplumbed, hostIface)
	return nil
}

func (f *fakeDataplane) Observe(_, ifName, hostIface string) (observed, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w, ok := f.hostLinks[hostIface]
	if !ok {
		return observed{}, nil
	}
	var o observed
	o.Host = &linkState{Name: hostIface, Veth: true, Up: true, MAC: w.HostMAC}
	o.Container = &linkState{Name: ifName, Veth: true, Up: true, MTU: w.MTU, Routes: containerRoutes(w),
		Neighs: map[netip.Addr]net.HardwareAddr{w.Gateway: w.HostMAC}}
	for _, ip := range w.IPs {
		o.Container.Addrs = append(o.Container.Addrs, netip.PrefixFrom(ip, 32))
	}
	o.Host.Routes = hostRoutes(w)
	if f.observe != nil {
		f.observe(&o)
	}
	return o, nil
}

func (f *fakeDataplane) HostLinks() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for name := range f.hostLinks {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// harness runs the plugin's commands in-process against a fake agent and a
// fake dataplane.
type harness struct {
	t      *testing.T
	agent  *fakeAgent
	dp     *fakeDataplane
	socket string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	a := newFakeAgent(t, t.TempDir())
	return &harness{t: t, agent: a, dp: newFakeDataplane(), socket: a.socket}
}

// conf renders a network config for the harness' agent; extra is spliced in
// as additional top-level keys.
func (h *harness) conf(version, extra string) []byte {
	s := fmt.Sprintf(`{"cniVersion":%q,"name":"skein","type":"skein-cni","socket":%q,"logLevel":"debug"`, version, h.socket)
	if extra != "" {
		s += "," + extra
	}
	return []byte(s + "}")
}

// run calls verb like skel would and returns stdout and the error.
func (h *harness) run(verb string, args *skel.CmdArgs) (string, error) {
	var out bytes.Buffer
	p := &plugin{
		stdout:       &out,
		stderr:       h.t.Output(),
		newDataplane: func(*slog.Logger) (dataplane, error) { return h.dp, nil },
	}
	f := p.funcs()
	fn := map[string]func(*skel.CmdArgs) error{"ADD": f.Add, "DEL": f.Del, "CHECK": f.Check, "GC": f.GC, "STATUS": f.Status}[verb]
	err := fn(args)
	return out.String(), err
}

func addArgs(id string, stdin []byte) *skel.CmdArgs {
	return &skel.CmdArgs{
		ContainerID: id, Netns: "/run/netns/" + id, IfName: "eth0", Path: "/opt/cni/bin",
		Args:      "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_UID=1234",
		StdinData: stdin,
	}
}

func TestAddCheckDel(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	owner := api.Owner{ContainerID: "c1", IfName: "eth0"}
	stdout, err := h.run("ADD", addArgs("c1", h.conf("1.1.0", `"args":{"cni":{"labels":[{"key":"app","value":"web"}]}}`)))
	if err != nil {
		t.Fatalf("ADD error = %v", err)
	}
	var res types100.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("ADD output is not a result: %v\n%s", err, stdout)
	}
	if res.CNIVersion != "1.1.0" || len(res.IPs) != 1 || res.IPs[0].Address.String() != "198.18.0.2/32" {
		t.Errorf("ADD result = %s, want 1.1.0 with 198.18.0.2/32", stdout)
	}
	wantCommit := []api.CommitRequest{{
		Owner: owner, Network: "skein", Pod: api.PodInfo{Namespace: "shop", Name: "web-0", UID: "1234", Labels: map[string]string{"app": "web"}},
		IPs: []netip.Addr{netip.MustParseAddr("198.18.0.2")}, HostIface: api.HostIfaceName(owner), Netns: "/run/netns/c1",
	}}
	if d := cmp.Diff(wantCommit, h.agent.Commits(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("commits mismatch (-want +got):\n%s", d)
	}

	// A second ADD for the same attachment fails before asking the agent.
	_, err = h.run("ADD", addArgs("c1", h.conf("1.1.0", "")))
	assertCNIError(t, err, errCodeAttachmentExists, "c1/eth0")
	if d := cmp.Diff([]string{api.PathAllocate, api.PathCommit}, h.agent.Calls()); d != "" {
		t.Errorf("agent calls after second ADD mismatch (-want +got):\n%s", d)
	}

	check := addArgs("c1", h.conf("1.1.0", `"prevResult":`+stdout))
	if _, err := h.run("CHECK", check); err != nil {
		t.Errorf("CHECK after ADD error = %v", err)
	}
	h.dp.observe = func(o *observed) { o.Container.Routes = o.Container.Routes[:1] }
	_, err = h.run("CHECK", check)
	assertCNIError(t, err, errCodeCheckFailed, "c1/eth0")
	if err != nil && !strings.Contains(err.Error(), "lacks route 0.0.0.0/0 via 169.254.1.1") {
		t.Errorf("CHECK error %q does not name the missing route", err)
	}
	h.dp.observe = nil

	for i := range 2 {
		if _, err := h.run("DEL", addArgs("c1", h.conf("1.1.0", ""))); err != nil {
			t.Fatalf("DEL #%d error = %v", i+1, err)
		}
	}
	if got := h.dp.HostLinks(); len(got) != 0 {
		t.Errorf("host links after DEL = %v, want none", got)
	}
	if got := h.agent.Held(owner); got != nil {
		t.Errorf("agent still holds %v after DEL", got)
	}
	_, err = h.run("CHECK", check)
	assertCNIError(t, err, errCodeCheckFailed, "")
}

func TestAddRollback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		setup    func(h *harness)
		wantCode uint
	}{
		{
			name:     "commit refused",
			setup:    func(h *harness) { h.agent.setFailCommit(&api.AgentError{Code: 11, Message: "policy not in place yet"}) },
			wantCode: types.ErrTryAgainLater,
		},
		{
			name:     "plumb fails half-way",
			setup:    func(h *harness) { h.dp.plumbErr = errors.New("add route: file exists") },
			wantCode: types.ErrInternal,
		},
		{
			name:     "commit hangs past the timeout",
			setup:    func(h *harness) { h.agent.setHangCommit(true) },
			wantCode: types.ErrTryAgainLater,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			tc.setup(h)
			_, err := h.run("ADD", addArgs("c1", h.conf("1.1.0", `"timeout":"300ms"`)))
			assertCNIError(t, err, tc.wantCode, "")
			if got := h.dp.HostLinks(); len(got) != 0 {
				t.Errorf("host links after failed ADD = %v, want none", got)
			}
			if got := h.agent.Held(api.Owner{ContainerID: "c1", IfName: "eth0"}); got != nil {
				t.Errorf("agent still holds %v after failed ADD", got)
			}
			if calls := h.agent.Calls(); calls[len(calls)-1] != api.PathRelease {
				t.Errorf("agent calls = %v, want a release last", calls)
			}
		})
	}
}

func TestAgentDown(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"socket missing", "connection refused"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			if mode == "socket missing" {
				h.socket = filepath.Join(t.TempDir(), "nobody.sock")
			} else {
				h.agent.stopKeepSocket()
			}
			_, err := h.run("ADD", addArgs("c1", h.conf("1.1.0", "")))
			assertCNIError(t, err, types.ErrTryAgainLater, h.socket)
			if got := h.dp.HostLinks(); len(got) != 0 || len(h.dp.unplumbed) != 0 {
				t.Errorf("dataplane touched with the agent down: links %v, unplumbed %v", got, h.dp.unplumbed)
			}

			// DEL still removes the links, then reports 11 so the runtime retries.
			h.dp.hostLinks[api.HostIfaceName(api.Owner{ContainerID: "c1", IfName: "eth0"})] = wiring{}
			_, err = h.run("DEL", addArgs("c1", h.conf("1.1.0", "")))
			assertCNIError(t, err, types.ErrTryAgainLater, h.socket)
			if got := h.dp.HostLinks(); len(got) != 0 {
				t.Errorf("host links after DEL with agent down = %v, want none", got)
			}

			_, err = h.run("STATUS", &skel.CmdArgs{StdinData: h.conf("1.1.0", "")})
			assertCNIError(t, err, types.ErrPluginNotAvailable, "")
		})
	}
}

func TestAddBadNetns(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	args := addArgs("c1", h.conf("1.1.0", ""))
	args.Netns = "/proc/nothing"
	_, err := h.run("ADD", args)
	assertCNIError(t, err, types.ErrInvalidNetNS, "/proc/nothing")
	if calls := h.agent.Calls(); len(calls) != 0 {
		t.Errorf("agent called %v for an unusable netns", calls)
	}
}

func TestDelWithoutNetns(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	if _, err := h.run("ADD", addArgs("c1", h.conf("1.1.0", ""))); err != nil {
		t.Fatal(err)
	}
	args := addArgs("c1", h.conf("1.1.0", ""))
	args.Netns = ""
	if _, err := h.run("DEL", args); err != nil {
		t.Fatalf("DEL with empty netns error = %v", err)
	}
	if got := h.dp.HostLinks(); len(got) != 0 {
		t.Errorf("host links after DEL = %v, want none", got)
	}
	// Unknown container.
	if _, err := h.run("DEL", addArgs("never-added", h.conf("1.1.0", ""))); err != nil {
		t.Errorf("DEL of an unknown container error = %v", err)
	}
}

func TestCheckErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, err := h.run("CHECK", addArgs("c1", h.conf("1.1.0", "")))
	assertCNIError(t, err, types.ErrInvalidNetworkConfig, "prevResult")

	stdout, err := h.run("ADD", addArgs("c1", h.conf("1.1.0", "")))
	if err != nil {
		t.Fatal(err)
	}
	// The agent forgot the owner (e.g. lost state): CHECK must say so.
	h.agent.mu.Lock()
	delete(h.agent.leases, api.Owner{ContainerID: "c1", IfName: "eth0"})
	h.agent.mu.Unlock()
	_, err = h.run("CHECK", addArgs("c1", h.conf("1.1.0", `"prevResult":`+stdout)))
	assertCNIError(t, err, errCodeCheckFailed, "")
	if err != nil && !strings.Contains(err.Error(), "skeind does not hold 198.18.0.2") {
		t.Errorf("CHECK error %q does not name the lost address", err)
	}
}

func TestGC(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, id := range []string{"keep", "drop"} {
		if _, err := h.run("ADD", addArgs(id, h.conf("1.1.0", ""))); err != nil {
			t.Fatal(err)
		}
	}
	conf := h.conf("1.1.0", `"cni.dev/valid-attachments":[{"containerID":"keep","ifname":"eth0"}]`)
	if _, err := h.run("GC", &skel.CmdArgs{Path: "/opt/cni/bin", StdinData: conf}); err != nil {
		t.Fatalf("GC error = %v", err)
	}
	keep, drop := api.Owner{ContainerID: "keep", IfName: "eth0"}, api.Owner{ContainerID: "drop", IfName: "eth0"}
	if d := cmp.Diff([]string{api.HostIfaceName(keep)}, h.dp.HostLinks()); d != "" {
		t.Errorf("host links after GC mismatch (-want +got):\n%s", d)
	}
	if h.agent.Held(keep) == nil || h.agent.Held(drop) != nil {
		t.Errorf("after GC agent holds keep=%v drop=%v, want only keep", h.agent.Held(keep), h.agent.Held(drop))
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	args := &skel.CmdArgs{Path: "/opt/cni/bin", StdinData: h.conf("1.1.0", "")}
	if _, err := h.run("STATUS", args); err != nil {
		t.Errorf("STATUS with a ready agent error = %v", err)
	}
	h.agent.setReady(false)
	_, err := h.run("STATUS", args)
	assertCNIError(t, err, types.ErrPluginNotAvailable, "not ready")
	if err != nil && !strings.Contains(err.Error(), "no block claimed yet") {
		t.Errorf("STATUS error %q does not carry the agent's reason", err)
	}
}

func TestAgentErrorMapping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		status   int
		body     string
		wantCode uint
		wantMsg  string
	}{
		{"agent error passed through", http.StatusBadRequest, `{"code":7,"msg":"pool exhausted","details":"no free block"}`, 7, "pool exhausted"},
		{"agent error without code", http.StatusInternalServerError, `{"msg":"boom"}`, types.ErrInternal, "boom"},
		{"proxy error", http.StatusBadGateway, `bad gateway`, types.ErrTryAgainLater, "HTTP 502"},
		{"server error without body", http.StatusInternalServerError, ``, types.ErrInternal, "HTTP 500"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := agentError(api.PathAllocate, tc.status, []byte(tc.body))
			if got.Code != tc.wantCode || !strings.Contains(got.Msg, tc.wantMsg) {
				t.Errorf("agentError() = %+v, want code %d and message containing %q", got, tc.wantCode, tc.wantMsg)
			}
		})
	}
}

// TestGCWithoutValidList: libcni sends GC without cni.dev/valid-attachments
// when its caller gave none (cnitool gc). Pods the caller never knew about
// must survive it.
func TestGCWithoutValidList(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	if _, err := h.run("ADD", addArgs("other-runtime", h.conf("1.1.0", ""))); err != nil {
		t.Fatal(err)
	}
	if _, err := h.run("GC", &skel.CmdArgs{Path: "/opt/cni/bin", StdinData: h.conf("1.1.0", "")}); err != nil {
		t.Fatalf("GC error = %v", err)
	}
	o := api.Owner{ContainerID: "other-runtime", IfName: "eth0"}
	if h.agent.Held(o) == nil || len(h.dp.HostLinks()) != 1 {
		t.Errorf("GC without a valid list freed an attachment: held=%v links=%v", h.agent.Held(o), h.dp.HostLinks())
	}
}
