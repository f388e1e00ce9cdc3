package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeInstall: `make install DESTDIR=…` stages every file with the
// right mode, the unit starts the installed skeind, the conflist is valid,
// every SKEIN_* setting of the environment file is a skeind flag, and a
// second install keeps an edited conflist and environment file.
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped under -short: builds the binaries")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("skipped: make not installed")
	}
	dest, bin := t.TempDir(), t.TempDir()
	install := func() {
		t.Helper()
		cmd := exec.Command("make", "-C", filepath.Join("..", ".."), "install", "DESTDIR="+dest, "BIN="+bin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make install: %v\n%s", err, out)
		}
	}
	install()
	for path, mode := range map[string]os.FileMode{
		"usr/local/bin/skeind":                        0o755,
		"usr/local/bin/skein":                         0o755,
		"opt/cni/bin/skein-cni":                       0o755,
		"etc/cni/net.d/10-skein.conflist":             0o644,
		"etc/systemd/system/skeind.service":           0o644,
		"etc/default/skeind":                          0o600,
		"usr/share/bash-completion/completions/skein": 0o644,
	} {
		fi, err := os.Stat(filepath.Join(dest, path))
		if err != nil {
			t.Errorf("%s not installed: %v", path, err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %o, want %o", path, fi.Mode().Perm(), mode)
		}
	}
	unit, err := os.ReadFile(filepath.Join(dest, "etc/systemd/system/skeind.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ExecStart=/usr/local/bin/skeind\n", "EnvironmentFile=-/etc/default/skeind\n", "RuntimeDirectory=skein\n", "WantedBy=multi-user.target"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	var conf struct {
		CNIVersion string `json:"cniVersion"`
		Name       string `json:"name"`
		Plugins    []struct {
			Type   string `json:"type"`
			Socket string `json:"socket"`
		} `json:"plugins"`
	}
	b, err := os.ReadFile(filepath.Join(dest, "etc/cni/net.d/10-skein.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &conf); err != nil || conf.Name != "skein" || len(conf.Plugins) != 1 ||
		conf.Plugins[0].Type != "skein-cni" || conf.Plugins[0].Socket != "/run/skein/skeind.sock" {
		t.Errorf("conflist: %+v %v\n%s", conf, err, b)
	}

	help, _ := exec.Command(filepath.Join(dest, "usr/local/bin/skeind"), "-h").CombinedOutput()
	f, err := os.Open(filepath.Join(dest, "etc/default/skeind"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	settings := 0
	for sc := bufio.NewScanner(f); sc.Scan(); {
		line := strings.TrimPrefix(strings.TrimSpace(sc.Text()), "#")
		key, _, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(key, "SKEIN_") || strings.Contains(key, " ") {
			continue
		}
		settings++
		flag := "-" + strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(key, "SKEIN_"), "_", "-")) + " "
		if !strings.Contains(string(help), flag) {
			t.Errorf("environment file sets %s, but skeind has no flag %s", key, flag)
		}
	}
	if settings < 8 {
		t.Errorf("environment file has %d SKEIN_ settings, want the usual ones", settings)
	}

	// Local edits survive a reinstall.
	for _, p := range []string{"etc/cni/net.d/10-skein.conflist", "etc/default/skeind"} {
		if err := os.WriteFile(filepath.Join(dest, p), []byte("edited\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	install()
	for _, p := range []string{"etc/cni/net.d/10-skein.conflist", "etc/default/skeind"} {
		if b, _ := os.ReadFile(filepath.Join(dest, p)); string(b) != "edited\n" {
			t.Errorf("reinstall overwrote %s", p)
		}
	}
}
