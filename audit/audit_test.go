package audit

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDiff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		before, after string
		want          []string
	}{
		{"create", "", `{"a":1,"b":{"c":"x"}}`, []string{"+ a: 1", `+ b.c: "x"`}},
		{"delete", `{"a":[1,2]}`, "", []string{"- a[0]: 1", "- a[1]: 2"}},
		{"update", `{"a":1,"l":{"k":"v"}}`, `{"a":1,"l":{"k":"w","n":"m"}}`, []string{`- l.k: "v"`, `+ l.k: "w"`, `+ l.n: "m"`}},
		{"same", `{"a":1}`, `{"a":1}`, nil},
		{"not json", `x`, `y`, []string{`- .: "x"`, `+ .: "y"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var b, a []byte
			if tc.before != "" {
				b = []byte(tc.before)
			}
			if tc.after != "" {
				a = []byte(tc.after)
			}
			if d := cmp.Diff(tc.want, Diff(b, a)); d != "" {
				t.Errorf("Diff() mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestParseSince(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{"", time.Time{}, false},
		{"1h", now.Add(-time.Hour), false},
		{"2026-12-07T09:00:00Z", now.Add(-time.Hour), false},
		{"-1h", time.Time{}, true},
		{"yesterday", time.Time{}, true},
		{"2027-01-01T00:00:00Z", time.Time{}, true},
	} {
		got, err := ParseSince(tc.in, now)
		if (err != nil) != tc.wantErr || !got.Equal(tc.want) {
			t.Errorf("ParseSince(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestFilter(t *testing.T) {
	t.Parallel()
	now := time.Now()
	rs := []Record{
		{Time: now, Actor: Actor{Who: "alice", OSUser: "root"}, Kind: "policy"},
		{Time: now.Add(-2 * time.Hour), Actor: Actor{Who: "bob"}, Kind: "node"},
	}
	if got := Select(rs, Filter{Since: now.Add(-time.Hour)}); len(got) != 1 || got[0].Who != "alice" {
		t.Errorf("since: %+v", got)
	}
	if got := Select(rs, Filter{Who: "root"}); len(got) != 1 || got[0].Who != "alice" {
		t.Errorf("who by OS user: %+v", got)
	}
	if got := Select(rs, Filter{Kind: "node"}); len(got) != 1 || got[0].Who != "bob" {
		t.Errorf("kind: %+v", got)
	}
	if err := (Filter{Kind: "polcy"}).Check(); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("Check(polcy) = %v, want ErrUnknownKind", err)
	}
}

func TestKeyOneSegmentPerWho(t *testing.T) {
	t.Parallel()
	k := Key(Record{Time: time.Now(), Actor: Actor{Who: "skein lab x/client"}})
	if want := LogPrefix + "skein%20lab%20x%2Fclient/"; k[:len(want)] != want {
		t.Errorf("Key = %s, want prefix %s", k, want)
	}
}
