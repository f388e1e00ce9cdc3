//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
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

var counterRE = regexp.MustCompile(`counter packets (\d+)`)

// vxlanDrops reads the counter of the VXLAN source filter on a host.
func vxlanDrops(ctx context.Context, t *testing.T, l *lab.Lab, host string) int {
	t.Helper()
	out, err := l.Exec(ctx, host, "nft", "list", "chain", "inet", "skein", "input")
	if err != nil {
		t.Fatalf("list the VXLAN filter on %s: %v\n%s", host, err, out)
	}
	m := counterRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no counter in the VXLAN filter on %s:\n%s", host, out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// sendUDP sends n datagrams from a lab namespace to dst.
func sendUDP(ctx context.Context, t *testing.T, l *lab.Lab, from string, dst netip.AddrPort, n int) {
	t.Helper()
	c, err := l.Dial(ctx, from, "udp", dst.String())
	if err != nil {
		t.Fatalf("dial %s from %s: %v", dst, from, err)
	}
	defer c.Close()
	for range n {
		if _, err := c.Write([]byte("not really vxlan")); err != nil {
			t.Fatalf("send to %s from %s: %v", dst, from, err)
		}
	}
}

// TestVXLANOnlyFromNodes: a host accepts VXLAN only from cluster nodes; a
// machine on the underlay that is not a node cannot inject into the overlay.
func TestVXLANOnlyFromNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hosts := shared.Hosts()
	target := netip.AddrPortFrom(hosts[0].UnderlayIP, 4789)
	before := vxlanDrops(ctx, t, shared, hosts[0].Name)
	sendUDP(ctx, t, shared, "ul", target, 5) // the underlay namespace is no node
	time.Sleep(200 * time.Millisecond)       // let the datagrams land before reading the counter
	if got := vxlanDrops(ctx, t, shared, hosts[0].Name) - before; got != 5 {
		t.Errorf("VXLAN from a non-node: %d of 5 datagrams dropped by the filter", got)
	}
	before = vxlanDrops(ctx, t, shared, hosts[0].Name)
	sendUDP(ctx, t, shared, hosts[1].Name, target, 5) // a node
	time.Sleep(200 * time.Millisecond)
	if got := vxlanDrops(ctx, t, shared, hosts[0].Name) - before; got != 0 {
		t.Errorf("VXLAN from node %s: %d datagrams dropped by the filter, want 0", hosts[1].Name, got)
	}
}
