package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/skeinnet/skein/api"
)

// kubeStaleAfter is how old the skein-kube status record may get before
// `skein status` calls the sync down (it is rewritten every 5 s).
const kubeStaleAfter = 30 * time.Second

// kubeReport is the Kubernetes sync's part of `skein status`: present only
// where skein-kube runs (or ran).
type kubeReport struct {
	api.KubeStatus
	Healthy  bool     `json:"healthy"`
	Problems []string `json:"problems,omitempty"`
}

// buildKubeReport grades skein-kube's status record (raw, nil when none).
func buildKubeReport(raw []byte, now time.Time) *kubeReport {
	if raw == nil {
		return nil
	}
	r := &kubeReport{}
	if err := json.Unmarshal(raw, &r.KubeStatus); err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("status record %s does not decode: %v", api.KubeStatusKey, err))
		return r
	}
	if age := now.Sub(r.Updated); age > kubeStaleAfter {
		r.Problems = append(r.Problems, fmt.Sprintf("no skein-kube has written its status for %s: none runs, or none reaches etcd", age.Round(time.Second)))
	}
	if !r.Connected {
		r.Problems = append(r.Problems, "skein-kube cannot reach the Kubernetes API server")
	}
	if !r.Synced {
		r.Problems = append(r.Problems, "initial sync not finished")
	}
	r.Problems = append(r.Problems, r.Errors...)
	r.Healthy = len(r.Problems) == 0
	return r
}

// renderKube prints the sync's line and its problems after the node table.
func renderKube(w io.Writer, r *kubeReport, now time.Time) {
	if r == nil {
		return
	}
	state := []string{"leader " + orDash(r.Leader)}
	if r.Connected {
		state = append(state, "connected")
	} else {
		state = append(state, "NOT connected")
	}
	if r.Synced {
		state = append(state, "synced in "+r.SyncDuration)
	}
	state = append(state, fmt.Sprintf("%d namespaces, %d pods (%d endpoints), %d policies", r.Namespaces, r.Pods, r.Endpoints, r.Policies),
		"last event "+ago(r.LastEvent, now), "updated "+ago(r.Updated, now))
	fmt.Fprintf(w, "kubernetes sync: %s\n", strings.Join(state, ", "))
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  kubernetes: %s\n", p)
	}
}
