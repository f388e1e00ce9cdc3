// Package lab runs a virtual multi-host Skein cluster in network namespaces on
// one machine. It backs `skein lab`, `make demo`, the e2e tests and the
// benchmarks.
//
// Layout, for a lab named p (default "sklab"):
//
//	p-ul          underlay namespace: bridge "ubr" with 10.255.0.254/24 and the
//	              lab's etcd (a detached `skein lab etcd` process)
//	p-h1 .. p-hN  one namespace per host: veth "eth0" into the bridge with
//	              10.255.0.<i>/24, lo up, one real skeind process
//	p-hI-cJ       one namespace per container, wired by the real skein-cni
//	              binary through libcni, invoked from inside its host namespace
//
// With a top-of-rack router (Config.ToR "bird" or "frr", backend bgp) the
// hosts leave subnet 0 and the cluster runs without the node mesh:
//
//	p-ul          also bridges "ubr1".."ubrS", one per host subnet, without
//	              addresses, and routes to 10.255.s.0/24 via the ToR
//	p-tor         the ToR: "eth0" 10.255.0.253/24 on ubr (next to etcd) and
//	              "eth<s>" 10.255.s.254/24 on ubr<s>, IP forwarding on; a
//	              real BIRD 2 (bird) or FRR (zebra and bgpd, as user frr)
//	              with configuration, sockets, pid files and logs under
//	              <run dir>/tor, iBGP route reflector for every host with
//	              next hop self, installing what it learns in its kernel
//	p-hI          10.255.s.I/24 on subnet s = 1+(I-1)%S, default route via
//	              10.255.s.254; the ToR is registered as external BGP peer
//	              (bgppeers/tor for all nodes with one subnet, else
//	              bgppeers/tor-hI for node p-hI with its own subnet's address)
//
// Every name the lab makes starts with "p-" (lab names contain no "-", so the
// prefix is unambiguous) and every file lives under the run directory
// (default /run/skein-lab/p), so Down removes exactly what the lab made, also
// when lab.json is gone or corrupt after a crash. Nothing touches the root
// network namespace.
//
// The etcd listens on http://10.255.0.254:2379 for the hosts and on a unix
// socket under the run directory for the admin CLI in the root namespace:
// filesystem sockets cross network namespaces, so the CLI never needs a route
// into the lab and the lab never needs a listener in the root namespace.
//
// With Config.EtcdMembers > 1 every member is its own `skein lab etcd`
// process in the underlay namespace: member i listens on 10.255.0.254 at
// port 2379 (i = 1) or i*10000+2379, on the socket etcd.sock or
// etcd<i>.sock, and talks to its peers on that namespace's loopback, so a
// test can kill and restart one. With Config.EtcdTLS the lab writes a CA,
// a certificate per member and a client certificate under <run dir>/tls,
// and etcd serves nothing but TLS (https://, unixs://, peers included),
// requiring the client certificate.
//
// Processes are started through `ip netns exec` rather than from a thread
// switched into the namespace, because ip also remounts /sys for the target
// namespace and keeps /run/netns a shared mount, so an agent sees its own
// interfaces in sysfs and the container namespaces created after it started.
package lab
