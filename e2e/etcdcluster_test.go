//go:build e2e

package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
	"github.com/skeinnet/skein/store"
)

// clusterLabName is the lab of TestEtcdClusterFailover, apart from the
// shared one because it runs three etcd members with TLS.
const clusterLabName = "skd"

// Sizes of the failover test.
const (
	stormPerHost = 8 // containers added on each host during the leader kill
	stormWorkers = 8 // ADDs in flight at once
	killAfter    = 4 // ADDs finished before the leader is killed
)

// TestEtcdClusterFailover runs a lab whose etcd is three members with TLS
// (agents and CLI hold every endpoint and the lab's client certificate) and
// kills the etcd leader twice: during an ADD storm through the real CNI
// path on three hosts, and during `skein policy apply`. A flow between two
// running containers, pinged every 20 ms, loses nothing; no ADD fails once
// a new leader is up (an ADD that began before and failed with code 11 "try
// again later" is retried once, as a runtime would); no two endpoints share
// an address; the policy is enforced on every host. Then, with a member
// down and one agent cut off from etcd, containers and the policy are
// deleted and the history compacted: the cut-off agent's watch resyncs, the
// restarted member catches up, and every agent's view matches etcd.
func TestEtcdClusterFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	l := upClusterLab(ctx, t)
	env := append(os.Environ(), l.EtcdEnv()...)
	sc, err := store.New(ctx, l.StoreConfig())
	if err != nil {
		t.Fatalf("connect to the lab's etcd over TLS: %v", err)
	}
	t.Cleanup(func() { sc.Close() })

	hosts := l.Hosts()
	src, dst := l.Containers()[0], l.Containers()[1] // h1-c1, h2-c1
	if src.Host == dst.Host {
		t.Fatalf("flow %s -> %s is not across hosts", src.Name, dst.Name)
	}

	// 1. The leader dies during an ADD storm.
	flow := startFlow(ctx, t, l, src, dst.IP)
	storm, killed := addStorm(ctx, t, l, hosts)
	checkFlow(t, flow, "the ADD storm and the leader kill")
	checkNoDuplicates(ctx, t, l, sc)
	checkReachable(ctx, t, l, src, storm)
	if err := l.StartEtcdMember(ctx, killed); err != nil {
		t.Fatalf("restart member %d: %v", killed, err)
	}

	// 2. The leader dies while a policy is applied: storm pods accept
	// ingress only from storm pods, on every host.
	onHost := map[string]lab.Container{}
	for _, c := range storm {
		onHost[c.Host] = c
	}
	flow = startFlow(ctx, t, l, src, dst.IP)
	killed = applyDuringKill(ctx, t, l, env)
	for _, h := range hosts {
		c := onHost[h.Name]
		waitBlocked(ctx, t, l, src, c)
		other := onHost[hosts[h.Index%len(hosts)].Name] // a storm pod on the next host
		if err := l.Ping(ctx, other.Name, c.IP); err != nil {
			t.Errorf("storm pod %s -> %s (%s) blocked, the policy allows storm pods: %v", other.Name, c.Name, c.IP, err)
		}
	}
	checkFlow(t, flow, "the policy change, the leader kill and the enforcement")
	if err := l.StartEtcdMember(ctx, killed); err != nil {
		t.Fatalf("restart member %d: %v", killed, err)
	}

	// 3. A member down, an agent cut off, deletions and a compaction.
	staleChecks(ctx, t, l, sc, env, src, storm)
	checkNoDuplicates(ctx, t, l, sc)
}

