package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/vishvananda/netlink"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// TestMain lets the test binary serve as the lab's etcd process
// (`<test binary> lab etcd --dir ...`), so the underlay tests need neither
// skeind nor a built skein.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "lab" && os.Args[2] == "etcd" {
		os.Exit(etcdChild(os.Args[3:]))
	}
	os.Exit(m.Run())
}

func etcdChild(args []string) int {
	fs := pflag.NewFlagSet("lab etcd", pflag.ContinueOnError)
	var cfg EtcdConfig
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := RunEtcd(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// needRoot skips unless the test can create network namespaces.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath(ipCommand()); err != nil {
		t.Skip("needs iproute2's ip")
	}
}

// underlayConfig is a lab without agents whose etcd is this test binary.
func underlayConfig(t *testing.T, name string, hosts int) Config {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		Name:        name,
		Hosts:       hosts,
		BinDir:      t.TempDir(),
		RunDir:      filepath.Join(t.TempDir(), "run"),
		Out:         t.Output(),
		Log:         testLog(t),
		etcdCommand: []string{self},
		noAgents:    true,
	}
}

// upUnderlay brings up a lab without agents; t.Cleanup removes it.
func upUnderlay(t *testing.T, cfg Config) *Lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := Down(ctx, cfg.Name, cfg.RunDir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	l, err := Up(ctx, cfg)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	return l
}

// assertGone fails unless nothing of the lab is left: no namespace with its
// prefix, no process naming its run directory, no run directory.
func assertGone(t *testing.T, name, runDir string, pids ...int) {
	t.Helper()
	if nss, err := labNamespaces(name); err != nil || len(nss) > 0 {
		t.Errorf("namespaces left: %v (%v)", nss, err)
	}
	if ps := findLabProcs(runDir, nil); len(ps) > 0 {
		t.Errorf("processes left: %v", ps)
	}
	for _, p := range pids {
		if procAlive(p) {
			t.Errorf("process %d still alive", p)
		}
	}
	if _, err := os.Stat(runDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run dir %s left: %v", runDir, err)
	}
}

// rootLinks lists the root namespace's interfaces (read only).
func rootLinks(t *testing.T) []string {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	slices.Sort(names)
	return names
}

