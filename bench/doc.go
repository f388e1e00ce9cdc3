// Command bench measures Skein against hand-built baselines in one run and
// writes a markdown report (docs/benchmarks.md via `make bench`).
//
// Usage:
//
//	go run ./bench -bin bin -out docs/benchmarks.md
//
// It needs root and Linux. Everything it creates lives in network namespaces
// named "skbench*" (labs named "skbench", "skbenchpol", "skbenchbgp" and
// "skbenchbird", plus hand-built topologies "skbench-x*") and in a run
// directory under /run; it removes all of it when it ends, also on
// failure or Ctrl-C, and never touches the root network namespace. A run that
// was killed is cleaned up by the next one before it starts.
//
// Phases, in order (each compares Skein with a baseline measured in the same
// run and reports ratios):
//
//  1. Data plane: bare veth pair, hand-built VXLAN pair and Skein's VXLAN
//     between two lab hosts, plus rows with candidate settings (offloads,
//     UDP checksum, nftables/conntrack, the lab underlay's br_netfilter),
//     measured in interleaved rounds (iperf3, one TCP stream; 1-byte TCP
//     request/response latency from a small subprocess of this program).
//  2. Agent RSS and idle CPU.
//  3. CNI ADD/DEL latency through cnitool: skein-cni against the reference
//     bridge + host-local plugins, interleaved, plus the plugin exec floor.
//  4. Agent start → ready over repeated restarts.
//  5. Node-join convergence: a node's record in etcd → the route to its
//     block on every other host (netlink route subscriptions).
//  6. Policy (a VXLAN lab of its own, "skbenchpol"): an allowed cross-host
//     flow with 0, 100, 1 000 and 10 000 NetworkPolicies over 10 000 fake
//     endpoint records, interleaved; policy apply → enforced on every host;
//     new endpoint → its address in another host's sets; compile time and
//     agent memory.
//  7. BGP (labs "skbenchbgp", node mesh, and "skbenchbird", BIRD as route
//     reflector): routed throughput and request/response against a
//     hand-built routed pair, interleaved; pings across an agent restart;
//     node join → routes on every host, for both.
//  8. Scale (lab "skbenchscale", -scale-lab): one real agent while 100, 300
//     and 1 000 simulated nodes (node record, one /26 block, 50 endpoints
//     each; underlay addresses in 198.18.0.0/15, unroutable from every lab
//     host and never sent to) are written into the lab's etcd: sync time,
//     join latency, CPU per remote endpoint change, RSS and idle CPU, then
//     1 000 and 10 000 NetworkPolicies on top (start → ready, new endpoint
//     → set). It also writes docs/scale.svg next to the report.
//  9. Watch fan-out (lab "skbenchfan", -fanout-lab): 100, 300 and 1 000
//     simulated watching agents (`bench watch-fanout` helpers) while
//     endpoint records are put at a steady rate: etcd CPU and delivery
//     delay (see docs/scale.md).
//  11. Drop logging (no lab; namespaces skbench-xd*): two routed pods behind
//     one host namespace, the server under Deny rules it must walk past,
//     enforced by the policy applier with and without the drop log rules
//     (skeind --drop-log=false), interleaved with the order alternating:
//     throughput, request/response and new connections (`bench
//     crr-client`), as ratios log on / log off.
//
// A run of only the scale and fan-out phases touches no other lab, e.g.
//
//	go run ./bench -phases scale,fanout -scale-nodes 100,300 -scale-policies 1000 -out /tmp/x.md
//
// -phases and -rows select part of the run, e.g. to repeat one data-plane
// comparison with more rounds:
//
//	go run ./bench -phases dataplane -rows skein+gro -rounds 15 -iperf-seconds 2 -out /tmp/x.md
//
// or to run only the policy and BGP phases (which skip the shared lab):
//
//	go run ./bench -phases policy,bgp -out /tmp/x.md
//
// The program also contains its helpers, internal subcommands it execs:
// `bench rr-server`, `bench rr-client` (request/response, inside the
// namespaces) and `bench crr-client` (new connections) and `bench join-watch` (the etcd and route watcher of phase 5,
// at real-time priority when chrt allows) and `bench watch-fanout` (phase 9's
// watchers).
package main