// upClusterLab brings up the 3-member TLS lab; t.Cleanup removes it.
func upClusterLab(ctx context.Context, t *testing.T) *lab.Lab {
	t.Helper()
	_ = lab.Down(ctx, clusterLabName, "") // a crashed run may have left it; nothing there is the usual case
	t.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := lab.Down(dctx, clusterLabName, ""); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	start := time.Now()
	l, err := lab.Up(ctx, lab.Config{
		Name:              clusterLabName,
		Hosts:             3,
		ContainersPerHost: 1,
		EtcdMembers:       3,
		EtcdTLS:           true,
		BinDir:            filepath.Dir(opsBin()),
		Log:               slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Logf("lab %s up with 3 etcd members and TLS in %s", clusterLabName, time.Since(start).Round(time.Millisecond))
	return l
}

// addResult is one ADD of the storm.
type addResult struct {
	host       string
	opts       lab.ContainerOpts
	start, end time.Time
	c          lab.Container
	err        error
}

// addStorm adds stormPerHost containers on every host, stormWorkers at a
// time, kills the etcd leader once killAfter of them are done, and waits for
// a new leader and for every ADD. It returns the containers and the killed
// member.
func addStorm(ctx context.Context, t *testing.T, l *lab.Lab, hosts []lab.Host) ([]lab.Container, int) {
	t.Helper()
	lead, err := l.EtcdLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var jobs []addResult
	for j := range stormPerHost {
		for _, h := range hosts {
			jobs = append(jobs, addResult{host: h.Name, opts: lab.ContainerOpts{
				Name:      fmt.Sprintf("storm-%s-%d", strings.TrimPrefix(h.Name, clusterLabName+"-"), j),
				Namespace: "storm",
				Labels:    map[string]string{"app": "storm"},
			}})
		}
	}
	var done atomic.Int32
	enough := make(chan struct{})
	var once sync.Once
	sem := make(chan struct{}, stormWorkers)
	var wg sync.WaitGroup
	stormStart := time.Now()
	for i := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			r := &jobs[i]
			r.start = time.Now()
			actx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			r.c, r.err = l.AddContainer(actx, r.host, r.opts)
			r.end = time.Now()
			if done.Add(1) == killAfter {
				once.Do(func() { close(enough) })
			}
		}()
	}
	<-enough
	killAt := time.Now()
	if err := l.KillEtcdMember(ctx, lead); err != nil {
		t.Fatalf("kill the etcd leader (member %d): %v", lead, err)
	}
	next, electedAt := waitNewLeader(ctx, t, l, lead)
	t.Logf("etcd leader (member %d) killed at %s, %s into the storm (began %s); member %d leads %s later",
		lead, killAt.Format("15:04:05.000"), killAt.Sub(stormStart).Round(time.Millisecond), stormStart.Format("15:04:05.000"),
		next, electedAt.Sub(killAt).Round(time.Millisecond))
	wg.Wait()

	var out []lab.Container
	var slowest time.Duration
	retried := 0
	for _, r := range jobs {
		slowest = max(slowest, r.end.Sub(r.start))
		if r.err == nil {
			out = append(out, r.c)
			continue
		}
		var cerr *types.Error
		if errors.As(r.err, &cerr) && cerr.Code == types.ErrTryAgainLater && r.start.Before(electedAt) {
			// Began while etcd had no leader: a runtime retries "try again later".
			t.Logf("ADD of %s on %s began %s before the new leader and answered code 11 after %s; retrying once: %v",
				r.opts.Name, r.host, electedAt.Sub(r.start).Round(time.Millisecond), r.end.Sub(r.start).Round(time.Millisecond), r.err)
			retried++
			opts := r.opts
			opts.Name += "-retry"
			c, err := l.AddContainer(ctx, r.host, opts)
			if err != nil {
				t.Errorf("retried ADD of %s on %s failed after the new leader was up: %v", opts.Name, r.host, err)
				continue
			}
			out = append(out, c)
			continue
		}
		t.Errorf("ADD of %s on %s (began %s after the kill, ended %s after the new leader) failed: %v",
			r.opts.Name, r.host, r.start.Sub(killAt).Round(time.Millisecond), r.end.Sub(electedAt).Round(time.Millisecond), r.err)
	}
	t.Logf("ADD storm: %d containers on %d hosts, %d in flight at once, %s in all, slowest ADD %s, %d retried",
		len(jobs), len(hosts), stormWorkers, time.Since(stormStart).Round(time.Millisecond), slowest.Round(time.Millisecond), retried)
	return out, lead
}

// waitNewLeader waits until a member other than old leads and returns it
// and when it was seen.
func waitNewLeader(ctx context.Context, t *testing.T, l *lab.Lab, old int) (int, time.Time) {
	t.Helper()
	var next int
	waitFor(ctx, t, 30*time.Second, "a new etcd leader", func() (bool, string) {
		n, err := l.EtcdLeader(ctx)
		if err != nil {
			return false, err.Error()
		}
		next = n
		return n != old, fmt.Sprintf("member %d leads", n)
	})
	return next, time.Now()
}

