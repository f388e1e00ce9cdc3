package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/policy"
)

// The drop-log phase: two routed pods behind one host namespace, the
// server's ingress under a policy whose Deny rules allowed traffic walks
// past before its Allow, enforced by Skein's own compiler and applier.
// Each round measures the table with its log rules (skeind as shipped) and
// without them (skeind --drop-log=false), interleaved.
var (
	dlHost          = nsPrefix + "-xdh"
	dlClient        = nsPrefix + "-xdc"
	dlServer        = nsPrefix + "-xds"
	dlClientIP      = netip.MustParseAddr("10.97.0.2")
	dlServerIP      = netip.MustParseAddr("10.97.0.3")
	dlClientIface   = "sk00000000dc1"
	dlServerIface   = "sk00000000ds1"
	dlPolicyProgram = func() (*policy.Program, error) {
		in := policy.Input{
			Namespaces: []api.Namespace{{Name: "bench", Labels: map[string]string{"ns": "bench"}}},
			Endpoints: []api.Endpoint{
				{Namespace: "bench", Name: "client", Labels: map[string]string{"app": "client"}, IPs: []netip.Addr{dlClientIP}, Node: "h", HostIface: dlClientIface},
				{Namespace: "bench", Name: "server", Labels: map[string]string{"app": "server"}, IPs: []netip.Addr{dlServerIP}, Node: "h", HostIface: dlServerIface},
			},
			Node: "h",
		}
		for i := range dlDenyRules {
			// A namespace and pod per Deny rule, so each rule's set has a
			// member (these pods are records only: nothing sends from them).
			ns := fmt.Sprintf("t%d", i)
			in.Namespaces = append(in.Namespaces, api.Namespace{Name: ns, Labels: map[string]string{"team": ns}})
			in.Endpoints = append(in.Endpoints, api.Endpoint{Namespace: ns, Name: "p", IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 97, 1, byte(i + 1)})}, Node: "other", HostIface: "x"})
		}
		anp := &api.AdminNetworkPolicy{}
		anp.Name = "bench-deny"
		anp.Spec.Priority = 10
		anp.Spec.Subject.Namespaces = &api.LabelSelector{}
		for i := range dlDenyRules {
			// Deny rules for peers that are not the client: allowed traffic
			// walks each (and, with the log on, its log rule) first.
			anp.Spec.Ingress = append(anp.Spec.Ingress, api.AdminNetworkPolicyIngressRule{
				Name:   fmt.Sprintf("deny-%d", i),
				Action: api.ActionDeny,
				From:   []api.AdminNetworkPolicyIngressPeer{{Namespaces: &api.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("t%d", i)}}}},
			})
		}
		np := &api.NetworkPolicy{}
		np.Name, np.Namespace = "server-from-client", "bench"
		np.Spec.PodSelector = api.LabelSelector{MatchLabels: map[string]string{"app": "server"}}
		np.Spec.Ingress = []api.NetworkPolicyIngressRule{{From: []api.NetworkPolicyPeer{{PodSelector: &api.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}}}}
		in.AddPolicy(anp)
		in.AddPolicy(np)
		p := policy.Compile(in)
		if len(p.Warnings) > 0 {
			return nil, fmt.Errorf("bench policy: %v", p.Warnings)
		}
		return p, nil
	}
)

