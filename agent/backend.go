package agent

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// backend connects this node to the others: the VXLAN overlay or BGP
// routes. The agent hands it the cluster as the store's deltas; the backend
// owns its planner, its kernel applier and its loops, and reports what it
// has. The agent holds exactly one, so no part of the agent asks which.
type backend interface {
	// reset plans everything from s: the first load and every resync.
	reset(s store.Snapshot)
	// update plans only what d changed; s is the view with d applied. Both
	// run on the watch goroutine with the view read-locked: neither keeps
	// s's maps.
	update(s store.Snapshot, d store.Delta)
	// run runs the backend's loops (reconciler, kernel watches, speaker)
	// until ctx is done.
	run(ctx context.Context) error
	// notReady says why the backend cannot carry traffic yet; "" once it can.
	notReady() string
	// status fills this node's published status: last sync and error,
	// peers, peers up, sessions, links (as of the last sync: it is asked
	// every second and costs nothing when nothing changed).
	status(st *api.NodeStatus)
	// observe fills the topology's backend state and grades this node's side
	// of its link to every node against the kernel (or the speaker) now.
	observe(ctx context.Context, s store.Snapshot, t *api.Topology) map[string]api.Link
	// links grades the same links as of the last sync, for /metrics.
	links(s store.Snapshot) map[string]api.Link
	// collect adds the backend's own metrics.
	collect(ch chan<- prometheus.Metric)
	// drifts counts repairs of foreign kernel changes by kind.
	drifts() map[string]int
	// serveDebug serves /debug/<kind>: 404 for the backend this node does
	// not run.
	serveDebug(kind api.Backend, w http.ResponseWriter, r *http.Request)
}

// notThisBackend answers a debug path of the backend this node does not run.
func notThisBackend(w http.ResponseWriter, kind api.Backend) {
	writeJSON(w, http.StatusNotFound, map[string]string{"error": "this node does not run the " + string(kind) + " backend"})
}

// syncMetrics records one component's sync counters.
func syncMetrics(ch chan<- prometheus.Metric, name string, syncs, failures int, last time.Time, dur time.Duration) {
	ch <- prometheus.MustNewConstMetric(descSyncs, prometheus.CounterValue, float64(syncs), name)
	ch <- prometheus.MustNewConstMetric(descSyncErrors, prometheus.CounterValue, float64(failures), name)
	if !last.IsZero() {
		ch <- prometheus.MustNewConstMetric(descLastSync, prometheus.GaugeValue, float64(last.UnixNano())/1e9, name)
	}
	if dur > 0 {
		ch <- prometheus.MustNewConstMetric(descLastDuration, prometheus.GaugeValue, dur.Seconds(), name)
	}
}

// rewatch runs watch until ctx is done, renewing it when it breaks; resync
// repairs whatever changed while no event could be seen.
func rewatch(ctx context.Context, log *slog.Logger, what string, watch func(context.Context) error, resync func()) error {
	for {
		err := watch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		log.Warn("watch broken; renewing it", "kind", what, "err", err)
		resync()
		t := time.NewTimer(watchRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}
