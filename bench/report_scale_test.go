package main

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"
)

func scaleFixture() *ScaleResult {
	return &ScaleResult{Host: "skg-h1", EndpointsPerNode: 50, Changes: 200, IdleWindow: 20 * time.Second, SyncTimeout: 3 * time.Minute,
		Steps: []ScaleStep{
			{Nodes: 100, Sync: 800 * time.Millisecond, SyncDone: true, SyncRoutes: 100, Joins: []time.Duration{4 * time.Millisecond, 6 * time.Millisecond}, ChangeCPU: 0.004, ChangeCPURaw: 0.005, RSS: 40 << 20, IdlePct: 0.3},
			{Nodes: 1000, Sync: 3 * time.Minute, SyncRoutes: 640, Joins: []time.Duration{30 * time.Millisecond, 700 * time.Millisecond}, ChangeCPU: 0.25, ChangeCPURaw: 0.26, RSS: 180 << 20, IdlePct: 2.8},
			{Nodes: 1010, Policies: 10000, Joins: []time.Duration{time.Second}, ChangeCPU: 0.3, ChangeCPURaw: 0.3, RSS: 200 << 20, IdlePct: 3, NewEndpoint: []time.Duration{90 * time.Millisecond, 240 * time.Millisecond}, Ready: 1200 * time.Millisecond, ReadyExt: 1300 * time.Millisecond},
		}}
}

// TestScaleTargets: verdicts are taken at 1 000 nodes, a timed-out sync is
// reported as such, and a step below 1 000 nodes is never judged met.
func TestScaleTargets(t *testing.T) {
	t.Parallel()
	r := &Report{Scale: scaleFixture()}
	got := map[string]target{}
	for _, row := range r.scaleTargets() {
		got[row.what] = row
	}
	sync := got["Scale: sync of all remote blocks"]
	if !sync.ok || sync.met || !strings.Contains(sync.measured, "timed out, 640/1000 routed") {
		t.Errorf("sync row %+v: want a timed-out, not met figure at 1 000 nodes", sync)
	}
	if row := got["Scale: new endpoint → remote sets, p99"]; !row.ok || row.met || !strings.HasPrefix(row.measured, "240.0 ms") {
		t.Errorf("new endpoint row %+v: want 240 ms, not met", row)
	}
	if row := got["Scale: agent start → ready"]; !row.ok || row.met {
		t.Errorf("ready row %+v: want measured, not met", row)
	}

	small := &Report{Scale: &ScaleResult{Steps: scaleFixture().Steps[:1]}}
	for _, row := range small.scaleTargets() {
		if row.met {
			t.Errorf("%s: met at 100 nodes; only 1 000 nodes may meet a target", row.what)
		}
	}
	if rows := (&Report{}).scaleTargets(); len(rows) != 7 || rows[0].ok {
		t.Errorf("no scale phase: %d rows, first measured %v; want 7 unmeasured", len(rows), rows[0].ok)
	}
}

// TestScaleSVG: the plot is well-formed XML with one panel per figure and a
// point per node step that has the figure.
func TestScaleSVG(t *testing.T) {
	t.Parallel()
	svg := scaleFixture().scaleSVG()
	d := xml.NewDecoder(strings.NewReader(svg))
	panels, points := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG not well-formed: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok {
			switch se.Name.Local {
			case "g":
				panels++
			case "circle":
				points++
			}
		}
	}
	// 5 figures × 2 node steps (the policy step is not on the node axis).
	if panels != 5 || points != 10 {
		t.Errorf("SVG has %d panels and %d points, want 5 and 10", panels, points)
	}
}

func TestScaleSectionRenders(t *testing.T) {
	t.Parallel()
	r := &Report{Scale: scaleFixture(), Fanout: &FanoutResult{Rate: 10, Window: 20 * time.Second, Steps: []FanoutStep{
		{Watchers: 100, Puts: 200, EtcdCPUPct: 12.5, Deliveries: 20000, P50: 2 * time.Millisecond, P99: 9 * time.Millisecond, Max: 20 * time.Millisecond},
		{Watchers: 1000, Err: "watch-fanout helper: 250 watches not ready after 2m0s"},
	}}}
	var b strings.Builder
	r.scale(&b)
	r.fanout(&b)
	out := b.String()
	for _, want := range []string{"](scale.svg)", "| 1 000 | 0 | > 180 s (timed out, 640/1000 routed) |", "| 100 | 200 | 12.5 % |", "failed: watch-fanout helper"} {
		if !strings.Contains(out, want) {
			t.Errorf("section lacks %q:\n%s", want, out)
		}
	}
}
