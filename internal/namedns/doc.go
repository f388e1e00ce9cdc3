// Package namedns manages named network namespaces (the ones `ip netns`
// keeps under /var/run/netns) for the lab and the benchmarks: create, delete
// and list them, run a function inside one, and open netlink handles and
// write sysctls there.
//
// Do runs its function on a fresh OS thread switched into the namespace and
// switches the thread back before unlocking it; when that fails the thread
// stays locked, and the runtime ends it with its goroutine, so no other
// goroutine ever runs in the wrong namespace. Everything else works through
// handles bound to the namespace and never moves the caller's thread.
package namedns
