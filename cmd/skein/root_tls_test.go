package main

import (
	"strings"
	"testing"
)

// TestEtcdCertKeyTogether: a client key without its certificate (or the
// reverse) is an error before anything connects, not silently ignored.
func TestEtcdCertKeyTogether(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--etcd-key", "k.pem", "node", "list"}, "--etcd-key k.pem given without --etcd-cert"},
		{[]string{"--etcd-cert", "c.pem", "cluster", "show"}, "--etcd-cert c.pem given without --etcd-key"},
	} {
		_, err := run(t, newRootCmd(), tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("skein %v = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}
