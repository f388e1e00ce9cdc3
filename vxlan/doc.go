// Package vxlan is Skein's overlay backend: a flannel-style L3 VXLAN network
// between hosts.
//
// # Forwarding scheme
//
// Every host has one VXLAN device, skein.vxlan (VNI 4096, UDP 4789 by
// default), with learning off and its VTEP IP as a /32. For each remote host
// the planner wants exactly:
//
//   - one route per block of that host: "block via <VTEP IP> dev skein.vxlan
//     onlink", marked with api.RouteProtocol;
//   - one permanent neighbour: VTEP IP → VTEP MAC on skein.vxlan, so the
//     route's next hop never needs ARP;
//   - one FDB entry: VTEP MAC → underlay IP on skein.vxlan, so the frame to
//     that MAC is encapsulated to that host.
//
// A packet to a remote pod thus takes one route lookup (block → VTEP IP), one
// neighbour lookup (VTEP IP → MAC) and one FDB lookup (MAC → underlay IP). All
// entries are programmed ahead of traffic; there is no L2-miss or L3-miss
// handling, no multicast and no flooding, so nothing depends on the agent
// being up to forward packets. When a remote host's VTEP IP lies outside its
// blocks, one extra /32 route to it lets replies reach this host's VTEP IP.
//
// With DirectRouting, a remote host on the same L2 subnet instead gets "block
// via <underlay IP> dev <underlay>" routes and no neighbour or FDB entry:
// packets go unencapsulated.
//
// # Table cost
//
// For N remote hosts holding B blocks in all, a host carries B routes (plus
// at most N for VTEP IPs outside blocks), N neighbour entries and N FDB
// entries: linear in the cluster size, independent of the number of pods.
// A thousand hosts with two blocks each is about 2,000 routes, 1,000
// permanent neighbours and 1,000 FDB entries. Permanent neighbours are never
// garbage collected and, since Linux 4.19, do not count against gc_thresh.
//
// # Ownership
//
// Skein owns every neighbour and FDB entry on its device, and every route
// marked with api.RouteProtocol in the main table whose device is skein.vxlan
// or (for direct routes) the configured underlay interface. Sync removes
// whatever of those it did not plan, including what a previous run left
// behind, and touches nothing else.
//
// # Parts
//
// Plan (plan.go) is pure. Reconciler (reconcile.go) diffs the plan against
// what a Dataplane observes and applies the difference, level-triggered, via
// internal/reconcile. NetlinkDataplane (netlink_linux.go) is the thin kernel
// applier.
package vxlan
