package main

import (
	"strings"
	"testing"
	"time"
)

// TestKubeTargets: each row is judged against its goal, and a missing
// phase leaves every row unmeasured.
func TestKubeTargets(t *testing.T) {
	for _, row := range (&Report{}).kubeTargets() {
		if row.ok {
			t.Errorf("no kube phase, but %q is measured", row.what)
		}
	}
	good := &Report{Kube: &KubeResult{Probes: []time.Duration{100 * time.Millisecond, 300 * time.Millisecond}, SyncWall: 4 * time.Second, HWMBytes: 90 << 20}}
	for _, row := range good.kubeTargets() {
		if !row.ok || !row.met {
			t.Errorf("%q: ok %v met %v, want both", row.what, row.ok, row.met)
		}
	}
	bad := &Report{Kube: &KubeResult{Probes: []time.Duration{2 * time.Second}, SyncWall: 11 * time.Second, HWMBytes: 300 << 20}}
	for _, row := range bad.kubeTargets() {
		if !row.ok || row.met {
			t.Errorf("%q: ok %v met %v, want measured and not met", row.what, row.ok, row.met)
		}
	}
	var b strings.Builder
	good.kube(&b)
	if !strings.Contains(b.String(), "| skein-kube VmHWM | 90") {
		t.Errorf("kube section lacks the VmHWM row:\n%s", b.String())
	}
}
