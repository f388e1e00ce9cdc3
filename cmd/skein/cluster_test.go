package main

import (
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
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := buildCluster(tc.cidrs, tc.block, tc.backend, 64512, true, 4096, 4789)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("buildCluster() = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
	c, err := buildCluster([]string{"10.244.0.0/16"}, 26, "vxlan", 64512, true, 4096, 4789)
	if err != nil || c.Pools[0].BlockSize != 26 || c.VXLAN.VNI != 4096 {
		t.Fatalf("valid input: %+v %v", c, err)
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