func TestUnderlayUpDown(t *testing.T) {
	needRoot(t)
	before := rootLinks(t)
	cfg := underlayConfig(t, "sktunder", 2)
	l := upUnderlay(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	nss, err := labNamespaces(cfg.Name)
	if err != nil {
		t.Fatal(err)
	}
	if d := slices.Compare([]string{"sktunder-h1", "sktunder-h2", "sktunder-ul"}, nss); d != 0 {
		t.Errorf("namespaces = %v, want sktunder-h1 sktunder-h2 sktunder-ul", nss)
	}
	checkHostLink(t, "sktunder-h1", "10.255.0.1/24")
	checkHostLink(t, "sktunder-h2", "10.255.0.2/24")
	checkBridge(t, "sktunder-ul", []string{"vh1", "vh2"})
	if after := rootLinks(t); !slices.Equal(before, after) {
		t.Errorf("root namespace links changed: before %v, after %v", before, after)
	}

	// Underlay traffic: host to host and host to gateway; an unused address
	// does not answer, so a ping that always succeeds would be caught.
	if err := l.Ping(ctx, "h1", netip.MustParseAddr("10.255.0.2")); err != nil {
		t.Errorf("ping h1 -> h2: %v", err)
	}
	if err := l.Ping(ctx, "sktunder-h2", UnderlayGateway(0)); err != nil {
		t.Errorf("ping h2 -> gateway: %v", err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 700*time.Millisecond)
	if err := l.Ping(pctx, "h1", netip.MustParseAddr("10.255.0.99")); err == nil {
		t.Error("ping h1 -> 10.255.0.99 (nobody) succeeded")
	}
	pcancel()

	// etcd from inside a host, on the underlay.
	hc, err := l.HTTPClient("h1")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, l.EtcdUnderlayEndpoints()[0]+"/health", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("etcd health from h1: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"health":"true"`) {
		t.Errorf("etcd health from h1: %s %s", resp.Status, body)
	}

	// etcd from the root namespace, over the unix socket, holds the cluster.
	c, err := store.New(ctx, store.Config{Endpoints: l.EtcdEndpoints()})
	if err != nil {
		t.Fatalf("etcd from the root namespace: %v", err)
	}
	cl, err := c.GetCluster(ctx)
	c.Close()
	if err != nil {
		t.Fatalf("get cluster: %v", err)
	}
	if len(cl.Pools) != 1 || cl.Pools[0].CIDR.String() != "10.244.0.0/16" || cl.Pools[0].BlockSize != 26 || cl.Backend != api.BackendVXLAN {
		t.Errorf("cluster = %+v, want pool 10.244.0.0/16 /26 vxlan", cl)
	}

	// Exec runs in the namespace: h1 sees its own eth0 address.
	out, err := l.Exec(ctx, "h1", ipCommand(), "-4", "-o", "addr", "show", "dev", "eth0")
	if err != nil || !strings.Contains(string(out), "10.255.0.1/24") {
		t.Errorf("exec ip addr in h1: %v\n%s", err, out)
	}
	if _, err := l.Exec(ctx, "h1", "false"); err == nil {
		t.Error("exec false succeeded")
	}

	// lab.json describes the lab for other processes.
	ld, err := Load(cfg.Name, cfg.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	if d := slices.Compare(hostNames(l.Hosts()), hostNames(ld.Hosts())); d != 0 || len(ld.Hosts()) != 2 {
		t.Errorf("loaded hosts %v, want %v", hostNames(ld.Hosts()), hostNames(l.Hosts()))
	}
	st, err := ld.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Etcd) != 1 || !st.Etcd[0].Alive || !st.Etcd[0].Leader || len(st.Hosts) != 2 || st.Hosts[0].Alive || st.EtcdEndpoint != l.EtcdEndpoints()[0] {
		t.Errorf("status = %+v, want etcd alive and 2 hosts without agents", st)
	}

	// A second lab of the same name is refused.
	if _, err := Up(ctx, cfg); !errors.Is(err, ErrExists) {
		t.Errorf("second Up = %v, want ErrExists", err)
	}

	etcdPID := l.State().Etcd[0].PID
	if err := l.Down(ctx); err != nil {
		t.Fatalf("Down: %v", err)
	}
	assertGone(t, cfg.Name, cfg.RunDir, etcdPID)
	if err := Down(ctx, cfg.Name, cfg.RunDir); err != nil {
		t.Errorf("second Down: %v", err)
	}
}

func hostNames(hs []Host) []string {
	var n []string
	for _, h := range hs {
		n = append(n, h.Name)
	}
	return n
}

// checkHostLink checks a host's eth0 and lo.
func checkHostLink(t *testing.T, ns, addr string) {
	t.Helper()
	h, err := handleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil || lo.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("%s: lo not up: %v", ns, err)
	}
	link, err := h.LinkByName(HostIface)
	if err != nil {
		t.Fatalf("%s: %v", ns, err)
	}
	if link.Type() != "veth" || link.Attrs().MTU != UnderlayMTU || link.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("%s: %s is %s mtu %d flags %v, want an up veth with MTU %d", ns, HostIface, link.Type(), link.Attrs().MTU, link.Attrs().Flags, UnderlayMTU)
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 1 || addrs[0].IPNet.String() != addr {
		t.Errorf("%s: %s addresses %v, want %s", ns, HostIface, addrs, addr)
	}
}

// checkBridge checks the underlay bridge and its ports.
func checkBridge(t *testing.T, ns string, ports []string) {
	t.Helper()
	h, err := handleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	br, err := h.LinkByName(BridgeName)
	if err != nil {
		t.Fatalf("%s: %v", ns, err)
	}
	addrs, err := h.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.255.0.254/24" {
		t.Errorf("%s: bridge addresses %v, want 10.255.0.254/24", ns, addrs)
	}
	for _, p := range ports {
		l, err := h.LinkByName(p)
		if err != nil {
			t.Errorf("%s: port %s: %v", ns, p, err)
			continue
		}
		if l.Attrs().MasterIndex != br.Attrs().Index {
			t.Errorf("%s: %s is not on %s", ns, p, BridgeName)
		}
	}
}

