//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
	"github.com/skeinnet/skein/store"
)

// TestBGPPeerIPv6 runs BGP sessions over IPv6: a dual-stack lab whose ToR
// (BIRD, then FRR) peers with every host twice, over IPv4 for IPv4 routes
// and over IPv6 (host UnderlayIP6 to the ToR's IPv6 address) for IPv6
// routes, with the lab's tor6 external peer. Each host's IPv6 session is
// Established as the host and the ToR see it, the IPv4 session carries no
// IPv6 prefix, every host routes every other host's IPv6 blocks via the
// owner's UnderlayIP6 (reflected unchanged), every container reaches
// every other over IPv4 and IPv6, and an agent restart loses no ping of
// either family. Last (FRR), a host whose underlay loses its IPv6 address
// opens no IPv6 session, and `skein status` and `skein bgp status` name the
// peer and why. Run with SKEIN_E2E_LAB=lbp for labs lbp6 and lbp6b.
func TestBGPPeerIPv6(t *testing.T) {
	for _, tc := range []struct{ tor, suffix string }{{lab.ToRBIRD, "6"}, {lab.ToRFRR, "6b"}} {
		t.Run(tc.tor, func(t *testing.T) {
			testBGPPeer6(t, lab.Config{Name: labName + tc.suffix, Backend: string(api.BackendBGP), Underlay: lab.UnderlayDual,
				ToR: tc.tor, ToRIPv6Sessions: true, PodCIDR: dualPods, Hosts: 3, ContainersPerHost: 1}, tc.tor == lab.ToRFRR)
		})
	}
}

func testBGPPeer6(t *testing.T, cfg lab.Config, noSession bool) {
	l := upBGPLab(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := labStore(ctx, t, l)
	hosts := l.Hosts()

	peers, err := cl.ListBGPPeers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var tor6 api.BGPPeer
	for _, p := range peers {
		if p.Name == lab.ToRPeerName6 {
			tor6 = p
		}
	}
	if tor6.PeerIP != lab.ToRAddr6(1) {
		t.Fatalf("external peers %+v: want %s at the ToR's IPv6 address %s", peers, lab.ToRPeerName6, lab.ToRAddr6(1))
	}

	// The ToR's own view: an IPv4 and an IPv6 session per host, all up.
	waitFor(ctx, t, bgpSettle, cfg.ToR+" IPv4 and IPv6 sessions established", func() (bool, string) {
		ss, err := l.ToRSessions(ctx)
		if err != nil {
			return false, err.Error()
		}
		up := map[string]bool{}
		for _, s := range ss {
			if s.Established {
				up[s.Name+"/"+s.Neighbor.String()] = true
			}
		}
		var missing []string
		for _, h := range hosts {
			short := h.Name[strings.LastIndex(h.Name, "-")+1:]
			for _, a := range []netip.Addr{h.UnderlayIP, h.UnderlayIP6} {
				if !up[short+"/"+a.String()] {
					missing = append(missing, short+"/"+a.String())
				}
			}
		}
		return len(missing) == 0, fmt.Sprintf("not established: %v; sessions %+v", missing, ss)
	})

	// IPv4 via the ToR (next hop self, as without IPv6 sessions); IPv6 via
	// the owner's UnderlayIP6: only the IPv6 session carries IPv6, and the
	// ToR reflects it unchanged on the hosts' one subnet.
	gw4 := func(self, _ lab.Host) string { return lab.UnderlayGateway(self.Subnet).String() }
	gw6 := func(_, owner lab.Host) string { return owner.UnderlayIP6.String() }
	waitRoutesFamily(ctx, t, l, cl, "-4", gw4)
	waitRoutesFamily(ctx, t, l, cl, "-6", gw6)
	waitToRBlocks(ctx, t, l, cl, cfg.ToR, true)

	checkSessions6(ctx, t, l, cl)
	checkAllPairsFamilies(ctx, t, l, l.Containers())
	checkRestart6(ctx, t, l, cl, gw6)
	if noSession {
		checkNoSession6(ctx, t, l)
	}
}

// checkNoSession6 fails closed: a host whose agent restarts without an
// IPv6 underlay address opens no session with tor6, and both `skein
// status` and `skein bgp status` are unhealthy and name tor6 and the
// missing UnderlayIP6 among that node's problems.
func checkNoSession6(ctx context.Context, t *testing.T, l *lab.Lab) {
	t.Helper()
	gone := l.Hosts()[2]
	if out, err := l.Exec(ctx, gone.Name, "ip", "-6", "addr", "flush", "dev", "eth0", "scope", "global"); err != nil {
		t.Fatalf("flush %s's IPv6 underlay address: %v: %s", gone.Name, err, out)
	}
	if err := l.RestartAgent(ctx, gone.Name); err != nil {
		t.Fatalf("restart agent on %s: %v", gone.Name, err)
	}
	waitUnhealthyNaming(ctx, t, l, gone.Name, lab.ToRPeerName6, "UnderlayIP6")
}

// checkSessions6: `skein bgp status -o json` shows every node with its
// tor6 session Established from its UnderlayIP6 side, advertising its own
// IPv6 blocks and receiving the others', and its tor (IPv4) session
// carrying no IPv6 prefix; the cluster is healthy.
func checkSessions6(ctx context.Context, t *testing.T, l *lab.Lab, cl *store.Client) {
	t.Helper()
	blocks, err := blocksByNode(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	v6, total := ipv6Blocks(blocks)
	waitFor(ctx, t, bgpSettle, "skein bgp status: every tor6 session Established with the IPv6 prefixes", func() (bool, string) {
		rep, out, err := bgpStatus(ctx, l)
		if err != nil {
			return false, fmt.Sprintf("skein bgp status: %v\n%s", err, out)
		}
		var bad []string
		if !rep.Healthy || len(rep.Nodes) != len(l.Hosts()) {
			bad = append(bad, fmt.Sprintf("healthy %v, %d nodes; want healthy and %d", rep.Healthy, len(rep.Nodes), len(l.Hosts())))
		}
		for _, n := range rep.Nodes {
			seen := 0
			for _, nb := range n.Neighbors {
				switch nb.Name {
				case lab.ToRPeerName6:
					seen++
					// At least the others': FRR also reflects a host's own
					// prefixes back to it (gobgp drops them).
					if nb.State != api.BGPEstablished || nb.Address != lab.ToRAddr6(1) || nb.Advertised6 != v6[n.Name] || nb.Received6 < total-v6[n.Name] {
						bad = append(bad, fmt.Sprintf("%s -> %s: %+v; want Established to %s, %d IPv6 prefixes advertised, at least %d received",
							n.Name, nb.Name, nb, lab.ToRAddr6(1), v6[n.Name], total-v6[n.Name]))
					}
				case lab.ToRPeerName:
					seen++
					if nb.State != api.BGPEstablished || nb.Received6 != 0 || nb.Advertised6 != 0 {
						bad = append(bad, fmt.Sprintf("%s -> %s: %+v; want Established carrying no IPv6 prefix", n.Name, nb.Name, nb))
					}
				}
			}
			if seen != 2 {
				bad = append(bad, fmt.Sprintf("%s: %d of its sessions are tor and tor6, want both", n.Name, seen))
			}
		}
		return len(bad) == 0, strings.Join(bad, "\n")
	})
}
