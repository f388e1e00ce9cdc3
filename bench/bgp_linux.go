package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/bgp"
	"github.com/skeinnet/skein/lab"
)

// The BGP phase (issue 3, bench rows), on labs of its own that it removes:
//
//  1. A `--backend bgp` lab with the node mesh, 2 hosts × 1 container:
//     routed TCP throughput and request/response container to container
//     across the hosts, against a hand-built routed pair (the baselines'
//     "routed underlay": plain kernel routes over an underlay bridge) in
//     interleaved rounds; then pings every 20 ms across a restart of the
//     destination host's agent; then node joins.
//  2. The same backend with BIRD as top-of-rack route reflector (node mesh
//     off): node joins.

// Names and sizes of the BGP phase.
var (
	bgpLabName  = nsPrefix + "bgp"
	birdLabName = nsPrefix + "bird"
)

const (
	// bgpJoins is the number of node joins per lab.
	bgpJoins = 5
	// bgpPingInterval and bgpPingCount: 12 s of pings (more with ping's own
	// overhead), which covers the restart, the 6 s a restarted speaker
	// waits before it reconnects, the first connection and the re-sync.
	bgpPingInterval = 20 * time.Millisecond
	bgpPingCount    = 600
	// bgpPingLead is how long pings run before the restart.
	bgpPingLead = 300 * time.Millisecond
	// bgpSessionTimeout bounds the wait for sessions to come up.
	bgpSessionTimeout = 60 * time.Second
)

// The hand-built routed pair: names and addresses (the baselines' layout on
// ranges of its own, so it can coexist with the data-plane phase's pair).
var (
	routedUL       = nsPrefix + "-xrul"
	routedHosts    = [2]string{nsPrefix + "-xrh1", nsPrefix + "-xrh2"}
	routedCtrs     = [2]string{nsPrefix + "-xrc1", nsPrefix + "-xrc2"}
	routedUnderlay = [2]string{"192.168.251.1", "192.168.251.2"}
	routedPodIP    = [2]string{"10.97.1.2", "10.97.2.2"}
	routedBlock    = [2]string{"10.97.1.0/24", "10.97.2.0/24"}
)

// setupRouted builds the hand-built routed pair: two hosts on an underlay
// bridge, a routed container on each (IP/32, gateway 169.254.1.1 with a
// static neighbour), containers' MTU mtu, and on each host a plain route to
// the other host's container range via its underlay address.
func (b *bench) setupRouted(ctx context.Context, mtu int) (endpoint, endpoint, error) {
	for _, ns := range []string{routedUL, routedHosts[0], routedHosts[1], routedCtrs[0], routedCtrs[1]} {
		if err := b.addNS(ctx, ns); err != nil {
			return endpoint{}, endpoint{}, err
		}
	}
	fail := func(err error) (endpoint, endpoint, error) {
		return endpoint{}, endpoint{}, fmt.Errorf("hand-built routed pair: %w", err)
	}
	if err := ipn(ctx, routedUL, "link", "add", "ubr", "type", "bridge"); err != nil {
		return fail(err)
	}
	if err := ipn(ctx, routedUL, "link", "set", "ubr", "up"); err != nil {
		return fail(err)
	}
	m := strconv.Itoa(mtu)
	for i := range 2 {
		if err := wireHandHost(ctx, routedUL, i, routedHosts[i], routedCtrs[i], routedUnderlay[i], routedPodIP[i], m); err != nil {
			return fail(err)
		}
	}
	for i := range 2 {
		j := 1 - i
		if err := ipn(ctx, routedHosts[i], "route", "add", routedBlock[j], "via", routedUnderlay[j], "dev", fmt.Sprintf(handUnderlayIfFormat, i+1)); err != nil {
			return fail(err)
		}
	}
	c1, _ := netip.ParseAddr(routedPodIP[0])
	c2, _ := netip.ParseAddr(routedPodIP[1])
	return endpoint{routedCtrs[0], c1}, endpoint{routedCtrs[1], c2}, nil
}

// synced reports whether the speaker runs, has all its neighbours
// Established and no longer keeps routes of an earlier run; otherwise why not.
func bgpSynced(d api.BGPStatus, want int) (bool, string) {
	switch {
	case !d.Running:
		return false, "not running"
	case d.Syncing:
		return false, "keeping the routes of its previous run until re-synced"
	case len(d.Neighbors) < want:
		return false, fmt.Sprintf("%d neighbours, want %d", len(d.Neighbors), want)
	}
	for _, n := range d.Neighbors {
		if !n.Up() {
			return false, fmt.Sprintf("neighbour %s is %s", n.Name, n.State)
		}
	}
	return true, ""
}