// stormPolicy lets storm pods accept ingress from storm pods only.
const stormPolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: storm-only, namespace: storm}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector: {}
`

// applyDuringKill kills the etcd leader and at once runs `skein policy
// apply` with the lab's TLS environment. The apply begins before the new
// leader is up, so, as an ADD in flight, it may fail once (a request that a
// follower forwarded to the dead leader times out); then it is run again
// and must succeed. It returns the killed member.
func applyDuringKill(ctx context.Context, t *testing.T, l *lab.Lab, env []string) int {
	t.Helper()
	f := filepath.Join(t.TempDir(), "storm-only.yaml")
	if err := os.WriteFile(f, []byte(stormPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	lead, err := l.EtcdLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	killAt := time.Now()
	if err := l.KillEtcdMember(ctx, lead); err != nil {
		t.Fatalf("kill the etcd leader (member %d): %v", lead, err)
	}
	r := skeinEnv(ctx, t, env, "policy", "apply", "-f", f)
	took := time.Since(killAt)
	next, electedAt := waitNewLeader(ctx, t, l, lead)
	t.Logf("etcd leader (member %d) killed during policy apply (%s, exit %d); member %d leads %s after the kill",
		lead, took.Round(time.Millisecond), r.code, next, electedAt.Sub(killAt).Round(time.Millisecond))
	if r.code != 0 {
		t.Logf("policy apply begun during the election failed; running it again: %s", strings.TrimSpace(r.stderr))
		if r = skeinEnv(ctx, t, env, "policy", "apply", "-f", f); r.code != 0 {
			t.Fatalf("policy apply failed after the new leader was up:\n%s", r)
		}
	}
	return lead
}

// skeinEnv runs the skein CLI in the root namespace with env.
func skeinEnv(ctx context.Context, t *testing.T, env []string, args ...string) opsResult {
	t.Helper()
	cmd := exec.CommandContext(ctx, opsBin(), args...)
	cmd.Env = env
	return runCmd(t, cmd)
}

// waitBlocked waits until from no longer reaches to, and checks it stays so.
func waitBlocked(ctx context.Context, t *testing.T, l *lab.Lab, from, to lab.Container) {
	t.Helper()
	reaches := func() bool {
		pctx, cancel := context.WithTimeout(ctx, 600*time.Millisecond)
		defer cancel()
		return l.Ping(pctx, from.Name, to.IP) == nil
	}
	waitFor(ctx, t, 20*time.Second, fmt.Sprintf("policy enforced: %s -> %s (%s) blocked", from.Name, to.Name, to.IP), func() (bool, string) {
		return !reaches(), "still reachable"
	})
	if reaches() {
		t.Errorf("%s -> %s (%s): blocked once, then reachable again", from.Name, to.Name, to.IP)
	}
}

// checkReachable pings every container in cs from src.
func checkReachable(ctx context.Context, t *testing.T, l *lab.Lab, src lab.Container, cs []lab.Container) {
	t.Helper()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := l.Ping(pctx, src.Name, c.IP); err != nil {
				t.Errorf("ping %s -> %s (%s): %v", src.Name, c.Name, c.IP, err)
			}
		})
	}
	wg.Wait()
}

// checkNoDuplicates fails when two endpoints in etcd share an address or a
// lab container's address is not its endpoint's.
func checkNoDuplicates(ctx context.Context, t *testing.T, l *lab.Lab, sc *store.Client) {
	t.Helper()
	eps, err := sc.ListEndpoints(ctx)
	if err != nil {
		t.Fatalf("list endpoints: %v", err)
	}
	owners := map[netip.Addr][]string{}
	byID := map[string]netip.Addr{}
	for _, ep := range eps {
		for _, ip := range ep.IPs {
			owners[ip] = append(owners[ip], ep.Node+"/"+ep.ContainerID)
		}
		if len(ep.IPs) > 0 {
			byID[ep.ContainerID] = ep.IPs[0]
		}
	}
	for ip, who := range owners {
		if len(who) > 1 {
			t.Errorf("address %s held by %d endpoints: %s", ip, len(who), strings.Join(who, ", "))
		}
	}
	cs := l.Containers()
	for _, c := range cs {
		if byID[c.ContainerID] != c.IP {
			t.Errorf("container %s has %s, its endpoint in etcd %v", c.Name, c.IP, byID[c.ContainerID])
		}
	}
	if len(eps) != len(cs) {
		t.Errorf("etcd holds %d endpoints, the lab has %d containers", len(eps), len(cs))
	}
}

