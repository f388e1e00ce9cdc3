//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
	"github.com/skeinnet/skein/store"
)

// dualPods are the pools of the dual-stack BGP labs.
const dualPods = "10.244.0.0/16,fd00:10:244::/56"

// TestBGPIPv6 (issue 14): dual-stack pods with backend bgp on a dual-stack
// underlay. The sessions stay IPv4 and carry IPv6 unicast too (MP-BGP): a
// node mesh, then BIRD and FRR route reflectors with the hosts on two
// subnets. In each lab every host routes every other host's IPv6 blocks
// via the right IPv6 next hop, every container reaches every other over
// IPv4 and IPv6, `skein bgp status` counts the IPv6 prefixes of every
// session, and (mesh and BIRD) an agent restart loses no ping of either
// family.
func TestBGPIPv6(t *testing.T) {
	t.Run("mesh", func(t *testing.T) {
		// Same subnet, no reflector: next hop = the owner's UnderlayIP6.
		l := testBGP6(t, lab.Config{Name: labName + "b6", Backend: string(api.BackendBGP), Underlay: lab.UnderlayDual,
			PodCIDR: dualPods, Hosts: 3, ContainersPerHost: 1}, true)
		checkNoUnderlayIP6(t, l)
	})
	t.Run("bird", func(t *testing.T) {
		testBGP6(t, lab.Config{Name: labName + "b6b", Backend: string(api.BackendBGP), Underlay: lab.UnderlayDual, ToR: lab.ToRBIRD,
			Subnets: 2, PodCIDR: dualPods, Hosts: 3, ContainersPerHost: 1}, true)
	})
	t.Run("frr", func(t *testing.T) {
		testBGP6(t, lab.Config{Name: labName + "b6", Backend: string(api.BackendBGP), Underlay: lab.UnderlayDual, ToR: lab.ToRFRR,
			Subnets: 2, PodCIDR: dualPods, Hosts: 3, ContainersPerHost: 1}, false)
	})
}

