//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/lab"
)

// v6OnlyLabName is the IPv6-only lab's name, next to the shared lab; each
// underlay runs on it in turn.
var v6OnlyLabName = labName + "b"

// TestV6Only: an IPv6-only cluster (one IPv6 pool, no IPv4 one) with VXLAN
// over an IPv4 and over an IPv6-only underlay, with BGP over a dual-stack
// underlay, and encrypted with WireGuard. On each: containers have an
// IPv6 address and no IPv4 address, route or neighbour; every container
// reaches every other over IPv6 (ping and TCP); a CNI ADD through the
// reference cnitool returns only the IPv6 address; a NetworkPolicy admits
// a labelled client, a pod of a selected namespace and an ipBlock /128 and
// denies an unlabelled pod; an
// agent restart on both ends of a ping stream loses no ping (with
// WireGuard instead: no IPv6 payload crosses the underlay in clear).
func TestV6Only(t *testing.T) {
	for _, tc := range []struct{ backend, underlay, encryption string }{
		{"vxlan", lab.UnderlayIPv4, ""},
		{"vxlan", lab.UnderlayIPv6, ""},
		{"bgp", lab.UnderlayDual, ""}, // IPv6 routes over the IPv4 sessions, via the hosts' IPv6 addresses
		{"vxlan", lab.UnderlayIPv4, "wireguard"},
	} {
		name := tc.backend + "/underlay=" + tc.underlay
		if tc.encryption != "" {
			name += "/" + tc.encryption
		}
		t.Run(name, func(t *testing.T) { testV6Only(t, tc.backend, tc.underlay, tc.encryption) })
	}
}

