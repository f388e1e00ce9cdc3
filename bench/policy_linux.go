package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
	"github.com/skeinnet/skein/policy"
	"github.com/skeinnet/skein/store"
)

// The policy phase (issue 4, bench rows): a VXLAN lab of its own with a
// client container on one host and a server container on the other, 10 000
// endpoint records of a fake node whose addresses come from blocks claimed
// for it (so no real container ever gets one), and 0, 100, 1 000 and 10 000
// NetworkPolicies. Every 100th policy selects the server and allows the
// client (and the pods of one of ten namespace groups, so that the server's
// sets hold all 10 000 fake addresses at the top level); the others select
// fake pods by other labels. Levels are measured in interleaved rounds,
// ascending and descending in turn, each against the no-policy level of the
// same round.
//
// Levels change with the agents stopped (the cluster is written in etcd
// transactions of 128 operations, etcd's default limit) and the agents then
// started again: an agent is ready only once the program of everything it
// loaded is enforced, so the start is the exact moment the level is in
// place, and it costs one compile instead of one per transaction.

// polLabName names the policy phase's lab.
var polLabName = nsPrefix + "pol"

// Sizes of the policy phase.
const (
	// polCompilePolicies is the level at which compile time and agent
	// memory are the "1 000 policies × 10 000 endpoints".
	polCompilePolicies = 1000
	polCompileRuns     = 3
	// polProbes is the number of policy applies (and deletes) timed per level.
	polProbes = 8
	// polNewEndpoints is the number of containers added for the new
	// endpoint → remote sets figure.
	polNewEndpoints = 10
	// polTxnOps is etcd's default --max-txn-ops.
	polTxnOps = 128
	// polEnforceTimeout bounds one apply → enforced wait.
	polEnforceTimeout = 30 * time.Second
	// polSettle is a pause after the agents restart, before the data-plane
	// measurement, so that their start-up work is not measured with it.
	polSettle = time.Second
	// polMonitorStart is how long `nft monitor` gets to subscribe; it prints
	// nothing when it is ready.
	polMonitorStart = 300 * time.Millisecond
)

// polLevels are the numbers of NetworkPolicies measured.
var polLevels = []int{0, 100, 1000, 10000}

// polLab is the policy phase's lab and what it has loaded.
type polLab struct {
	b       *bench
	l       *lab.Lab
	sc      *store.Client
	hc      map[string]*http.Client // by host
	cliHost string
	srvHost string
	// level is the number of benchPolicy policies in etcd.
	level int
	// dirty: something since the last agent start (probes, new
	// endpoints) left work or state the next measurement must not see.
	dirty bool
}

func (p *polLab) hosts() []string { return []string{p.cliHost, p.srvHost} }

