package audit

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Filter selects records for `skein audit`.
type Filter struct {
	// Since keeps records at or after it; zero keeps all.
	Since time.Time
	// Kind keeps one kind; empty keeps all.
	Kind string
	// Who keeps one identity (etcd user, certificate CN or OS user); empty keeps all.
	Who string
}

// ParseSince reads --since: a duration back from now ("1h", "30m") or an
// RFC 3339 time.
func ParseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--since %s: a negative duration reaches into the future", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %q: want a duration (1h, 30m) or an RFC 3339 time (2026-12-07T10:00:00Z)", s)
	}
	if t.After(now) {
		return time.Time{}, fmt.Errorf("--since %s is in the future", s)
	}
	return t, nil
}

// ErrUnknownKind is returned for a --kind no record can have.
var ErrUnknownKind = errors.New("unknown kind")

// Check validates f.
func (f Filter) Check() error {
	if f.Kind != "" && !slices.Contains(Kinds(), f.Kind) {
		return fmt.Errorf("--kind %q: %w (want one of %s)", f.Kind, ErrUnknownKind, strings.Join(Kinds(), ", "))
	}
	return nil
}

// Match reports whether r passes f.
func (f Filter) Match(r Record) bool {
	switch {
	case !f.Since.IsZero() && r.Time.Before(f.Since):
		return false
	case f.Kind != "" && r.Kind != f.Kind:
		return false
	case f.Who != "" && r.Who != f.Who && r.OSUser != f.Who:
		return false
	}
	return true
}

// Select returns the records passing f, oldest first.
func Select(rs []Record, f Filter) []Record {
	var out []Record
	for _, r := range rs {
		if f.Match(r) {
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(a, b Record) int { return a.Time.Compare(b.Time) })
	return out
}
