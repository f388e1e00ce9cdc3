// Package bgp is Skein's routed backend: an embedded GoBGP v3 speaker
// behind Skein's own small API (Speaker, Config, Peer, RouteDataplane), so
// that moving to GoBGP v4 touches gobgp.go and gobgp_log.go only.
//
// # Model
//
// Each node advertises its blocks (Desired.Advertised) with next hop = its
// underlay IP (IPv4 blocks) or its IPv6 underlay address (IPv6 blocks, MP-BGP
// over the same IPv4 sessions; none without one), keeps sessions with the desired peers (Desired.Peers: the node
// mesh, route reflectors, external top-of-rack routers; a peer with an IPv6
// address gets a session from Config.ListenAddr6 carrying IPv6 unicast only,
// or, without one, none and a reason in Set and Debug) and installs the
// best IPv4 and IPv6 unicast path of every learned prefix as a kernel route
// "prefix via next hop", marked with Skein's route protocol. Two
// level-triggered loops (internal/reconcile) do the work: one makes gobgp's
// neighbours and advertisements match the desired state, the other turns
// the best paths into routes with the pure planner Plan and reconciles them
// with the RouteDataplane. gobgp's watch events (best path changes,
// End-of-RIB, session states) only trigger the route loop.
//
// Learned paths are not installed when they overlap one of the node's own
// blocks (Desired.Local), fall outside Config.Import, point back at the node, or
// collide with a kernel route the speaker does not own (which it never
// replaces); each is logged once and shown in Debug.
//
// # Timers
//
// Defaults favour convergence on a data-centre fabric:
//
//   - Hold time 9 s, keepalive 3 s (the usual data-centre profile, as FRR's
//     "datacenter" defaults): a dead peer is noticed in under 10 s, and a
//     busy host still has three keepalives' slack.
//   - Connect retry 1 s: a peer that does not answer (not started yet, or
//     not yet told about this node) is retried every 1–2 s (gobgp adds up to
//     100 % jitter), as often as gobgp's first attempt, so a join whose first
//     attempt failed is not held back 5–10 s. A dead peer costs a SYN per
//     1–2 s. (gobgp's dial timeout is the retry less a second, at least 1 s.)
//   - The first connection attempt to a new peer is gobgp's, 1–2 s after the
//     peer is added (hard-wired in gobgp v3); both ends try, so a node join
//     is usually up in 1–1.5 s, then the routes flow within milliseconds
//     (gobgp has no advertisement interval). After a session drops, gobgp
//     waits a fixed 5 s before reconnecting.
//   - Graceful restart time 120 s (Config.RestartTime): how long peers keep
//     this node's routes while its agent restarts.
//   - Stale route time 60 s (Config.StaleRouteTime): how long, at most, a
//     restarted speaker keeps the routes the previous run installed while it
//     re-learns them; it stops as soon as every peer is established and has
//     sent End-of-RIB.
//
// # Graceful restart
//
// With graceful restart (the default) Run's exit cuts the TCP sessions
// without a NOTIFICATION, as a dying process would, so peers keep this
// node's routes for the restart time; kernel routes are never removed on
// exit. The next run waits 6 s before it listens and connects when the
// kernel holds routes of an earlier run (a gobgp peer refuses connections
// for a fixed 5 s after a session drops, and as graceful-restart helper it
// drops the kept routes at its first failed reconnection), sets the Restart
// State and Forwarding State bits, keeps the old kernel routes until every
// peer is established and has sent End-of-RIB, and only then deletes what
// was not re-learned. Removing a peer (Set) sends a Cease
// notification: the peer drops this node's routes at once, and this node
// its.
//
// gobgp v3's server loop (BgpServer.Serve) cannot be stopped: after Run
// returns one idle goroutine per Speaker remains. Agents run one Speaker
// per process.
package bgp