// staleChecks: with one member down and host 3's agent cut off from etcd,
// containers on the other hosts and the policy are deleted, a container is
// added and the history compacted. Once the agent is back its watch
// resyncs, and every agent's view and nftables match etcd; the restarted
// member serves the same keys as the cluster.
func staleChecks(ctx context.Context, t *testing.T, l *lab.Lab, sc *store.Client, env []string, src lab.Container, storm []lab.Container) {
	t.Helper()
	hosts := l.Hosts()
	cut := hosts[2]
	lead, err := l.EtcdLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	down := lead%3 + 1 // a follower
	if err := l.KillEtcdMember(ctx, down); err != nil {
		t.Fatal(err)
	}
	before := resyncs(ctx, t, l, cut.Name)
	unblock := cutFromEtcd(ctx, t, l, cut.Name)

	// Deletions the cut-off agent and the stopped member miss.
	var gone []lab.Container
	perHost := map[string]int{}
	for _, c := range storm {
		if c.Host != cut.Name && perHost[c.Host] < 2 {
			perHost[c.Host]++
			gone = append(gone, c)
		}
	}
	for _, c := range gone {
		if err := l.DelContainer(ctx, c.Name); err != nil {
			t.Fatalf("delete %s: %v", c.Name, err)
		}
	}
	if r := skeinEnv(ctx, t, env, "policy", "delete", "NetworkPolicy", "storm/storm-only"); r.code != 0 {
		t.Fatalf("policy delete:\n%s", r)
	}
	added, err := l.AddContainer(ctx, hosts[0].Name, lab.ContainerOpts{Name: "after-cut", Namespace: "storm", Labels: map[string]string{"app": "storm"}})
	if err != nil {
		t.Fatalf("add a container while %s is cut off: %v", cut.Name, err)
	}
	resp, err := sc.Etcd().Get(ctx, sc.Prefix()+"cluster")
	if err != nil {
		t.Fatal(err)
	}
	rev := resp.Header.Revision
	if _, err := sc.Etcd().Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact at %d: %v", rev, err)
	}
	t.Logf("member %d down, %s cut off: %d containers and the policy deleted, %s added, history compacted at rev %d",
		down, cut.Name, len(gone), added.Name, rev)

	unblock()
	if err := l.StartEtcdMember(ctx, down); err != nil {
		t.Fatalf("restart member %d: %v", down, err)
	}
	waitFor(ctx, t, 90*time.Second, cut.Name+"'s watch resynced", func() (bool, string) {
		n := resyncs(ctx, t, l, cut.Name)
		return n > before, fmt.Sprintf("skein_watch_resyncs %v, was %v", n, before)
	})
	// The watch resumed from a revision the compaction removed, and
	// store.Watch reloaded instead of following on.
	if log, err := os.ReadFile(cut.LogPath); err != nil || !strings.Contains(string(log), "watch compacted") {
		t.Errorf("%s resynced but never logged a compacted watch (%v): the compaction path went untested", cut.Name, err)
	}

	// Every agent's view matches etcd.
	for _, h := range hosts {
		waitFor(ctx, t, 30*time.Second, h.Name+"'s view matches etcd", func() (bool, string) {
			return viewMatches(ctx, t, l, sc, h.Name)
		})
	}
	// The deleted policy no longer isolates the cut-off host's storm pod.
	for _, c := range storm {
		if c.Host == cut.Name {
			waitFor(ctx, t, 30*time.Second, fmt.Sprintf("%s reaches %s (%s) once the policy is deleted", src.Name, c.Name, c.IP), func() (bool, string) {
				pctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				err := l.Ping(pctx, src.Name, c.IP)
				return err == nil, fmt.Sprint(err)
			})
			break
		}
	}
	// No deleted address is left in any host's ruleset.
	for _, h := range hosts {
		out, err := l.Exec(ctx, h.Name, "nft", "list", "table", "inet", "skein")
		if err != nil {
			t.Fatalf("nft on %s: %v\n%s", h.Name, err, out)
		}
		for _, c := range gone {
			if regexp.MustCompile(`(^|[^0-9.])` + regexp.QuoteMeta(c.IP.String()) + `([^0-9]|$)`).Match(out) {
				t.Errorf("%s's ruleset still names %s of deleted container %s", h.Name, c.IP, c.Name)
			}
		}
	}
	// The restarted member serves what the cluster holds.
	m := l.State().Etcd[down-1]
	one := l.StoreConfig()
	one.Endpoints = []string{m.AdminURL}
	mc, err := store.New(ctx, one)
	if err != nil {
		t.Fatalf("connect to restarted member %s: %v", m.Name, err)
	}
	defer mc.Close()
	for _, kind := range []string{"endpoints/", "policies/", "nodes/", "blocks/"} {
		waitFor(ctx, t, 30*time.Second, m.Name+" serves the cluster's "+kind, func() (bool, string) {
			want, err := keys(ctx, sc, kind)
			if err != nil {
				return false, err.Error()
			}
			got, err := keys(ctx, mc, kind, clientv3.WithSerializable())
			if err != nil {
				return false, err.Error()
			}
			return slices.Equal(want, got), fmt.Sprintf("member has %v, cluster %v", got, want)
		})
	}
}

