package lab

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// needToR skips unless the daemons of a ToR of kind are installed.
func needToR(t *testing.T, kind string) {
	t.Helper()
	if _, err := torPrograms(kind); err != nil {
		t.Skipf("needs the %s top-of-rack daemons: %v", kind, err)
	}
}

// fakeHostSpeaker runs a BIRD in host h's namespace that stands in for the
// agent: it peers with the ToR on h's subnet, announces block and installs
// what it learns in h's kernel. Its control socket is under the run dir,
// so Down stops it.
func fakeHostSpeaker(t *testing.T, l *Lab, h Host, block netip.Prefix) {
	t.Helper()
	conf := fmt.Sprintf(`router id %s;
protocol device { }
protocol static { ipv4; route %s blackhole; }
protocol kernel { ipv4 { import none; export filter { if source = RTS_BGP then accept; reject; }; }; }
protocol bgp tor {
	local %s as %d;
	neighbor %s as %d;
	direct;
	hold time 9; keepalive time 3; connect retry time 1;
	ipv4 { import all; export where source = RTS_STATIC; next hop self on; };
}
`, h.UnderlayIP, block, h.UnderlayIP, api.DefaultASN, ToRAddr(h.Subnet), api.DefaultASN)
	dir := h.dir()
	path := filepath.Join(dir, "fake-bird.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	bird, err := torBinary("bird")
	if err != nil {
		t.Skip(err)
	}
	if _, err := startInNetNS(h.Name, filepath.Join(dir, "fake-bird.log"), []string{bird, "-f", "-c", path, "-s", filepath.Join(dir, "fake-bird.ctl")}); err != nil {
		t.Fatal(err)
	}
}

// routeVia reports whether `ip route` output has a route to dst via gw.
func routeVia(out, dst, gw string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == dst && strings.Contains(line, " via "+gw+" ") {
			return true
		}
	}
	return false
}

// waitCond polls cond until it holds or d passes, then fails with what
// last reported.
func waitCond(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, d, last)
		}
		<-tick.C
	}
}