func testV6Only(t *testing.T, backend, underlay, encryption string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pool := netip.MustParsePrefix("fd00:10:244::/56")
	l := upBGPLab(t, lab.Config{Name: v6OnlyLabName, Hosts: 3, ContainersPerHost: 1, Backend: backend, Underlay: underlay, Encryption: encryption, PodCIDR: pool.String()})
	hosts := l.Hosts()

	// Three more containers for the policy: a labelled client on h1, one
	// in namespace ops on h3, and the server on h2.
	client, err := l.AddContainer(ctx, hosts[0].Name, lab.ContainerOpts{Name: "client", Labels: map[string]string{"role": "client"}})
	if err != nil {
		t.Fatal(err)
	}
	opsPod, err := l.AddContainer(ctx, hosts[2].Name, lab.ContainerOpts{Name: "tool", Namespace: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	server, err := l.AddContainer(ctx, hosts[1].Name, lab.ContainerOpts{Name: "web", Labels: map[string]string{"app": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	cs := l.Containers()
	seen := map[netip.Addr]string{}
	for _, c := range cs {
		if c.IP.IsValid() || !pool.Contains(c.IP6) {
			t.Fatalf("container %s has %v, want one address of %s and no IPv4 one", c.Name, c.Addrs(), pool)
		}
		if other, dup := seen[c.IP6]; dup {
			t.Fatalf("%s held by %s and %s", c.IP6, other, c.Name)
		}
		seen[c.IP6] = c.Name
		// What the container itself has: no IPv4 address or route.
		out, err := l.Exec(ctx, c.Name, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("IPv4 addresses in %s: %q (%v), want none", c.Name, out, err)
		}
		out, err = l.Exec(ctx, c.Name, "ip", "-4", "route", "show")
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("IPv4 routes in %s: %q (%v), want none", c.Name, out, err)
		}
		out, err = l.Exec(ctx, c.Name, "ip", "-6", "route", "show", "default")
		if err != nil || !strings.Contains(string(out), "default via fe80::1 dev eth0") {
			t.Errorf("IPv6 default route in %s: %q (%v), want via fe80::1 dev eth0", c.Name, out, err)
		}
	}
	if underlay == lab.UnderlayIPv6 && hosts[0].UnderlayIP.Is4() {
		t.Fatalf("host %s has underlay %s on an IPv6-only underlay", hosts[0].Name, hosts[0].UnderlayIP)
	}

	// Every pair over IPv6, ping and TCP (the first pair alone first, so a
	// broken overlay fails once, saying so).
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	err = l.Ping(pctx, cs[0].Name, cs[len(cs)-1].IP6)
	pcancel()
	if err != nil {
		t.Fatalf("ping %s -> %s over IPv6: %v", cs[0].Name, cs[len(cs)-1].IP6, err)
	}
	checkAllPairsFamilies(ctx, t, l, cs)
	// skein lab check pings every pair over what each container has.
	if r := skeinEnv(ctx, t, os.Environ(), "lab", "check", "--name", l.Name(), "--ping-timeout", "5s"); r.code != 0 ||
		strings.Count(r.stdout, "fd00:10:244:") != len(cs)*(len(cs)-1) || strings.Count(r.stdout, " ok\n") != len(cs)*(len(cs)-1) {
		t.Errorf("skein lab check: want %d pairs, each once over IPv6, all ok:\n%s", len(cs)*(len(cs)-1), r)
	}

	// The CLI: no "invalid IP" for the missing IPv4 VTEP address.
	env := append(os.Environ(), "SKEIN_ETCD_ENDPOINTS="+l.EtcdEndpoints()[0])
	for _, args := range [][]string{{"node", "list", "-o", "wide"}, {"node", "show", hosts[0].Name}, {"endpoint", "list"}, {"ipam", "show"}} {
		r := skeinEnv(ctx, t, env, args...)
		if r.code != 0 || strings.Contains(r.stdout, "invalid IP") || !strings.Contains(r.stdout, "fd00:10:244:") {
			t.Errorf("skein %s: want IPv6 addresses and no 'invalid IP':\n%s", strings.Join(args, " "), r)
		}
	}
	waitStatusHealthy(ctx, t, l)
	// On a host: skein ipam check (it reads the agent's allocations) and
	// the agent's /debug/topology and /ui.
	h := hosts[0]
	check, err := l.Command(ctx, h.Name, opsBin(), "--etcd-endpoints", l.EtcdUnderlayEndpoints()[0], "ipam", "check")
	if err != nil {
		t.Fatal(err)
	}
	// Exit 3: the other hosts' agents are not reachable from here (their
	// debug endpoints are on their loopback); 2 would be a finding.
	if r := runCmd(t, check); (r.code != 0 && r.code != 3) || !strings.Contains(r.stdout, "no problems found") {
		t.Errorf("skein ipam check on %s:\n%s", h.Name, r)
	}
	hc, err := l.HTTPClient(h.Name)
	if err != nil {
		t.Fatal(err)
	}
	code, body := httpGet(ctx, t, hc, "http://"+h.DebugAddr+"/debug/topology")
	if code != 200 || strings.Contains(body, "invalid IP") || strings.Contains(body, `"vtepIP":`) || !strings.Contains(body, `"blocks":["fd00:10:244:`) ||
		(backend == "vxlan" && !strings.Contains(body, `"vtepIP6":"fd00:10:244:`)) {
		t.Errorf("/debug/topology on %s: %d, want IPv6 blocks (and VTEP address) and no IPv4 VTEP address:\n%.2000s", h.Name, code, body)
	}
	if code, body := httpGet(ctx, t, hc, "http://"+h.DebugAddr+"/ui"); code != 200 || strings.Contains(body, "invalid IP") {
		t.Errorf("/ui on %s: %d:\n%.500s", h.Name, code, body)
	}

	// The reference client: ADD returns only the IPv6 address.
	v6OnlyCnitool(ctx, t, l, hosts[0], cs[len(cs)-1])

	// Policy: the server admits the labelled client, namespace ops (by its
	// label) and one ipBlock /128 (h3-c1), nothing else (h1-c1).
	if r := skeinEnv(ctx, t, env, "namespace", "label", "ops", "team=ops"); r.code != 0 {
		t.Fatalf("namespace label:\n%s", r)
	}
	var other, blocked lab.Container
	for _, c := range cs {
		switch c.PodName {
		case "h3-c1":
			other = c
		case "h1-c1":
			blocked = c
		}
	}
	target := netip.AddrPortFrom(server.IP6, 8080)
	stop := serveEcho(ctx, t, l, server.Name, target)
	defer stop()
	pol := filepath.Join(t.TempDir(), "web.yaml")
	doc := fmt.Sprintf(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector: {matchLabels: {role: client}}
    - namespaceSelector: {matchLabels: {team: ops}}
    - ipBlock: {cidr: %s/128}
    ports: [{port: 8080}]
`, other.IP6)
	if err := os.WriteFile(pol, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := skeinEnv(ctx, t, env, "policy", "apply", "-f", pol); r.code != 0 {
		t.Fatalf("policy apply:\n%s", r)
	}
	reaches := func(from lab.Container) bool {
		cctx, ccancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		defer ccancel()
		return tcpEcho(cctx, l, from.Name, target) == nil
	}
	waitFor(ctx, t, 30*time.Second, "policy web denies "+blocked.Name, func() (bool, string) {
		return !reaches(blocked), blocked.Name + " still reaches " + target.String()
	})
	for _, c := range []lab.Container{client, opsPod, other} {
		if !reaches(c) {
			t.Errorf("policy web: %s (%s) does not reach %s, want allowed (podSelector / namespaceSelector / ipBlock)", c.Name, c.IP6, target)
		}
	}
	if reaches(blocked) {
		t.Errorf("policy web: %s (%s) reaches %s, want denied", blocked.Name, blocked.IP6, target)
	}
	if r := skeinEnv(ctx, t, env, "policy", "delete", "NetworkPolicy", "default/web"); r.code != 0 {
		t.Fatalf("policy delete:\n%s", r)
	}
	waitFor(ctx, t, 30*time.Second, "policy web gone: "+blocked.Name+" reaches the server", func() (bool, string) {
		return reaches(blocked), blocked.Name + " still denied"
	})

	src, dst := client, server
	if encryption != "" {
		// The tunnel carries the IPv6 payload: none of it crosses the
		// underlay in clear. (wireguard-go's device goes with the agent,
		// so an agent restart drops the tunnel until the new one has made
		// it again: TestWireGuardEncryption checks that traffic comes back.)
		seen, wg := payloadSeenAt(ctx, t, l, src, dst, dst.IP6)
		if seen != 0 || wg == 0 {
			t.Errorf("%s -> %s over IPv6: %d frame(s) with the payload in clear, %d WireGuard frames on the underlay; want 0 and some", src.Name, dst.IP6, seen, wg)
		}
		return
	}
	// Agent restarts on both ends of a ping stream lose nothing.
	pingAcrossRestarts(ctx, t, l, src, dst.IP6, 250, 500*time.Millisecond, dst.Host, src.Host) // 5 s at 20 ms
}

// v6OnlyCnitool runs the reference cnitool ADD/CHECK/DEL on host against
// the lab's conflist: the result lists the IPv6 address alone with gateway
// fe80::1, the new container has no IPv4 address and reaches peer.
func v6OnlyCnitool(ctx context.Context, t *testing.T, l *lab.Lab, host lab.Host, peer lab.Container) {
	t.Helper()
	bin := l.State().BinDir
	tool := filepath.Join(bin, "cnitool")
	if _, err := os.Stat(tool); err != nil {
		t.Errorf("cnitool not built (make tools): %v", err)
		return
	}
	ns := l.Name() + "-cnitool" // the lab's prefix: lab down removes it too
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v %s", ns, err, out)
	}
	defer func() { _ = exec.Command("ip", "netns", "del", ns).Run() }() // best effort: lab down removes leftovers
	nsPath := "/var/run/netns/" + ns
	run := func(args ...string) (string, error) {
		cmd := append([]string{"env", "NETCONFPATH=" + filepath.Dir(host.CNIConfig), "CNI_PATH=" + bin, tool}, args...)
		out, err := l.Exec(ctx, host.Name, cmd...)
		return string(out), err
	}
	out, err := run("add", "skein", nsPath)
	if err != nil {
		t.Fatalf("cnitool add: %v\n%s", err, out)
	}
	defer func() { _, _ = run("del", "skein", nsPath) }() // a repeated DEL succeeds; this one only cleans up after a failure
	var res struct {
		IPs []struct {
			Address string `json:"address"`
			Gateway string `json:"gateway"`
		} `json:"ips"`
		Routes []struct {
			Dst string `json:"dst"`
			GW  string `json:"gw"`
		} `json:"routes"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("cnitool add output is not a CNI result: %v\n%s", err, out)
	}
	if len(res.IPs) != 1 || !strings.HasPrefix(res.IPs[0].Address, "fd00:10:244:") || !strings.HasSuffix(res.IPs[0].Address, "/128") ||
		res.IPs[0].Gateway != "fe80::1" || len(res.Routes) != 1 || res.Routes[0].Dst != "::/0" || res.Routes[0].GW != "fe80::1" {
		t.Fatalf("cnitool add result: %s\nwant one IPv6 /128 with gateway fe80::1 and the route ::/0 via fe80::1 only", out)
	}
	inNS := func(args ...string) ([]byte, error) {
		return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	}
	if out, err := inNS("ip", "-4", "-o", "addr", "show", "dev", "eth0"); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("cnitool container IPv4 addresses: %q (%v), want none", out, err)
	}
	if out, err := inNS("ip", "-6", "-o", "addr", "show", "dev", "eth0"); err != nil || !strings.Contains(string(out), res.IPs[0].Address) {
		t.Errorf("cnitool container IPv6 addresses: %q (%v), want %s", out, err, res.IPs[0].Address)
	}
	if out, err := inNS("ping", "-6", "-c1", "-W2", peer.IP6.String()); err != nil {
		t.Errorf("cnitool container -> %s (%s): %v\n%s", peer.Name, peer.IP6, err, out)
	}
	if out, err := run("check", "skein", nsPath); err != nil {
		t.Errorf("cnitool check: %v\n%s", err, out)
	}
	// DEL frees the address in the agent.
	ip := strings.TrimSuffix(res.IPs[0].Address, "/128")
	allocated := func() bool {
		t.Helper()
		body, err := debugIPAM(ctx, l, host.Name)
		var st struct {
			Allocations []struct {
				IP string `json:"ip"`
			} `json:"allocations"`
		}
		if err == nil {
			err = json.Unmarshal(body, &st)
		}
		if err != nil {
			t.Fatalf("/debug/ipam on %s: %v", host.Name, err)
		}
		return slices.ContainsFunc(st.Allocations, func(a struct {
			IP string `json:"ip"`
		}) bool {
			return a.IP == ip
		})
	}
	if !allocated() {
		t.Errorf("/debug/ipam on %s does not list %s after ADD", host.Name, ip)
	}
	if out, err := run("del", "skein", nsPath); err != nil {
		t.Errorf("cnitool del: %v\n%s", err, out)
	}
	if allocated() {
		t.Errorf("/debug/ipam on %s still allocates %s after DEL", host.Name, ip)
	}
}
