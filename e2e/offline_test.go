//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
)

// agentTopology reads /debug/topology of host h's agent.
func agentTopology(ctx context.Context, t *testing.T, h lab.Host) api.Topology {
	t.Helper()
	hc, err := shared.HTTPClient(h.Name)
	if err != nil {
		t.Fatal(err)
	}
	code, body := httpGet(ctx, t, hc, "http://"+h.DebugAddr+"/debug/topology")
	if code != http.StatusOK {
		t.Fatalf("/debug/topology on %s: %d %s", h.Name, code, body)
	}
	var top api.Topology
	if err := json.Unmarshal([]byte(body), &top); err != nil {
		t.Fatalf("/debug/topology on %s: %v", h.Name, err)
	}
	return top
}

// TestOfflineStarts: with every host cut off from etcd, containers still
// start on a host with free addresses in its blocks (distinct addresses,
// local traffic works, a DEL works and its address is not reused), and once
// etcd is back the journal drains: the endpoints appear in etcd, the deleted
// one does not, other hosts reach the new containers, no address is used twice.
func TestOfflineStarts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	h := shared.Hosts()[0]
	conf := netConf(h, "skein", nil)
	var local, remote lab.Container
	for _, c := range shared.Containers() {
		switch {
		case c.Host == h.Name && !local.IP.IsValid():
			local = c
		case c.Host != h.Name && !remote.IP.IsValid():
			remote = c
		}
	}
	type ctr struct{ id, ns, ip string }
	var ctrs []*ctr
	add := func(id string) *ctr {
		t.Helper()
		c := &ctr{id: id, ns: testNetns(t, id)}
		start := time.Now()
		out, err := runPluginConf(ctx, h, conf, "ADD", c.id, c.ns)
		if err != nil {
			t.Fatalf("offline ADD: %v", err)
		}
		c.ip = addResultIP(t, out)
		t.Logf("offline ADD %s: %s in %s", id, c.ip, time.Since(start).Round(time.Millisecond))
		t.Cleanup(func() {
			dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer dcancel()
			_, _ = runPluginConf(dctx, h, conf, "DEL", c.id, c.ns) // best effort: DEL is idempotent
		})
		ctrs = append(ctrs, c)
		return c
	}

	unblock := blockEtcd(ctx, t, shared)
	a, b, gone := add("offline-a"), add("offline-b"), add("offline-gone")
	seen := map[string]string{}
	for _, c := range []*ctr{a, b, gone} {
		if other, dup := seen[c.ip]; dup {
			t.Fatalf("offline containers %s and %s share %s", other, c.id, c.ip)
		}
		seen[c.ip] = c.id
		if out, err := exec.CommandContext(ctx, "ip", "netns", "exec", filepath.Base(c.ns), "ping", "-c1", "-W2", local.IP.String()).CombinedOutput(); err != nil {
			t.Errorf("offline container %s (%s) -> local %s: %v\n%s", c.id, c.ip, local.IP, err, out)
		}
	}
	if _, err := runPluginConf(ctx, h, conf, "DEL", gone.id, gone.ns); err != nil {
		t.Fatalf("offline DEL: %v", err)
	}
	// The deleted container's record may still be in etcd (it never got
	// there here, but the agent cannot know): its address stays held.
	c := add("offline-c")
	if c.ip == gone.ip {
		t.Errorf("address %s of a container deleted offline reused before its unpublish landed", gone.ip)
	}
	top := agentTopology(ctx, t, h)
	if top.Offline == nil || top.Offline.Etcd.Reachable || top.Offline.Unpublished != 5 {
		t.Errorf("/debug/topology offline = %+v, want etcd unreachable and 5 unpublished changes", top.Offline)
	}

	unblock()
	back := time.Now()
	waitFor(ctx, t, time.Minute, "journal drained", func() (bool, string) {
		top := agentTopology(ctx, t, h)
		o := top.Offline
		return o != nil && o.Etcd.Reachable && o.Unpublished == 0, fmt.Sprintf("%+v", o)
	})
	t.Logf("journal drained %s after etcd came back", time.Since(back).Round(time.Millisecond))
	eps := localEndpoints(ctx, t, h.Name)
	for _, c := range []*ctr{a, b, c} {
		ep, ok := eps[c.id]
		if !ok || len(ep.IPs) != 1 || ep.IPs[0].String() != c.ip {
			t.Errorf("after the drain, %s's endpoint = %+v (present %t), want %s", c.id, ep, ok, c.ip)
		}
	}
	if ep, ok := eps[gone.id]; ok {
		t.Errorf("the container deleted offline is published: %+v", ep)
	}
	// Other hosts learn the routes from the block, not the endpoint, but
	// with the endpoint published their policy knows it too.
	for _, c := range []*ctr{a, b, c} {
		waitFor(ctx, t, 30*time.Second, "remote reaches "+c.id, func() (bool, string) {
			err := shared.Ping(ctx, remote.Name, netip.MustParseAddr(c.ip))
			return err == nil, fmt.Sprint(err)
		})
	}
	// No address twice in the whole cluster.
	r := opsSkein(ctx, t, "endpoint", "list", "-o", "json")
	var all []struct {
		Node        string       `json:"node"`
		ContainerID string       `json:"containerID"`
		IPs         []netip.Addr `json:"ips"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &all); err != nil {
		t.Fatalf("skein endpoint list: %v\n%s", err, r)
	}
	owner := map[netip.Addr]string{}
	for _, ep := range all {
		for _, ip := range ep.IPs {
			if o, dup := owner[ip]; dup {
				t.Errorf("address %s published twice: %s and %s/%s", ip, o, ep.Node, ep.ContainerID)
			}
			owner[ip] = ep.Node + "/" + ep.ContainerID
		}
	}
}
