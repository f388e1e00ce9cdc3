package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
	"github.com/skeinnet/skein/store"
)

// The scale phase (issue 9, item 5): a lab of one real host whose agent is
// measured from outside (/proc, routes in its namespace, its debug
// endpoint) while simulated nodes, each with a node record, one block and
// scaleEndpoints endpoint records, are written straight into the lab's etcd.
// Each node step starts from no simulated node (the agent is stopped, the
// keys deleted and the agent started again), so its sync time is that of
// the whole step. Policy steps then add NetworkPolicies at the largest node
// count.

// Bounds and paces of the scale phase.
const (
	scaleTxnOps = polTxnOps
	// scalePoll is the interval of the route count while syncing.
	scalePoll = 20 * time.Millisecond
	// scaleSettle lets the agent finish after a burst before a window opens.
	scaleSettle = 2 * time.Second
	// scaleNewEndpoints is the number of new endpoint → remote set samples.
	scaleNewEndpoints = 20
	// scaleSetTimeout bounds one new endpoint → set wait.
	scaleSetTimeout = 60 * time.Second
	// An agent is quiet when it used at most scaleQuietTicks clock ticks
	// over scaleQuietSpan (10 % of a core); quiesce waits at most
	// scaleQuiesceMax for that.
	scaleQuietTicks = 5
	scaleQuietSpan  = 500 * time.Millisecond
	scaleQuiesceMax = 30 * time.Second
	// scaleCatchUpMax bounds the wait for the agent to work off the
	// endpoint changes of the CPU figure.
	scaleCatchUpMax = 2 * time.Minute
	// scaleJoinBase is the index of the first joining node, above any step.
	scaleJoinBase = 90000
)

// scaleLab is the scale phase's lab and what it has written.
type scaleLab struct {
	b      *bench
	l      *lab.Lab
	sc     *store.Client
	host   string
	hc     *http.Client
	nl     *netlink.Handle
	blocks []netip.Prefix // free blocks for simulated nodes, by node slot
	next   int            // next unused slot of blocks
	// written maps each simulated node written to its block.
	written map[int]netip.Prefix
	nodes   int // simulated nodes of the last sync (indexes 0..nodes-1)
	extra   int // endpoint records added after sync (changes, probes)
	level   int // policies in etcd
}

// measureScale runs the scale phase on a lab of its own, which it removes.
func (b *bench) measureScale(ctx context.Context) (res *ScaleResult, err error) {
	name := b.cfg.scaleLab
	dir := filepath.Join(runDir, name)
	defer b.labDown(ctx, name, dir, false, &err)
	b.log.Info("scale lab up", "name", name)
	l, err := lab.Up(ctx, lab.Config{Name: name, Hosts: 1, ContainersPerHost: -1, PodCIDR: scalePodCIDR, BlockSize: scaleBlockBits, BinDir: b.cfg.bin, RunDir: dir, Log: b.log})
	if err != nil {
		return nil, err
	}
	s := &scaleLab{b: b, l: l, host: l.Hosts()[0].Name, written: map[int]netip.Prefix{}}
	if err := checkUnroutable(l); err != nil {
		return nil, err
	}
	cfg := l.StoreConfig()
	cfg.DialTimeout, cfg.Log = 10*time.Second, slog.New(slog.DiscardHandler)
	if s.sc, err = store.New(ctx, cfg); err != nil {
		return nil, err
	}
	defer s.sc.Close()
	if s.hc, err = l.HTTPClient(s.host); err != nil {
		return nil, err
	}
	if s.nl, err = handleIn(s.host); err != nil {
		return nil, err
	}
	defer s.nl.Close()
	for _, ns := range fakeNamespaces() {
		if err := s.sc.PutNamespace(ctx, ns); err != nil {
			return nil, err
		}
	}
	maxNodes := 0
	for _, n := range b.cfg.scaleNodes {
		maxNodes = max(maxNodes, n)
	}
	held, err := s.sc.ListBlocks(ctx)
	if err != nil {
		return nil, err
	}
	taken := map[netip.Prefix]bool{}
	for _, bl := range held {
		taken[bl.CIDR] = true
	}
	if s.blocks, err = freeBlocks(netip.MustParsePrefix(scalePodCIDR), scaleBlockBits, maxNodes+b.cfg.scaleJoins*(len(b.cfg.scaleNodes)+len(b.cfg.scalePolicies)+1), taken); err != nil {
		return nil, err
	}

	res = &ScaleResult{Host: s.host, EndpointsPerNode: b.cfg.scaleEndpoints, Changes: b.cfg.scaleChanges, ChangeRate: b.cfg.scaleChangeRate, IdleWindow: b.cfg.scaleIdle, SyncTimeout: b.cfg.scaleSyncTimeout}
	for _, n := range b.cfg.scaleNodes {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		st := ScaleStep{Nodes: n}
		err := s.nodeStep(ctx, &st)
		if err != nil {
			st.Err = err.Error()
			b.log.Warn("scale step failed", "nodes", n, "err", err)
		}
		res.Steps = append(res.Steps, st)
	}
	if len(b.cfg.scalePolicies) > 0 {
		if err := s.addServer(ctx); err != nil {
			return res, err
		}
	}
	for _, p := range b.cfg.scalePolicies {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		st := ScaleStep{Nodes: len(s.written), Policies: p}
		if err := s.policyStep(ctx, &st); err != nil {
			st.Err = err.Error()
			b.log.Warn("scale policy step failed", "policies", p, "err", err)
		}
		res.Steps = append(res.Steps, st)
	}
	return res, nil
}

