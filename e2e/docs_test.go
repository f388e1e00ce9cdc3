//go:build e2e

package e2e

// The install guide and the troubleshooting page are executed here, so they
// cannot rot. A shell block meant to be run is marked in the Markdown with an
// HTML comment on the line right before its fence, which renders as nothing:
//
//	<!-- runnable: NAME -->
//	```sh
//	...
//	```
//
// The test finds every block by NAME (a marker that disappears fails the
// test), replaces the guide's example hosts, addresses and paths with the
// lab's through the explicit table docSubs (plus the socket and state dir per
// host, and "$(hostname)"), and runs the blocks inside the host namespaces of
// a 2-host lab of its own (named SKEIN_E2E_LAB + "doc"): the certificate
// script, etcd from the guide's /etc/default/etcd (served by the lab's
// embedded etcd runner, since the machine has no etcd binary), `skein cluster
// init`, one skeind per host from the guide's /etc/default/skeind env file,
// containers through the guide's conflist, the guide's checks and, last, its
// removal of a host. Every command of the troubleshooting page's marked
// blocks runs on the same lab, one line at a time, and must succeed (or
// fail, where the page says so) and print what the page says it prints.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skeinnet/skein/lab"
)

// runnableMarker matches the marker line before a runnable block's fence.
var runnableMarker = regexp.MustCompile(`^<!-- runnable: ([a-z0-9-]+) -->$`)

// runnableBlocks returns the marked fenced blocks of a Markdown file by name.
func runnableBlocks(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	lines := strings.Split(string(b), "\n")
	blocks := map[string]string{}
	for i := 0; i < len(lines); i++ {
		m := runnableMarker.FindStringSubmatch(strings.TrimSpace(lines[i]))
		if m == nil {
			continue
		}
		name := m[1]
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "```") {
			t.Fatalf("%s:%d: marker %q is not followed by a ``` fence", path, i+1, name)
		}
		if _, dup := blocks[name]; dup {
			t.Fatalf("%s:%d: marker %q used twice", path, i+1, name)
		}
		var body []string
		j := i + 2
		for ; j < len(lines) && !strings.HasPrefix(lines[j], "```"); j++ {
			body = append(body, lines[j])
		}
		if j == len(lines) {
			t.Fatalf("%s:%d: block %q has no closing fence", path, i+2, name)
		}
		blocks[name] = strings.Join(body, "\n") + "\n"
		i = j
	}
	return blocks
}

// block returns the named block or fails naming the marker to add.
func block(t *testing.T, blocks map[string]string, doc, name string) string {
	t.Helper()
	b, ok := blocks[name]
	if !ok {
		t.Fatalf("%s has no block marked <!-- runnable: %s -->", doc, name)
	}
	return b
}

// substitute applies the replacements in order; a guide address or path
// left afterwards fails the test, so a doc edit that a replacement no
// longer matches is caught instead of run.
func substitute(t *testing.T, name, text string, subs [][2]string) string {
	t.Helper()
	for _, s := range subs {
		text = strings.ReplaceAll(text, s[0], s[1])
	}
	for i, l := range strings.Split(text, "\n") {
		for _, guide := range []string{"10.0.0.", "/etc/skein/", "/etc/etcd/", "/var/lib/"} {
			if strings.Contains(l, guide) {
				t.Fatalf("block %s line %d: %q still names the guide's %s after substitution", name, i+1, l, guide)
			}
		}
	}
	return text
}

// envFile parses KEY=VALUE lines (comments and blanks skipped).
func envFile(t *testing.T, name, text string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for i, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("block %s line %d: %q is not KEY=VALUE", name, i+1, l)
		}
		env[k] = v
	}
	return env
}

