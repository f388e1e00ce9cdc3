//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
	"github.com/skeinnet/skein/store"
)

// dockerLabName is the Docker test's own lab: its agents run with the
// Docker driver and each host runs a dockerd.
var dockerLabName = labName + "dk"

// The Docker engine of Debian's docker.io (.ci/deps) and the static busybox
// the test image is made of (busybox-static).
const (
	dockerdBin  = "/usr/sbin/dockerd"
	dockerCLI   = "/usr/bin/docker"
	busyboxBin  = "/bin/busybox"
	dockerImage = "skein-busybox:e2e"
	dockerNet   = "skeinnet"
	dockerNS    = "dock" // the Skein namespace the network's label gives its containers
)

// TestDocker runs a real dockerd inside each of two lab hosts with Skein's
// libnetwork driver: Docker containers reach each other across hosts and
// reach CNI containers, appear as endpoints with their labels, are selected
// by a NetworkPolicy, survive restarts of dockerd and of skeind, and give
// everything back when removed.
func TestDocker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	l, sc := dockerLab(ctx, t, dockerLabName, "")
	bin := binDir()

	hosts := l.Hosts()
	image := busyboxTar(t)
	var eng []*dockerHost
	for _, h := range hosts {
		d := newDockerHost(t, l, h)
		d.startAgent(ctx, t)
		d.start(ctx, t)
		d.must(ctx, t, image, "import", "-", dockerImage)
		d.must(ctx, t, nil, "network", "create", "-d", "skein", "--ipam-driver", "skein", "--label", "skein.dev/namespace="+dockerNS, dockerNet)
		eng = append(eng, d)
	}
	d1, d2 := eng[0], eng[1]
	// A refusal reaches the docker command with the driver's reason.
	if out, err := d1.docker(ctx, nil, "network", "create", "-d", "skein", "--ipam-driver", "skein", "--subnet", "172.30.0.0/16", "bad"); err == nil || !strings.Contains(out, "leave out --subnet") {
		t.Errorf("network create --subnet: err %v, want the driver's refusal:\n%s", err, out)
	}
	d1.must(ctx, t, nil, "run", "-d", "--name", "web", "--network", dockerNet, "--label", "app=web", dockerImage, "sleep", "100000")
	d2.must(ctx, t, nil, "run", "-d", "--name", "client", "--network", dockerNet, "--label", "app=client", dockerImage, "sleep", "100000")

	web := waitDockerEndpoint(ctx, t, sc, "web", "app", "web")

	client := waitDockerEndpoint(ctx, t, sc, "client", "app", "client")
	t.Logf("web %s on %s, client %s on %s", web.IPs[0], web.Node, client.IPs[0], client.Node)
	if web.Node != hosts[0].Name || client.Node != hosts[1].Name || web.Network != "docker" {
		t.Fatalf("endpoints on the wrong node or network: web %+v, client %+v", web, client)
	}
	cni := l.Containers()
	cniIP := func(host string) netip.Addr {
		for _, c := range cni {
			if c.Host == host {
				ep := endpointOf(ctx, t, sc, c.PodNS, c.PodName)
				return ep.IPs[0]
			}
		}
		t.Fatalf("no CNI container on %s", host)
		return netip.Addr{}
	}

	// Connectivity: Docker to Docker across hosts, Docker to CNI, CNI to Docker.
	waitPing(ctx, t, d2, "client", web.IPs[0], true)
	waitPing(ctx, t, d1, "web", client.IPs[0], true)
	waitPing(ctx, t, d1, "web", cniIP(hosts[1].Name), true)
	waitFor(ctx, t, 20*time.Second, "CNI container on h1 reaches client", func() (bool, string) {
		err := l.Ping(ctx, cni[0].Name, client.IPs[0])
		return err == nil, fmt.Sprint(err)
	})

	ipamCheck(ctx, t, l, hosts[0].Name, "with Docker containers")
	// `skein status` counts the Docker container among its node's endpoints.
	stCmd := exec.CommandContext(ctx, filepath.Join(bin, "skein"), "status", "-o", "json")
	stCmd.Env = append(os.Environ(), "SKEIN_ETCD_ENDPOINTS="+l.EtcdEndpoints()[0])
	stOut := runCmd(t, stCmd)
	var st struct {
		Nodes []struct {
			Name      string `json:"name"`
			Endpoints int    `json:"endpoints"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(stOut.stdout), &st); err != nil || len(st.Nodes) != 2 {
		t.Errorf("skein status -o json: %v\n%s", err, stOut)
	}
	for _, n := range st.Nodes {
		if n.Name == hosts[0].Name && n.Endpoints != 2 { // its CNI container and web
			t.Errorf("skein status: %s has %d endpoints, want 2", n.Name, n.Endpoints)
		}
	}
	// The /ui draws the agent's topology: the Docker container is in it.
	topo, err := agentGet(ctx, l, hosts[0].Name, "/debug/topology")
	if err != nil || !strings.Contains(string(topo), web.IPs[0].String()) {
		t.Errorf("/debug/topology of %s lacks web %s (err %v):\n%s", hosts[0].Name, web.IPs[0], err, topo)
	}
	ipamCheck(ctx, t, l, hosts[1].Name, "with Docker containers")

	// A NetworkPolicy selects the Docker container by its docker run label.
	skein := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "skein"), args...)
		cmd.Env = append(os.Environ(), "SKEIN_ETCD_ENDPOINTS="+l.EtcdEndpoints()[0])
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("skein %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	applyPolicy := func(from string) {
		f := filepath.Join(t.TempDir(), "np.yaml")
		doc := polNP(dockerNS, "web-ingress", "podSelector: {matchLabels: {app: web}}\ningress:\n- from:\n  - podSelector: {matchLabels: {app: "+from+"}}")
		if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		skein("policy", "apply", "-f", f)
	}
	applyPolicy("nobody")
	waitPing(ctx, t, d2, "client", web.IPs[0], false)
	applyPolicy("client")
	waitPing(ctx, t, d2, "client", web.IPs[0], true)
	skein("policy", "delete", "np", dockerNS+"/web-ingress")

	// `skein endpoint list` shows Docker containers with their labels.
	list := skein("endpoint", "list")
	for _, want := range []string{"web", "client", "app=web", "app=client"} {
		if !strings.Contains(list, want) {
			t.Errorf("skein endpoint list lacks %q:\n%s", want, list)
		}
	}

	// dockerd restarts (live restore): the container keeps its network and record.
	d1.stop(ctx, t)
	d1.start(ctx, t)
	waitPing(ctx, t, d2, "client", web.IPs[0], true)
	// The driver's reconciliation keeps what dockerd lists in the network.
	if out := d1.must(ctx, t, nil, "network", "inspect", dockerNet, "--format", "{{range .Containers}}{{.Name}} {{end}}"); !strings.Contains(out, "web") {
		t.Errorf("after dockerd restart the network lists %q, want web", out)
	}
	if ep := endpointOf(ctx, t, sc, dockerNS, "web"); ep.IPs[0] != web.IPs[0] || ep.ContainerID != web.ContainerID {
		t.Errorf("after dockerd restart web is %+v, was %+v", ep, web)
	}

	// skeind restarts: connectivity and records stay, the driver answers again.
	if err := l.StopAgent(ctx, hosts[0].Name); err != nil {
		t.Fatal(err)
	}
	d1.startAgent(ctx, t)
	waitPing(ctx, t, d2, "client", web.IPs[0], true)
	if ep := endpointOf(ctx, t, sc, dockerNS, "web"); ep.IPs[0] != web.IPs[0] {
		t.Errorf("after skeind restart web is %+v, was %+v", ep, web)
	}
	d1.must(ctx, t, nil, "run", "-d", "--name", "late", "--network", dockerNet, dockerImage, "sleep", "100000")
	late := waitDockerEndpoint(ctx, t, sc, "late", api.NamespaceNameLabel, "")
	waitPing(ctx, t, d2, "client", late.IPs[0], true)

	// Removing containers releases their endpoint records and addresses.
	d1.must(ctx, t, nil, "rm", "-f", "late", "web")
	waitDockerEndpointsGone(ctx, t, func(ctx context.Context) ([]api.Endpoint, error) {
		return sc.ListNodeEndpoints(ctx, hosts[0].Name)
	})
	ipamCheck(ctx, t, l, hosts[0].Name, "after removing Docker containers")
	links, _ := l.Exec(ctx, hosts[0].Name, "ip", "-o", "link", "show", "type", "veth")
	if n := strings.Count(string(links), ": sk"); n != 1 { // the CNI container's veth only
		t.Errorf("host %s has %d veths after removing its Docker containers, want 1:\n%s", hosts[0].Name, n, links)
	}
}

// ipamCheck runs `skein ipam check` on a host (where its agent's debug
// endpoint is reachable) and fails on any finding about that node.
func ipamCheck(ctx context.Context, t *testing.T, l *lab.Lab, host, when string) {
	t.Helper()
	cmd, err := l.Command(ctx, host, filepath.Join(binDir(), "skein"), "--etcd-endpoints", l.EtcdUnderlayEndpoints()[0], "ipam", "check", "--grace", "0s", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	r := runCmd(t, cmd)
	f := parseFindings(t, r)
	for _, u := range f.Unchecked {
		if u.Node == host {
			t.Errorf("ipam check %s: %s not checked:\n%s", when, host, r)
		}
	}
	for _, x := range f.Findings {
		t.Errorf("ipam check %s: %s %s %s", when, x.Kind, x.Node, x.Owner)
	}
}

// waitDockerEndpoint waits until the endpoint of a Docker container is
// named after it and carries label k=v (any value when v is empty).
func waitDockerEndpoint(ctx context.Context, t *testing.T, sc *store.Client, name, k, v string) api.Endpoint {
	t.Helper()
	var got api.Endpoint
	waitFor(ctx, t, 30*time.Second, "endpoint of Docker container "+name, func() (bool, string) {
		eps, err := sc.ListEndpoints(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, ep := range eps {
			if ep.Name == name && ep.Namespace == dockerNS && len(ep.IPs) == 1 && (v == "" || ep.Labels[k] == v) {
				got = ep
				return true, ""
			}
		}
		return false, fmt.Sprintf("endpoints: %+v", eps)
	})
	return got
}

func endpointOf(ctx context.Context, t *testing.T, sc *store.Client, ns, name string) api.Endpoint {
	t.Helper()
	eps, err := sc.ListEndpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range eps {
		if ep.Namespace == ns && ep.Name == name && len(ep.IPs) > 0 {
			return ep
		}
	}
	t.Fatalf("no endpoint %s/%s in %+v", ns, name, eps)
	return api.Endpoint{}
}

// waitPing waits until a ping from a Docker container succeeds (reach) or
// fails (!reach).
func waitPing(ctx context.Context, t *testing.T, d *dockerHost, from string, to netip.Addr, reach bool) {
	t.Helper()
	what := fmt.Sprintf("%s reaches %s", from, to)
	if !reach {
		what = fmt.Sprintf("%s denied to %s", from, to)
	}
	waitFor(ctx, t, 30*time.Second, what, func() (bool, string) {
		out, err := d.docker(ctx, nil, "exec", from, "ping", "-c1", "-W1", to.String())
		return (err == nil) == reach, out
	})
}

// dockerHost is a dockerd running inside a lab host's network namespace, in
// a mount namespace of its own (kept in a file, so a restarted dockerd finds
// its containers' network namespaces): /etc/docker and /run/docker there
// are the test's directories, so its plugin spec is the only one it reads.
type dockerHost struct {
	l    *lab.Lab
	host lab.Host
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

func newDockerHost(t *testing.T, l *lab.Lab, h lab.Host) *dockerHost {
	t.Helper()
	d := &dockerHost{l: l, host: h, dir: filepath.Join(l.RunDir(), strings.TrimPrefix(h.Name, l.Name()+"-"), "docker")}
	for _, sub := range []string{"etc/plugins", "run", "containerd", "data", "exec", "ns"} {
		if err := os.MkdirAll(filepath.Join(d.dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	spec := "unix://" + d.pluginSocket() + "\n"
	if err := os.WriteFile(filepath.Join(d.dir, "etc/plugins/skein.spec"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	ns := filepath.Join(d.dir, "ns")
	// A mount namespace is kept in a file only on a private mount.
	d.run(t, "mount", "--bind", ns, ns)
	t.Cleanup(func() { d.cleanup(t) })
	d.run(t, "mount", "--make-private", ns)
	if err := os.WriteFile(d.mntNS(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// /run/containerd is private too: dockerd would use a system
	// containerd's socket there instead of starting its own, and the shims
	// put their sockets in /run/containerd/s.
	d.run(t, "unshare", "--mount="+d.mntNS(), "--propagation", "private", "sh", "-c",
		fmt.Sprintf("mount --bind %[1]s/etc /etc/docker && mount --bind %[1]s/run /run/docker && mount --bind %[1]s/containerd /run/containerd", d.dir))
	return d
}

func (d *dockerHost) mntNS() string        { return filepath.Join(d.dir, "ns", "mnt") }
func (d *dockerHost) pluginSocket() string { return filepath.Join(d.dir, "skein.sock") }
func (d *dockerHost) engineSocket() string { return filepath.Join(d.dir, "docker.sock") }

func (d *dockerHost) run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// startAgent (re)starts the host's skeind with the Docker driver.
func (d *dockerHost) startAgent(ctx context.Context, t *testing.T) {
	t.Helper()
	if err := d.l.StopAgent(ctx, d.host.Name); err != nil {
		t.Fatal(err)
	}
	if err := d.l.StartAgentArgs(ctx, d.host.Name, "--docker-plugin-socket", d.pluginSocket(), "--docker-host", "unix://"+d.engineSocket()); err != nil {
		t.Fatal(err)
	}
}

// start runs dockerd and waits until its API answers.
func (d *dockerHost) start(ctx context.Context, t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(d.dir, "dockerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("nsenter", "--mount="+d.mntNS(), "--net=/run/netns/"+d.host.Name, "--", dockerdBin,
		"--data-root", filepath.Join(d.dir, "data"), "--exec-root", filepath.Join(d.dir, "exec"),
		"--pidfile", filepath.Join(d.dir, "docker.pid"), "--host", "unix://"+d.engineSocket(),
		"--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none",
		"--userland-proxy=false", "--live-restore", "--storage-driver", "vfs")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dockerd in %s: %v", d.host.Name, err)
	}
	d.cmd, d.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(d.done) // the exit is seen through done
	waitFor(ctx, t, 60*time.Second, "dockerd in "+d.host.Name+" answers", func() (bool, string) {
		select {
		case <-d.done:
			t.Fatalf("dockerd in %s exited:\n%s", d.host.Name, tailOf(filepath.Join(d.dir, "dockerd.log")))
		default:
		}
		out, err := d.docker(ctx, nil, "version", "--format", "{{.Server.Version}}")
		return err == nil, out
	})
}

// stop stops dockerd (SIGTERM, SIGKILL after 30 s); with live restore its
// containers keep running.
func (d *dockerHost) stop(ctx context.Context, t *testing.T) {
	t.Helper()
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM) // gone already is fine
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill() // gone already is fine
		<-d.done
	case <-ctx.Done():
		_ = d.cmd.Process.Kill()
		<-d.done
	}
	d.cmd = nil
}

func (d *dockerHost) docker(ctx context.Context, stdin []byte, args ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, dockerCLI, append([]string{"--host", "unix://" + d.engineSocket()}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (d *dockerHost) must(ctx context.Context, t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	out, err := d.docker(ctx, stdin, args...)
	if err != nil {
		t.Fatalf("docker %s on %s: %v\n%s\ndockerd log:\n%s", strings.Join(args, " "), d.host.Name, err, out, tailOf(filepath.Join(d.dir, "dockerd.log")))
	}
	return out
}

// cleanup removes everything the test's dockerd made, also after a
// failure: its containers, dockerd itself, any containerd shim left, the
// mount namespace and the directories.
func (d *dockerHost) cleanup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if d.cmd != nil {
		if ids, err := d.docker(ctx, nil, "ps", "-aq"); err == nil && strings.TrimSpace(ids) != "" {
			if out, err := d.docker(ctx, nil, append([]string{"rm", "-f"}, strings.Fields(ids)...)...); err != nil {
				t.Errorf("remove containers on %s: %v\n%s", d.host.Name, err, out)
			}
		}
		d.stop(ctx, t)
	}
	// Shims (and their containers) of a dockerd that died mid-test.
	for _, pid := range procsMentioning(d.dir) {
		_ = syscall.Kill(pid, syscall.SIGKILL) // gone already is fine
	}
	for _, m := range []string{d.mntNS(), filepath.Join(d.dir, "ns")} {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			t.Errorf("unmount %s: %v", m, err)
		}
	}
	if err := os.RemoveAll(d.dir); err != nil {
		t.Errorf("remove %s: %v", d.dir, err)
	}
}

// procsMentioning returns the pids whose command line contains s.
func procsMentioning(s string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(s)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// privateRunDirs makes sure /run/docker and /run/containerd exist as mount
// points for the dockerds' private ones, and returns what removes those the
// test created.
func privateRunDirs(t *testing.T) func() {
	t.Helper()
	var made []string
	for _, dir := range []string{"/run/docker", "/run/containerd"} {
		if _, err := os.Stat(dir); err == nil {
			continue
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		made = append(made, dir)
	}
	return func() {
		for _, dir := range made {
			if err := os.Remove(dir); err != nil {
				t.Errorf("remove %s: %v", dir, err)
			}
		}
	}
}

// busyboxTar is a root filesystem of static busybox and a few of its
// applets, as a tar for `docker import` (no registry is reachable).
func busyboxTar(t *testing.T) []byte {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(busyboxBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "ping", "sleep", "ip", "nc", "cat"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("tar", "-C", root, "-c", ".").Output()
	if err != nil {
		t.Fatalf("tar busybox root: %v", err)
	}
	return out
}

// dockerLab checks the Docker tools are installed, then brings up a lab of
// two hosts with one CNI container each (pods: its pools, "" for the
// default), which the test's cleanup takes down after the dockerds.
func dockerLab(ctx context.Context, t *testing.T, name, pods string) (*lab.Lab, *store.Client) {
	t.Helper()
	for _, bin := range []string{dockerdBin, dockerCLI, busyboxBin, "nsenter", "unshare"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s missing: run .ci/deps (docker.io, busybox-static, util-linux): %v", bin, err)
		}
	}
	_ = lab.Down(ctx, name, "") // best effort: a crashed earlier run may have left it
	l, err := lab.Up(ctx, lab.Config{
		Name:              name,
		Hosts:             2,
		ContainersPerHost: 1,
		PodCIDR:           pods,
		BinDir:            binDir(),
		Log:               slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("docker lab up: %v", err)
	}
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer dcancel()
		if err := l.Down(dctx); err != nil {
			t.Errorf("docker lab down: %v", err)
		}
	})
	sc := labStore(ctx, t, l)
	t.Cleanup(privateRunDirs(t)) // after the dockerds are gone (cleanups run last-in first-out)
	return l, sc
}

// waitDockerEndpointsGone waits until list returns no endpoint of a Docker
// container: removing a container releases its record.
func waitDockerEndpointsGone(ctx context.Context, t *testing.T, list func(context.Context) ([]api.Endpoint, error)) {
	t.Helper()
	waitFor(ctx, t, 20*time.Second, "endpoints of removed containers gone", func() (bool, string) {
		eps, err := list(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, ep := range eps {
			if ep.Network == "docker" {
				return false, fmt.Sprintf("still there: %s/%s", ep.Namespace, ep.Name)
			}
		}
		return true, ""
	})
}