// measureDropLog builds the pods, starts the servers and measures the two
// tables round by round.
func (b *bench) measureDropLog(ctx context.Context) (*DataplaneResult, error) {
	for _, ns := range []string{dlHost, dlClient, dlServer} {
		if err := b.addNS(ctx, ns); err != nil {
			return nil, err
		}
	}
	if err := writeSysctl(dlHost, "net.ipv4.ip_forward", "1"); err != nil {
		return nil, err
	}
	for _, p := range []struct {
		ns, iface string
		ip        netip.Addr
	}{{dlClient, dlClientIface, dlClientIP}, {dlServer, dlServerIface, dlServerIP}} {
		if err := wirePod(ctx, dlHost, p.ns, p.iface, p.ip); err != nil {
			return nil, fmt.Errorf("drop-log pods: %w", err)
		}
	}
	prog, err := dlPolicyProgram()
	if err != nil {
		return nil, err
	}
	table := func(noLog bool) func(context.Context) error {
		return func(ctx context.Context) error { return applyIn(ctx, dlHost, prog, noLog) }
	}
	cl, srv := endpoint{dlClient, dlClientIP}, endpoint{dlServer, dlServerIP}
	paths := []dpPath{
		{key: "log-off", name: fmt.Sprintf("policy table without drop logging (skeind --drop-log=false), %d Deny rules before the Allow", dlDenyRules),
			client: cl, server: srv, apply: table(true), revert: noop},
		{key: "log-on", name: "the same table with drop logging (skeind as shipped: a log rule before each Deny)", base: "log-off",
			client: cl, server: srv, apply: table(false), revert: noop},
	}
	// Allowed traffic must pass and denied traffic must be dropped under
	// both tables, or the comparison prices a broken table.
	for _, p := range paths {
		if err := p.apply(ctx); err != nil {
			return nil, err
		}
		if err := b.startServersOnce(ctx, srv); err != nil {
			return nil, err
		}
		if _, err := b.rr(ctx, cl, srv); err != nil {
			return nil, fmt.Errorf("%s: allowed traffic does not pass: %w", p.key, err)
		}
	}
	// The order alternates round by round (off, on, on, off, ...), so a
	// load that drifts during the run does not favour either row.
	res := &DataplaneResult{Paths: []PathResult{{Key: paths[0].key, Name: paths[0].name}, {Key: paths[1].key, Name: paths[1].name, Base: paths[1].base}}}
	for round := range b.cfg.rounds {
		order := paths
		if round%2 == 1 {
			order = []dpPath{paths[1], paths[0]}
		}
		for _, p := range order {
			// measureRounds leaves p's table applied (revert is a no-op):
			// the new connections run under it too.
			got := b.measureRounds(ctx, "drop log", []dpPath{p}, 1)[0]
			pr := res.path(got.Key)
			pr.Gbps, pr.RR, pr.RRP50, pr.Retrans = append(pr.Gbps, got.Gbps...), append(pr.RR, got.RR...), append(pr.RRP50, got.RRP50...), append(pr.Retrans, got.Retrans...)
			if got.Err != "" {
				pr.Err = got.Err
			}
			conns, err := b.crr(ctx, p.client, p.server)
			var p50 float64
			if err != nil {
				pr.Err = err.Error()
				b.log.Warn("drop log new connections failed", "path", p.key, "round", round+1, "err", err)
			} else {
				pr.Conn = append(pr.Conn, conns...)
				p50 = float64(percentile(conns, 50)) / float64(time.Microsecond)
				b.log.Info("drop log new connections", "round", round+1, "path", p.key, "p50_us", fmt.Sprintf("%.0f", p50))
			}
			pr.ConnP50 = append(pr.ConnP50, p50)
		}
		if ctx.Err() != nil {
			break
		}
	}
	res.Notes = append(res.Notes, "Connections are tracked: only a connection's first packet walks the pod chains (ct state established accepts the rest), so the log rules cost per new connection, not per packet: the new-connection row (connect, one 1-byte round trip, close with a reset; 1000 a round, one after another) is where a cost would show.")
	return res, ctx.Err()
}

func noop(context.Context) error { return nil }

// dlConns is the number of timed new connections per row and round.
const dlConns = 1000

// crr opens dlConns new connections from cl to srv one after another and
// returns how long each took.
func (b *bench) crr(ctx context.Context, cl, srv endpoint) ([]time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out, err := outputIn(cctx, cl.ns, b.self, "crr-client", netip.AddrPortFrom(srv.ip, rrPort).String(), strconv.Itoa(dlConns), "50")
	if err != nil {
		return nil, err
	}
	var ds []time.Duration
	for _, f := range strings.Fields(out) {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("crr client output: %w", err)
		}
		ds = append(ds, time.Duration(n))
	}
	if len(ds) != dlConns {
		return nil, fmt.Errorf("crr client: %d connections, want %d", len(ds), dlConns)
	}
	return ds, nil
}

// startServersOnce starts srv's servers unless they run.
func (b *bench) startServersOnce(ctx context.Context, srv endpoint) error {
	b.mu.Lock()
	started := b.dlServers
	b.dlServers = true
	b.mu.Unlock()
	if started {
		return nil
	}
	return b.startServers(ctx, srv)
}

// applyIn rebuilds table inet skein in ns for p, with or without its log
// rules, with a fresh applier (so it rebuilds rather than patches a table
// the other setting wrote).
func applyIn(ctx context.Context, ns string, p *policy.Program, noLog bool) error {
	f, err := os.Open(nsPath(ns))
	if err != nil {
		return err
	}
	defer f.Close()
	c, err := policy.NewConn(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		return err
	}
	return policy.NewApplierWith(policy.ApplierConfig{Conn: c, NoDropLog: noLog}).Apply(ctx, p)
}

// wirePod connects pod namespace ns to host with Skein's routed veth
// layout: ip/32 on eth0, the gateway through a permanent neighbour, a /32
// route on the host side iface.
func wirePod(ctx context.Context, host, ns, iface string, ip netip.Addr) error {
	steps := [][]string{
		{host, "link", "add", iface, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{host, "link", "set", iface, "up"},
		{ns, "link", "set", "eth0", "up"},
		{ns, "link", "set", "lo", "up"},
		{ns, "addr", "add", ip.String() + "/32", "dev", "eth0"},
		{ns, "route", "add", handGateway, "dev", "eth0", "scope", "link"},
		{ns, "route", "add", "default", "via", handGateway, "dev", "eth0"},
		{host, "route", "add", ip.String() + "/32", "dev", iface},
	}
	for _, s := range steps {
		if err := ipn(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	hh, err := handleIn(host)
	if err != nil {
		return err
	}
	l, err := hh.LinkByName(iface)
	hh.Close()
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", iface, host, err)
	}
	return ipn(ctx, ns, "neigh", "replace", handGateway, "dev", "eth0", "nud", "permanent", "lladdr", l.Attrs().HardwareAddr.String())
}
