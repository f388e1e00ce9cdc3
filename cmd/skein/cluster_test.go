package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestBuildClusterBadInput(t *testing.T) {
	tests := []struct {
		name    string
		cidrs   []string
		block   int
		backend string
		wantErr string
	}{
		{"not a cidr", []string{"10.244.0.0"}, 26, "vxlan", `--pod-cidr[0]: invalid CIDR "10.244.0.0"`},
		{"garbage", []string{"pods"}, 26, "vxlan", `invalid CIDR "pods"`},
		{"overlap", []string{"10.244.0.0/16", "10.244.3.0/24"}, 26, "vxlan", "pools overlap"},
		{"block size", []string{"10.244.0.0/16"}, 8, "vxlan", "block size /8"},
		{"backend", []string{"10.244.0.0/16"}, 26, "weave", `unknown backend "weave"`},
		{"v6 block size", []string{"10.244.0.0/16", "fd00::/56"}, 26, "vxlan", "--pod-cidr[1] with --block-size-v6 64: pool fd00::/56: IPv6 block size /64"},
		{"v6 overlap", []string{"10.244.0.0/16", "fd00::/56", "fd00:0:0:ff::/64"}, 26, "vxlan", "pools overlap"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v6 := 122
			if tc.name == "v6 block size" {
				v6 = 64
			}
			_, err := buildCluster(tc.cidrs, tc.block, v6, tc.backend, 64512, true, 4096, 4789)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("buildCluster() = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
	c, err := buildCluster([]string{"10.244.0.0/16"}, 26, 122, "vxlan", 64512, true, 4096, 4789)
	if err != nil || c.Pools[0].BlockSize != 26 || c.VXLAN.VNI != 4096 {
		t.Fatalf("valid input: %+v %v", c, err)
	}
	c, err = buildCluster([]string{"10.244.0.0/16", "fd00:10:244::/56"}, 26, 122, "vxlan", 64512, true, 4096, 4789)
	if err != nil || len(c.Pools) != 2 || c.Pools[1].BlockSize != 122 {
		t.Fatalf("dual-stack input: %+v %v", c, err)
	}
	for _, backend := range []string{"vxlan", "bgp"} {
		c, err = buildCluster([]string{"fd00:10:244::/56"}, 26, 122, backend, 64512, true, 4096, 4789)
		if err != nil || len(c.Pools) != 1 || c.Pools[0].BlockSize != 122 {
			t.Fatalf("IPv6-only input, backend %s: %+v %v", backend, c, err)
		}
	}
}

// TestCLIUnreachableEtcd: a command against an etcd that is not there fails
// quickly with an error naming the endpoint.
func TestCLIUnreachableEtcd(t *testing.T) {
	root := newRootCmd()
	root.SetArgs([]string{"node", "list", "--etcd-endpoints", "http://127.0.0.1:1", "--timeout", "1s"})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("node list against a dead etcd: %v", err)
	}
}

// TestCLIConfigFile: settings come from the config file unless the
// environment or a flag says otherwise; unknown settings are refused.
func TestCLIConfigFile(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/skein.yaml"
	if err := os.WriteFile(file, []byte("etcd-endpoints: [http://127.0.0.1:2]\ntimeout: 1s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := runSkein(t, "node", "list", "--config", file)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:2") {
		t.Fatalf("node list with the config file: %v, want the file's endpoint", err)
	}
	t.Setenv("SKEIN_ETCD_ENDPOINTS", "http://127.0.0.1:3")
	_, err = runSkein(t, "node", "list", "--config", file)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:3") {
		t.Fatalf("env must win over the file: %v", err)
	}
	if err := os.WriteFile(file, []byte("etcd-endpoint: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runSkein(t, "node", "list", "--config", file); err == nil || !strings.Contains(err.Error(), `unknown setting "etcd-endpoint"`) {
		t.Fatalf("typo in the config file: %v", err)
	}
}

// TestClusterInitDualStackFlags: --pod-cidr repeated and as a comma list
// both make the same dual-stack cluster in etcd, IPv6 blocks of
// --block-size-v6; a bad IPv6 block size changes nothing.
func TestClusterInitDualStackFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--pod-cidr", "10.244.0.0/16", "--pod-cidr", "fd00:10:244::/56", "--block-size-v6", "120"},
		{"--pod-cidr", "10.244.0.0/16,fd00:10:244::/56", "--block-size-v6", "120"},
	} {
		tc := newTestCluster(t)
		before, err := tc.cl.GetCluster(tc.ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		bad := append([]string{"init", "--force"}, args...)
		bad[len(bad)-1] = "64"
		if out, err := run(t, newClusterCmd(tc.g), bad...); err == nil || !strings.Contains(err.Error(), "--block-size-v6 64") {
			t.Errorf("cluster %v = %v, %s; want an error naming --block-size-v6 64", bad, err, out)
		}
		if got, err := tc.cl.GetCluster(tc.ctx(t)); err != nil || len(got.Pools) != len(before.Pools) {
			t.Errorf("after a refused init the cluster has pools %v (err %v), want %v unchanged", got.Pools, err, before.Pools)
		}
		if out, err := run(t, newClusterCmd(tc.g), append([]string{"init", "--force"}, args...)...); err != nil {
			t.Fatalf("cluster init %v: %v\n%s", args, err, out)
		}
		got, err := tc.cl.GetCluster(tc.ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"10.244.0.0/16 /26", "fd00:10:244::/56 /120"}
		var have []string
		for _, p := range got.Pools {
			have = append(have, fmt.Sprintf("%s /%d", p.CIDR, p.BlockSize))
		}
		if strings.Join(have, ",") != strings.Join(want, ",") {
			t.Errorf("cluster init %v: pools %v, want %v", args, have, want)
		}
	}
}
