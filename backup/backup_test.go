package backup

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func testFile(t *testing.T) File {
	t.Helper()
	f, err := New("/skein/", 42, time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC), map[string][]byte{
		"cluster":             []byte(`{"backend":"vxlan"}`),
		"nodes/h1":            []byte(`{"name":"h1"}`),
		"alive/h1":            []byte(`x`),
		"status/h1":           []byte(`{}`),
		"policies/NP/x/allow": []byte(`{"spec":{"a":1}}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	f := testFile(t)
	if len(f.Keys) != 3 {
		t.Fatalf("keys %v: want alive/ and status/ left out", f.Keys)
	}
	b, err := Encode(f)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(f, got); d != "" {
		t.Errorf("Decode(Encode()) mismatch (-want +got):\n%s", d)
	}
}

func TestDecodeRefuses(t *testing.T) {
	t.Parallel()
	b, err := Encode(testFile(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		edit    func(string) string
		wantErr error
	}{
		{"newer version", func(s string) string { return strings.Replace(s, `"version": 1`, `"version": 2`, 1) }, ErrNewerVersion},
		{"edited value", func(s string) string { return strings.Replace(s, `vxlan`, `bgp`, 1) }, ErrChecksum},
		{"not a backup", func(string) string { return `{"format":"x"}` }, ErrFormat},
		{"truncated", func(s string) string { return s[:len(s)/2] }, ErrFormat},
	} {
		_, err := Decode([]byte(tc.edit(string(b))))
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: Decode = %v, want %v", tc.name, err, tc.wantErr)
		}
	}
}

func TestPlan(t *testing.T) {
	t.Parallel()
	f := testFile(t)
	current := map[string][]byte{
		"nodes/h1":           []byte(`{"name":"h1","x":1}`),
		"nodes/h2":           []byte(`{"name":"h2"}`),
		"alive/h1":           []byte(`y`),
		"audit/log/a/1":      []byte(`{}`),
		"policies/NP/x/deny": []byte(`{}`),
	}
	cs := Plan(f, current, map[string]bool{"h1": true})
	var got []string
	for _, c := range cs {
		got = append(got, string(c.Action)+" "+c.Key+" "+c.LiveNode)
	}
	want := []string{"create cluster ", "update nodes/h1 h1", "delete nodes/h2 ", "create policies/NP/x/allow ", "delete policies/NP/x/deny "}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Plan() mismatch (-want +got):\n%s", d)
	}
	if err := CheckLive(cs, false); !errors.Is(err, ErrLiveNodes) || !strings.Contains(err.Error(), "h1") {
		t.Errorf("CheckLive = %v, want ErrLiveNodes naming h1", err)
	}
	if err := CheckLive(cs, true); err != nil {
		t.Errorf("CheckLive(force) = %v", err)
	}
	if got := Plan(f, map[string][]byte{"cluster": []byte(`{"backend":"vxlan"}`), "nodes/h1": []byte(`{"name":"h1"}`), "policies/NP/x/allow": []byte(`{"spec":{"a":1}}`)}, nil); len(got) != 0 {
		t.Errorf("Plan of an equal store = %v, want nothing", got)
	}
}
