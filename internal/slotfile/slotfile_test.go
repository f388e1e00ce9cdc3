package slotfile

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func mustOpen(t *testing.T, dir string) (*File, string, bool) {
	t.Helper()
	f, doc, found, err := Open(dir, "state")
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	return f, string(doc), found
}

func TestWriteReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f, doc, found := mustOpen(t, dir)
	if found || doc != "" {
		t.Fatalf("Open() of an empty dir = %q, %t; want nothing", doc, found)
	}
	for _, p := range Paths(dir, "state") {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("slot not created: %v", err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", p, fi.Mode().Perm())
		}
	}
	// Longer, then shorter documents: each reopen sees the last one whole.
	for _, want := range []string{`{"a":1}`, `{"a":1,"b":"a longer document"}`, `{}`, `{"c":3}`} {
		if err := f.Write([]byte(want)); err != nil {
			t.Fatalf("Write(%s) = %v", want, err)
		}
		var got string
		f, got, found = mustOpen(t, dir)
		if !found || got != want {
			t.Fatalf("after Write(%s) Open() = %q, %t", want, got, found)
		}
	}
}

// A write torn at any byte leaves the previous document readable.
func TestTornWriteKeepsPrevious(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f, _, _ := mustOpen(t, dir)
	for _, d := range []string{"first document", "second document"} {
		if err := f.Write([]byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	// The third write goes to the slot holding "first document"; tear it.
	if err := f.Write([]byte("third, never acknowledged")); err != nil {
		t.Fatal(err)
	}
	full, err := os.ReadFile(f.paths[f.last])
	if err != nil {
		t.Fatal(err)
	}
	for cut := 1; cut < len(full); cut += 7 {
		// A torn write: the new bytes up to cut, the old slot's bytes after.
		torn := append([]byte(nil), full[:cut]...)
		old := []byte(strings.Repeat("x", len(full)))
		torn = append(torn, old[cut:]...)
		if err := os.WriteFile(f.paths[f.last], torn, 0o600); err != nil {
			t.Fatal(err)
		}
		_, got, found := mustOpen(t, dir)
		if !found || got != "second document" {
			t.Fatalf("torn at byte %d: Open() = %q, %t; want the previous document", cut, got, found)
		}
	}
}

func TestCorrupt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f, _, _ := mustOpen(t, dir)
	if err := f.Write([]byte("doc")); err != nil {
		t.Fatal(err)
	}
	// Only one slot was ever written; garbling it leaves no document.
	p := f.paths[f.last]
	if err := os.WriteFile(p, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := Open(dir, "state"); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), p) {
		t.Errorf("Open() = %v, want ErrCorrupt naming %s", err, p)
	}
	if b, _ := os.ReadFile(p); string(b) != "garbage" {
		t.Errorf("a failed Open changed %s to %q", p, b)
	}
}

func TestSameSequence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f, _, _ := mustOpen(t, dir)
	if err := f.Write([]byte("doc")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(f.paths[f.last])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.paths[1-f.last], b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := Open(dir, "state"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Open() with two slots of one sequence = %v, want ErrCorrupt", err)
	}
}

func BenchmarkWrite(b *testing.B) {
	dir := b.TempDir()
	f, _, _, err := Open(dir, "state")
	if err != nil {
		b.Fatal(err)
	}
	doc := []byte(strings.Repeat(`{"ip":"10.0.0.1","owner":"c"},`, 40))
	for b.Loop() {
		if err := f.Write(doc); err != nil {
			b.Fatal(err)
		}
	}
}
