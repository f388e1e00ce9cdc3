// Command skein-cni is Skein's CNI plugin (spec 0.1.0 through 1.1.0).
//
// It is deliberately thin: it parses the runtime's request, asks the local
// agent skeind for addresses over the agent's unix socket (HTTP/JSON, see
// api/wire.go), plumbs a routed veth and prints the result. All cluster state
// (IPAM, endpoints, policy) lives in the agent, so the binary never links the
// etcd client or server, nor GoBGP; deps_test.go enforces that.
//
// Wiring of one attachment (DESIGN.md "Wiring a container"):
//
//	container netns                         host netns
//	CNI_IFNAME  IP/32  ----- veth pair -----  sk<11 hex>  (no address, proxy_arp=1)
//	  169.254.1.1 dev IF scope link             IP/32 dev sk… scope link proto 78
//	  default via 169.254.1.1
//	  neigh 169.254.1.1 → host veth MAC (permanent, so no ARP for the gateway)
//
// The host veth name and both MACs derive from a hash of (container id,
// ifname), so DEL and GC find the host side without any state in the plugin,
// and DEL deletes a container interface only if it still has the MAC the
// plugin gave it (an eth0 with another MAC is not provably ours). The host
// veth's only address-like state is its /32 routes, which go with it.
//
// ADD allocates, plumbs and then commits (the agent publishes the endpoint
// and installs its policy before answering), so a container never starts
// with an open policy window. Any failure after allocation removes the veth
// and releases the addresses before the error is returned.
//
// Errors are CNI error objects on stdout. Besides the spec codes (4 missing
// environment, 6 undecodable config, 7 invalid config value naming the key,
// 8 unusable CNI_NETNS, 11 agent unreachable or too slow, 50 agent not
// available on STATUS, and codes passed through from the agent's
// api.AgentError) the plugin uses two codes of its own:
//
//	100  ADD: the attachment already exists (its host veth is present)
//	101  CHECK: the attachment is broken (the message says what is wrong)
//
// Logs go to stderr (warn level by default) or to the config's logFile;
// stdout carries only the CNI protocol.
package main
