package flagsource

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFillOrder: the command line wins over the environment, which wins
// over the file; a list in the file reaches the flag comma-joined; bad
// values name their source.
func TestFillOrder(t *testing.T) {
	file := filepath.Join(t.TempDir(), "skein.yaml")
	if err := os.WriteFile(file, []byte("node-name: from-file\nlabels: [a=1, b=2]\nlog-level: debug\niface: eth9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	values, err := ReadFile(file, []string{"node-name", "labels", "log-level", "iface"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SKEIN_LOG_LEVEL", "warn")
	got := map[string]string{}
	set := func(name string) func(string) error {
		return func(v string) error { got[name] = v; return nil }
	}
	flags := []Flag{
		{Name: "node-name", Changed: true, Set: set("node-name")}, // from the command line: untouched
		{Name: "labels", Set: set("labels")},
		{Name: "log-level", Set: set("log-level")},
		{Name: "iface", Set: set("iface")},
		{Name: "socket", Set: set("socket")}, // nowhere: untouched
	}
	if err := Fill(flags, file, values); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"labels": "a=1,b=2", "log-level": "warn", "iface": "eth9"}
	if len(got) != len(want) {
		t.Errorf("set %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}

	t.Setenv("SKEIN_IFACE", "bad")
	bad := func(string) error { return os.ErrInvalid }
	err = Fill([]Flag{{Name: "iface", Set: bad}, {Name: "labels", Set: bad}}, file, values)
	if err == nil || !strings.Contains(err.Error(), `SKEIN_IFACE="bad"`) || !strings.Contains(err.Error(), "config file "+file+": labels") {
		t.Errorf("Fill with bad values = %v, want both sources named", err)
	}
}

// TestReadFileUnknownKey: a typo in the file is an error naming the key.
func TestReadFileUnknownKey(t *testing.T) {
	file := filepath.Join(t.TempDir(), "skein.yaml")
	if err := os.WriteFile(file, []byte("etcd-endpoint: http://x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(file, []string{"etcd-endpoints"}); err == nil || !strings.Contains(err.Error(), `unknown setting "etcd-endpoint"`) {
		t.Errorf("ReadFile = %v, want the unknown key named", err)
	}
}
