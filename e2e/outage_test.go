//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/lab"
)

// blockEtcd cuts every host off from the lab's etcd (packets to its client
// port are dropped in the underlay namespace, as a network partition would)
// until the returned func is called; the test's cleanup calls it too.
func blockEtcd(ctx context.Context, t *testing.T, l *lab.Lab) (unblock func()) {
	t.Helper()
	const table = "skeintest_block"
	rules := fmt.Sprintf("add table inet %[1]s; add chain inet %[1]s in { type filter hook input priority 0; policy accept; }; add rule inet %[1]s in tcp dport 2379 drop", table)
	if out, err := l.Exec(ctx, "ul", "nft", rules); err != nil {
		t.Fatalf("block etcd: %v\n%s", err, out)
	}
	done := false
	unblock = func() {
		if done {
			return
		}
		done = true
		if out, err := l.Exec(context.WithoutCancel(ctx), "ul", "nft", "delete table inet "+table); err != nil {
			t.Errorf("unblock etcd: %v\n%s", err, out)
		}
	}
	t.Cleanup(unblock)
	return unblock
}

// pingDuring pings every 20 ms from src to dst while f runs and reports
// what was sent and received.
func pingDuring(ctx context.Context, t *testing.T, l *lab.Lab, src, dst lab.Container, count int, f func()) (tx, rx int, out string) {
	t.Helper()
	cmd, err := l.Command(ctx, src.Name, "ping", "-i", "0.02", "-c", fmt.Sprint(count), "-W", "1", dst.IP.String())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ping: %v", err)
	}
	f()
	_ = cmd.Wait() // the counts say what happened
	tx, rx = parsePing(b.String())
	return tx, rx, b.String()
}

// TestEtcdOutageKeepsForwarding: with etcd unreachable for several seconds
// the overlay keeps forwarding (nothing depends on etcd per packet), and
// once it is back the agents catch up and a new container can be added.
func TestEtcdOutageKeepsForwarding(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	src, dst := pickCrossHost(t, shared)
	const count = 300 // 6 s at 20 ms
	tx, rx, out := pingDuring(ctx, t, shared, src, dst, count, func() {
		unblock := blockEtcd(ctx, t, shared)
		time.Sleep(5 * time.Second) // the outage
		unblock()
	})
	t.Logf("ping %s -> %s every 20 ms across a 5 s etcd outage: %d sent, %d received", src.Name, dst.IP, tx, rx)
	if tx != count || rx != tx {
		t.Errorf("lost pings while etcd was unreachable: sent %d, received %d\n%s", tx, rx, out)
	}
	// Back to normal: a new container is wired and reachable across hosts.
	actx, acancel := context.WithTimeout(ctx, time.Minute)
	defer acancel()
	c, err := shared.AddContainer(actx, dst.Host, lab.ContainerOpts{Name: "after-outage"})
	if err != nil {
		t.Fatalf("add a container after the outage: %v", err)
	}
	if err := shared.Ping(ctx, src.Name, c.IP); err != nil {
		t.Errorf("ping the new container after the outage: %v", err)
	}
}
