package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
)

// Ports of the long-lived servers inside the server namespaces.
const (
	iperfPort = 5201
	rrPort    = 5202
	rrWarmup  = 200
)

// Hand-built topology: names and addresses (the baselines' ranges; none is
// the machine's).
var (
	bareA, bareB         = nsPrefix + "-xba", nsPrefix + "-xbb"
	bareIPA, bareIPB     = netip.MustParsePrefix("10.98.0.1/24"), netip.MustParsePrefix("10.98.0.2/24")
	handUL               = nsPrefix + "-xul"
	handHosts            = [2]string{nsPrefix + "-xh1", nsPrefix + "-xh2"}
	handCtrs             = [2]string{nsPrefix + "-xc1", nsPrefix + "-xc2"}
	handUnderlay         = [2]string{"192.168.250.1", "192.168.250.2"}
	handPodIP            = [2]string{"10.99.1.2", "10.99.2.2"}
	handVTEP             = [2]string{"10.99.1.0", "10.99.2.0"}
	handBlock            = [2]string{"10.99.1.0/24", "10.99.2.0/24"}
	handVTEPMAC          = [2]string{"02:99:00:00:00:01", "02:99:00:00:00:02"}
	handContainerMTU     = "1450"
	handVXLANDev         = "vx"
	handVNI              = "1"
	handVXLANPort        = "4789"
	handGateway          = api.GatewayIP
	handUnderlayIfFormat = "u%d"
)

// endpoint is where a measurement's client or server runs.
type endpoint struct {
	ns string
	ip netip.Addr
}

// dpPath is one data-plane configuration.
type dpPath struct {
	key, name, base string
	client, server  endpoint
	// apply and revert, when set, switch a setting on just for this path's
	// measurement.
	apply, revert func(ctx context.Context) error
}

