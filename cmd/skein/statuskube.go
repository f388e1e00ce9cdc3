package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/skeinnet/skein/report"
)

// renderKube prints the Kubernetes sync's line and its problems after the
// node table.
func renderKube(w io.Writer, r *report.Kube, now time.Time) {
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
