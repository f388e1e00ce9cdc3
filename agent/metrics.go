package agent

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/skeinnet/skein/api"
)

// metrics is the agent's Prometheus registry; a registry per agent keeps
// tests that run several agents in one process apart.
type metrics struct {
	reg      *prometheus.Registry
	cni      *prometheus.HistogramVec
	etcdErrs *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		cni: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "skein_cni_request_duration_seconds",
			Help:    "Time the agent took to answer skein-cni, by verb and result.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"verb", "result"}),
		etcdErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skein_etcd_errors_total",
			Help: "Failed etcd requests, by operation.",
		}, []string{"op"}),
	}
	m.reg.MustRegister(m.cni, m.etcdErrs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

// Unwrap lets http.ResponseController reach the connection (to flush).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

// instrument times every CNI API call.
func (m *metrics) instrument(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(rec, r)
		verb := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		result := "ok"
		if rec.code >= 300 {
			result = "error_" + strconv.Itoa(rec.code)
		}
		m.cni.WithLabelValues(verb, result).Observe(time.Since(start).Seconds())
	})
}

// etcdError counts one failed etcd request of operation op.
func (m *metrics) etcdError(op string) {
	m.etcdErrs.WithLabelValues(op).Inc()
}

// gauge registers a gauge computed at scrape time.
func (m *metrics) gauge(name, help string, f func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// registerAgent registers the gauges and counters read from the agent's
// components at scrape time.
func (m *metrics) registerAgent(a *Agent) {
	m.gauge("skein_endpoints", "Container attachments on this node.", func() float64 {
		return float64(len(a.alloc.Allocations()))
	})
	m.gauge("skein_ipam_blocks", "Address blocks this node holds.", func() float64 {
		return float64(a.alloc.Stats().Blocks)
	})
	m.gauge("skein_ipam_addresses_used", "Addresses allocated on this node.", func() float64 {
		return float64(a.alloc.Stats().Used)
	})
	m.gauge("skein_ipam_addresses_free", "Addresses free in this node's blocks.", func() float64 {
		return float64(a.alloc.Stats().Free)
	})
	m.gauge("skein_ipam_addresses_cooling", "Released addresses resting before reuse.", func() float64 {
		return float64(a.alloc.Stats().Cooling)
	})
	m.gauge("skein_watch_resyncs", "Times the etcd watch had to reload everything.", func() float64 {
		if a.store == nil {
			return 0
		}
		return float64(a.store.Resyncs())
	})
	m.gauge("skein_ready", "1 when the agent is ready (block held, dataplane synced, socket serving).", func() float64 {
		if ok, _ := a.readiness(); ok {
			return 1
		}
		return 0
	})
	m.reg.MustRegister(&agentCollector{a: a})
}

// agentCollector reads component state at scrape time.
type agentCollector struct {
	a *Agent
}

var (
	descSyncs = prometheus.NewDesc("skein_reconcile_syncs_total",
		"Syncs a component's reconciler made.", []string{"component"}, nil)
	descSyncErrors = prometheus.NewDesc("skein_reconcile_errors_total",
		"Syncs of a component's reconciler that failed.", []string{"component"}, nil)
	descLastSync = prometheus.NewDesc("skein_reconcile_last_sync_timestamp_seconds",
		"When a component's reconciler last synced (Unix time).", []string{"component"}, nil)
	descLastOps = prometheus.NewDesc("skein_reconcile_last_ops",
		"Changes the last sync of a component's reconciler made.", []string{"component"}, nil)
	descObjects = prometheus.NewDesc("skein_dataplane_objects",
		"Kernel objects a component wants, by component and kind.", []string{"component", "kind"}, nil)
	descPeers = prometheus.NewDesc("skein_peers",
		"Other nodes by the state of this node's link to them.", []string{"state"}, nil)
	descNodes = prometheus.NewDesc("skein_nodes",
		"Nodes in the cluster by heartbeat.", []string{"alive"}, nil)
	descStoreErrors = prometheus.NewDesc("skein_store_undecodable_keys",
		"Keys in etcd whose value does not decode (see /debug/topology storeErrors).", nil, nil)
	descBGPSessions = prometheus.NewDesc("skein_bgp_sessions",
		"BGP sessions by state.", []string{"state"}, nil)
	descBGPSessionUp = prometheus.NewDesc("skein_bgp_session_up",
		"1 when the BGP session with a peer is established.", []string{"peer", "name"}, nil)
	descLastDuration = prometheus.NewDesc("skein_reconcile_last_duration_seconds",
		"How long the last sync of a component's reconciler took (policy: its nftables apply).", []string{"component"}, nil)
	descPolicyRules = prometheus.NewDesc("skein_policy_rules",
		"Rules in Skein's nftables table.", nil, nil)
	descPolicySets = prometheus.NewDesc("skein_policy_sets",
		"Sets and maps in Skein's nftables table.", nil, nil)
	descPolicyElements = prometheus.NewDesc("skein_policy_set_elements",
		"Elements of all sets and maps in Skein's nftables table.", nil, nil)
	descPolicyVersion = prometheus.NewDesc("skein_policy_program_version",
		"Version of the compiled policy program: desired, and applied to nftables.", []string{"state"}, nil)
	descPolicyBad = prometheus.NewDesc("skein_policy_undecodable",
		"Stored policies that do not decode or validate (quarantined, or their last valid version kept).", nil, nil)
	descDrift = prometheus.NewDesc("skein_drift_repairs_total",
		"Foreign changes to what Skein owns in the kernel, repaired, by kind (route, neigh, fdb, link; table, chain, rule, set, element).", []string{"kind"}, nil)
)

// Describe implements prometheus.Collector.
func (c *agentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSyncs, descSyncErrors, descLastSync, descLastOps, descObjects,
		descPeers, descNodes, descStoreErrors, descBGPSessions, descBGPSessionUp, descLastDuration, descPolicyRules,
		descPolicySets, descPolicyElements, descPolicyVersion, descPolicyBad, descDrift,
		descWGHandshakeAge, descWGRx, descWGTx, descWGBlocked} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *agentCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	a.be.collect(ch)
	if v := a.policyDebug(); v != nil {
		dp := v.Dataplane
		syncMetrics(ch, "policy", v.Syncs, v.Failures, v.LastSync, dp.LastDuration)
		ch <- prometheus.MustNewConstMetric(descPolicyRules, prometheus.GaugeValue, float64(dp.Rules))
		ch <- prometheus.MustNewConstMetric(descPolicySets, prometheus.GaugeValue, float64(dp.Sets))
		ch <- prometheus.MustNewConstMetric(descPolicyElements, prometheus.GaugeValue, float64(dp.Elements))
		ch <- prometheus.MustNewConstMetric(descPolicyVersion, prometheus.GaugeValue, float64(v.DesiredVersion), "desired")
		ch <- prometheus.MustNewConstMetric(descPolicyVersion, prometheus.GaugeValue, float64(v.AppliedVersion), "applied")
		ch <- prometheus.MustNewConstMetric(descPolicyBad, prometheus.GaugeValue, float64(len(v.BadPolicies)))
	}
	for kind, n := range a.drifts() {
		ch <- prometheus.MustNewConstMetric(descDrift, prometheus.CounterValue, float64(n), kind)
	}
	a.viewMu.RLock()
	defer a.viewMu.RUnlock()
	snap := a.snap.Load()
	if snap == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(descStoreErrors, prometheus.GaugeValue, float64(len(snap.Errors)))
	alive := 0
	for name := range snap.Nodes {
		if snap.Alive[name] {
			alive++
		}
	}
	ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(alive), "true")
	ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(len(snap.Nodes)-alive), "false")
	links := a.be.links(*snap)
	byState := map[string]int{api.LinkUp: 0, api.LinkPartial: 0, api.LinkPending: 0, api.LinkDown: 0, api.LinkNone: 0}
	for name, l := range links {
		if name != a.cfg.NodeName {
			byState[l.State]++
		}
	}
	for state, n := range byState {
		ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(n), state)
	}
}