// setupBare builds two namespaces joined by one veth pair.
func (b *bench) setupBare(ctx context.Context) (endpoint, endpoint, error) {
	for _, ns := range []string{bareA, bareB} {
		if err := b.addNS(ctx, ns); err != nil {
			return endpoint{}, endpoint{}, err
		}
	}
	steps := [][]string{
		{bareA, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", bareB},
		{bareA, "addr", "add", bareIPA.String(), "dev", "v0"},
		{bareA, "link", "set", "v0", "up"},
		{bareB, "addr", "add", bareIPB.String(), "dev", "v1"},
		{bareB, "link", "set", "v1", "up"},
	}
	for _, s := range steps {
		if err := ipn(ctx, s[0], s[1:]...); err != nil {
			return endpoint{}, endpoint{}, fmt.Errorf("bare veth: %w", err)
		}
	}
	return endpoint{bareA, bareIPA.Addr()}, endpoint{bareB, bareIPB.Addr()}, nil
}

// setupHand builds the hand-built VXLAN pair of the baselines: two hosts on
// an underlay bridge, a routed container on each, and a VXLAN device
// (nolearning, static neighbour and FDB) with the given UDP checksum setting.
func (b *bench) setupHand(ctx context.Context, udpCsum bool) (endpoint, endpoint, error) {
	for _, ns := range []string{handUL, handHosts[0], handHosts[1], handCtrs[0], handCtrs[1]} {
		if err := b.addNS(ctx, ns); err != nil {
			return endpoint{}, endpoint{}, err
		}
	}
	fail := func(err error) (endpoint, endpoint, error) {
		return endpoint{}, endpoint{}, fmt.Errorf("hand-built vxlan: %w", err)
	}
	if err := ipn(ctx, handUL, "link", "add", "ubr", "type", "bridge"); err != nil {
		return fail(err)
	}
	if err := ipn(ctx, handUL, "link", "set", "ubr", "up"); err != nil {
		return fail(err)
	}
	for i := range 2 {
		if err := wireHandHost(ctx, handUL, i, handHosts[i], handCtrs[i], handUnderlay[i], handPodIP[i], handContainerMTU); err != nil {
			return fail(err)
		}
	}
	if err := b.handVXLAN(ctx, udpCsum); err != nil {
		return fail(err)
	}
	c1, _ := netip.ParseAddr(handPodIP[0])
	c2, _ := netip.ParseAddr(handPodIP[1])
	return endpoint{handCtrs[0], c1}, endpoint{handCtrs[1], c2}, nil
}

// handVXLAN (re)creates the hand-built VXLAN devices with their address,
// route, neighbour and FDB entry; recreating is how the UDP checksum setting
// changes, since the kernel does not change it on a live device.
func (b *bench) handVXLAN(ctx context.Context, udpCsum bool) error {
	csum := "noudpcsum"
	if udpCsum {
		csum = "udpcsum"
	}
	for i := range 2 {
		h := handHosts[i]
		ul := fmt.Sprintf(handUnderlayIfFormat, i+1)
		if _, err := ipnOut(ctx, h, "link", "show", handVXLANDev); err == nil {
			if err := ipn(ctx, h, "link", "del", handVXLANDev); err != nil {
				return err
			}
		}
		steps := [][]string{
			{"link", "add", handVXLANDev, "type", "vxlan", "id", handVNI, "local", handUnderlay[i], "dev", ul, "dstport", handVXLANPort, "nolearning", csum},
			{"link", "set", handVXLANDev, "address", handVTEPMAC[i], "mtu", handContainerMTU, "up"},
			{"addr", "add", handVTEP[i] + "/32", "dev", handVXLANDev},
		}
		for _, s := range steps {
			if err := ipn(ctx, h, s...); err != nil {
				return err
			}
		}
	}
	for i := range 2 {
		h, j := handHosts[i], 1-i
		if err := ipn(ctx, h, "route", "add", handBlock[j], "via", handVTEP[j], "dev", handVXLANDev, "onlink"); err != nil {
			return err
		}
		if err := ipn(ctx, h, "neigh", "replace", handVTEP[j], "lladdr", handVTEPMAC[j], "dev", handVXLANDev, "nud", "permanent"); err != nil {
			return err
		}
		if err := runCmd(ctx, "bridge", "-n", h, "fdb", "append", handVTEPMAC[j], "dev", handVXLANDev, "dst", handUnderlay[j]); err != nil {
			return err
		}
	}
	return nil
}

// skeinVXLAN returns Skein's VXLAN device on a lab host.
func skeinVXLAN(host string) (*netlink.Vxlan, error) {
	h, err := handleIn(host)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	l, err := h.LinkByName(api.VXLANDevice)
	if err != nil {
		return nil, fmt.Errorf("find %s in %s: %w", api.VXLANDevice, host, err)
	}
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		return nil, fmt.Errorf("%s in %s is a %s, not vxlan", api.VXLANDevice, host, l.Type())
	}
	return vx, nil
}