// TestToR brings up the routed underlay with each ToR daemon (no agents):
// hosts on two subnets reach each other and etcd only through the ToR, the
// ToR's sessions and peer records are configured, BGP speakers standing in
// for agents exchange blocks through it with the ToR as on-link next hop,
// a new host is added to the running daemon, and Down stops the daemon.
func TestToR(t *testing.T) {
	needRoot(t)
	for i, kind := range []string{ToRBIRD, ToRFRR} {
		t.Run(kind, func(t *testing.T) {
			needToR(t, kind)
			needToR(t, ToRBIRD) // the stand-in speakers are BIRDs
			before := rootLinks(t)
			cfg := underlayConfig(t, fmt.Sprintf("sktor%d", i), 3)
			cfg.Backend, cfg.ToR, cfg.Subnets = "bgp", kind, 2
			// FRR's daemons drop root: they need to reach the run dir.
			for d := filepath.Dir(cfg.RunDir); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
				if err := os.Chmod(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			l := upUnderlay(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			name := cfg.Name

			nss, err := labNamespaces(name)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(nss, name+"-tor") {
				t.Errorf("namespaces %v, want %s-tor among them", nss, name)
			}
			// Hosts alternate between the subnets; the ToR routes between them.
			checkHostLink(t, name+"-h1", "10.255.1.1/24")
			checkHostLink(t, name+"-h2", "10.255.2.2/24")
			checkHostLink(t, name+"-h3", "10.255.1.3/24")
			out, err := l.Exec(ctx, "h2", ipCommand(), "-4", "route", "show", "default")
			if err != nil || !strings.Contains(string(out), "via 10.255.2.254") {
				t.Errorf("h2 default route: %v %q, want via 10.255.2.254", err, out)
			}
			out, err = l.Exec(ctx, "tor", "cat", "/proc/sys/net/ipv4/ip_forward")
			if err != nil || strings.TrimSpace(string(out)) != "1" {
				t.Errorf("tor ip_forward = %q (%v), want 1", out, err)
			}
			if err := l.Ping(ctx, "h1", netip.MustParseAddr("10.255.2.2")); err != nil {
				t.Errorf("ping h1 -> h2 across subnets: %v", err)
			}
			// etcd, on subnet 0, from a host subnet.
			hc, err := l.HTTPClient("h2")
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, l.EtcdUnderlayEndpoints()[0]+"/health", nil)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("etcd health from h2: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("etcd health from h2: %s %s", resp.Status, body)
			}
			if after := rootLinks(t); !slices.Equal(before, after) {
				t.Errorf("root namespace links changed: before %v, after %v", before, after)
			}

			// The cluster runs without the node mesh, and each host has the
			// ToR's address on its own subnet as external peer.
			c, err := store.New(ctx, store.Config{Endpoints: l.EtcdEndpoints()})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			cl, err := c.GetCluster(ctx)
			if err != nil || cl.BGP == nil || cl.BGP.NodeMesh || cl.Backend != api.BackendBGP {
				t.Errorf("cluster = %+v (%v), want bgp without node mesh", cl, err)
			}
			peers, err := c.ListBGPPeers(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range peers {
				got = append(got, fmt.Sprintf("%s %s %d %s", p.Name, p.PeerIP, p.ASN, p.Node))
			}
			want := []string{
				"tor-h1 10.255.1.254 64512 " + name + "-h1",
				"tor-h2 10.255.2.254 64512 " + name + "-h2",
				"tor-h3 10.255.1.254 64512 " + name + "-h3",
			}
			if !slices.Equal(want, got) {
				t.Errorf("bgp peers = %q, want %q", got, want)
			}

			// Stand-in speakers on h1 and h2 exchange blocks through the ToR.
			hosts := l.Hosts()
			fakeHostSpeaker(t, l, hosts[0], netip.MustParsePrefix("10.244.1.0/26"))
			fakeHostSpeaker(t, l, hosts[1], netip.MustParsePrefix("10.244.2.0/26"))
			waitCond(t, 30*time.Second, "sessions h1 and h2 established", func() (bool, string) {
				ss, err := l.ToRSessions(ctx)
				if err != nil {
					return false, err.Error()
				}
				up := map[string]bool{}
				for _, s := range ss {
					up[s.Name] = s.Established
				}
				return len(ss) == 3 && up["h1"] && up["h2"] && !up["h3"], fmt.Sprintf("%+v", ss)
			})
			waitCond(t, 30*time.Second, "both blocks in the ToR's table", func() (bool, string) {
				r, err := l.ToRRoutes(ctx)
				return err == nil && strings.Contains(r, "10.244.1.0/26") && strings.Contains(r, "10.244.2.0/26"), fmt.Sprintf("%v\n%s", err, r)
			})
			// The ToR forwards: its kernel has both blocks via the hosts.
			waitCond(t, 30*time.Second, "ToR kernel routes", func() (bool, string) {
				out, err := l.Exec(ctx, "tor", ipCommand(), "-4", "route")
				s := string(out)
				return err == nil && routeVia(s, "10.244.1.0/26", "10.255.1.1") && routeVia(s, "10.244.2.0/26", "10.255.2.2"), s
			})
			// Reflected with next hop self: h1 reaches h2's block via the ToR
			// on its own subnet, not via h2's off-link address.
			waitCond(t, 30*time.Second, "h1 route to h2's block via the ToR", func() (bool, string) {
				out, err := l.Exec(ctx, "h1", ipCommand(), "-4", "route", "show", "10.244.2.0/26")
				return err == nil && routeVia(string(out), "10.244.2.0/26", "10.255.1.254"), string(out)
			})

			// A new host joins the running ToR.
			h4, err := l.createHost(ctx, 4)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.putToRPeers(ctx, []Host{h4}); err != nil {
				t.Fatal(err)
			}
			if err := l.reconfigureToR(ctx, h4); err != nil {
				t.Fatalf("reconfigureToR: %v", err)
			}
			ss, err := l.ToRSessions(ctx)
			if err != nil || len(ss) != 4 || ss[3].Name != "h4" || ss[3].Neighbor != h4.UnderlayIP {
				t.Errorf("sessions after adding h4 = %+v (%v), want h4 (%s) fourth", ss, err, h4.UnderlayIP)
			}
			for _, s := range ss[:min(2, len(ss))] {
				if !s.Established {
					t.Errorf("session %s dropped by the reconfiguration: %+v", s.Name, s)
				}
			}

			st, err := l.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.ToR == nil || !st.ToR.Alive || st.ToR.Kind != kind || len(st.ToR.Sessions) != 4 {
				t.Errorf("status ToR = %+v, want %s alive with 4 sessions", st.ToR, kind)
			}

			pids := append([]int{l.State().Etcd[0].PID}, l.State().ToR.PIDs...)
			if err := l.Down(ctx); err != nil {
				t.Fatalf("Down: %v", err)
			}
			assertGone(t, cfg.Name, cfg.RunDir, pids...)
		})
	}
}
