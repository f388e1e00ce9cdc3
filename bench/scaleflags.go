package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// scaleConfig holds the settings of the scale and fan-out phases.
type scaleConfig struct {
	scaleLab, fanoutLab string
	scaleNodes          []int // node counts, one step each
	scalePolicies       []int // policy counts on top of the largest step
	scaleEndpoints      int
	scaleJoins          int
	scaleChanges        int
	scaleChangeRate     int // endpoint puts per second
	scaleIdle           time.Duration
	scaleSyncTimeout    time.Duration
	fanoutWatchers      []int
	fanoutRate          int
	fanoutWindow        time.Duration
}

// scaleFlags registers the flags of the scale and fan-out phases; the
// returned function parses the list flags after flag.Parse.
func scaleFlags(c *scaleConfig) func() error {
	flag.StringVar(&c.scaleLab, "scale-lab", nsPrefix+"scale", "lab name of the scale phase")
	flag.StringVar(&c.fanoutLab, "fanout-lab", nsPrefix+"fan", "lab name of the fan-out phase")
	nodes := flag.String("scale-nodes", "100,300,1000", "simulated node counts of the scale phase")
	pols := flag.String("scale-policies", "1000,10000", "NetworkPolicy counts on top of the largest node count (empty: none)")
	flag.IntVar(&c.scaleEndpoints, "scale-endpoints", 50, "endpoints per simulated node (at most 50: the rest of each /26 is for changes)")
	flag.IntVar(&c.scaleJoins, "scale-joins", 10, "node joins per scale step")
	flag.IntVar(&c.scaleChanges, "scale-changes", 200, "remote endpoint puts of the CPU-per-change figure")
	flag.IntVar(&c.scaleChangeRate, "scale-change-rate", 20, "pace of those puts per second (a busy agent coalesces changes that come faster than it recomputes)")
	flag.DurationVar(&c.scaleIdle, "scale-idle", 20*time.Second, "idle window of each scale step")
	flag.DurationVar(&c.scaleSyncTimeout, "scale-sync-timeout", 3*time.Minute, "bound on one step's sync")
	watchers := flag.String("fanout-watchers", "100,300,1000", "simulated watching agents of the fan-out phase")
	flag.IntVar(&c.fanoutRate, "fanout-rate", 10, "endpoint puts per second while measuring fan-out")
	flag.DurationVar(&c.fanoutWindow, "fanout-window", 20*time.Second, "length of each fan-out step")
	return func() error {
		var err error
		if c.scaleNodes, err = intList("scale-nodes", *nodes); err != nil {
			return err
		}
		if c.scalePolicies, err = intList("scale-policies", *pols); err != nil {
			return err
		}
		if c.fanoutWatchers, err = intList("fanout-watchers", *watchers); err != nil {
			return err
		}
		switch {
		case len(c.scaleNodes) == 0:
			return fmt.Errorf("-scale-nodes: want at least one count")
		case c.scaleEndpoints < 1 || c.scaleEndpoints > 50:
			return fmt.Errorf("-scale-endpoints %d: want 1 to 50", c.scaleEndpoints)
		case c.scaleChanges < 1 || c.scaleChangeRate < 1 || c.fanoutRate < 1:
			return fmt.Errorf("-scale-changes, -scale-change-rate and -fanout-rate must be positive")
		case strings.Contains(c.scaleLab, "-") || strings.Contains(c.fanoutLab, "-"):
			return fmt.Errorf("-scale-lab and -fanout-lab: lab names contain no \"-\"")
		}
		return nil
	}
}

// intList parses a comma-separated list of positive counts.
func intList(name, s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-%s: %q is not a positive count", name, f)
		}
		out = append(out, n)
	}
	return out, nil
}
