package main

import (
	"log/slog"
	"time"
)

// steps times the phases of one command for the debug log, so a slow ADD or
// DEL shows where it spent its time without a profiler (docs/benchmarks.md,
// issue 11, has the breakdown these lines gave).
type steps struct {
	last  time.Time
	times []any // slog attributes: one duration per step, in order
}

func newSteps() *steps { return &steps{last: time.Now()} }

// done records the time since the previous step (or newSteps) as step name.
func (s *steps) done(name string) {
	now := time.Now()
	s.times = append(s.times, slog.Duration(name, now.Sub(s.last)))
	s.last = now
}

// attr is the steps as one log attribute group.
func (s *steps) attr() slog.Attr { return slog.Group("steps", s.times...) }
