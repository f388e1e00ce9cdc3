//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
	"github.com/skeinnet/skein/report"
	"github.com/skeinnet/skein/store"
)

// The BGP suite brings up labs of its own, next to the shared VXLAN lab:
// a node mesh ("skbgp") and a top-of-rack route reflector running BIRD
// ("skbird") or FRR ("skfrr") with the hosts on two subnets.

// bgpSettle bounds how long sessions and routes may take to converge:
// gobgp's first connection attempt comes 1-2 s after a peer is added, then
// routes flow within milliseconds.
const bgpSettle = 20 * time.Second

// upBGPLab brings up a lab of its own for a BGP test; t.Cleanup removes it.
func upBGPLab(t *testing.T, cfg lab.Config) *lab.Lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg.BinDir = filepath.Dir(opsBin())
	cfg.Out = t.Output()
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	_ = lab.Down(ctx, cfg.Name, "") // best effort: a crashed run may have left it
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := lab.Down(ctx, cfg.Name, ""); err != nil {
			t.Errorf("lab %s down: %v", cfg.Name, err)
		}
	})
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		t.Fatalf("lab %s up: %v", cfg.Name, err)
	}
	return l
}

// labStore connects to a lab's etcd; t.Cleanup closes it.
func labStore(ctx context.Context, t *testing.T, l *lab.Lab) *store.Client {
	t.Helper()
	cl, err := store.New(ctx, store.Config{Endpoints: l.EtcdEndpoints()})
	if err != nil {
		t.Fatalf("connect to lab %s etcd: %v", l.Name(), err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// skeinRoutes returns a host's IPv4 routes with Skein's protocol (78) that have
// a gateway: destination → gateway.
func skeinRoutes(ctx context.Context, l *lab.Lab, host string) (map[string]string, error) {
	rs, err := hostSkeinRoutesFamily(ctx, l, host, "-4")
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(rs))
	for dst, r := range rs {
		m[dst] = r.Gateway
	}
	return m, nil
}

// bgpStatus runs `skein bgp status -o json` against l's etcd and decodes
// its report; err is the command's (a non-zero exit: unhealthy) or the
// decoding's, out what it printed.
func bgpStatus(ctx context.Context, l *lab.Lab) (rep report.BGP, out []byte, err error) {
	cmd := exec.CommandContext(ctx, opsBin(), "bgp", "status", "-o", "json")
	cmd.Env = append(os.Environ(), "SKEIN_ETCD_ENDPOINTS="+strings.Join(l.EtcdEndpoints(), ","))
	out, err = cmd.Output()
	if jerr := json.Unmarshal(out, &rep); jerr != nil {
		return rep, out, errors.Join(err, fmt.Errorf("decode skein bgp status: %w", jerr))
	}
	return rep, out, err
}

// ipv6Blocks counts each node's IPv6 blocks, and all of them.
func ipv6Blocks(blocks map[string][]netip.Prefix) (per map[string]int, total int) {
	per = map[string]int{}
	for node, bs := range blocks {
		for _, b := range bs {
			if b.Addr().Is6() {
				per[node]++
				total++
			}
		}
	}
	return per, total
}

// storeCallTimeout bounds one read of a lab's etcd, so that a stalled call
// is retried by the wait around it rather than eating the test's budget.
const storeCallTimeout = 5 * time.Second

// blocksByNode reads each node's blocks from the lab's etcd.
func blocksByNode(ctx context.Context, cl *store.Client) (map[string][]netip.Prefix, error) {
	ctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	bs, err := cl.ListBlocks(ctx)
	if err != nil {
		return nil, err
	}
	m := map[string][]netip.Prefix{}
	for _, b := range bs {
		m[b.Node] = append(m[b.Node], b.CIDR)
	}
	return m, nil
}

// waitSessions waits until every node publishes want(node) sessions, all
// Established.
func waitSessions(ctx context.Context, t *testing.T, l *lab.Lab, cl *store.Client, want func(node string) []string) {
	t.Helper()
	waitFor(ctx, t, bgpSettle, "every node's BGP sessions established", func() (bool, string) {
		sctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
		defer cancel()
		sts, err := cl.ListStatus(sctx)
		if err != nil {
			return false, err.Error()
		}
		got := map[string][]string{}
		for _, st := range sts {
			for _, n := range st.BGP {
				if n.State == "Established" {
					got[st.Node] = append(got[st.Node], n.Name)
				}
			}
			slices.Sort(got[st.Node])
		}
		var bad []string
		for _, h := range l.Hosts() {
			if w := want(h.Name); !slices.Equal(w, got[h.Name]) {
				bad = append(bad, fmt.Sprintf("%s: established %v, want %v", h.Name, got[h.Name], w))
			}
		}
		return len(bad) == 0, strings.Join(bad, "\n")
	})
}

// checkRoutedMTU asserts that containers get the underlay MTU: no
// encapsulation takes a share of it.
func checkRoutedMTU(ctx context.Context, t *testing.T, l *lab.Lab) {
	t.Helper()
	for _, c := range l.Containers() {
		out, err := l.Exec(ctx, c.Name, "ip", "-j", "link", "show", lab.ContainerIface)
		var links []struct {
			MTU int `json:"mtu"`
		}
		if err != nil || json.Unmarshal(out, &links) != nil || len(links) != 1 {
			t.Errorf("%s: ip link: %v %s", c.Name, err, out)
			continue
		}
		if links[0].MTU != lab.UnderlayMTU {
			t.Errorf("%s: MTU %d, want the underlay's %d (routed, no encapsulation)", c.Name, links[0].MTU, lab.UnderlayMTU)
		}
	}
}

// TestBGPMesh (a, d): three hosts in a full node mesh. Every container
// reaches every other across hosts over BGP routes via the peers' underlay
// addresses, with no VXLAN device; pings every 20 ms lose nothing while an
// agent restarts (graceful restart); a node that leaves (agent stopped,
// `skein node delete`) has its routes withdrawn everywhere.
func TestBGPMesh(t *testing.T) {
	l := upBGPLab(t, lab.Config{Name: "skbgp", Backend: string(api.BackendBGP), Hosts: 3, ContainersPerHost: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl := labStore(ctx, t, l)
	hosts := l.Hosts()
	waitSessions(ctx, t, l, cl, func(node string) []string {
		var others []string
		for _, h := range hosts {
			if h.Name != node {
				others = append(others, h.Name)
			}
		}
		return others
	})
	waitRoutesFamily(ctx, t, l, cl, "-4", func(_, owner lab.Host) string { return owner.UnderlayIP.String() })

	t.Run("connectivity", func(t *testing.T) {
		for _, h := range hosts {
			if out, err := l.Exec(ctx, h.Name, "ip", "link", "show", api.VXLANDevice); err == nil {
				t.Errorf("%s has a %s device in BGP mode:\n%s", h.Name, api.VXLANDevice, out)
			}
		}
		checkRoutedMTU(ctx, t, l)
		checkAllPairs(ctx, t, l, l.Containers())
	})

	t.Run("status", func(t *testing.T) {
		rep, out, err := bgpStatus(ctx, l)
		if err != nil || !rep.Healthy || len(rep.Nodes) != 3 {
			t.Fatalf("skein bgp status: healthy %v, %d nodes, want healthy and 3: %v\n%s", rep.Healthy, len(rep.Nodes), err, out)
		}
		for _, n := range rep.Nodes {
			if len(n.Neighbors) != 2 {
				t.Errorf("skein bgp status: %s has %d neighbours, want 2: %+v", n.Name, len(n.Neighbors), n.Neighbors)
			}
		}
	})

	t.Run("graceful restart", func(t *testing.T) {
		src, dst := l.Containers()[0], l.Containers()[1]
		// The destination's agent: its peers must keep its routes and it
		// its own routes back, until the new instance has re-synced.
		pingAcrossRestarts(ctx, t, l, src, dst.IP, 250, 300*time.Millisecond, dst.Host) // 5 s at 20 ms
		// The restarted agent peers again and nothing was lost on the way.
		waitRoutesFamily(ctx, t, l, cl, "-4", func(_, owner lab.Host) string { return owner.UnderlayIP.String() })
	})

	t.Run("etcd outage", func(t *testing.T) {
		// Sessions and routes stay while etcd is unreachable: BGP state
		// lives in the speakers, not in the store.
		src, dst := l.Containers()[0], l.Containers()[1]
		before := map[string]map[string]string{}
		for _, h := range hosts {
			rs, err := skeinRoutes(ctx, l, h.Name)
			if err != nil {
				t.Fatal(err)
			}
			before[h.Name] = rs
		}
		tx, rx, out := pingDuring(ctx, t, l, src, dst, 250, func() {
			unblock := blockEtcd(ctx, t, l)
			time.Sleep(4 * time.Second)
			for _, h := range hosts {
				rs, err := skeinRoutes(ctx, l, h.Name)
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(rs) != fmt.Sprint(before[h.Name]) {
					t.Errorf("%s routes changed while etcd was unreachable:\nbefore %v\nduring %v", h.Name, before[h.Name], rs)
				}
			}
			unblock()
		})
		t.Logf("ping %s -> %s every 20 ms across a 4 s etcd outage: %d sent, %d received", src.Name, dst.IP, tx, rx)
		if tx != 250 || rx != tx {
			t.Errorf("lost pings while etcd was unreachable: sent %d, received %d\n%s", tx, rx, out)
		}
		waitRoutesFamily(ctx, t, l, cl, "-4", func(_, owner lab.Host) string { return owner.UnderlayIP.String() })
	})

	t.Run("node leaves", func(t *testing.T) {
		gone := hosts[2]
		blocks, err := blocksByNode(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		goneBlocks := blocks[gone.Name]
		if len(goneBlocks) == 0 {
			t.Fatalf("%s holds no block", gone.Name)
		}
		if err := l.StopAgent(ctx, gone.Name); err != nil {
			t.Fatal(err)
		}
		dctx, dcancel := context.WithTimeout(ctx, storeCallTimeout)
		defer dcancel()
		if err := cl.DeleteNode(dctx, gone.Name); err != nil {
			t.Fatalf("delete node %s: %v", gone.Name, err)
		}
		start := time.Now()
		waitFor(ctx, t, bgpSettle, "routes of the deleted node withdrawn", func() (bool, string) {
			var left []string
			for _, h := range hosts[:2] {
				rs, err := skeinRoutes(ctx, l, h.Name)
				if err != nil {
					return false, err.Error()
				}
				for _, b := range goneBlocks {
					if gw, ok := rs[b.String()]; ok {
						left = append(left, fmt.Sprintf("%s: %s via %s", h.Name, b, gw))
					}
				}
			}
			return len(left) == 0, strings.Join(left, "\n")
		})
		t.Logf("routes to %s withdrawn %s after its node record was deleted", gone.Name, time.Since(start).Round(time.Millisecond))
		// The others still reach each other.
		cs := l.Containers()
		if err := l.Ping(ctx, cs[0].Name, cs[1].IP); err != nil {
			t.Errorf("ping %s -> %s after %s left: %v", cs[0].Name, cs[1].Name, gone.Name, err)
		}
	})
}

// TestBGPToRBIRD (b): BIRD 2 in a top-of-rack namespace is the route
// reflector for hosts on two subnets.
func TestBGPToRBIRD(t *testing.T) { testBGPToR(t, lab.ToRBIRD, "skbird") }

// TestBGPToRFRR (c): the same with FRR's bgpd and zebra.
func TestBGPToRFRR(t *testing.T) { testBGPToR(t, lab.ToRFRR, "skfrr") }

// testBGPToR: sessions with the ToR are Established on both ends (the
// daemon's own view), every host's blocks are in the daemon's table and the
// ToR's kernel, every host routes the others' blocks via the ToR's address
// on its own subnet, containers reach each other across the subnets, and a
// host that joins later is peered and reachable.
func testBGPToR(t *testing.T, kind, name string) {
	l := upBGPLab(t, lab.Config{Name: name, Backend: string(api.BackendBGP), ToR: kind, Subnets: 2, Hosts: 3, ContainersPerHost: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl := labStore(ctx, t, l)
	hosts := l.Hosts()
	if hosts[0].Subnet == hosts[1].Subnet {
		t.Fatalf("hosts %s and %s share subnet %d; the test needs two", hosts[0].Name, hosts[1].Name, hosts[0].Subnet)
	}

	// The daemon's view: every host Established.
	waitFor(ctx, t, bgpSettle, kind+" sessions established", func() (bool, string) {
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
	// The agents' view: the ToR is their only peer (no node mesh).
	waitSessions(ctx, t, l, cl, func(node string) []string {
		return []string{lab.ToRPeerName + "-" + strings.TrimPrefix(node, name+"-")}
	})
	// Every host's blocks are in the daemon's table and its kernel.
	waitToRBlocks(ctx, t, l, cl, kind, false)
	// Reflected with next hop self: the ToR on the host's own subnet.
	viaToR := func(self, _ lab.Host) string { return lab.UnderlayGateway(self.Subnet).String() }
	waitRoutesFamily(ctx, t, l, cl, "-4", viaToR)
	checkRoutedMTU(ctx, t, l)
	checkAllPairs(ctx, t, l, l.Containers())

	// A host that joins is peered by the running daemon and reachable.
	h, err := l.AddHost(ctx)
	if err != nil {
		t.Fatalf("add host: %v", err)
	}
	c, err := l.AddContainer(ctx, h.Name, lab.ContainerOpts{})
	if err != nil {
		t.Fatalf("add container on %s: %v", h.Name, err)
	}
	waitRoutesFamily(ctx, t, l, cl, "-4", viaToR)
	for _, other := range l.Containers() {
		if other.Name == c.Name {
			continue
		}
		if err := l.Ping(ctx, other.Name, c.IP); err != nil {
			t.Errorf("ping %s -> %s on the new host %s: %v", other.Name, c.IP, h.Name, err)
		}
	}
}

// waitToRBlocks waits until every node's blocks of one family (v6 or IPv4)
// are in the ToR daemon's table (kind: bird or frr) and in the ToR's kernel,
// so it routes them between the subnets.
func waitToRBlocks(ctx context.Context, t *testing.T, l *lab.Lab, cl *store.Client, kind string, v6 bool) {
	t.Helper()
	fam, what := "-4", "every block"
	if v6 {
		fam, what = "-6", "every IPv6 block"
	}
	waitFor(ctx, t, bgpSettle, what+" in the "+kind+" table and the ToR's kernel", func() (bool, string) {
		table, err := l.ToRRoutes(ctx)
		if err != nil {
			return false, err.Error()
		}
		kernel, err := l.Exec(ctx, "tor", "ip", fam, "route")
		if err != nil {
			return false, err.Error()
		}
		blocks, err := blocksByNode(ctx, cl)
		if err != nil {
			return false, err.Error()
		}
		var missing []string
		for node, bs := range blocks {
			for _, b := range bs {
				if b.Addr().Is6() != v6 {
					continue
				}
				if !strings.Contains(table, b.String()) {
					missing = append(missing, fmt.Sprintf("%s of %s not in the %s table", b, node, kind))
				}
				if !strings.Contains(string(kernel), b.String()+" ") {
					missing = append(missing, fmt.Sprintf("%s of %s not in the ToR's kernel", b, node))
				}
			}
		}
		return len(missing) == 0, strings.Join(missing, "\n") + "\n" + table
	})
}