// checkUnroutable makes sure no lab host can reach the simulated underlay:
// the kernel must find no route to any address of it.
func checkUnroutable(l *lab.Lab) error {
	ul := netip.MustParsePrefix(scaleUnderlay)
	probe := []netip.Addr{ul.Addr().Next(), simUnderlay(50000)}
	for _, h := range l.Hosts() {
		nh, err := handleIn(h.Name)
		if err != nil {
			return err
		}
		for _, a := range probe {
			if rs, err := nh.RouteGet(a.AsSlice()); err == nil {
				nh.Close()
				return fmt.Errorf("host %s routes %s (%v): the simulated underlay %s must be unroutable", h.Name, a, rs, ul)
			}
		}
		nh.Close()
	}
	return nil
}

// nodeStep measures one node count from a cluster without simulated nodes.
func (s *scaleLab) nodeStep(ctx context.Context, st *ScaleStep) error {
	if err := s.reset(ctx); err != nil {
		return err
	}
	if err := s.sync(ctx, st); err != nil {
		return err
	}
	return s.steady(ctx, st)
}

// reset stops the agent, deletes every simulated key and starts it again.
func (s *scaleLab) reset(ctx context.Context) error {
	if err := s.l.StopAgent(ctx, s.host); err != nil {
		return err
	}
	p := s.sc.Prefix()
	var ops []clientv3.Op
	for _, pre := range []string{"nodes/" + scaleNodePrefix, "endpoints/" + scaleNodePrefix} {
		ops = append(ops, clientv3.OpDelete(p+pre, clientv3.WithPrefix()))
	}
	for _, bl := range s.written {
		ops = append(ops, clientv3.OpDelete(p+"blocks/"+api.BlockKeyName(bl)))
	}
	if err := s.commit(ctx, ops); err != nil {
		return err
	}
	s.written, s.extra, s.next, s.nodes = map[int]netip.Prefix{}, 0, 0, 0
	return s.l.StartAgent(ctx, s.host)
}

// commit applies ops in transactions of at most scaleTxnOps operations.
func (s *scaleLab) commit(ctx context.Context, ops []clientv3.Op) error {
	for len(ops) > 0 {
		n := min(len(ops), scaleTxnOps)
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := s.sc.Etcd().Txn(cctx).Then(ops[:n]...).Commit()
		cancel()
		if err != nil {
			return fmt.Errorf("etcd transaction: %w", err)
		}
		ops = ops[n:]
	}
	return nil
}

// nodeOps returns the puts of simulated node i with perNode endpoints on the
// next free block.
func (s *scaleLab) nodeOps(i, perNode int) ([]clientv3.Op, netip.Prefix, error) {
	if s.next >= len(s.blocks) {
		return nil, netip.Prefix{}, fmt.Errorf("simulated node %d: no free block left", i)
	}
	bl := s.blocks[s.next]
	s.next++
	kvs, err := simNodeKVs(i, perNode, bl)
	if err != nil {
		return nil, bl, err
	}
	ops := make([]clientv3.Op, 0, len(kvs))
	for _, kv := range kvs {
		ops = append(ops, clientv3.OpPut(s.sc.Prefix()+kv.Key, kv.Value))
	}
	s.written[i] = bl
	return ops, bl, nil
}