// keys lists the keys under prefix kind.
func keys(ctx context.Context, c *store.Client, kind string, opts ...clientv3.OpOption) ([]string, error) {
	opts = append(opts, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	resp, err := c.Etcd().Get(ctx, c.Prefix()+kind, opts...)
	if err != nil {
		return nil, err
	}
	var ks []string
	for _, kv := range resp.Kvs {
		ks = append(ks, string(kv.Key))
	}
	return ks, nil
}

// cutFromEtcd rejects every packet from host to the etcd members' client
// ports (with a TCP reset, so the agent notices at once) and resets the
// connections it has, until the returned func is called (also at cleanup).
func cutFromEtcd(ctx context.Context, t *testing.T, l *lab.Lab, host string) (unblock func()) {
	t.Helper()
	const table = "skeintest_cut"
	var ports []string
	for _, m := range l.State().Etcd {
		u, err := url.Parse(m.ClientURL)
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, u.Port())
	}
	rules := fmt.Sprintf("add table inet %[1]s; add chain inet %[1]s out { type filter hook output priority 0; policy accept; }; add rule inet %[1]s out ip daddr %[2]s tcp dport { %[3]s } reject with tcp reset",
		table, lab.UnderlayGateway(0), strings.Join(ports, ", "))
	if out, err := l.Exec(ctx, host, "nft", rules); err != nil {
		t.Fatalf("cut %s off etcd: %v\n%s", host, err, out)
	}
	done := false
	unblock = func() {
		if done {
			return
		}
		done = true
		if out, err := l.Exec(context.WithoutCancel(ctx), host, "nft", "delete table inet "+table); err != nil {
			t.Errorf("reconnect %s to etcd: %v\n%s", host, err, out)
		}
	}
	t.Cleanup(unblock)
	// Established connections see the reset on their next packet; ss -K
	// (where the kernel supports it) closes them now.
	if out, err := l.Exec(ctx, host, "ss", "-K", "dst", lab.UnderlayGateway(0).String()); err != nil {
		t.Logf("ss -K in %s: %v %s", host, err, out)
	}
	return unblock
}

// agentGet fetches path from host's debug endpoint.
func agentGet(ctx context.Context, l *lab.Lab, host, path string) ([]byte, error) {
	hc, err := l.HTTPClient(host)
	if err != nil {
		return nil, err
	}
	h, err := l.Host(host)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+h.DebugAddr+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: %s", host, path, resp.Status)
	}
	return b, nil
}