// iperfResult is the part of iperf3 -J output the bench reads.
type iperfResult struct {
	End struct {
		SumSent struct {
			Retransmits int `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// startServers starts iperf3 and the request/response server on srv and
// waits until both listen.
func (b *bench) startServers(ctx context.Context, srv endpoint) error {
	ip := srv.ip.String()
	iperf := exec.Command("iperf3", "-s", "-B", ip, "-p", strconv.Itoa(iperfPort))
	if err := b.startTracked(srv.ns, iperf); err != nil {
		return fmt.Errorf("iperf3 server in %s: %w", srv.ns, err)
	}
	rr := exec.Command(b.self, "rr-server", netip.AddrPortFrom(srv.ip, rrPort).String())
	out, err := rr.StdoutPipe()
	if err != nil {
		return err
	}
	if err := b.startTracked(srv.ns, rr); err != nil {
		return fmt.Errorf("rr server in %s: %w", srv.ns, err)
	}
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- l
		_, _ = io.Copy(io.Discard, out) // drain until the server dies
	}()
	select {
	case l := <-line:
		if strings.TrimSpace(l) != "ready" {
			return fmt.Errorf("rr server in %s did not start", srv.ns)
		}
	case <-time.After(10 * time.Second):
		return fmt.Errorf("rr server in %s: no answer in 10s", srv.ns)
	case <-ctx.Done():
		return ctx.Err()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		o, err := outputIn(ctx, srv.ns, "ss", "-Hltn", fmt.Sprintf("sport = :%d", iperfPort))
		if err == nil && strings.TrimSpace(o) != "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("iperf3 server in %s not listening after 10s", srv.ns)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// iperf runs one iperf3 client from cl to srv and returns Gbit/s and retransmits.
func (b *bench) iperf(ctx context.Context, cl, srv endpoint) (float64, int, error) {
	secs := strconv.Itoa(b.cfg.iperfSeconds)
	cctx, cancel := context.WithTimeout(ctx, time.Duration(b.cfg.iperfSeconds+20)*time.Second)
	defer cancel()
	var res iperfResult
	var out string
	var err error
	for attempt := range 3 {
		out, err = outputIn(cctx, cl.ns, "iperf3", "-c", srv.ip.String(), "-p", strconv.Itoa(iperfPort), "-t", secs, "-J")
		res = iperfResult{}
		if jerr := json.Unmarshal([]byte(out), &res); jerr == nil && res.Error == "" && err == nil {
			break
		}
		// The server is busy for a moment after a previous test ends.
		if attempt < 2 {
			time.Sleep(300 * time.Millisecond)
		}
	}
	if res.Error != "" {
		return 0, 0, fmt.Errorf("iperf3 %s → %s: %s", cl.ns, srv.ip, res.Error)
	}
	if err != nil {
		return 0, 0, err
	}
	return res.End.SumReceived.BitsPerSecond / 1e9, res.End.SumSent.Retransmits, nil
}

// rr runs the request/response client from cl to srv and returns the round trips.
func (b *bench) rr(ctx context.Context, cl, srv endpoint) ([]time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out, err := outputIn(cctx, cl.ns, b.self, "rr-client", netip.AddrPortFrom(srv.ip, rrPort).String(), strconv.Itoa(b.cfg.rrCount), strconv.Itoa(rrWarmup))
	if err != nil {
		return nil, err
	}
	var rtts []time.Duration
	for _, f := range strings.Fields(out) {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("rr client output: %w", err)
		}
		rtts = append(rtts, time.Duration(n))
	}
	if len(rtts) != b.cfg.rrCount {
		return nil, fmt.Errorf("rr client: %d round trips, want %d", len(rtts), b.cfg.rrCount)
	}
	return rtts, nil
}

// measureDataplane builds the bare and hand-built paths next to the lab and
// measures every path once per round, in order, for cfg.rounds rounds.
func (b *bench) measureDataplane(ctx context.Context, l *lab.Lab) (*DataplaneResult, error) {
	ctrs := l.Containers()
	if len(ctrs) < 2 || ctrs[0].Host == ctrs[1].Host {
		return nil, errors.New("lab needs one container on each of two hosts")
	}
	sc, ss := ctrs[0], ctrs[1]
	vx, err := skeinVXLAN(sc.Host)
	if err != nil {
		return nil, err
	}
	res := &DataplaneResult{}
	if t := nftTables(ctx, sc.Host); t != "" {
		res.Notes = append(res.Notes, fmt.Sprintf("Skein's hosts carry nftables tables (%s): \"Skein as is\" includes the agent's policy table; the hand+nft rows price copies of its head on the hand-built pair.", t))
	}
	res.Notes = append(res.Notes, fmt.Sprintf("Skein's device %s: MTU %d, learning %v, UDP checksum %v, port %d; the hand-built pair uses the same UDP checksum setting and the \"alt\" row the other one.",
		api.VXLANDevice, vx.MTU, vx.Learning, vx.UDPCSum, vx.Port))

	ba, bb, err := b.setupBare(ctx)
	if err != nil {
		return nil, err
	}
	ha, hb, err := b.setupHand(ctx, vx.UDPCSum)
	if err != nil {
		return nil, err
	}
	altCsum := "without"
	if !vx.UDPCSum {
		altCsum = "with"
	}
	skc, sks := endpoint{sc.Name, sc.IP}, endpoint{ss.Name, ss.IP}
	paths := []dpPath{
		{key: pathBare, name: "bare: two namespaces, one veth pair", client: ba, server: bb},
		{key: pathHand, name: "hand-built VXLAN (same kernel config as Skein)", client: ha, server: hb},
		{key: "hand-alt", name: fmt.Sprintf("hand-built VXLAN %s UDP checksum", altCsum), base: pathHand, client: ha, server: hb,
			apply:  func(ctx context.Context) error { return b.handVXLAN(ctx, !vx.UDPCSum) },
			revert: func(ctx context.Context) error { return b.handVXLAN(ctx, vx.UDPCSum) }},
	}
	if !b.cfg.noSettings {
		if _, err := exec.LookPath("nft"); err == nil {
			for _, r := range []struct {
				key, name string
				mode      headMode
			}{
				{"hand+nft-all", "hand-built VXLAN + a copy of the head of Skein's table before issue 11 (conntrack for every packet)", headTrackAll},
				{"hand+nft", "hand-built VXLAN + a copy of the head of Skein's table (one verdict-map lookup for anti-spoofing and selection, inline pool compares; pods no policy selects: notrack)", headVmap},
				{"hand+nft-sel", "hand-built VXLAN + the same with both pods selected by an allow-all policy (conntrack)", headVmapSelected},
				{"hand+nft-5", "hand-built VXLAN + the first untrack head (anti-spoofing lookup, then 2 interval and 2 hash lookups)", headUntracked},
				{"hand+nft+vxf", "hand-built VXLAN + today's head + Skein's VXLAN source filter (input hook, IPv4 and IPv6 rule)", headVmapVXFilter},
				{"hand+nft-fib", "hand-built VXLAN + today's head without the untrack chains' FIB lookup", headVmapNoFib},
				{"hand+hooks", "hand-built VXLAN + the same three base chains with no rule (the hooks alone)", headHooksOnly},
				{"hand+notrack", "hand-built VXLAN + base chains that notrack every packet, no lookup (the least a notrack layout costs)", headNotrackOnly},
			} {
				s := handNft(r.mode)
				paths = append(paths, dpPath{key: r.key, name: r.name, base: pathHand, client: ha, server: hb, apply: s.apply, revert: s.revert})
			}
		}
	}
	if !b.cfg.noSettings && b.cfg.extraSettings && brNetfilterOn(handUL) {
		s := noBrNetfilter(handUL)
		paths = append(paths, dpPath{key: "hand+nobrnf", name: "hand-built VXLAN, underlay bridge without br_netfilter", base: pathHand,
			client: ha, server: hb, apply: s.apply, revert: s.revert})
	}
	paths = append(paths, dpPath{key: pathSkein, name: "Skein VXLAN as is (lab, container → container across hosts)", base: pathHand, client: skc, server: sks})
	if !b.cfg.noSettings {
		st := l.State()
		extra, err := skeinSettings(skeinOpts{
			underlayNS: st.UnderlayNS,
			hosts:      []string{sc.Host, ss.Host},
			ctrs:       []string{sc.Name, ss.Name},
			podCIDR:    st.PodCIDR,
			vxlanPort:  vx.Port,
			extra:      b.cfg.extraSettings,
		})
		if err != nil {
			return nil, err
		}
		for _, p := range extra {
			p.client, p.server = skc, sks
			paths = append(paths, p)
		}
	}
	for _, srv := range []endpoint{bb, hb, sks} {
		if err := b.startServers(ctx, srv); err != nil {
			return nil, err
		}
	}
	paths = selectRows(paths, b.cfg.rows)
	res.Paths = b.measureRounds(ctx, "data plane", paths, b.cfg.rounds)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return res, nil
}

// measurePath applies p's setting, runs iperf3 and request/response, and reverts.
func (b *bench) measurePath(ctx context.Context, p dpPath, prof *profiler) (gbps float64, retr int, rtts []time.Duration, err error) {
	if p.apply != nil {
		if err := p.apply(ctx); err != nil {
			rerr := p.revert(context.WithoutCancel(ctx))
			return 0, 0, nil, errors.Join(fmt.Errorf("apply setting: %w", err), rerr)
		}
		defer func() {
			if rerr := p.revert(context.WithoutCancel(ctx)); rerr != nil {
				err = errors.Join(err, fmt.Errorf("revert setting: %w", rerr))
			}
		}()
	}
	start := monotonic()
	gbps, retr, err = b.iperf(ctx, p.client, p.server)
	prof.record(p.key, start, monotonic(), gbps, b.cfg.iperfSeconds)
	if err != nil {
		return 0, 0, nil, err
	}
	rtts, err = b.rr(ctx, p.client, p.server)
	return gbps, retr, rtts, err
}

// selectRows keeps the rows named in keep (all when keep is nil) plus bare
// and every row another kept row is measured against.
func selectRows(paths []dpPath, keep map[string]bool) []dpPath {
	if keep == nil {
		return paths
	}
	want := map[string]bool{pathBare: true}
	byKey := map[string]dpPath{}
	for _, p := range paths {
		byKey[p.key] = p
	}
	for k := range keep {
		for p, ok := byKey[k]; ok; p, ok = byKey[p.base] {
			want[p.key] = true
		}
	}
	var out []dpPath
	for _, p := range paths {
		if want[p.key] {
			out = append(out, p)
		}
	}
	return out
}

// wireHandHost builds hand-made host i of a pair (baselines.md): its leg on
// the underlay bridge in namespace ul, and a routed container c behind a
// veth (IP/32, gateway 169.254.1.1 with a permanent neighbour).
func wireHandHost(ctx context.Context, ul string, i int, h, c, underlayIP, podIP, mtu string) error {
	leg := fmt.Sprintf(handUnderlayIfFormat, i+1)
	hostVeth, ctrVeth := fmt.Sprintf("c%dh", i+1), fmt.Sprintf("c%de", i+1)
	steps := [][]string{
		{ul, "link", "add", leg + "b", "type", "veth", "peer", "name", leg, "netns", h},
		{ul, "link", "set", leg + "b", "master", "ubr", "up"},
		{h, "addr", "add", underlayIP + "/24", "dev", leg},
		{h, "link", "set", leg, "up"},
		{h, "link", "add", hostVeth, "mtu", mtu, "type", "veth", "peer", "name", ctrVeth, "netns", c, "mtu", mtu},
		{h, "link", "set", hostVeth, "up"},
		{c, "link", "set", ctrVeth, "up"},
		{c, "addr", "add", podIP + "/32", "dev", ctrVeth},
		{c, "route", "add", handGateway, "dev", ctrVeth, "scope", "link"},
		{c, "route", "add", "default", "via", handGateway, "dev", ctrVeth},
		{h, "route", "add", podIP + "/32", "dev", hostVeth},
	}
	for _, s := range steps {
		if err := ipn(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	if err := writeSysctl(h, "net.ipv4.ip_forward", "1"); err != nil {
		return err
	}
	hh, err := handleIn(h)
	if err != nil {
		return err
	}
	l, err := hh.LinkByName(hostVeth)
	hh.Close()
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", hostVeth, h, err)
	}
	return ipn(ctx, c, "neigh", "replace", handGateway, "dev", ctrVeth, "nud", "permanent", "lladdr", l.Attrs().HardwareAddr.String())
}

// measureRounds measures every path once per round, in order (interleaved,
// so drift hits all paths alike), and returns their results; a failed
// measurement is logged and recorded in its path, and a cancelled ctx stops
// early (the caller checks ctx).
func (b *bench) measureRounds(ctx context.Context, what string, paths []dpPath, rounds int) []PathResult {
	out := make([]PathResult, len(paths))
	for i, p := range paths {
		out[i] = PathResult{Key: p.key, Name: p.name, Base: p.base}
	}
	// A profile needs rows to compare (the drop-log phase measures one
	// row at a time).
	var prof *profiler
	if len(paths) > 1 {
		prof = b.startProfiler(ctx)
	}
	defer func() {
		cpu := b.stopProfiler(prof)
		for i := range out {
			out[i].CPU = cpu[out[i].Key]
		}
	}()
	for round := range rounds {
		for i, p := range paths {
			if ctx.Err() != nil {
				return out
			}
			gbps, retr, rtts, err := b.measurePath(ctx, p, prof)
			pr := &out[i]
			pr.Gbps = append(pr.Gbps, gbps)
			if gbps > 0 {
				pr.Retrans = append(pr.Retrans, retr)
			}
			pr.RR = append(pr.RR, rtts...)
			var p50 float64
			if len(rtts) > 0 {
				p50 = float64(percentile(rtts, 50)) / float64(time.Microsecond)
			}
			pr.RRP50 = append(pr.RRP50, p50)
			if err != nil {
				pr.Err = err.Error()
				b.log.Warn(what+" round failed", "path", p.key, "round", round+1, "err", err)
				continue
			}
			b.log.Info(what, "round", round+1, "path", p.key, "gbps", fmt.Sprintf("%.2f", gbps), "rr_p50_us", fmt.Sprintf("%.0f", p50))
		}
	}
	return out
}