// heredoc returns the body of the first `<<'EOF'` … `EOF` in a block.
func heredoc(t *testing.T, name, text string) string {
	t.Helper()
	_, rest, ok := strings.Cut(text, "<<'EOF'\n")
	if !ok {
		t.Fatalf("block %s has no <<'EOF' here-document", name)
	}
	body, _, ok := strings.Cut(rest, "\nEOF\n")
	if !ok {
		t.Fatalf("block %s: here-document has no EOF line", name)
	}
	return body
}

// etcdKeys are the settings of the guide's /etc/default/etcd; the ones with
// a reason are not passed to the lab's etcd runner, the others are. A key
// the guide adds fails the test until it is listed here.
var etcdKeys = map[string]string{
	"ETCD_NAME":                        "",
	"ETCD_DATA_DIR":                    "",
	"ETCD_LISTEN_PEER_URLS":            "",
	"ETCD_LISTEN_CLIENT_URLS":          "",
	"ETCD_INITIAL_CLUSTER":             "",
	"ETCD_INITIAL_CLUSTER_TOKEN":       "",
	"ETCD_CERT_FILE":                   "",
	"ETCD_KEY_FILE":                    "",
	"ETCD_TRUSTED_CA_FILE":             "",
	"ETCD_PEER_CERT_FILE":              "checked equal to ETCD_CERT_FILE: the runner serves peers with it",
	"ETCD_PEER_KEY_FILE":               "checked equal to ETCD_KEY_FILE",
	"ETCD_PEER_TRUSTED_CA_FILE":        "checked equal to ETCD_TRUSTED_CA_FILE",
	"ETCD_CLIENT_CERT_AUTH":            "checked true: the runner always requires client certificates with a CA",
	"ETCD_PEER_CLIENT_CERT_AUTH":       "checked true, as above",
	"ETCD_INITIAL_ADVERTISE_PEER_URLS": "the runner advertises its listen URL, which is the same",
	"ETCD_ADVERTISE_CLIENT_URLS":       "the runner advertises its listen URLs",
	"ETCD_INITIAL_CLUSTER_STATE":       "a lone new member",
	"ETCD_AUTO_COMPACTION_MODE":        "history retention does not matter for minutes",
	"ETCD_AUTO_COMPACTION_RETENTION":   "as above",
}

// docEnv is a lab for the docs test plus where the guide's files live.
type docEnv struct {
	l    *lab.Lab
	dir  string // the admin's working directory: pki/ lives here
	path string // PATH with the binaries under test first
	// exited is closed when a process of start has exited.
	exited map[*exec.Cmd]chan struct{}
}

// shell runs a bash script inside a lab host, in the admin's directory,
// with the binaries under test first on PATH and env added.
func (e docEnv) shell(ctx context.Context, t *testing.T, host, script string, env ...string) opsResult {
	t.Helper()
	cmd, err := e.l.Command(ctx, host, "bash", "-o", "pipefail", "-c", script)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Dir = e.dir
	cmd.Env = append([]string{"PATH=" + e.path, "HOME=" + e.dir}, env...)
	return runCmd(t, cmd)
}

// start starts a long-running process inside a lab host, logging to logPath;
// t.Cleanup kills it.
func (e docEnv) start(ctx context.Context, t *testing.T, host, logPath string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd, err := e.l.Command(ctx, host, args...)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append([]string{"PATH=" + e.path}, env...)
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %v in %s: %v", args, host, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // an exit is seen by whoever needs it through exited
		f.Close()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // ip netns exec execs the program, so this is it
		<-exited
	})
	e.exited[cmd] = exited
	return cmd
}

// stop sends SIGTERM to a process of start (what `systemctl stop` does) and
// waits for it to exit.
func (e docEnv) stop(ctx context.Context, t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("stop %v: %v", cmd.Args, err)
	}
	select {
	case <-e.exited[cmd]:
	case <-time.After(30 * time.Second):
		t.Fatalf("%v still running 30 s after SIGTERM", cmd.Args)
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
}