// resyncs reads host's skein_watch_resyncs.
func resyncs(ctx context.Context, t *testing.T, l *lab.Lab, host string) float64 {
	t.Helper()
	b, err := agentGet(ctx, l, host, "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v", host, err)
	}
	v, ok := metricValue(string(b), "skein_watch_resyncs")
	if !ok {
		t.Fatalf("%s exports no skein_watch_resyncs", host)
	}
	return v
}

// viewMatches compares host's /debug/topology with etcd: every node's
// endpoint count, and the host's own endpoints.
func viewMatches(ctx context.Context, t *testing.T, l *lab.Lab, sc *store.Client, host string) (bool, string) {
	t.Helper()
	b, err := agentGet(ctx, l, host, "/debug/topology")
	if err != nil {
		return false, err.Error()
	}
	var topo api.Topology
	if err := json.Unmarshal(b, &topo); err != nil {
		return false, fmt.Sprintf("decode topology: %v", err)
	}
	eps, err := sc.ListEndpoints(ctx)
	if err != nil {
		return false, err.Error()
	}
	want := map[string]int{}
	var own []string
	for _, ep := range eps {
		want[ep.Node]++
		if ep.Node == host {
			own = append(own, ep.ContainerID)
		}
	}
	got := map[string]int{}
	for _, n := range topo.Nodes {
		if n.Endpoints > 0 {
			got[n.Name] = n.Endpoints
		}
	}
	var have []string
	for _, ep := range topo.Endpoints {
		have = append(have, ep.ContainerID)
	}
	sort.Strings(own)
	sort.Strings(have)
	if fmt.Sprint(want) != fmt.Sprint(got) || !slices.Equal(own, have) {
		return false, fmt.Sprintf("endpoints per node %v, etcd %v; own %v, etcd %v", got, want, have, own)
	}
	return true, ""
}

// flow pings dst from a container every 20 ms and keeps which requests
// were answered, and when.
type flow struct {
	l      *lab.Lab
	pc     net.PacketConn
	id     uint16
	src    lab.Container
	dst    netip.Addr
	cancel context.CancelFunc
	sender chan struct{}
	reader chan struct{}

	mu      sync.Mutex
	sent    map[uint16]time.Time // guarded by mu
	sendErr map[uint16]error     // guarded by mu; a request the kernel refused
	got     map[uint16]time.Time // guarded by mu; when the reply came

	stopOnce sync.Once
	nSent    int           // set by stop
	lost     []lostPing    // set by stop
	slowest  time.Duration // set by stop: the longest answered round trip
}

// lostPing is one unanswered request of a flow.
type lostPing struct {
	seq uint16
	at  time.Time
	err error // the send error, if the request never left
}

// startFlow starts pinging dst from src every 20 ms, once the path works:
// right after lab up the other host may not have this host's routes yet
// (its first replies then meet the pool's unreachable route), and the flow
// is about what events do to a working path.
func startFlow(ctx context.Context, t *testing.T, l *lab.Lab, src lab.Container, dst netip.Addr) *flow {
	t.Helper()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := l.Ping(pctx, src.Name, dst)
	cancel()
	if err != nil {
		t.Fatalf("flow %s -> %s: the path is not up before the flow starts: %v", src.Name, dst, err)
	}
	pc, err := l.ListenPacket(ctx, src.Name, "ip4:icmp", "0.0.0.0")
	if err != nil {
		t.Fatalf("flow from %s: %v", src.Name, err)
	}
	sctx, cancel := context.WithCancel(ctx)
	f := &flow{l: l, pc: pc, id: uint16(rand.Uint32()), src: src, dst: dst, cancel: cancel,
		sender: make(chan struct{}), reader: make(chan struct{}),
		sent: map[uint16]time.Time{}, sendErr: map[uint16]error{}, got: map[uint16]time.Time{}}
	go f.read()
	go f.send(sctx)
	t.Cleanup(func() { f.stop() })
	return f
}

