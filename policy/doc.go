// Package policy compiles Kubernetes NetworkPolicy, AdminNetworkPolicy and
// BaselineAdminNetworkPolicy objects plus the cluster's endpoints and
// namespaces into a Program, explains verdicts on it (Trace, Matrix), and
// enforces it with nftables.
//
// # Evaluation
//
// A connection is allowed iff the source endpoint's egress and the
// destination endpoint's ingress both allow it (an address outside the
// cluster has no policy of its own). Per endpoint and direction the tiers are:
//
//  1. AdminNetworkPolicy rules, ANPs ordered by priority (lower first) and,
//     for equal priorities, by name (upstream leaves that order undefined;
//     Skein's tie-break is deterministic). Rules keep their order; the first
//     matching rule decides: Allow, Deny, or Pass to tier 2.
//  2. NetworkPolicy: an endpoint selected by some NetworkPolicy of its
//     namespace for the direction is isolated: exactly what one of their rules
//     allows passes, the rest is denied, and tier 3 never sees it.
//  3. BaselineAdminNetworkPolicy rules (policies by name, rules in order),
//     first match decides.
//  4. Allow.
//
// Traffic from an endpoint to itself is always allowed, and so is traffic
// from a host to its own containers (it goes through OUTPUT, which Skein
// does not filter). Policies decide connections, not packets: replies and
// related packets of an allowed connection always pass.
//
// # Program
//
// Compile is pure. Its Program lists, per endpoint, the rules of each tier
// and direction; a rule's peers are named Sets (pod addresses of a selector,
// prefixes of an ipBlock, or address-protocol-port triples of an egress named
// port), named after the selector that defines them, so endpoint and label
// churn changes set elements, never rules. Trace and Matrix evaluate exactly
// that program, and the applier renders exactly that program, so what trace
// says is what the dataplane does.
//
// # nftables
//
// The applier owns the table `inet skein`:
//
//	chain prerouting (filter hook prerouting priority raw):
//	    iifname . ip saddr vmap @ep_addrs        # a container sends only from its own addresses;
//	                                             # selected: accept, else goto untrack
//	    iifname "sk*" iifname != "skein.*" drop  # other traffic of containers
//	    ip daddr <pool> goto untrack_in          # from the overlay to a pod
//	chain untrack, untrack_in:                   # TCP between unselected pods: notrack
//	chain forward (filter hook forward priority filter, policy accept):
//	    ct state established,related,untracked accept   # replies never walk the rules
//	    tcp flags ! syn accept                  # connections older than their pod's policy
//	    ct state invalid drop
//	    iifname vmap @egress_dispatch           # from a container: its egress chain
//	    oifname vmap @ingress_dispatch          # to a container: its ingress chain
//
// Each endpoint direction with policy gets a chain (shared by endpoints
// whose compiled rules are equal): ANP rules, then (goto on Pass) a second
// chain with the NetworkPolicy allows, the isolation drop, and BANP rules.
// Allow is `return`, so a local-to-local connection passes the source's
// egress chain and then the destination's ingress chain; Deny is `drop`.
// Dispatch is by verdict map and peers are set lookups, so per-packet cost
// does not grow with the number of endpoints, and established flows stop at
// the first rule.
//
// Every apply is one atomic batch (the kernel commits it all or nothing, so
// a failure leaves the previous table). The first apply, and the one after a
// failure or a periodic drift repair, rebuilds the whole table; the others
// apply the difference with what the applier last wrote: set, map and
// anti-spoofing elements, and, since chains are named after their content,
// whole chains and sets added or deleted, never a rule edited in place.
package policy
