//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
	"github.com/skeinnet/skein/store"
)

// TestNodeJoin: a fourth host joins; its container becomes reachable from
// every other container and reaches them.
func TestNodeJoin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	h, err := shared.AddHost(ctx)
	if err != nil {
		t.Fatalf("add host: %v", err)
	}
	c, err := shared.AddContainer(ctx, h.Name, lab.ContainerOpts{Name: "joiner"})
	if err != nil {
		t.Fatalf("add container on %s: %v", h.Name, err)
	}
	for _, other := range shared.Containers() {
		if other.Name == c.Name {
			continue
		}
		// Generous: the bench measures how fast; here we only need it to happen.
		pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
		if err := shared.Ping(pctx, other.Name, c.IP); err != nil {
			t.Errorf("ping %s -> joiner %s: %v", other.Name, c.IP, err)
		}
		if err := shared.Ping(pctx, c.Name, other.IP); err != nil {
			t.Errorf("ping joiner -> %s %s: %v", other.Name, other.IP, err)
		}
		pcancel()
	}
}

// TestAgentRestartKeepsTraffic: pings every 20 ms across hosts lose nothing
// while the agents on both ends restart, and every address is kept.
func TestAgentRestartKeepsTraffic(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	src, dst := pickCrossHost(t, shared)
	before := endpointIPs(ctx, t)

	pingAcrossRestarts(ctx, t, shared, src, dst.IP, 400, 500*time.Millisecond, dst.Host, src.Host) // 8 s at 20 ms
	after := endpointIPs(ctx, t)
	for k, ip := range before {
		if after[k] != ip {
			t.Errorf("endpoint %s: address %s before restart, %q after", k, ip, after[k])
		}
	}
}

// TestDelFreesAddress: CNI DEL removes the host veth and route, unpublishes
// the endpoint and frees the address in the agent.
func TestDelFreesAddress(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h := shared.Hosts()[0]
	c, err := shared.AddContainer(ctx, h.Name, lab.ContainerOpts{Name: "doomed"})
	if err != nil {
		t.Fatalf("add container: %v", err)
	}
	owner := api.Owner{ContainerID: c.ContainerID, IfName: c.IfName}
	veth := api.HostIfaceName(owner)
	if out, err := shared.Exec(ctx, h.Name, "ip", "link", "show", veth); err != nil {
		t.Fatalf("host veth %s missing after ADD: %v\n%s", veth, err, out)
	}
	if err := shared.DelContainer(ctx, c.Name); err != nil {
		t.Fatalf("del container: %v", err)
	}
	if out, err := shared.Exec(ctx, h.Name, "ip", "link", "show", veth); err == nil {
		t.Errorf("host veth %s still present after DEL:\n%s", veth, out)
	}
	if out, _ := shared.Exec(ctx, h.Name, "ip", "route", "show", c.IP.String()+"/32"); strings.TrimSpace(string(out)) != "" {
		t.Errorf("route to %s still present after DEL: %s", c.IP, out)
	}
	if _, ok := endpointIPs(ctx, t)[owner.String()]; ok {
		t.Errorf("endpoint %s still published after DEL", owner)
	}
	var ae api.AgentError
	code := agentCall(ctx, t, h, api.PathCheck, api.ReleaseRequest{Network: "skein", Owner: owner}, &ae)
	if code != http.StatusNotFound {
		t.Errorf("agent check of deleted owner: status %d (%+v), want 404: the address is still held", code, ae)
	}
}