func testBGP6(t *testing.T, cfg lab.Config, restart bool) *lab.Lab {
	l := upBGPLab(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := labStore(ctx, t, l)
	hosts := l.Hosts()
	for _, h := range hosts {
		if !h.UnderlayIP6.IsValid() {
			t.Fatalf("host %s has no IPv6 underlay address on a dual underlay", h.Name)
		}
	}

	// The IPv6 next hop each host should use for another host's blocks:
	// with a reflector, the ToR's IPv6 address on the host's own subnet
	// (next hop self, as for IPv4: a host on another subnet is not
	// on-link); in the mesh, the owner's IPv6 underlay address.
	gw4 := func(_, owner lab.Host) string { return owner.UnderlayIP.String() }
	gw6 := func(_, owner lab.Host) string { return owner.UnderlayIP6.String() }
	if cfg.ToR != "" {
		gw4 = func(self, _ lab.Host) string { return lab.UnderlayGateway(self.Subnet).String() }
		gw6 = func(self, _ lab.Host) string { return lab.ToRAddr6(self.Subnet).String() }
		waitFor(ctx, t, bgpSettle, cfg.ToR+" sessions established", func() (bool, string) {
			ss, err := l.ToRSessions(ctx)
			if err != nil {
				return false, err.Error()
			}
			up := 0
			for _, s := range ss {
				if s.Established {
					up++
				}
			}
			return up == len(hosts) && len(ss) == len(hosts), fmt.Sprintf("%+v", ss)
		})
	}
	waitRoutesFamily(ctx, t, l, cl, "-4", gw4)
	waitRoutesFamily(ctx, t, l, cl, "-6", gw6)

	if cfg.ToR != "" {
		// The reflector's own table and kernel have every IPv6 block, so
		// it forwards IPv6 between the subnets.
		waitToRBlocks(ctx, t, l, cl, cfg.ToR, true)
	}

	checkRoutedMTU(ctx, t, l)
	checkAllPairsFamilies(ctx, t, l, l.Containers())
	checkBGPStatus6(ctx, t, l, cl)
	if restart {
		checkRestart6(ctx, t, l, cl, gw6)
	}
	return l
}

// checkNoUnderlayIP6 fails closed: a host whose underlay loses its IPv6
// address (agent restarted without one) stops advertising its IPv6 blocks
// and installs no IPv6 route, the others drop their routes to it, its IPv4
// side keeps working, and `skein status` and `skein bgp status` name the
// missing UnderlayIP6.
func checkNoUnderlayIP6(t *testing.T, l *lab.Lab) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := labStore(ctx, t, l)
	hosts := l.Hosts()
	gone := hosts[2]
	if out, err := l.Exec(ctx, gone.Name, "ip", "-6", "addr", "flush", "dev", "eth0", "scope", "global"); err != nil {
		t.Fatalf("flush %s's IPv6 underlay address: %v: %s", gone.Name, err, out)
	}
	if err := l.RestartAgent(ctx, gone.Name); err != nil {
		t.Fatalf("restart agent on %s: %v", gone.Name, err)
	}
	blocks, err := blocksByNode(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	// Past the graceful-restart hold: the restarted speaker reconnects
	// after 6 s and its End-of-RIB ends the stale IPv6 routes everywhere.
	waitFor(ctx, t, 30*time.Second, "no IPv6 route to or from "+gone.Name, func() (bool, string) {
		var bad []string
		for _, h := range hosts {
			rs, err := hostSkeinRoutesFamily(ctx, l, h.Name, "-6")
			if err != nil {
				return false, err.Error()
			}
			for dst, r := range rs {
				if h.Name == gone.Name {
					bad = append(bad, fmt.Sprintf("%s still routes %s via %s", h.Name, dst, r.Gateway))
				}
			}
			if h.Name == gone.Name {
				continue
			}
			for _, b := range blocks[gone.Name] {
				if r, ok := rs[b.String()]; ok && b.Addr().Is6() {
					bad = append(bad, fmt.Sprintf("%s still routes %s's %s via %s", h.Name, gone.Name, b, r.Gateway))
				}
			}
		}
		return len(bad) == 0, strings.Join(bad, "\n")
	})
	// The IPv4 side is untouched: every host still routes every other's
	// IPv4 blocks via its IPv4 underlay address.
	waitRoutesFamily(ctx, t, l, cl, "-4", func(_, owner lab.Host) string { return owner.UnderlayIP.String() })
	cs := l.Containers()
	if err := l.Ping(ctx, cs[0].Name, cs[2].IP); err != nil {
		t.Errorf("IPv4 ping %s -> %s after %s lost its IPv6 underlay: %v", cs[0].Name, cs[2].Name, gone.Name, err)
	}

	waitUnhealthyNaming(ctx, t, l, gone.Name, "UnderlayIP6")
}

// waitUnhealthyNaming waits until `skein status` and `skein bgp status`
// both report the cluster unhealthy (JSON and exit code) with a problem of
// node that names every one of parts.
func waitUnhealthyNaming(ctx context.Context, t *testing.T, l *lab.Lab, node string, parts ...string) {
	t.Helper()
	env := append(os.Environ(), "SKEIN_ETCD_ENDPOINTS="+strings.Join(l.EtcdEndpoints(), ","))
	waitFor(ctx, t, bgpSettle, "skein status and skein bgp status name "+strings.Join(parts, " and ")+" for "+node, func() (bool, string) {
		var bad []string
		for _, args := range [][]string{{"status", "-o", "json"}, {"bgp", "status", "-o", "json"}} {
			cmd := exec.CommandContext(ctx, opsBin(), args...)
			cmd.Env = env
			out, err := cmd.Output()
			var rep struct {
				Healthy bool `json:"healthy"`
				Nodes   []struct {
					Name     string   `json:"name"`
					Problems []string `json:"problems"`
				} `json:"nodes"`
			}
			if jerr := json.Unmarshal(out, &rep); jerr != nil {
				return false, fmt.Sprintf("skein %s: %v %v\n%s", strings.Join(args, " "), err, jerr, out)
			}
			if rep.Healthy || err == nil {
				bad = append(bad, fmt.Sprintf("skein %s: healthy %v, exit %v; want unhealthy", strings.Join(args, " "), rep.Healthy, err))
			}
			named := false
			for _, n := range rep.Nodes {
				p := strings.Join(n.Problems, "; ")
				if n.Name == node && !slices.ContainsFunc(parts, func(s string) bool { return !strings.Contains(p, s) }) {
					named = true
				}
			}
			if !named {
				bad = append(bad, fmt.Sprintf("skein %s: %s's problems do not name %s: %s", strings.Join(args, " "), node, strings.Join(parts, " and "), out))
			}
		}
		return len(bad) == 0, strings.Join(bad, "\n")
	})
}

// waitRoutesFamily waits until every host has a BGP route of family ("-4"
// or "-6"), via the gateway gw returns, to every block of that family of
// every other host, and no other.
func waitRoutesFamily(ctx context.Context, t *testing.T, l *lab.Lab, cl *store.Client, family string, gw func(self, owner lab.Host) string) {
	t.Helper()
	hosts := l.Hosts()
	waitFor(ctx, t, bgpSettle, "BGP "+family+" routes to every other host's blocks", func() (bool, string) {
		blocks, err := blocksByNode(ctx, cl)
		if err != nil {
			return false, err.Error()
		}
		var bad []string
		for _, self := range hosts {
			want := map[string]string{}
			for _, owner := range hosts {
				if owner.Name == self.Name {
					continue
				}
				for _, b := range blocks[owner.Name] {
					if b.Addr().Is6() == (family == "-6") {
						want[b.String()] = gw(self, owner)
					}
				}
			}
			if len(want) == 0 {
				bad = append(bad, self.Name+": no "+family+" block of another host in etcd yet")
			}
			got, err := hostSkeinRoutesFamily(ctx, l, self.Name, family)
			if err != nil {
				return false, err.Error()
			}
			for dst, g := range want {
				if got[dst].Gateway != g {
					bad = append(bad, fmt.Sprintf("%s: %s via %q, want via %s", self.Name, dst, got[dst].Gateway, g))
				}
			}
			for dst, r := range got {
				if _, ok := want[dst]; !ok {
					bad = append(bad, fmt.Sprintf("%s: unexpected route %s via %s", self.Name, dst, r.Gateway))
				}
			}
		}
		slices.Sort(bad)
		return len(bad) == 0, strings.Join(bad, "\n")
	})
}

// checkBGPStatus6: `skein bgp status -o json` shows, for every node, its
// IPv6 underlay address, and its sessions carry IPv6 prefixes: it
// advertises its own IPv6 blocks and receives every other node's.
func checkBGPStatus6(ctx context.Context, t *testing.T, l *lab.Lab, cl *store.Client) {
	t.Helper()
	blocks, err := blocksByNode(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	v6, total := ipv6Blocks(blocks)
	hosts := map[string]lab.Host{}
	for _, h := range l.Hosts() {
		hosts[h.Name] = h
	}
	// The counts are published with the status record: wait for a fresh one.
	waitFor(ctx, t, bgpSettle, "skein bgp status counts the IPv6 prefixes", func() (bool, string) {
		rep, out, err := bgpStatus(ctx, l)
		if err != nil {
			return false, fmt.Sprintf("skein bgp status: %v\n%s", err, out)
		}
		var bad []string
		if !rep.Healthy || len(rep.Nodes) != len(hosts) {
			bad = append(bad, fmt.Sprintf("healthy %v, %d nodes, want healthy and %d", rep.Healthy, len(rep.Nodes), len(hosts)))
		}
		for _, n := range rep.Nodes {
			if n.UnderlayIP6 != hosts[n.Name].UnderlayIP6 {
				bad = append(bad, fmt.Sprintf("%s: underlayIP6 %s, want %s", n.Name, n.UnderlayIP6, hosts[n.Name].UnderlayIP6))
			}
			rx := 0
			for _, nb := range n.Neighbors {
				rx += nb.Received6
				if nb.Advertised6 != v6[n.Name] {
					bad = append(bad, fmt.Sprintf("%s -> %s: %d IPv6 prefixes advertised, want its %d", n.Name, nb.Name, nb.Advertised6, v6[n.Name]))
				}
			}
			// At least the others': FRR also reflects a host's own
			// prefixes back to it (gobgp drops them: its originator id).
			if want := total - v6[n.Name]; rx < want {
				bad = append(bad, fmt.Sprintf("%s: %d IPv6 prefixes received, want at least the others' %d", n.Name, rx, want))
			}
		}
		return len(bad) == 0, strings.Join(bad, "\n")
	})
}

// checkRestart6: pings every 20 ms over IPv4 and IPv6 to a container lose
// nothing while its host's agent restarts (graceful restart keeps the
// routes of both families on every side), and the restarted agent ends
// with the same IPv6 routes.
func checkRestart6(ctx context.Context, t *testing.T, l *lab.Lab, cl *store.Client, gw6 func(self, owner lab.Host) string) {
	t.Helper()
	cs := l.Containers()
	src, dst := cs[0], cs[1]
	// 12 s at 20 ms: past the restarted speaker's 6 s wait before it
	// reconnects, through its re-sync, when it must keep the routes of both
	// families until its peers have re-sent them.
	const count = 600
	type result struct {
		tx, rx int
		out    string
		err    error
	}
	var (
		wg      sync.WaitGroup
		results = map[string]*result{}
	)
	for _, ip := range []netip.Addr{dst.IP, dst.IP6} {
		cmd, err := l.Command(ctx, src.Name, "ping", "-i", "0.02", "-c", fmt.Sprint(count), "-W", "1", ip.String())
		if err != nil {
			t.Fatal(err)
		}
		r := &result{}
		results[ip.String()] = r
		var b strings.Builder
		cmd.Stdout, cmd.Stderr = &b, &b
		if err := cmd.Start(); err != nil {
			t.Fatalf("start ping %s: %v", ip, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.err = cmd.Wait()
			r.out = b.String()
			r.tx, r.rx = parsePing(r.out)
		}()
	}
	time.Sleep(300 * time.Millisecond) // let the streams run before the restart
	if err := l.RestartAgent(ctx, dst.Host); err != nil {
		t.Errorf("restart agent on %s: %v", dst.Host, err)
	}
	wg.Wait()
	for ip, r := range results {
		t.Logf("ping %s -> %s every 20 ms across an agent restart on %s: %d sent, %d received", src.Name, ip, dst.Host, r.tx, r.rx)
		if r.err != nil || r.tx != count || r.rx != r.tx {
			t.Errorf("lost pings to %s across the agent restart: sent %d, received %d (err %v)\n%s", ip, r.tx, r.rx, r.err, r.out)
		}
	}
	waitRoutesFamily(ctx, t, l, cl, "-6", gw6)
}
