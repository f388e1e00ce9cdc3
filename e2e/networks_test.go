//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
)

// netConf is a conflist-equivalent network config for network name on h;
// valid, when not nil, is GC's cni.dev/valid-attachments.
func netConf(h lab.Host, name string, valid []api.Owner) string {
	conf := map[string]any{"cniVersion": "1.1.0", "name": name, "type": "skein-cni", "socket": h.Socket}
	if valid != nil {
		atts := []map[string]string{}
		for _, o := range valid {
			atts = append(atts, map[string]string{"containerID": o.ContainerID, "ifname": o.IfName})
		}
		conf["cni.dev/valid-attachments"] = atts
	}
	b, _ := json.Marshal(conf)
	return string(b)
}

// runPluginConf execs skein-cni in host h with conf on stdin, as a runtime
// with that network's config would.
func runPluginConf(ctx context.Context, h lab.Host, conf, command, containerID, netns string) (string, error) {
	cmd, err := shared.Command(ctx, h.Name, "env", "CNI_COMMAND="+command, "CNI_CONTAINERID="+containerID,
		"CNI_NETNS="+netns, "CNI_IFNAME=eth0", "CNI_PATH="+shared.State().BinDir, filepath.Join(shared.State().BinDir, "skein-cni"))
	if err != nil {
		return "", err
	}
	cmd.Stdin = strings.NewReader(conf)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s%s", command, containerID, err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// addResultIP returns the address of a CNI ADD result.
func addResultIP(t *testing.T, out string) string {
	t.Helper()
	var res struct {
		IPs []struct {
			Address string `json:"address"`
		} `json:"ips"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.IPs) != 1 {
		t.Fatalf("ADD output is not a one-address CNI result (%v):\n%s", err, out)
	}
	return strings.TrimSuffix(res.IPs[0].Address, "/32")
}

// localEndpoints lists the endpoint records of host in etcd, by container id.
func localEndpoints(ctx context.Context, t *testing.T, host string) map[string]api.Endpoint {
	t.Helper()
	r := opsSkein(ctx, t, "endpoint", "list", "-o", "json")
	if r.code != 0 {
		t.Fatalf("skein endpoint list: %s", r)
	}
	var eps []api.Endpoint
	if err := json.Unmarshal([]byte(r.stdout), &eps); err != nil {
		t.Fatalf("skein endpoint list -o json: %v\n%s", err, r.stdout)
	}
	out := map[string]api.Endpoint{}
	for _, ep := range eps {
		if ep.Node == host {
			out[ep.ContainerID] = ep
		}
	}
	return out
}

// hostHasLink reports whether the host veth of container id exists on h.
func hostHasLink(ctx context.Context, t *testing.T, h lab.Host, id string) bool {
	t.Helper()
	name := api.HostIfaceName(api.Owner{ContainerID: id, IfName: "eth0"})
	out, err := shared.Exec(ctx, h.Name, "ip", "-o", "link", "show")
	if err != nil {
		t.Fatalf("ip link show on %s: %v", h.Name, err)
	}
	return strings.Contains(string(out), " "+name+"@") || strings.Contains(string(out), " "+name+":")
}

// TestNetworksGCScoped: two CNI networks (two runtimes' configs) on one
// agent; a GC of one network, listing only its own valid attachment, frees
// its own stale attachment and leaves the other network's container
// working: address, endpoint record, host veth and traffic.
func TestNetworksGCScoped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	h := shared.Hosts()[0]
	confA, confB := netConf(h, "neta", nil), netConf(h, "netb", nil)
	type ctr struct{ id, conf, ns, ip string }
	ctrs := []*ctr{
		{id: "neta-keep", conf: confA}, {id: "neta-stale", conf: confA},
		{id: "netb-live", conf: confB},
	}
	for _, c := range ctrs {
		c.ns = testNetns(t, c.id)
		out, err := runPluginConf(ctx, h, c.conf, "ADD", c.id, c.ns)
		if err != nil {
			t.Fatal(err)
		}
		c.ip = addResultIP(t, out)
		t.Cleanup(func() {
			dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer dcancel()
			_, _ = runPluginConf(dctx, h, c.conf, "DEL", c.id, c.ns) // best effort: the test's own DELs ran or failed already
		})
	}
	keep, stale, live := ctrs[0], ctrs[1], ctrs[2]
	if eps := localEndpoints(ctx, t, h.Name); eps[live.id].Network != "netb" || eps[keep.id].Network != "neta" {
		t.Errorf("endpoint records do not carry their networks: %+v / %+v", eps[live.id], eps[keep.id])
	}

	// A DEL of netb naming neta's container frees nothing of neta's.
	if _, err := runPluginConf(ctx, h, confB, "DEL", keep.id, keep.ns); err != nil {
		t.Errorf("DEL from netb of neta's attachment: %v", err)
	}
	if !hostHasLink(ctx, t, h, keep.id) {
		t.Errorf("DEL from netb removed neta's veth of %s", keep.id)
	}

	gc := netConf(h, "neta", []api.Owner{{ContainerID: keep.id, IfName: "eth0"}})
	if out, err := runPluginConf(ctx, h, gc, "GC", "", ""); err != nil {
		t.Fatalf("GC of neta: %v\n%s", err, out)
	}

	eps := localEndpoints(ctx, t, h.Name)
	if _, ok := eps[stale.id]; ok {
		t.Errorf("GC of neta left its stale endpoint %s published", stale.id)
	}
	if hostHasLink(ctx, t, h, stale.id) {
		t.Errorf("GC of neta left the stale veth of %s", stale.id)
	}
	for _, c := range []*ctr{keep, live} {
		ep, ok := eps[c.id]
		if !ok || len(ep.IPs) != 1 || ep.IPs[0].String() != c.ip {
			t.Errorf("after GC of neta, %s's endpoint record = %+v (present %t), want it with %s", c.id, ep, ok, c.ip)
		}
		if !hostHasLink(ctx, t, h, c.id) {
			t.Errorf("after GC of neta, the veth of %s is gone", c.id)
		}
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", filepath.Base(c.ns), "ip", "-4", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
		if err != nil || !strings.Contains(string(out), c.ip+"/32") {
			t.Errorf("after GC of neta, %s lost its address %s: %v %s", c.id, c.ip, err, out)
		}
		// Traffic to a lab container on another host still flows.
		for _, lc := range shared.Containers() {
			if lc.Host != h.Name {
				if out, err := exec.CommandContext(ctx, "ip", "netns", "exec", filepath.Base(c.ns), "ping", "-c1", "-W2", lc.IP.String()).CombinedOutput(); err != nil {
					t.Errorf("after GC of neta, %s (%s) -> %s: %v\n%s", c.id, c.ip, lc.IP, err, out)
				}
				break
			}
		}
	}
}