// TestDocsInstallGuide runs docs/install.md on a 2-host lab of its own
// (etcd with TLS from the guide's certificates, agents from the guide's env
// file, containers through the guide's conflist), checks a cross-host ping
// and `skein status`, then runs the troubleshooting page's commands.
func TestDocsInstallGuide(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	install := runnableBlocks(t, filepath.Join("..", "docs", "install.md"))
	trouble := runnableBlocks(t, filepath.Join("..", "docs", "troubleshooting.md"))

	// The lab gives namespaces and an underlay; its own agents and etcd are
	// stopped or left aside: everything Skein runs on comes from the guide.
	name := labName + "doc"
	_ = lab.Down(ctx, name, "") // a crashed run may have left it; nothing there is the usual case
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer dcancel()
		if err := lab.Down(dctx, name, ""); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	l, err := lab.Up(ctx, lab.Config{
		Name:              name,
		Hosts:             2,
		ContainersPerHost: -1, // none: containers come after the guide's agents
		PodCIDR:           "10.99.0.0/16",
		BinDir:            filepath.Dir(opsBin()),
		Log:               slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	hosts := l.Hosts()
	for _, h := range hosts {
		if err := l.StopAgent(ctx, h.Name); err != nil {
			t.Fatal(err)
		}
	}
	h1, h2 := hosts[0], hosts[1]
	bin := filepath.Dir(opsBin())
	e := docEnv{l: l, dir: t.TempDir(), path: bin + ":" + os.Getenv("PATH"), exited: map[*exec.Cmd]chan struct{}{}}
	pki := filepath.Join(e.dir, "pki") + "/"

	// docSubs maps the guide's example network onto the lab: etcd-1 runs on
	// host 1 (the guide allows members on Skein hosts), as the only member.
	docSubs := [][2]string{
		{"https://10.0.0.10:2379,https://10.0.0.11:2379,https://10.0.0.12:2379", "https://" + h1.UnderlayIP.String() + ":2379"},
		{"etcd-1=https://10.0.0.10:2380,etcd-2=https://10.0.0.11:2380,etcd-3=https://10.0.0.12:2380", "etcd-1=https://" + h1.UnderlayIP.String() + ":2380"},
		{"10.0.0.10", h1.UnderlayIP.String()},
		{"10.0.0.11", h2.UnderlayIP.String()},
		{"10.0.0.12", "127.0.0.2"}, // a member the lab does not run; its certificate is still made
		{"/etc/etcd/pki/", pki},
		{"/etc/skein/pki/", pki},
		{"/var/lib/etcd/skein", filepath.Join(e.dir, "etcd")},
	}

	// 1. Certificates: the guide's script, for real.
	certs := substitute(t, "certs", block(t, install, "install.md", "certs"), docSubs)
	if r := e.shell(ctx, t, h1.Name, "set -e\n"+certs); r.code != 0 {
		t.Fatalf("install.md certs block failed:\n%s", r)
	} else if !strings.Contains(r.stdout+r.stderr, "skeind.pem: OK") {
		t.Fatalf("install.md certs block: openssl verify did not say skeind.pem: OK:\n%s", r)
	}

	// 2. etcd from the guide's /etc/default/etcd on host 1.
	etcdBlock := substitute(t, "etcd", block(t, install, "install.md", "etcd"), docSubs)
	ee := envFile(t, "etcd", heredoc(t, "etcd", etcdBlock))
	for _, k := range []string{"ETCD_CLIENT_CERT_AUTH", "ETCD_PEER_CLIENT_CERT_AUTH"} {
		if ee[k] != "true" {
			t.Fatalf("install.md etcd: %s=%q, want true (the lab's etcd always requires client certificates)", k, ee[k])
		}
	}
	for k := range ee {
		if _, ok := etcdKeys[k]; !ok {
			t.Fatalf("install.md etcd: %s is new to this test: map it to a flag of `skein lab etcd` or say in etcdKeys why the lab can do without", k)
		}
	}
	if ee["ETCD_PEER_CERT_FILE"] != ee["ETCD_CERT_FILE"] || ee["ETCD_PEER_KEY_FILE"] != ee["ETCD_KEY_FILE"] || ee["ETCD_PEER_TRUSTED_CA_FILE"] != ee["ETCD_TRUSTED_CA_FILE"] {
		t.Fatalf("install.md etcd: peer and client certificates differ; the lab's etcd runner serves both with one")
	}
	e.start(ctx, t, h1.Name, filepath.Join(e.dir, "etcd.log"), nil, filepath.Join(bin, "skein"), "lab", "etcd",
		"--"+lab.EtcdFlagDir, ee["ETCD_DATA_DIR"],
		"--"+lab.EtcdFlagClientURLs, ee["ETCD_LISTEN_CLIENT_URLS"],
		"--"+lab.EtcdFlagPeerURL, ee["ETCD_LISTEN_PEER_URLS"],
		"--"+lab.EtcdFlagName, ee["ETCD_NAME"],
		"--"+lab.EtcdFlagInitialCluster, ee["ETCD_INITIAL_CLUSTER"],
		"--"+lab.EtcdFlagClusterToken, ee["ETCD_INITIAL_CLUSTER_TOKEN"],
		"--"+lab.EtcdFlagCert, ee["ETCD_CERT_FILE"],
		"--"+lab.EtcdFlagKey, ee["ETCD_KEY_FILE"],
		"--"+lab.EtcdFlagCA, ee["ETCD_TRUSTED_CA_FILE"],
	)

	// 5. The cluster, from the admin's block (admin runs on host 2, so it
	// reaches etcd over the underlay with the admin certificate). It is
	// retried until etcd answers: the guide's etcd starts asynchronously.
	initBlock := substitute(t, "cluster-init", block(t, install, "install.md", "cluster-init"), docSubs)
	var exports []string
	for _, ln := range strings.Split(initBlock, "\n") {
		if strings.HasPrefix(ln, "export ") {
			exports = append(exports, ln)
		}
	}
	admin := strings.Join(exports, "\n") + "\n"
	waitFor(ctx, t, 30*time.Second, "skein cluster init from install.md", func() (bool, string) {
		r := e.shell(ctx, t, h2.Name, "set -e\n"+initBlock)
		return r.code == 0, r.String()
	})

	// 4 and 6. Every host's agent from the guide's env file.
	envBlock := block(t, install, "install.md", "agent-env")
	agents := map[string]*exec.Cmd{}
	states := map[string]string{}
	for _, h := range hosts {
		state := filepath.Join(e.dir, h.Name+"-state")
		states[h.Name] = state
		subs := append(append([][2]string(nil), docSubs...),
			[2]string{"/run/skein/skeind.sock", h.Socket},
			[2]string{"/var/lib/skein", state})
		env := envFile(t, "agent-env", substitute(t, "agent-env", envBlock, subs))
		if env["SKEIN_IFACE"] != lab.HostIface {
			t.Fatalf("install.md agent-env: SKEIN_IFACE=%q, the lab's hosts have %s", env["SKEIN_IFACE"], lab.HostIface)
		}
		// Lab hosts share the machine's hostname, the cloned-image case the
		// guide warns about: each gets its own SKEIN_NODE_NAME, as it says.
		env["SKEIN_NODE_NAME"] = h.Name
		var kv []string
		for k, v := range env {
			kv = append(kv, k+"="+v)
		}
		_ = os.Remove(h.Socket)
		agents[h.Name] = e.start(ctx, t, h.Name, filepath.Join(e.dir, h.Name+"-skeind.log"), kv, filepath.Join(bin, "skeind"))
	}
	for _, h := range hosts {
		hc, err := l.HTTPClient(h.Name)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(ctx, t, lab.AgentReadyTimeout, "agent "+h.Name+" ready on "+lab.AgentDebugAddr+"/readyz", func() (bool, string) {
			return httpOK(ctx, hc, "http://"+lab.AgentDebugAddr+"/readyz"), tailOf(filepath.Join(e.dir, h.Name+"-skeind.log"))
		})
	}

	// 7. The guide's conflist is the one the lab's runtime uses on each
	// host (its socket replaced by the host's), so the ADDs below run it.
	var guideConf, labConf any
	if err := json.Unmarshal([]byte(block(t, install, "install.md", "conflist")), &guideConf); err != nil {
		t.Fatalf("install.md conflist is not JSON: %v", err)
	}
	for _, h := range hosts {
		b, err := os.ReadFile(l.CNIConfigPath(h.Name))
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte(h.Socket), []byte("/run/skein/skeind.sock"))
		if err := json.Unmarshal(b, &labConf); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(guideConf, labConf) {
			t.Fatalf("install.md conflist %v differs from the lab's %s (socket aside)", guideConf, b)
		}
	}
	var cs []lab.Container
	for _, h := range hosts {
		c, err := l.AddContainer(ctx, h.Name, lab.ContainerOpts{})
		if err != nil {
			t.Fatalf("add a container through install.md's conflist: %v", err)
		}
		cs = append(cs, c)
	}
	waitFor(ctx, t, 30*time.Second, fmt.Sprintf("ping %s -> %s (%s)", cs[0].Name, cs[1].Name, cs[1].IP), func() (bool, string) {
		err := l.Ping(ctx, cs[0].Name, cs[1].IP)
		return err == nil, fmt.Sprint(err)
	})
	if err := l.Ping(ctx, cs[1].Name, cs[0].IP); err != nil {
		t.Errorf("ping %s -> %s (%s): %v", cs[1].Name, cs[0].Name, cs[0].IP, err)
	}

	// 6 and 8: the admin's checks, from host 1 where the debug endpoint of
	// its own agent answers too.
	for _, b := range []string{"status", "check"} {
		script := substitute(t, b, block(t, install, "install.md", b), docSubs)
		var r opsResult
		waitFor(ctx, t, 30*time.Second, "install.md block "+b, func() (bool, string) {
			r = e.shell(ctx, t, h1.Name, admin+"set -e\n"+script)
			return r.code == 0, r.String()
		})
		if strings.TrimSpace(r.stdout) == "" {
			t.Errorf("install.md block %s printed nothing", b)
		}
	}
	st := e.shell(ctx, t, h1.Name, admin+"skein status -o json")
	rep := parseStatus(t, st)
	if !rep.Healthy || len(rep.Nodes) != 2 {
		t.Errorf("skein status after the install: healthy=%v, %d nodes, want healthy with 2:\n%s", rep.Healthy, len(rep.Nodes), st)
	}
	for _, n := range rep.Nodes {
		if !n.Alive || n.Ready == nil || !*n.Ready || n.Peers != "1/1" {
			t.Errorf("skein status: node %s alive=%v ready=%v peers=%q, want alive, ready, 1/1", n.Name, n.Alive, n.Ready, n.Peers)
		}
	}

	troubleshoot(ctx, t, e, h1.Name, admin, trouble, cs[1].IP.String())

	// "Removing Skein from a host", on host 2; the admin is host 1.
	remove := block(t, install, "install.md", "remove")
	remove = strings.ReplaceAll(remove, `"$(hostname)"`, h2.Name)
	remove = substitute(t, "remove", remove, append(append([][2]string(nil), docSubs...), [2]string{"/var/lib/skein", states[h2.Name]}))
	for _, cmdline := range docLines(remove) {
		switch {
		case cmdline == "systemctl disable --now skeind":
			e.stop(ctx, t, agents[h2.Name])
		case strings.HasPrefix(cmdline, "rm /etc/cni/"):
			// The lab runs the binaries from bin/: `make install` put none
			// of these files on its hosts.
		case strings.HasPrefix(cmdline, "skein "):
			if r := e.shell(ctx, t, h1.Name, admin+cmdline); r.code != 0 {
				t.Fatalf("install.md remove: %s on the admin machine:\n%s", cmdline, r)
			}
		default:
			if r := e.shell(ctx, t, h2.Name, "set -e\n"+strings.ReplaceAll(cmdline, "; ", "\n")); r.code != 0 {
				t.Fatalf("install.md remove: %s on %s:\n%s", cmdline, h2.Name, r)
			}
		}
	}
	checkRemoved(ctx, t, e, h1.Name, h2.Name, admin, states[h2.Name])
}

// checkRemoved checks that nothing of Skein is left on the removed host and
// that the remaining host forgot it: one node in `skein status`, no route
// over skein.vxlan on host 1 (its only peer is gone; its containers' /32
// routes stay).
func checkRemoved(ctx context.Context, t *testing.T, e docEnv, admin, gone, adminEnv, state string) {
	t.Helper()
	for _, probe := range []string{"ip link show skein.vxlan", "nft list table inet skein"} {
		if r := e.shell(ctx, t, gone, probe); r.code == 0 {
			t.Errorf("after the removal, %s on %s still finds it:\n%s", probe, gone, r)
		}
	}
	if r := e.shell(ctx, t, gone, "ip route show proto 78"); strings.TrimSpace(r.stdout) != "" || r.code != 0 {
		t.Errorf("after the removal, %s keeps routes of Skein's:\n%s", gone, r)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("after the removal, the state dir %s is still there (%v)", state, err)
	}
	waitFor(ctx, t, 10*time.Second, admin+" drops its route to "+gone+"'s block", func() (bool, string) {
		r := e.shell(ctx, t, admin, "ip route show proto 78")
		return r.code == 0 && !strings.Contains(r.stdout, "skein.vxlan"), r.String()
	})
	st := e.shell(ctx, t, admin, adminEnv+"skein status -o json")
	rep := parseStatus(t, st)
	if !rep.Healthy || len(rep.Nodes) != 1 || rep.Nodes[0].Name != admin {
		t.Errorf("skein status after removing %s: healthy=%v, want healthy with only %s:\n%s", gone, rep.Healthy, admin, st)
	}
}

// docLines returns the commands of a shell block, one per line, with
// backslash continuations joined and trailing "# comments" dropped (no
// command in the marked blocks has a literal " #").
func docLines(text string) []string {
	var out []string
	var cur string
	for _, ln := range strings.Split(text, "\n") {
		if i := strings.Index(ln, " #"); i >= 0 {
			ln = ln[:i]
		}
		ln = strings.TrimSpace(ln)
		if c, ok := strings.CutSuffix(ln, "\\"); ok {
			cur += c
			continue
		}
		if ln = strings.TrimSpace(cur + ln); ln != "" {
			out = append(out, ln)
		}
		cur = ""
	}
	return out
}

// troubleCheck is what a pasted troubleshooting command must do, as the
// page's comments say.
type troubleCheck struct {
	want string // a regexp its output must match; empty: any non-empty output
	fail bool   // the page says it must fail
}

// troubleChecks holds a check per command of the marked blocks, by the
// longest matching prefix. A command with none fails the test, so a new
// command on the page gets its check here.
var troubleChecks = map[string]troubleCheck{
	"skein status":                               {want: `ALIVE`},
	"skein topology -o wide":                     {want: `up`},
	"curl -s 127.0.0.1:9595/debug/topology | jq": {want: `"link"`},
	"curl -s 127.0.0.1:9595/debug/vxlan | jq":    {want: `"desired"`},
	"ip -d link show skein.vxlan":                {want: `vxlan id 4096 .*dstport 4789 .*nolearning`},
	"ip route show proto 78":                     {want: `via \S+ dev skein\.vxlan .*onlink`},
	"ip neigh show dev skein.vxlan":              {want: `PERMANENT`},
	"bridge fdb show dev skein.vxlan":            {want: `dst `},
	"ip link show skein.vxlan":                   {want: `mtu 1450`},
	"skein lab exec":                             {want: `mtu 1450`},
	"ping -c 3 -M do -s 1422":                    {want: ` 0% packet loss`},
	"ping -c 1 -M do -s 1423":                    {want: `(?i)message too long`, fail: true},
	"curl -s 127.0.0.1:9595/debug/policy | jq":   {want: `"appliedVersion"`},
	"nft list table inet skein":                  {want: `table inet skein`},
}

// troubleSkip are commands of marked blocks that do not run on the lab,
// each with the reason.
var troubleSkip = map[string]string{
	"journalctl": "no systemd in the lab: skeind logs to a file",
}

// troubleshoot runs every command line of the troubleshooting page's marked
// blocks on host, one at a time.
func troubleshoot(ctx context.Context, t *testing.T, e docEnv, host, admin string, blocks map[string]string, remoteIP string) {
	t.Helper()
	for _, name := range []string{"start", "vxlan", "mtu", "policy"} {
		text := block(t, blocks, "troubleshooting.md", name)
		text = strings.ReplaceAll(text, "<remote container IP>", remoteIP)
		// The page's example is the default lab; this one has its own name.
		text = strings.ReplaceAll(text, "skein lab exec ", "skein lab exec --name "+e.l.Name()+" ")
		for _, cmdline := range docLines(text) {
			if why := skipReason(cmdline); why != "" {
				// Not a test of its own (CI skips nothing): said in the log.
				t.Logf("troubleshooting.md block %s: %q not run here: %s", name, cmdline, why)
				continue
			}
			t.Run(name+"/"+cmdline, func(t *testing.T) {
				c, ok := checkFor(cmdline)
				if !ok {
					t.Fatalf("troubleshooting.md block %s: command %q has no check in troubleChecks", name, cmdline)
				}
				r := e.shell(ctx, t, host, admin+cmdline)
				if (r.code != 0) != c.fail {
					t.Fatalf("%s: exit %d, the page says it %s:\n%s", cmdline, r.code, map[bool]string{false: "succeeds", true: "fails"}[c.fail], r)
				}
				out := r.stdout + r.stderr
				if strings.TrimSpace(out) == "" {
					t.Fatalf("%s printed nothing", cmdline)
				}
				if strings.Contains(cmdline, "| jq") {
					dec := json.NewDecoder(strings.NewReader(r.stdout))
					for dec.More() {
						var v any
						if err := dec.Decode(&v); err != nil {
							t.Fatalf("%s: output is not JSON: %v\n%s", cmdline, err, r.stdout)
						}
						if allNull(v) {
							t.Errorf("%s: prints a null value (or an object of nulls), a jq precedence slip:\n%s", cmdline, r.stdout)
						}
					}
				}
				if c.want != "" && !regexp.MustCompile(c.want).MatchString(out) {
					t.Errorf("%s: output does not match %q, as the page says it should:\n%s", cmdline, c.want, out)
				}
			})
		}
	}
}

// allNull reports whether v is null or an object whose values are all null,
// what `jq '.a, .b[] | {x}'` prints for a missing .a.
func allNull(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return v == nil
	}
	for _, x := range m {
		if !allNull(x) {
			return false
		}
	}
	return true
}

// skipReason returns why cmdline does not run on the lab, "" when it does.
func skipReason(cmdline string) string {
	for p, why := range troubleSkip {
		if strings.HasPrefix(cmdline, p) {
			return why
		}
	}
	return ""
}

// checkFor returns the check of the longest prefix of cmdline in troubleChecks.
func checkFor(cmdline string) (troubleCheck, bool) {
	best, ok := "", false
	for p := range troubleChecks {
		if strings.HasPrefix(cmdline, p) && len(p) > len(best) {
			best, ok = p, true
		}
	}
	return troubleChecks[best], ok
}

// httpOK reports whether GET url answers 200.
func httpOK(ctx context.Context, hc *http.Client, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// tailOf returns the last lines of a log file for a failure message.
func tailOf(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}
