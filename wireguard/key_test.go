package wireguard

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadKeyCreatesPrivateFileAndRefusesLeakyOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wireguard.key")
	k, created, err := LoadKey(path)
	if err != nil || !created {
		t.Fatalf("first load: created %v, err %v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (err %v), want 0600", fi.Mode().Perm(), err)
	}
	again, created, err := LoadKey(path)
	if err != nil || created || again != k {
		t.Fatalf("second load: same key %v, created %v, err %v", again == k, created, err)
	}
	rot, err := RotateKey(path)
	if err != nil || rot == k {
		t.Fatalf("rotate: new key %v, err %v", rot != k, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = LoadKey(path)
	if err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("load of a 0644 key: %v, want a refusal", err)
	}
	if strings.Contains(err.Error(), rot.String()) {
		t.Fatal("the error shows the private key")
	}
	if err := os.WriteFile(path, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadKey(path); err == nil || strings.Contains(err.Error(), "garbage") {
		t.Fatalf("load of a bad key: %v, want an error that does not echo the file", err)
	}
}