// sync writes st.Nodes simulated nodes and measures the time from the first
// write until every simulated block is routed over the VXLAN device.
func (s *scaleLab) sync(ctx context.Context, st *ScaleStep) error {
	want := map[netip.Prefix]bool{}
	pid, err := s.agentPID()
	if err != nil {
		return err
	}
	ticks0, err := procCPUTicks(pid)
	if err != nil {
		return err
	}
	t0 := time.Now()
	var ops []clientv3.Op
	for i := range st.Nodes {
		o, bl, err := s.nodeOps(i, s.b.cfg.scaleEndpoints)
		if err != nil {
			return err
		}
		want[bl] = true
		// A node's keys go in one transaction (its agent claims, publishes
		// and registers in turn); whole nodes share one when they fit.
		if len(ops)+len(o) > scaleTxnOps {
			if err := s.commit(ctx, ops); err != nil {
				return err
			}
			ops = nil
		}
		ops = append(ops, o...)
	}
	if err := s.commit(ctx, ops); err != nil {
		return err
	}
	st.WriteTime = time.Since(t0)
	s.nodes = st.Nodes
	deadline := t0.Add(s.b.cfg.scaleSyncTimeout)
	for {
		n, err := s.routed(want)
		if err != nil {
			return err
		}
		st.SyncRoutes = n
		if n == len(want) {
			st.Sync, st.SyncDone = time.Since(t0), true
			break
		}
		if time.Now().After(deadline) {
			st.Sync = time.Since(t0)
			s.b.log.Warn("scale sync timed out", "nodes", st.Nodes, "routed", n, "after", st.Sync)
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(scalePoll):
		}
	}
	if ticks, err := procCPUTicks(pid); err == nil {
		st.SyncCPU = float64(ticks-ticks0) / clockTicks
	}
	s.b.log.Info("scale sync", "nodes", st.Nodes, "done", st.SyncDone, "routed", st.SyncRoutes, "took", st.Sync.Round(time.Millisecond), "writes", st.WriteTime.Round(time.Millisecond), "cpu_s", st.SyncCPU)
	return nil
}

// routed counts the prefixes of want routed over the VXLAN device with
// Skein's protocol in the host's namespace.
func (s *scaleLab) routed(want map[netip.Prefix]bool) (int, error) {
	link, err := s.nl.LinkByName(api.VXLANDevice)
	if err != nil {
		return 0, nil // not created yet
	}
	rs, err := s.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: api.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return 0, fmt.Errorf("routes in %s: %w", s.host, err)
	}
	n := 0
	for _, r := range rs {
		if r.Dst == nil || r.LinkIndex != link.Attrs().Index {
			continue
		}
		a, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok {
			continue
		}
		bits, _ := r.Dst.Mask.Size()
		if want[netip.PrefixFrom(a.Unmap(), bits)] {
			n++
		}
	}
	return n, nil
}

func (s *scaleLab) agentPID() (int, error) {
	h, err := s.l.Host(s.host)
	if err != nil {
		return 0, err
	}
	if h.AgentPID == 0 {
		return 0, fmt.Errorf("agent on %s not running", s.host)
	}
	return h.AgentPID, nil
}

// steady measures, after a sync, RSS, idle CPU, joins and CPU per remote
// endpoint change.
func (s *scaleLab) steady(ctx context.Context, st *ScaleStep) error {
	if err := sleepCtx(ctx, scaleSettle); err != nil {
		return err
	}
	pid, err := s.agentPID()
	if err != nil {
		return err
	}
	if st.RSS, _, _, err = procStatus(pid); err != nil {
		return fmt.Errorf("agent on %s: %w", s.host, err)
	}
	if err := s.quiesce(ctx, pid); err != nil {
		return err
	}
	ticks0, err := procCPUTicks(pid)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := sleepCtx(ctx, s.b.cfg.scaleIdle); err != nil {
		return err
	}
	ticks1, err := procCPUTicks(pid)
	if err != nil {
		return err
	}
	st.IdlePct = float64(ticks1-ticks0) / clockTicks / time.Since(t0).Seconds() * 100
	s.b.log.Info("scale idle", "nodes", st.Nodes, "policies", st.Policies, "rss_mb", fmt.Sprintf("%.1f", float64(st.RSS)/(1<<20)), "idle_pct", fmt.Sprintf("%.2f", st.IdlePct))
	if err := s.joins(ctx, st); err != nil {
		return err
	}
	return s.changes(ctx, st, pid)
}

// quiesce waits, at most scaleQuiesceMax, until the agent used at most
// scaleQuietTicks of CPU over scaleQuietSpan, so that a window does not
// start with the backlog of what came before.
func (s *scaleLab) quiesce(ctx context.Context, pid int) error {
	_, err := s.quiesceFor(ctx, pid, scaleQuiesceMax)
	return err
}

