package main

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skeinnet/skein/internal/flagsource"
)

func TestFlagsFromEnvAndFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "skeind.yaml")
	if err := os.WriteFile(file, []byte("state-dir: /from/file\nsocket: /from/file.sock\nnode-name: file-node\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SKEIN_SOCKET", "/from/env.sock")
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	node := fs.String("node-name", "", "")
	socket := fs.String("socket", "/default.sock", "")
	state := fs.String("state-dir", "/default", "")
	if err := fs.Parse([]string{"--node-name", "flag-node"}); err != nil {
		t.Fatal(err)
	}
	if err := flagsource.ApplyFlagSet(fs, file); err != nil {
		t.Fatal(err)
	}
	if *node != "flag-node" || *socket != "/from/env.sock" || *state != "/from/file" {
		t.Errorf("precedence flag > env > file broken: node=%s socket=%s state=%s", *node, *socket, *state)
	}
}

func TestConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"unknown setting": "no-such-flag: 1\n",
		"bad yaml":        "node-name: [unclosed\n",
	} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
			if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.String("node-name", "", "")
			err := flagsource.ApplyFlagSet(fs, file)
			if err == nil || !strings.Contains(err.Error(), file) {
				t.Fatalf("flagsource.ApplyFlagSet(%s) = %v, want an error naming the file", name, err)
			}
		})
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--node-name", "Bad_Name", "--etcd-endpoints", "http://127.0.0.1:1"}, "--node-name"},
		{[]string{"--node-name", "n1"}, "--etcd-endpoints is required"},
		{[]string{"--node-name", "n1", "--etcd-endpoints", "x", "--underlay-ip", "10.0.0"}, "--underlay-ip"},
		{[]string{"--node-name", "n1", "--etcd-endpoints", "x", "--underlay-ip6", "fd00::1::2"}, "--underlay-ip6"},
		{[]string{"--node-name", "n1", "--etcd-endpoints", "x", "--underlay-ip6", "10.0.0.1"}, "--underlay-ip6 10.0.0.1: not a global IPv6 address"},
		{[]string{"--node-name", "n1", "--etcd-endpoints", "x", "--underlay-ip", "fd00::1", "--underlay-ip6", "fd00::2"}, "must be the same address"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--node-name", "n1", "--etcd-endpoints", "https://127.0.0.1:1", "--etcd-key", "k.pem"}, "--etcd-key k.pem given without --etcd-cert"},
		{[]string{"--node-name", "n1", "--etcd-endpoints", "https://127.0.0.1:1", "--etcd-cert", "c.pem"}, "--etcd-cert c.pem given without --etcd-key"},
		{[]string{"--node-name", "n1", "--etcd-endpoints", "http://127.0.0.1:1", "--embedded-etcd-cert", "c.pem", "--embedded-etcd-key", "k.pem"}, "need --embedded-etcd"},
		{[]string{"--node-name", "n1", "--embedded-etcd", "--embedded-etcd-cert", "c.pem"}, "--embedded-etcd-cert c.pem given without --embedded-etcd-key"},
		{[]string{"--node-name", "n1", "--embedded-etcd", "--embedded-etcd-client-ca", "ca.pem"}, "--embedded-etcd-client-ca ca.pem given without --embedded-etcd-cert"},
		{[]string{"--node-name", "n1", "--embedded-etcd", "--etcd-endpoints", "http://127.0.0.1:2379", "--embedded-etcd-cert", "c.pem", "--embedded-etcd-key", "k.pem"}, "--etcd-endpoints http://127.0.0.1:2379: the embedded etcd serves TLS"},
		{[]string{"--node-name", "n1", "--embedded-etcd", "--embedded-etcd-cert", "c.pem", "--embedded-etcd-key", "k.pem"}, "give --etcd-ca"},
		{[]string{"--node-name", "n1", "--embedded-etcd", "--embedded-etcd-cert", "c.pem", "--embedded-etcd-key", "k.pem", "--embedded-etcd-client-ca", "ca.pem", "--etcd-ca", "ca.pem"}, "give --etcd-cert and --etcd-key"},
	} {
		err := run(context.Background(), tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%v) = %v, want error containing %q", tc.args, err, tc.want)
		}
	}
}
