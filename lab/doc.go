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
// Processes are started through `ip netns exec` rather than from a thread
// switched into the namespace, because ip also remounts /sys for the target
// namespace and keeps /run/netns a shared mount, so an agent sees its own
// interfaces in sysfs and the container namespaces created after it started.
package lab
