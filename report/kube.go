package report

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/skeinnet/skein/api"
)

// KubeStaleAfter is how old the skein-kube status record may get before
// `skein status` calls the sync down (it is rewritten every 5 s).
const KubeStaleAfter = 30 * time.Second

// Kube is the Kubernetes sync's part of `skein status`: present only where
// skein-kube runs (or ran).
type Kube struct {
	api.KubeStatus
	Healthy  bool     `json:"healthy"`
	Problems []string `json:"problems,omitempty"`
}

// BuildKube grades skein-kube's status record (raw, nil when none).
func BuildKube(raw []byte, now time.Time) *Kube {
	if raw == nil {
		return nil
	}
	r := &Kube{}
	if err := json.Unmarshal(raw, &r.KubeStatus); err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("status record %s does not decode: %v", api.KubeStatusKey, err))
		return r
	}
	if age := now.Sub(r.Updated); age > KubeStaleAfter {
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
