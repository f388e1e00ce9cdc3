package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/nflog"
	"github.com/skeinnet/skein/policy"
	"github.com/skeinnet/skein/store"
)

const (
	// dropRingSize bounds the drops kept for /debug/drops.
	dropRingSize = 1024
	// maxDropRules bounds the rule label of skein_policy_drops_total; the
	// rest count under otherRule.
	maxDropRules = 200
	otherRule    = "other"
)

// dropLog reads the drops nftables logs to policy.DropLogGroup and keeps the
// recent ones in a ring.
type dropLog struct {
	log     *slog.Logger
	node    string
	lookup  func(src, dst netip.Addr) (from, to *api.EndpointRef)
	counter *prometheus.CounterVec

	mu        sync.Mutex
	ring      []api.Drop
	seq       uint64
	rules     map[string]bool
	readerErr string
	// off: skeind --drop-log=false, nothing is logged.
	off bool
}

// startDrops creates a's drop log; run it with a.drops.run.
func (a *Agent) startDrops() {
	a.drops = newDropLog(a.log, a.cfg.NodeName, a.metrics.reg, func(src, dst netip.Addr) (from, to *api.EndpointRef) {
		a.readView(func(snap store.Snapshot) { from, to = endpointsByAddr(snap, src, dst) })
		return from, to
	})
	a.drops.off = a.cfg.NoDropLog
}

func newDropLog(log *slog.Logger, node string, reg prometheus.Registerer, lookup func(src, dst netip.Addr) (from, to *api.EndpointRef)) *dropLog {
	d := &dropLog{
		log: log, node: node, lookup: lookup, rules: map[string]bool{},
		counter: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skein_policy_drops_total",
			Help: "Dropped packets logged by policy and anti-spoofing rules (rate-limited per endpoint), by rule.",
		}, []string{"rule"}),
	}
	reg.MustRegister(d.counter)
	return d
}

// run reads the log group until ctx ends. A reader that cannot start (no
// nfnetlink_log) is reported at /debug/drops, not fatal: enforcement does
// not depend on it.
func (d *dropLog) run(ctx context.Context) error {
	if d.off {
		d.mu.Lock()
		d.readerErr = "drop logging is off on this node (skeind --drop-log=false)"
		d.mu.Unlock()
		return nil
	}
	r, err := nflog.Open(policy.DropLogGroup, 0)
	if err != nil {
		d.fail(err)
		return nil
	}
	defer func() { _ = r.Close() }()
	err = r.Run(ctx, func(p nflog.Packet) { d.add(p, time.Now()) })
	if err != nil && !errors.Is(err, context.Canceled) {
		d.fail(err)
	}
	return nil
}

func (d *dropLog) fail(err error) {
	d.log.Warn("drop log reader stopped", "err", err)
	d.mu.Lock()
	d.readerErr = err.Error()
	d.mu.Unlock()
}

func (d *dropLog) add(p nflog.Packet, now time.Time) {
	drop := api.Drop{
		Time: now, Rule: p.Prefix, Src: p.Src, Dst: p.Dst, Proto: protoName(p.Proto),
		SrcPort: p.SrcPort, DstPort: p.DstPort,
	}
	if d.lookup != nil {
		drop.From, drop.To = d.lookup(p.Src, p.Dst)
	}
	drop.Rule = ruleText(&drop)
	d.mu.Lock()
	d.seq++
	drop.Seq = d.seq
	if len(d.ring) < dropRingSize {
		d.ring = append(d.ring, drop)
	} else {
		d.ring[(d.seq-1)%dropRingSize] = drop
	}
	label := p.Prefix
	if !d.rules[label] {
		if len(d.rules) >= maxDropRules {
			label = otherRule
		} else {
			d.rules[label] = true
		}
	}
	d.mu.Unlock()
	d.counter.WithLabelValues(label).Inc()
}

// snapshot returns the drops after seq, oldest first.
func (d *dropLog) snapshot(since uint64, now time.Time) api.Drops {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := api.Drops{Node: d.node, Now: now, Capacity: dropRingSize, Total: d.seq, Reader: d.readerErr, Drops: []api.Drop{}}
	n := uint64(len(d.ring))
	for s := d.seq - n + 1; s <= d.seq && n > 0; s++ {
		if s > since {
			out.Drops = append(out.Drops, d.ring[(s-1)%dropRingSize])
		}
	}
	return out
}

func (d *dropLog) serve(w http.ResponseWriter, r *http.Request) {
	if d == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "the drop log is not running"})
		return
	}
	var since uint64
	if s := r.URL.Query().Get("since"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			http.Error(w, "since: want a drop sequence number: "+err.Error(), http.StatusBadRequest)
			return
		}
		since = v
	}
	out := d.snapshot(since, time.Now())
	writeJSON(w, http.StatusOK, &out)
}

// ruleText completes an isolation drop's prefix with the isolated endpoint,
// to the text `policy trace` prints: "x/a is isolated for ingress by ...".
func ruleText(d *api.Drop) string {
	isolated := policy.IsolatedLogPrefix + "ingress"
	who, addr := d.To, d.Dst
	if !strings.HasPrefix(d.Rule, isolated) {
		isolated = policy.IsolatedLogPrefix + "egress"
		who, addr = d.From, d.Src
		if !strings.HasPrefix(d.Rule, isolated) {
			return d.Rule
		}
	}
	name := addr.String()
	if who != nil {
		name = who.Namespace + "/" + who.Name
	}
	return name + " is " + d.Rule
}

func protoName(p uint8) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "TCP"
	case unix.IPPROTO_UDP:
		return "UDP"
	case unix.IPPROTO_SCTP:
		return "SCTP"
	case unix.IPPROTO_ICMP:
		return "ICMP"
	}
	return strconv.Itoa(int(p))
}

// endpointsByAddr names the endpoints (of any node) that own src and dst.
func endpointsByAddr(snap store.Snapshot, src, dst netip.Addr) (from, to *api.EndpointRef) {
	for _, ep := range snap.Endpoints {
		for _, ip := range ep.IPs {
			switch ip {
			case src:
				from = &api.EndpointRef{Namespace: ep.Namespace, Name: ep.Name}
			case dst:
				to = &api.EndpointRef{Namespace: ep.Namespace, Name: ep.Name}
			}
		}
	}
	return from, to
}