func (f *flow) send(ctx context.Context) {
	defer close(f.sender)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	to := &net.IPAddr{IP: f.dst.AsSlice()}
	for seq := uint16(1); ; seq++ {
		f.mu.Lock()
		f.sent[seq] = time.Now()
		f.mu.Unlock()
		if _, err := f.pc.WriteTo(echo(f.id, seq), to); err != nil { // an unsent request counts as lost
			f.mu.Lock()
			f.sendErr[seq] = err
			f.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (f *flow) read() {
	defer close(f.reader)
	buf := make([]byte, 1500)
	for {
		n, from, err := f.pc.ReadFrom(buf)
		if err != nil {
			return // closed by stop
		}
		ip, ok := from.(*net.IPAddr)
		if !ok || n < 8 || buf[0] != 0 || binary.BigEndian.Uint16(buf[4:]) != f.id {
			continue
		}
		if a, _ := netip.AddrFromSlice(ip.IP); a.Unmap() != f.dst {
			continue
		}
		now := time.Now()
		f.mu.Lock()
		if seq := binary.BigEndian.Uint16(buf[6:]); f.got[seq].IsZero() {
			f.got[seq] = now
		}
		f.mu.Unlock()
	}
}

// flowGrace is how long stop waits for the replies still missing. A reply
// that comes late (a loaded machine, a neighbour being resolved) was not
// lost, and checkFlow reports the slowest round trip so a slow path shows.
const flowGrace = 3 * time.Second

// stop ends the flow, waits up to flowGrace for the replies still missing
// and returns how many requests were sent and which went unanswered.
func (f *flow) stop() (sent int, lost []lostPing) {
	f.stopOnce.Do(func() {
		f.cancel()
		<-f.sender
		for deadline := time.Now().Add(flowGrace); time.Now().Before(deadline) && f.missing() > 0; {
			time.Sleep(50 * time.Millisecond)
		}
		_ = f.pc.Close() // ends the reader
		<-f.reader
		f.mu.Lock()
		defer f.mu.Unlock()
		for seq, at := range f.sent {
			got, ok := f.got[seq]
			if !ok {
				f.lost = append(f.lost, lostPing{seq: seq, at: at, err: f.sendErr[seq]})
				continue
			}
			f.slowest = max(f.slowest, got.Sub(at))
		}
		slices.SortFunc(f.lost, func(a, b lostPing) int { return a.at.Compare(b.at) })
		f.nSent = len(f.sent)
	})
	return f.nSent, f.lost
}

// missing is how many requests have no reply yet.
func (f *flow) missing() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for seq := range f.sent {
		if _, ok := f.got[seq]; !ok {
			n++
		}
	}
	return n
}

// checkFlow stops the flow and fails on any unanswered request, naming when
// each was sent and where in the flow, with the kernel's view of the path
// from both hosts, so a loss can be placed against the test's events.
func checkFlow(t *testing.T, f *flow, during string) {
	t.Helper()
	sent, lost := f.stop()
	t.Logf("flow %s -> %s every 20 ms across %s: %d sent, %d lost, slowest reply %s",
		f.src.Name, f.dst, during, sent, len(lost), f.slowest.Round(10*time.Microsecond))
	if sent < 50 {
		t.Errorf("flow sent only %d requests across %s", sent, during)
	}
	if len(lost) == 0 {
		return
	}
	var at []string
	for _, x := range lost {
		s := fmt.Sprintf("#%d at %s", x.seq, x.at.Format("15:04:05.000"))
		if x.err != nil {
			s += fmt.Sprintf(" (not sent: %v)", x.err)
		}
		at = append(at, s)
	}
	t.Errorf("flow %s -> %s lost %d of %d pings across %s: %s", f.src.Name, f.dst, len(lost), sent, during, strings.Join(at, ", "))
	f.dumpPath(t)
}

// dumpPath logs the kernel's counters and neighbours on every host, for a
// flow that lost a request.
func (f *flow) dumpPath(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, h := range f.l.Hosts() {
		for _, args := range [][]string{
			{"ip", "-s", "-s", "link", "show"},
			{"ip", "neigh", "show"},
			{"nstat", "-asz"},
		} {
			out, err := f.l.Exec(ctx, h.Name, args...)
			t.Logf("%s: %s (err %v):\n%s", h.Name, strings.Join(args, " "), err, out)
		}
	}
}

// echo builds an ICMP echo request.
func echo(id, seq uint16) []byte {
	b := make([]byte, 8, 24)
	b[0] = 8
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	b = append(b, "skein-flow-ping."...)
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(b[2:], ^uint16(sum))
	return b
}