// waitBGPSynced waits until every host's speaker is synced with at least
// want neighbours, and returns the time that took.
func waitBGPSynced(ctx context.Context, l *lab.Lab, hosts []string, want int) (time.Duration, error) {
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(ctx, bgpSessionTimeout)
	defer cancel()
	for _, h := range hosts {
		hc, err := l.HTTPClient(h)
		if err != nil {
			return 0, err
		}
		for {
			d, err := debugGet[api.BGPStatus](ctx, hc, "/debug/bgp")
			why := ""
			if err == nil {
				var ok bool
				if ok, why = bgpSynced(d, want); ok {
					break
				}
			} else {
				why = err.Error()
			}
			select {
			case <-ctx.Done():
				return 0, fmt.Errorf("bgp on %s not synced after %s: %s", h, bgpSessionTimeout, why)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return time.Since(t0), nil
}

// bgpLab brings up a `--backend bgp` lab of hosts hosts × ctrs containers,
// with the given ToR ("" for the node mesh), and waits for its sessions.
func (b *bench) bgpLab(ctx context.Context, name, tor string, hosts, ctrs int) (*lab.Lab, error) {
	b.log.Info("bgp lab up", "name", name, "tor", tor)
	l, err := lab.Up(ctx, lab.Config{
		Name:              name,
		Hosts:             hosts,
		ContainersPerHost: ctrs,
		Backend:           "bgp",
		ToR:               tor,
		BinDir:            b.cfg.bin,
		RunDir:            filepath.Join(runDir, name),
		Log:               b.log,
	})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, h := range l.Hosts() {
		names = append(names, h.Name)
	}
	want := hosts - 1 // the node mesh
	if tor != "" {
		want = 1 // the ToR
	}
	if _, err := waitBGPSynced(ctx, l, names, want); err != nil {
		return l, err
	}
	return l, nil
}

// downLab removes a lab of the phase, bounded by cleanupTimeout.
func (b *bench) downLab(ctx context.Context, name string) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	return lab.Down(cctx, name, filepath.Join(runDir, name))
}

// measureBGP runs the BGP phase. It returns what it measured also on
// failure, so that a failing part does not hide the others.
func (b *bench) measureBGP(ctx context.Context) (res *BGPResult, err error) {
	res = &BGPResult{
		Timers: BGPTimers{
			Hold:         bgp.DefaultHoldTime,
			Keepalive:    bgp.DefaultKeepAlive,
			ConnectRetry: bgp.DefaultConnectRetry,
			RestartTime:  bgp.DefaultRestartTime,
			StaleRoute:   bgp.DefaultStaleRouteTime,
		},
		Joins: bgpJoins,
	}
	defer func() {
		b.stopProcs()
		for _, n := range []string{bgpLabName, birdLabName, directLabName} {
			if derr := b.downLab(ctx, n); derr != nil {
				err = errors.Join(err, derr)
			}
		}
	}()
	var errs []error
	if err := b.measureBGPMesh(ctx, res); err != nil {
		errs = append(errs, fmt.Errorf("node mesh: %w", err))
	}
	b.stopProcs()
	if err := b.downLab(ctx, bgpLabName); err != nil {
		errs = append(errs, err)
	}
	if ctx.Err() == nil {
		if err := b.measureBGPBIRD(ctx, res); err != nil {
			errs = append(errs, fmt.Errorf("bird: %w", err))
		}
	}
	return res, errors.Join(errs...)
}

// measureBGPMesh measures the data plane, the agent restart and the joins
// of the node-mesh lab.
func (b *bench) measureBGPMesh(ctx context.Context, res *BGPResult) error {
	l, err := b.bgpLab(ctx, bgpLabName, "", 2, 1)
	if err != nil {
		return err
	}
	ctrs := l.Containers()
	if len(ctrs) < 2 || ctrs[0].Host == ctrs[1].Host {
		return errors.New("lab needs one container on each of two hosts")
	}
	sc, ss := ctrs[0], ctrs[1]
	if err := l.Ping(ctx, sc.Name, ss.IP); err != nil {
		return fmt.Errorf("no path %s → %s: %w", sc.Name, ss.IP, err)
	}
	h, err := handleIn(sc.Name)
	if err != nil {
		return err
	}
	link, err := h.LinkByName(lab.ContainerIface)
	h.Close()
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", lab.ContainerIface, sc.Name, err)
	}
	res.ContainerMTU = link.Attrs().MTU
	if t := nftTables(ctx, sc.Host); t != "" {
		res.Notes = append(res.Notes, fmt.Sprintf("Skein's hosts carry nftables tables (%s), so every Skein packet goes through conntrack and the policy table's head; the plain hand-built pair has none, the \"+ nftables\" row prices that head on it.", t))
	}
	// The direct-routing lab runs in the same rounds; without it the BGP
	// rows still count.
	var extra []dpPath
	if p, err := b.directPath(ctx); err != nil {
		res.Notes = append(res.Notes, fmt.Sprintf("VXLAN direct routing not measured: %v", err))
	} else {
		extra = append(extra, p)
	}
	if err := b.measureRouted(ctx, res, endpoint{sc.Name, sc.IP}, endpoint{ss.Name, ss.IP}, extra...); err != nil {
		return err
	}
	b.stopProcs() // the servers must not disturb what follows
	if err := b.downLab(ctx, directLabName); err != nil {
		return err
	}
	if res.Restart, err = b.measureRestart(ctx, l, sc, ss); err != nil {
		return fmt.Errorf("agent restart: %w", err)
	}
	if res.MeshJoin, err = b.measureJoins(ctx, l, bgpJoins); err != nil {
		return fmt.Errorf("joins: %w", err)
	}
	return nil
}

// measureRouted measures the hand-built routed pair and Skein's BGP path in
// interleaved rounds, with extra paths measured against the same pair.
func (b *bench) measureRouted(ctx context.Context, res *BGPResult, skc, sks endpoint, extra ...dpPath) error {
	ra, rb, err := b.setupRouted(ctx, res.ContainerMTU)
	if err != nil {
		return err
	}
	paths := []dpPath{{key: pathRouted, name: fmt.Sprintf("hand-built routed pair (plain kernel routes, container MTU %d)", res.ContainerMTU), client: ra, server: rb}}
	if _, err := exec.LookPath("nft"); err == nil {
		s := &nftSetting{rulesets: map[string]string{}}
		for i, h := range routedHosts {
			s.rulesets[h] = nftHeadRuleset(fmt.Sprintf("c%dh", i+1), routedPodIP[i], "10.97.0.0/16", headVmap)
		}
		paths = append(paths, dpPath{key: pathRoutedNft, name: "hand-built routed pair + a copy of the head of Skein's nftables table (pods no policy selects: notrack)", base: pathRouted,
			client: ra, server: rb, apply: s.apply, revert: s.revert})
	}
	paths = append(paths, dpPath{key: pathSkeinBGP, name: "Skein BGP, node mesh (lab, container → container across hosts)", base: pathRouted, client: skc, server: sks})
	servers := []endpoint{rb, sks}
	for _, p := range extra {
		paths = append(paths, p)
		servers = append(servers, p.server)
	}
	for _, srv := range servers {
		if err := b.startServers(ctx, srv); err != nil {
			return err
		}
	}
	res.Dataplane = &DataplaneResult{Paths: b.measureRounds(ctx, "bgp data plane", paths, b.cfg.pbRounds)}
	return ctx.Err()
}

// pingStatsRE matches ping's summary line.
var pingStatsRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)