// TestEtcdViewMatchesLab: the store holds a node per host with its block, and
// an endpoint per container with the address the container really has.
func TestEtcdViewMatchesLab(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := storeClient(ctx, t)
	names := nodeRecords(ctx, t, cl)
	blocks, err := cl.ListBlocks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range shared.Hosts() {
		n, ok := names[h.Name]
		if !ok {
			t.Errorf("host %s has no node record", h.Name)
			continue
		}
		if n.UnderlayIP != h.UnderlayIP {
			t.Errorf("node %s underlay %s, want %s", h.Name, n.UnderlayIP, h.UnderlayIP)
		}
		owned := 0
		for _, b := range blocks {
			if b.Node == h.Name && b.CIDR.Contains(n.VTEPIP) {
				owned++
			}
		}
		if owned != 1 {
			t.Errorf("node %s: VTEP %s is in %d of its blocks, want 1", h.Name, n.VTEPIP, owned)
		}
	}
	eps := endpointIPs(ctx, t)
	for _, c := range shared.Containers() {
		k := api.Owner{ContainerID: c.ContainerID, IfName: c.IfName}.String()
		if eps[k] != c.IP.String() {
			t.Errorf("container %s: endpoint address %q, container has %s", c.Name, eps[k], c.IP)
		}
		out, err := shared.Exec(ctx, c.Name, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
		if err != nil || !strings.Contains(string(out), c.IP.String()+"/32") {
			t.Errorf("container %s eth0 lacks %s/32: %v %s", c.Name, c.IP, err, out)
		}
	}
}

func pickCrossHost(t *testing.T, l *lab.Lab) (src, dst lab.Container) {
	t.Helper()
	cs := l.Containers()
	for _, a := range cs {
		for _, b := range cs {
			if a.Host != b.Host {
				return a, b
			}
		}
	}
	t.Fatal("no two containers on different hosts")
	return
}

// pingAcrossRestarts pings dst from src every 20 ms, count times, and
// after lead restarts the agents of hosts one after the other; any request
// lost or unanswered within a second fails the test.
func pingAcrossRestarts(ctx context.Context, t *testing.T, l *lab.Lab, src lab.Container, dst netip.Addr, count int, lead time.Duration, hosts ...string) {
	t.Helper()
	args := []string{"ping", "-i", "0.02", "-c", itoa(count), "-W", "1", dst.String()}
	if dst.Is6() {
		args = []string{"ping", "-6", "-i", "0.02", "-c", itoa(count), "-W", "1", dst.String()}
	}
	cmd, err := l.Command(ctx, src.Name, args...)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ping: %v", err)
	}
	time.Sleep(lead) // the stream runs before the first restart
	for _, h := range hosts {
		if err := l.RestartAgent(ctx, h); err != nil {
			t.Errorf("restart agent on %s: %v", h, err)
		}
	}
	err = cmd.Wait()
	tx, rx := parsePing(out.String())
	t.Logf("ping %s -> %s every 20 ms across agent restarts on %s: %d sent, %d received", src.Name, dst, strings.Join(hosts, ", "), tx, rx)
	if err != nil || tx != count || rx != tx {
		t.Errorf("lost pings across agent restarts on %s: sent %d, received %d (err %v)\n%s", strings.Join(hosts, ", "), tx, rx, err, out.String())
	}
}

var pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

func parsePing(out string) (tx, rx int) {
	m := pingSummary.FindStringSubmatch(out)
	if m == nil {
		return 0, 0
	}
	_, _ = fmt.Sscan(m[1], &tx) // digits: the pattern matched them
	_, _ = fmt.Sscan(m[2], &rx)
	return tx, rx
}

func storeClient(ctx context.Context, t *testing.T) *store.Client {
	t.Helper()
	cl, err := store.New(ctx, store.Config{Endpoints: shared.EtcdEndpoints()})
	if err != nil {
		t.Fatalf("connect to lab etcd: %v", err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// endpointIPs maps "container/ifname" to its first address, from etcd.
func endpointIPs(ctx context.Context, t *testing.T) map[string]string {
	t.Helper()
	eps, err := storeClient(ctx, t).ListEndpoints(ctx)
	if err != nil {
		t.Fatalf("list endpoints: %v", err)
	}
	out := map[string]string{}
	for _, ep := range eps {
		if len(ep.IPs) > 0 {
			out[api.Owner{ContainerID: ep.ContainerID, IfName: ep.IfName}.String()] = ep.IPs[0].String()
		}
	}
	return out
}

// agentCall POSTs req to a host agent's socket and decodes the reply into resp.
func agentCall(ctx context.Context, t *testing.T, h lab.Host, path string, req, resp any) int {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", h.Socket)
	}}}
	body, _ := json.Marshal(req)
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://skeind"+path, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	res, err := hc.Do(r)
	if err != nil {
		t.Fatalf("agent %s %s: %v", h.Name, path, err)
	}
	defer res.Body.Close()
	_ = json.NewDecoder(res.Body).Decode(resp) // errors show as the zero value in the caller's message
	return res.StatusCode
}

var _ = netip.Addr{}