// quiesceFor is quiesce with a bound of its own; it reports whether the
// agent became quiet.
func (s *scaleLab) quiesceFor(ctx context.Context, pid int, bound time.Duration) (bool, error) {
	deadline := time.Now().Add(bound)
	prev, err := procCPUTicks(pid)
	if err != nil {
		return false, err
	}
	for time.Now().Before(deadline) {
		if err := sleepCtx(ctx, scaleQuietSpan); err != nil {
			return false, err
		}
		t, err := procCPUTicks(pid)
		if err != nil {
			return false, err
		}
		if t-prev <= scaleQuietTicks {
			return true, nil
		}
		prev = t
	}
	s.b.log.Warn("agent not quiet", "host", s.host, "after", bound)
	return false, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// joins writes cfg.scaleJoins more nodes, one at a time (block and node
// record in one transaction, no endpoints yet), and times each from its
// record to its route, as the join-watch helper saw them.
func (s *scaleLab) joins(ctx context.Context, st *ScaleStep) error {
	w, err := s.b.startJoinWatcher(ctx, s.l.EtcdEndpoints()[0], s.sc.Prefix())
	if err != nil {
		return err
	}
	defer func() {
		if err := w.stop(); err != nil {
			s.b.log.Warn("join watcher", "err", err)
		}
	}()
	if err := w.subscribe(ctx, s.host); err != nil {
		return err
	}
	for k := range s.b.cfg.scaleJoins {
		i := scaleJoinBase + s.next
		ops, bl, err := s.nodeOps(i, 0)
		if err != nil {
			return err
		}
		if err := s.commit(ctx, ops); err != nil {
			return err
		}
		t0, _, last, err := waitRoutes(ctx, w, simNodeName(i), []string{s.host}, []netip.Prefix{bl})
		if err != nil {
			return err
		}
		st.Joins = append(st.Joins, time.Duration(last-t0))
		s.b.log.Debug("scale join", "n", k+1, "node", simNodeName(i), "took", time.Duration(last-t0))
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	s.b.log.Info("scale joins", "nodes", st.Nodes, "policies", st.Policies, "p50", percentile(st.Joins, 50), "p99", percentile(st.Joins, 99))
	return nil
}

// changeOp returns the put of extra endpoint k: a new endpoint on one of the
// simulated nodes, on an address of its block above the synced ones, in
// the given namespace ("": as simEndpoint spreads them).
func (s *scaleLab) changeOp(k int, namespace string) (clientv3.Op, netip.Addr, error) {
	per, base := s.b.cfg.scaleEndpoints, s.nodes
	if base <= 0 {
		return clientv3.Op{}, netip.Addr{}, errors.New("no simulated node to add endpoints to")
	}
	node := k % base
	bl := s.written[node]
	j := per + k/base
	if j >= blockSize(bl)-1 {
		return clientv3.Op{}, netip.Addr{}, fmt.Errorf("endpoint change %d: block %s of %s is full", k, bl, simNodeName(node))
	}
	a := bl.Masked().Addr()
	for range j + 1 {
		a = a.Next()
	}
	ep := simEndpoint(node, j, per, a)
	ep.ContainerID = fmt.Sprintf("simx%05d%03d", node, j)
	if namespace != "" {
		ep.Namespace = namespace
	}
	ep.Created = time.Now()
	v, err := json.Marshal(ep)
	if err != nil {
		return clientv3.Op{}, a, err
	}
	return clientv3.OpPut(s.sc.Prefix()+simEndpointKey(ep), string(v)), a, nil
}

// changes puts cfg.scaleChanges new remote endpoints at -scale-change-rate
// per second and charges the agent's CPU from the first put until it is
// quiet again (at most scaleCatchUpMax after the last), minus its idle
// rate, to them.
func (s *scaleLab) changes(ctx context.Context, st *ScaleStep, pid int) error {
	n := s.b.cfg.scaleChanges
	if err := s.quiesce(ctx, pid); err != nil {
		return err
	}
	ticks0, err := procCPUTicks(pid)
	if err != nil {
		return err
	}
	t0 := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(s.b.cfg.scaleChangeRate))
	defer tick.Stop()
	for k := range n {
		op, _, err := s.changeOp(s.extra+k, "")
		if err != nil {
			return err
		}
		if err := s.commit(ctx, []clientv3.Op{op}); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	s.extra += n
	// The window closes when the agent has worked off the changes (a
	// recomputing agent lags far behind at 1 000 nodes), within a bound.
	if err := sleepCtx(ctx, scaleSettle); err != nil {
		return err
	}
	quiet, err := s.quiesceFor(ctx, pid, scaleCatchUpMax)
	if err != nil {
		return err
	}
	st.ChangeLagged = !quiet
	ticks1, err := procCPUTicks(pid)
	if err != nil {
		return err
	}
	window := time.Since(t0).Seconds()
	used := float64(ticks1-ticks0) / clockTicks
	st.ChangeCPU = max(0, used-st.IdlePct/100*window) / float64(n)
	st.ChangeCPURaw = used / float64(n)
	s.b.log.Info("scale endpoint changes", "nodes", st.Nodes, "policies", st.Policies, "n", n, "cpu_s_each", fmt.Sprintf("%.4f", st.ChangeCPU), "raw", fmt.Sprintf("%.4f", st.ChangeCPURaw))
	return nil
}
