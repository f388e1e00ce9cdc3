package ipam

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/atomicfile"
)

func TestStateCheck(t *testing.T) {
	t.Parallel()
	created := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	al := func(ip, block, cid string) Allocation {
		return Allocation{IP: addr(ip), Owner: api.Owner{ContainerID: cid, IfName: "eth0"}, Block: pfx(block), Created: created}
	}
	good := func() stateFile {
		return stateFile{
			Version: stateVersion, Node: "n1", Home: pfx("10.0.0.0/30"),
			Blocks:      pfxs("10.0.0.0/30", "10.0.0.8/30"),
			Allocations: []Allocation{al("10.0.0.1", "10.0.0.0/30", "c1"), al("10.0.0.9", "10.0.0.8/30", "c2")},
		}
	}
	tests := []struct {
		name    string
		edit    func(*stateFile)
		wantErr string // "" for valid
	}{
		{name: "valid", edit: func(*stateFile) {}},
		{name: "empty but for header", edit: func(s *stateFile) { *s = stateFile{Version: 1, Node: "n1"} }},
		{name: "version", edit: func(s *stateFile) { s.Version = 2 }, wantErr: "unsupported version 2"},
		{name: "other node", edit: func(s *stateFile) { s.Node = "n2" }, wantErr: `written by node "n2"`},
		{name: "unmasked block", edit: func(s *stateFile) { s.Blocks[1] = pfx("10.0.0.9/30") /* ParsePrefix keeps host bits */ }, wantErr: "not an IPv4 block"},
		{name: "duplicate block", edit: func(s *stateFile) { s.Blocks = append(s.Blocks, pfx("10.0.0.8/30")) }, wantErr: "listed twice"},
		{name: "overlapping blocks", edit: func(s *stateFile) { s.Blocks = append(s.Blocks, pfx("10.0.0.8/29")) }, wantErr: "overlap"},
		{name: "home not a block", edit: func(s *stateFile) { s.Home = pfx("10.0.0.4/30") }, wantErr: "home block 10.0.0.4/30"},
		{name: "allocation outside blocks", edit: func(s *stateFile) { s.Allocations[1] = al("10.0.0.5", "10.0.0.4/30", "c2") }, wantErr: "not inside a listed block"},
		{name: "allocation not in its block", edit: func(s *stateFile) { s.Allocations[1].Block = pfx("10.0.0.0/30") }, wantErr: "not inside a listed block"},
		{name: "address twice", edit: func(s *stateFile) { s.Allocations[1] = al("10.0.0.1", "10.0.0.0/30", "c2") }, wantErr: "allocated twice"},
		{name: "owner twice", edit: func(s *stateFile) { s.Allocations[1].Owner = s.Allocations[0].Owner }, wantErr: "holds two addresses"},
		{name: "empty owner", edit: func(s *stateFile) { s.Allocations[0].Owner.IfName = "" }, wantErr: "empty owner"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := good()
			tc.edit(&st)
			err := st.check("n1")
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("check() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("check() = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestLoadStateCorrupt(t *testing.T) {
	t.Parallel()
	for name, content := range map[string]string{
		"garbage":   "{not json",
		"empty":     "",
		"truncated": `{"version":1,"node":"n1","blocks":["10.0.0.0/30"`,
		"bad addr":  `{"version":1,"node":"n1","blocks":["10.0.0.0/30"],"allocations":[{"ip":"10.0.0.300"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), StateFileName)
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := loadState(path, "n1")
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "corrupt") {
				t.Errorf("loadState() = %v, want a corrupt-state error naming %s", err, path)
			}
		})
	}
}

func TestLoadStateMissing(t *testing.T) {
	t.Parallel()
	st, found, err := loadState(filepath.Join(t.TempDir(), StateFileName), "n1")
	if err != nil || found || st.Version != 0 {
		t.Errorf("loadState() = %+v, %t, %v; want empty, false, nil", st, found, err)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	created := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	want := stateFile{
		Version: stateVersion, Node: "n1", Home: pfx("10.0.0.4/30"),
		Blocks: pfxs("10.0.0.4/30", "10.0.0.0/30"),
		Allocations: []Allocation{{
			IP: addr("10.0.0.5"), Owner: api.Owner{ContainerID: "c1", IfName: "eth0"},
			Pod: "ns/a", Block: pfx("10.0.0.4/30"), Created: created,
		}},
		Cooling: []coolingAddr{{IP: addr("10.0.0.1"), Until: created.Add(time.Minute)}},
	}
	slots, _, found, _, err := openState(dir, "n1")
	if err != nil || found {
		t.Fatalf("openState() of an empty dir = %t, %v", found, err)
	}
	// Three writes: the slots take turns, the newest wins.
	for range 3 {
		doc, err := encodeState(want)
		if err != nil {
			t.Fatal(err)
		}
		if err := slots.Write(doc); err != nil {
			t.Fatal(err)
		}
	}
	_, got, found, legacy, err := openState(dir, "n1")
	if err != nil || !found || legacy {
		t.Fatalf("openState() = found %t, legacy %t, %v", found, legacy, err)
	}
	if d := cmp.Diff(want, got, cmpOpts); d != "" {
		t.Errorf("round trip mismatch (-want +got):\n%s", d)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if d := cmp.Diff([]string{StateName + ".0", StateName + ".1"}, names); d != "" {
		t.Errorf("state dir entries (-want +got):\n%s", d)
	}
}

// writeLegacy writes st as the whole-file state earlier versions kept.
func writeLegacy(t *testing.T, path string, st stateFile) {
	t.Helper()
	doc, err := encodeState(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
}

// removeSlots deletes the state slots in dir, as before the first start of
// a version that keeps them.
func removeSlots(t *testing.T, dir string) {
	t.Helper()
	for _, n := range []string{StateName + ".0", StateName + ".1"} {
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRemoveStaleTemps(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, n := range []string{".ipam.json.tmp-123", StateFileName, "other"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := atomicfile.RemoveStaleTemps(dir, StateFileName); err != nil {
		t.Fatal(err)
	}
	var names []string
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if d := cmp.Diff([]string{StateFileName, "other"}, names); d != "" {
		t.Errorf("left in dir (-want +got):\n%s", d)
	}
}

// FuzzLoadState feeds arbitrary bytes to the state file decoder: it never
// panics, and whatever it accepts passes check and survives a save and load
// unchanged (so a start never runs on a state the decoder half understood).
func FuzzLoadState(f *testing.F) {
	f.Add([]byte(`{"version":1,"node":"node-a","home":"10.0.0.12/30","blocks":["10.0.0.12/30"],"allocations":[{"ip":"10.0.0.13","owner":{"containerID":"c1","ifName":"eth0"},"network":"net-a","block":"10.0.0.12/30","created":"2025-06-01T12:00:00Z"}]}`))
	f.Add([]byte(`{"version":1,"node":"node-a","home":"10.0.0.12/30","blocks":["10.0.0.12/30","10.0.0.0/30"],"allocations":[{"ip":"10.0.0.1","owner":{"containerID":"old","ifName":"eth0"},"block":"10.0.0.0/30","created":"2025-06-01T12:00:00Z"}],"cooling":[{"ip":"10.0.0.14","until":"2025-06-01T12:00:30Z"}]}`))
	f.Add([]byte(`{"version":2,"node":"node-a"}`))
	f.Add([]byte(`{"version":1,"node":"node-a","blocks":["10.0.0.0/30","10.0.0.0/29"]}`))
	f.Add([]byte(`{`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), StateFileName)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		st, ok, err := loadState(path, "node-a")
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Errorf("loadState() error %q does not name the file", err)
			}
			return
		}
		if !ok {
			t.Fatal("loadState() of an existing file reported it missing")
		}
		if err := st.check("node-a"); err != nil {
			t.Fatalf("accepted state fails check: %v", err)
		}
		writeLegacy(t, path, st)
		again, _, err := loadState(path, "node-a")
		if err != nil {
			t.Fatalf("reload of a saved accepted state: %v", err)
		}
		if d := cmp.Diff(st, again, cmpOpts, cmp.AllowUnexported(stateFile{}, coolingAddr{})); d != "" {
			t.Errorf("save/load round trip changed the state (-first +again):\n%s", d)
		}
	})
}