// parsePingStats returns the packets ping sent and got answers to.
func parsePingStats(out string) (sent, received int, ok bool) {
	m := pingStatsRE.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, false
	}
	sent, _ = strconv.Atoi(m[1])
	received, _ = strconv.Atoi(m[2])
	return sent, received, true
}

// measureRestart pings from src to dst every bgpPingInterval while the
// agent on dst's host restarts, and waits until that agent has re-synced
// before the pings end.
func (b *bench) measureRestart(ctx context.Context, l *lab.Lab, src, dst lab.Container) (*BGPRestart, error) {
	r := &BGPRestart{Host: dst.Host, Interval: bgpPingInterval}
	secs := strconv.FormatFloat(bgpPingInterval.Seconds(), 'f', -1, 64)
	ping := exec.Command("ping", "-n", "-i", secs, "-c", strconv.Itoa(bgpPingCount), "-W", "1", dst.IP.String())
	var out bytes.Buffer
	ping.Stdout, ping.Stderr = &out, &out
	t0 := time.Now()
	if err := b.startTracked(src.Name, ping); err != nil {
		return nil, fmt.Errorf("start ping: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- ping.Wait() }()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(bgpPingLead):
	}
	tr := time.Now()
	if err := l.RestartAgent(ctx, dst.Host); err != nil {
		return r, err
	}
	r.Restart = time.Since(tr)
	others := len(l.Hosts()) - 1
	if _, err := waitBGPSynced(ctx, l, []string{dst.Host}, others); err != nil {
		return r, err
	}
	r.Resynced = time.Since(tr)
	var werr error
	select {
	case werr = <-done:
	case <-ctx.Done():
		return r, ctx.Err()
	}
	r.PingSpan = time.Since(t0)
	sent, recv, ok := parsePingStats(out.String())
	if !ok {
		return r, fmt.Errorf("ping: no summary (%v): %s", werr, out.String())
	}
	r.Sent, r.Received = sent, recv
	if r.Resynced > r.PingSpan-bgpPingLead {
		r.Note = fmt.Sprintf("the re-sync (%s after the restart began) outlasted the pings", r.Resynced.Round(time.Millisecond))
	}
	b.log.Info("bgp agent restart", "host", dst.Host, "sent", sent, "received", recv, "restart", r.Restart.Round(time.Millisecond), "resynced", r.Resynced.Round(time.Millisecond))
	return r, nil
}

// measureBGPBIRD measures node joins with BIRD as route reflector.
func (b *bench) measureBGPBIRD(ctx context.Context, res *BGPResult) error {
	l, err := b.bgpLab(ctx, birdLabName, lab.ToRBIRD, 2, -1)
	if err != nil {
		return err
	}
	if res.BIRDJoin, err = b.measureJoins(ctx, l, bgpJoins); err != nil {
		return fmt.Errorf("joins: %w", err)
	}
	return nil
}