// TestDownAfterCrash: Down finds and removes everything without lab.json.
func TestDownAfterCrash(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name  string
		crash func(t *testing.T, l *Lab)
	}{
		{"lab.json deleted", func(t *testing.T, l *Lab) {
			if err := os.Remove(filepath.Join(l.RunDir(), stateFile)); err != nil {
				t.Fatal(err)
			}
		}},
		{"lab.json corrupt", func(t *testing.T, l *Lab) {
			if err := os.WriteFile(filepath.Join(l.RunDir(), stateFile), []byte(`{"name":`), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"etcd killed", func(t *testing.T, l *Lab) {
			pid := l.State().Etcd[0].PID
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if !waitExit(ctx, []int{pid}, 10*time.Second) {
				t.Fatal("etcd survived SIGKILL")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := underlayConfig(t, "sktcrash", 1)
			l := upUnderlay(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			// A stray process in a host namespace, as a user's shell would be.
			stray, err := l.Command(ctx, "h1", "sleep", "600")
			if err != nil {
				t.Fatal(err)
			}
			if err := stray.Start(); err != nil {
				t.Fatal(err)
			}
			waited := make(chan struct{})
			go func() { _ = stray.Wait(); close(waited) }() // killed by Down below
			// ip enters the namespace after Start returns; wait until it has.
			h1, _ := statNS(netnsPath("sktcrash-h1"))
			err = poll(ctx, func() (bool, error) {
				id, ok := statNS(fmt.Sprintf("/proc/%d/ns/net", stray.Process.Pid))
				return ok && id == h1, nil
			})
			if err != nil {
				t.Fatalf("stray process never entered sktcrash-h1: %v", err)
			}
			etcdPID := l.State().Etcd[0].PID

			tc.crash(t, l)
			if err := Down(ctx, cfg.Name, cfg.RunDir); err != nil {
				t.Fatalf("Down: %v", err)
			}
			select {
			case <-waited:
			case <-ctx.Done():
				t.Error("stray process in h1 survived Down")
			}
			assertGone(t, cfg.Name, cfg.RunDir, etcdPID)
		})
	}
}

// TestUpFailureCleansUp: an Up whose etcd dies removes what it made.
func TestUpFailureCleansUp(t *testing.T) {
	needRoot(t)
	cfg := underlayConfig(t, "sktfail", 1)
	cfg.etcdCommand = []string{"/bin/false"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Cleanup(func() { _ = Down(context.Background(), cfg.Name, cfg.RunDir) }) // only matters if the test fails
	_, err := Up(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "etcd") {
		t.Fatalf("Up with a dying etcd = %v, want an etcd error", err)
	}
	t.Logf("Up failed as expected: %v", err)
	assertGone(t, cfg.Name, cfg.RunDir)
}

// TestFullLab brings up real agents and containers when SKEIN_LAB_BIN_DIR
// names a directory with skeind, skein and skein-cni (the e2e suite covers
// much more; this checks the lab's own part: agents ready, CNI through
// libcni, cross-host traffic, DEL, restart, and that Down leaves nothing).
func TestFullLab(t *testing.T) {
	needRoot(t)
	bin := os.Getenv("SKEIN_LAB_BIN_DIR")
	if bin == "" {
		t.Skip("set SKEIN_LAB_BIN_DIR to a directory with skeind, skein and skein-cni")
	}
	cfg := Config{
		Name:              "sktfull",
		Hosts:             2,
		ContainersPerHost: 1,
		BinDir:            bin,
		RunDir:            filepath.Join(t.TempDir(), "run"),
		Out:               t.Output(),
		Log:               testLog(t),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l := upUnderlay(t, cfg)
	cs := l.Containers()
	if len(cs) != 2 {
		t.Fatalf("containers = %+v, want 2", cs)
	}
	pool := netip.MustParsePrefix(DefaultPodCIDR)
	for _, c := range cs {
		if !pool.Contains(c.IP) {
			t.Errorf("container %s address %s not in %s", c.Name, c.IP, pool)
		}
	}
	st, err := l.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.Hosts {
		if !h.Alive || !h.Ready {
			t.Errorf("host %s: alive %v ready %v (%s)", h.Name, h.Alive, h.Ready, h.Reason)
		}
	}
	pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
	if err := l.Ping(pctx, cs[0].Name, cs[1].IP); err != nil {
		t.Errorf("ping %s -> %s (%s): %v", cs[0].Name, cs[1].Name, cs[1].IP, err)
	}
	pcancel()

	ports := []api.NamedPort{{Name: "http", Port: 80, Protocol: "TCP"}}
	extra, err := l.AddContainer(ctx, "h2", ContainerOpts{Name: "web", Namespace: "prod", Labels: map[string]string{"app": "web"}, Ports: ports})
	if err != nil {
		t.Fatalf("AddContainer: %v", err)
	}
	// The plugin got the pod's identity, labels and ports from the runtime.
	sc, err := store.New(ctx, store.Config{Endpoints: l.EtcdEndpoints()})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := sc.GetEndpoint(ctx, "sktfull-h2", api.Owner{ContainerID: extra.ContainerID, IfName: extra.IfName})
	sc.Close()
	if err != nil {
		t.Fatalf("endpoint of %s: %v", extra.Name, err)
	}
	if ep.Namespace != "prod" || ep.Name != "web" || ep.Labels["app"] != "web" || len(ep.Ports) != 1 || ep.Ports[0] != ports[0] ||
		len(ep.IPs) != 1 || ep.IPs[0] != extra.IP {
		t.Errorf("endpoint = %+v, want prod/web app=web port http/80 at %s", ep, extra.IP)
	}
	if extra.Name != "sktfull-h2-c2" {
		t.Errorf("new container named %s, want sktfull-h2-c2", extra.Name)
	}
	pctx, pcancel = context.WithTimeout(ctx, 30*time.Second)
	if err := l.Ping(pctx, "h1-c1", extra.IP); err != nil {
		t.Errorf("ping h1-c1 -> prod/web (%s): %v", extra.IP, err)
	}
	pcancel()
	if err := l.DelContainer(ctx, "prod/web"); err != nil {
		t.Errorf("DelContainer: %v", err)
	}
	if _, err := os.Stat(extra.NetNS); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns %s left after DelContainer: %v", extra.NetNS, err)
	}
	if err := l.RestartAgent(ctx, "h1"); err != nil {
		t.Errorf("RestartAgent: %v", err)
	}

	pids := []int{l.State().Etcd[0].PID}
	for _, h := range l.Hosts() {
		pids = append(pids, h.AgentPID)
	}
	if err := l.Down(ctx); err != nil {
		t.Fatalf("Down: %v", err)
	}
	assertGone(t, cfg.Name, cfg.RunDir, pids...)
}