// measurePolicy runs the policy phase on a lab of its own, which it removes.
func (b *bench) measurePolicy(ctx context.Context) (res *PolicyResult, err error) {
	dir := filepath.Join(runDir, polLabName)
	defer b.labDown(ctx, polLabName, dir, true, &err)
	b.log.Info("policy lab up", "name", polLabName)
	l, err := lab.Up(ctx, lab.Config{Name: polLabName, Hosts: 2, ContainersPerHost: -1, BinDir: b.cfg.bin, RunDir: dir, Log: b.log})
	if err != nil {
		return nil, err
	}
	hs := l.Hosts()
	cli, err := l.AddContainer(ctx, hs[0].Name, lab.ContainerOpts{Namespace: polNamespace, Name: polClientApp, Labels: map[string]string{polLabelKey: polClientApp}})
	if err != nil {
		return nil, err
	}
	srv, err := l.AddContainer(ctx, hs[1].Name, lab.ContainerOpts{Namespace: polNamespace, Name: polServerApp, Labels: map[string]string{polLabelKey: polServerApp}})
	if err != nil {
		return nil, err
	}
	sc, err := store.New(ctx, store.Config{Endpoints: l.EtcdEndpoints(), DialTimeout: 10 * time.Second, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	defer sc.Close()
	p := &polLab{b: b, l: l, sc: sc, hc: map[string]*http.Client{}, cliHost: cli.Host, srvHost: srv.Host}
	for _, h := range p.hosts() {
		if p.hc[h], err = l.HTTPClient(h); err != nil {
			return nil, err
		}
	}

	res = &PolicyResult{Probes: polProbes}
	for _, n := range polLevels {
		res.Levels = append(res.Levels, PolicyLevel{Policies: n, SelectingServer: serverPolicies(n)})
	}
	if err := p.stopAgents(ctx); err != nil {
		return res, err
	}
	n, err := p.loadCluster(ctx)
	if err != nil {
		return res, err
	}
	// The first level has no policies: this start is its start.
	if res.Levels[0].Ready, err = p.startAgents(ctx); err != nil {
		return res, err
	}
	res.Endpoints = n + 2
	b.log.Info("policy cluster loaded", "endpoints", res.Endpoints)

	cl, sv := endpoint{cli.Name, cli.IP}, endpoint{srv.Name, srv.IP}
	if err := b.startServers(ctx, sv); err != nil {
		return res, err
	}
	for round := range b.cfg.pbRounds {
		order := make([]int, len(polLevels))
		for i := range order {
			order[i] = i
		}
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, i := range order {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			lv := &res.Levels[i]
			first := len(lv.Gbps) == 0
			ready, err := p.setLevel(ctx, lv.Policies)
			if err != nil {
				return res, err
			}
			if first && ready != nil {
				lv.Ready = ready
			}
			ticks0, t0 := p.agentTicks(), time.Now()
			gbps, _, rtts, err := b.measurePath(ctx, dpPath{client: cl, server: sv}, nil)
			lv.AgentCPU = append(lv.AgentCPU, float64(p.agentTicks()-ticks0)/clockTicks/time.Since(t0).Seconds()*100)
			lv.Gbps = append(lv.Gbps, gbps)
			lv.RR = append(lv.RR, rtts...)
			var p50 float64
			if len(rtts) > 0 {
				p50 = float64(percentile(rtts, 50)) / float64(time.Microsecond)
			}
			lv.RRP50 = append(lv.RRP50, p50)
			if err != nil {
				lv.Err = err.Error()
				b.log.Warn("policy round failed", "policies", lv.Policies, "round", round+1, "err", err)
			} else {
				b.log.Info("policy data plane", "round", round+1, "policies", lv.Policies, "gbps", fmt.Sprintf("%.2f", gbps), "rr_p50_us", fmt.Sprintf("%.0f", p50))
			}
			if !first {
				continue
			}
			if err := p.levelStats(ctx, lv); err != nil {
				return res, err
			}
			if err := p.measureCompile(ctx, res, lv); err != nil {
				return res, err
			}
			if err := p.measureApply(ctx, lv); err != nil {
				return res, err
			}
			if lv.Policies == polLevels[len(polLevels)-1] {
				res.NewEndpointLevel = lv.Policies
				if res.NewEndpoint, err = p.measureNewEndpoints(ctx); err != nil {
					return res, err
				}
			}
		}
	}
	return res, nil
}

// agentTicks returns the CPU time both agents have used, in clock ticks
// (0 for an agent it cannot read).
func (p *polLab) agentTicks() int64 {
	var n int64
	for _, h := range p.hosts() {
		if host, err := p.l.Host(h); err == nil {
			if t, err := procCPUTicks(host.AgentPID); err == nil {
				n += t
			}
		}
	}
	return n
}

// stopAgents stops both agents (their nftables tables stay in place).
func (p *polLab) stopAgents(ctx context.Context) error {
	for _, h := range p.hosts() {
		if err := p.l.StopAgent(ctx, h); err != nil {
			return err
		}
	}
	return nil
}

// startAgents starts both agents, one after the other, and returns how long
// each took to become ready (its whole state loaded, compiled and enforced).
func (p *polLab) startAgents(ctx context.Context) ([]time.Duration, error) {
	var out []time.Duration
	for _, h := range p.hosts() {
		t0 := time.Now()
		if err := p.l.StartAgent(ctx, h); err != nil {
			return out, err
		}
		out = append(out, time.Since(t0))
	}
	return out, nil
}

// loadCluster writes the fake namespaces, claims blocks for the fake node
// and writes one fake endpoint per address of polFakeNamespaces ×
// polFakePerNS; it returns the number of endpoints.
func (p *polLab) loadCluster(ctx context.Context) (int, error) {
	for _, ns := range fakeNamespaces() {
		if err := p.sc.PutNamespace(ctx, ns); err != nil {
			return 0, err
		}
	}
	st := p.l.State()
	pool, err := netip.ParsePrefix(st.PodCIDR)
	if err != nil {
		return 0, fmt.Errorf("lab pod CIDR: %w", err)
	}
	held, err := p.sc.ListBlocks(ctx)
	if err != nil {
		return 0, err
	}
	taken := map[netip.Prefix]bool{}
	for _, bl := range held {
		taken[bl.CIDR] = true
	}
	want := polFakeNamespaces * polFakePerNS
	var addrs []netip.Addr
	for _, bl := range poolBlocks(pool, st.BlockSize) {
		if len(addrs) >= want {
			break
		}
		if taken[bl] {
			continue
		}
		ok, err := p.sc.ClaimBlock(ctx, bl, polFakeNode)
		if err != nil {
			return 0, err
		}
		if ok {
			addrs = append(addrs, blockAddrs(bl)...)
		}
	}
	if len(addrs) < want {
		return 0, fmt.Errorf("pool %s: only %d free addresses for %d fake endpoints", pool, len(addrs), want)
	}
	var ops []clientv3.Op
	for _, ep := range fakeEndpoints(addrs[:want]) {
		v, err := json.Marshal(ep)
		if err != nil {
			return 0, err
		}
		key := p.sc.Prefix() + store.EndpointModRevKey(ep.Node, api.Owner{ContainerID: ep.ContainerID, IfName: ep.IfName})
		ops = append(ops, clientv3.OpPut(key, string(v)))
	}
	if err := p.commit(ctx, ops); err != nil {
		return 0, err
	}
	return want, nil
}

// commit applies ops in transactions of at most polTxnOps operations.
func (p *polLab) commit(ctx context.Context, ops []clientv3.Op) error {
	for len(ops) > 0 {
		n := min(len(ops), polTxnOps)
		if _, err := p.sc.Etcd().Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			return fmt.Errorf("etcd transaction: %w", err)
		}
		ops = ops[n:]
	}
	return nil
}

// setLevel makes the first n benchPolicy policies the cluster's policies,
// with the agents stopped, and restarts them; it returns each agent's start
// → ready time, or nil when nothing had to change.
func (p *polLab) setLevel(ctx context.Context, n int) ([]time.Duration, error) {
	if n == p.level && !p.dirty {
		return nil, nil
	}
	if err := p.stopAgents(ctx); err != nil {
		return nil, err
	}
	if n < p.level {
		if _, err := p.sc.Etcd().Delete(ctx, p.sc.Prefix()+api.PolicyKeyKind+"/", clientv3.WithPrefix()); err != nil {
			return nil, fmt.Errorf("delete policies: %w", err)
		}
		p.level = 0
	}
	var ops []clientv3.Op
	for i := p.level; i < n; i++ {
		np := benchPolicy(i)
		v, err := json.Marshal(np)
		if err != nil {
			return nil, err
		}
		ops = append(ops, clientv3.OpPut(p.sc.Prefix()+api.PolicyKey(np.Kind, np.Namespace, np.Name), string(v)))
	}
	if err := p.commit(ctx, ops); err != nil {
		return nil, err
	}
	p.level, p.dirty = n, false
	ready, err := p.startAgents(ctx)
	if err != nil {
		return ready, err
	}
	p.b.log.Info("policy level", "policies", n, "ready", ready)
	select {
	case <-ctx.Done():
		return ready, ctx.Err()
	case <-time.After(polSettle):
	}
	return ready, nil
}

// levelStats records the agents' memory and the server host's table.
func (p *polLab) levelStats(ctx context.Context, lv *PolicyLevel) error {
	for _, h := range p.hosts() {
		host, err := p.l.Host(h)
		if err != nil {
			return err
		}
		rss, hwm, _, err := procStatus(host.AgentPID)
		if err != nil {
			return fmt.Errorf("agent on %s: %w", h, err)
		}
		lv.Agents = append(lv.Agents, AgentMem{Host: h, RSSBytes: rss, PeakRSSBytes: hwm})
	}
	d, err := debugGet[api.PolicyStatus](ctx, p.hc[p.srvHost], "/debug/policy")
	if err != nil {
		return err
	}
	lv.Chains, lv.Rules, lv.Sets, lv.Elements = d.Dataplane.Chains, d.Dataplane.Rules, d.Dataplane.Sets, d.Dataplane.Elements
	lv.NftApply = d.Dataplane.LastDuration
	return nil
}

// measureApply times polProbes applies and deletes of probePolicy, each
// until both agents enforce it.
func (p *polLab) measureApply(ctx context.Context, lv *PolicyLevel) error {
	p.dirty = true
	for s := range polProbes {
		np := probePolicy(s)
		d, err := p.timeEnforced(ctx, func() error { _, err := p.sc.PutPolicy(ctx, &np); return err })
		if err != nil {
			return fmt.Errorf("apply %s: %w", np.Name, err)
		}
		lv.Apply = append(lv.Apply, d)
		d, err = p.timeEnforced(ctx, func() error { return p.sc.DeletePolicy(ctx, np.Kind, np.Namespace, np.Name) })
		if err != nil {
			return fmt.Errorf("delete %s: %w", np.Name, err)
		}
		lv.Delete = append(lv.Delete, d)
	}
	p.b.log.Info("policy apply → enforced", "policies", lv.Policies, "p50", percentile(lv.Apply, 50), "max", slices.Max(lv.Apply), "delete_p50", percentile(lv.Delete, 50))
	return nil
}

// timeEnforced runs change (one store write) and returns the time until
// every agent enforces a program compiled after it: the agent's desired
// version has moved past what it was before the write, and its applied
// version has caught up. The end is the agent's own time of that apply
// (its clock is this machine's), or when the bench saw it if that is
// earlier; the start is just before the write.
func (p *polLab) timeEnforced(ctx context.Context, change func() error) (time.Duration, error) {
	before := map[string]uint64{}
	for _, h := range p.hosts() {
		d, err := debugGet[api.PolicyStatus](ctx, p.hc[h], "/debug/policy")
		if err != nil {
			return 0, err
		}
		if d.AppliedVersion != d.DesiredVersion {
			return 0, fmt.Errorf("agent on %s is still applying (desired %d, applied %d)", h, d.DesiredVersion, d.AppliedVersion)
		}
		before[h] = d.DesiredVersion
	}
	t0 := time.Now()
	if err := change(); err != nil {
		return 0, err
	}
	ends := make([]time.Time, len(p.hosts()))
	g, gctx := errgroup.WithContext(ctx)
	for i, h := range p.hosts() {
		g.Go(func() error {
			wctx, cancel := context.WithTimeout(gctx, polEnforceTimeout)
			defer cancel()
			for {
				d, err := debugGet[api.PolicyStatus](wctx, p.hc[h], "/debug/policy")
				seen := time.Now()
				if err != nil {
					return err
				}
				if d.DesiredVersion > before[h] && d.AppliedVersion >= d.DesiredVersion {
					ends[i] = seen
					if at := d.Dataplane.LastApply; at.After(t0) && at.Before(seen) {
						ends[i] = at
					}
					return nil
				}
				select {
				case <-wctx.Done():
					return fmt.Errorf("agent on %s: not enforced after %s (desired %d, applied %d, last error %q)", h, polEnforceTimeout, d.DesiredVersion, d.AppliedVersion, d.LastError)
				case <-time.After(5 * time.Millisecond):
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	var last time.Time
	for _, e := range ends {
		if e.After(last) {
			last = e
		}
	}
	return last.Sub(t0), nil
}

// compileInput reads what the agents load and turns it into the
// compiler's input as an agent does (policyinput.FromSnapshot: every stored policy
// decoded and validated by api.DecodePolicy); it returns how long the
// decoding took.
func (p *polLab) compileInput(ctx context.Context) (policy.Input, time.Duration, error) {
	in := policy.Input{}
	var err error
	if in.Endpoints, err = p.sc.ListEndpoints(ctx); err != nil {
		return in, 0, err
	}
	if in.Namespaces, err = p.sc.ListNamespaces(ctx); err != nil {
		return in, 0, err
	}
	if in.Nodes, err = p.sc.ListNodes(ctx); err != nil {
		return in, 0, err
	}
	resp, err := p.sc.Etcd().Get(ctx, p.sc.Prefix()+api.PolicyKeyKind+"/", clientv3.WithPrefix())
	if err != nil {
		return in, 0, fmt.Errorf("list policies: %w", err)
	}
	t0 := time.Now()
	for _, kv := range resp.Kvs {
		kind, _, _, ok := api.ParsePolicyKey(string(kv.Key[len(p.sc.Prefix()):]))
		if !ok {
			continue
		}
		o, err := api.DecodePolicy(kind, kv.Value)
		if err != nil {
			return in, 0, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		switch np := o.(type) {
		case *api.NetworkPolicy:
			in.NetworkPolicies = append(in.NetworkPolicies, *np)
		case *api.AdminNetworkPolicy:
			in.ANPs = append(in.ANPs, *np)
		case *api.BaselineAdminNetworkPolicy:
			in.BANPs = append(in.BANPs, *np)
		}
	}
	return in, time.Since(t0), nil
}

// measureCompile times, in this process and on what the agents load, the
// decoding of the stored policies and the compile of the server node's
// share (what its agent does on every change); at polCompilePolicies also
// the whole cluster's compile (every endpoint's program, as trace and matrix
// do), polCompileRuns times each.
func (p *polLab) measureCompile(ctx context.Context, res *PolicyResult, lv *PolicyLevel) error {
	in, dec, err := p.compileInput(ctx)
	if err != nil {
		return err
	}
	lv.Decode = dec
	in.Node = p.srvHost
	t0 := time.Now()
	policy.Compile(in)
	lv.CompileNode = time.Since(t0)
	if lv.Policies != polCompilePolicies {
		return nil
	}
	res.CompilePolicies, res.CompileEndpoints = len(in.NetworkPolicies), len(in.Endpoints)
	for range polCompileRuns {
		t0 := time.Now()
		policy.Compile(in)
		res.CompileNode = append(res.CompileNode, time.Since(t0))
	}
	in.Node = ""
	var prog *policy.Program
	for range polCompileRuns {
		t0 := time.Now()
		prog = policy.Compile(in)
		res.Compile = append(res.Compile, time.Since(t0))
	}
	res.CompileSets = len(prog.Sets)
	for i := range prog.Endpoints {
		for _, d := range []*policy.Direction{&prog.Endpoints[i].Ingress, &prog.Endpoints[i].Egress} {
			res.CompileRules += len(d.ANP) + len(d.NP) + len(d.BANP)
		}
	}
	p.b.log.Info("policy compile", "policies", res.CompilePolicies, "endpoints", res.CompileEndpoints, "full", res.Compile, "node", res.CompileNode)
	return nil
}

// firstSeen records when addresses were first seen, safe for concurrent use.
type firstSeen struct {
	mu sync.Mutex
	at map[netip.Addr]time.Time // guarded by mu
}

func (f *firstSeen) mark(a netip.Addr, t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.at[a]; !ok {
		f.at[a] = t
	}
}

func (f *firstSeen) get(a netip.Addr) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.at[a]
	return t, ok
}

// measureNewEndpoints adds polNewEndpoints client-labelled containers on the
// client's host and times each from its endpoint record in etcd (the bench's
// watch) to its address being added to a set on the server's host (`nft
// monitor` there): the server's policies allow app=client, so every new
// client belongs in their set.
func (p *polLab) measureNewEndpoints(ctx context.Context) ([]time.Duration, error) {
	p.dirty = true
	inSet := &firstSeen{at: map[netip.Addr]time.Time{}}
	created := &firstSeen{at: map[netip.Addr]time.Time{}}

	stopMonitor, err := p.b.monitorSetAdds(p.srvHost, inSet)
	if err != nil {
		return nil, err
	}
	defer stopMonitor()

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	prefix := p.sc.Prefix() + store.EndpointModRevKey(p.cliHost, api.Owner{ContainerID: "x", IfName: "x"})
	prefix = prefix[:len(prefix)-len("x/x")]
	wch := p.sc.Etcd().Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	if resp, ok := <-wch; !ok || !resp.Created {
		return nil, fmt.Errorf("watch %s not established", prefix)
	}
	go func() {
		for resp := range wch {
			t := time.Now()
			for _, ev := range resp.Events {
				if ev.Type != clientv3.EventTypePut || !ev.IsCreate() {
					continue
				}
				var ep api.Endpoint
				if json.Unmarshal(ev.Kv.Value, &ep) != nil {
					continue
				}
				// The agent stamps Created just before it publishes the
				// record; whichever of that and this watch is earlier
				// bounds the commit best.
				at := t
				if !ep.Created.IsZero() && ep.Created.Before(at) {
					at = ep.Created
				}
				for _, a := range ep.IPs {
					created.mark(a, at)
				}
			}
		}
	}()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(polMonitorStart):
	}

	var res []time.Duration
	for s := range polNewEndpoints {
		c, err := p.l.AddContainer(ctx, p.cliHost, lab.ContainerOpts{Namespace: polNamespace, Name: fmt.Sprintf("new-%d", s), Labels: map[string]string{polLabelKey: polClientApp}})
		if err != nil {
			return res, err
		}
		deadline := time.Now().Add(polEnforceTimeout)
		for {
			tc, ok1 := created.get(c.IP)
			ts, ok2 := inSet.get(c.IP)
			if ok1 && ok2 {
				res = append(res, ts.Sub(tc))
				break
			}
			if time.Now().After(deadline) {
				return res, fmt.Errorf("new endpoint %s (%s): record seen %v, in a set on %s %v after %s", c.Name, c.IP, ok1, p.srvHost, ok2, polEnforceTimeout)
			}
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(2 * time.Millisecond):
			}
		}
	}
	p.b.log.Info("new endpoint → remote set", "p50", percentile(res, 50), "max", slices.Max(res))
	return res, nil
}

// monitorSetAdds runs `nft monitor` in host and marks in inSet when each
// address is first added to a set there, until the returned stop is called.
func (b *bench) monitorSetAdds(host string, inSet *firstSeen) (stop func(), err error) {
	mon := exec.Command("nft", "monitor")
	out, err := mon.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := b.startTracked(host, mon); err != nil {
		return nil, fmt.Errorf("nft monitor in %s: %w", host, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			t := time.Now()
			for _, a := range nftElementAdds(sc.Text()) {
				inSet.mark(a, t)
			}
		}
		_, _ = io.Copy(io.Discard, out) // a line over the buffer: drain until killed
	}()
	return func() {
		_ = mon.Process.Kill() // it runs until killed
		_ = mon.Wait()         // the status of a killed process
	}, nil
}
