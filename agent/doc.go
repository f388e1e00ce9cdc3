// Package agent is skeind, the per-host agent. It registers the node, leases
// pod address blocks through ipam, keeps a heartbeat, watches the cluster in
// etcd and feeds the dataplane backend (VXLAN today) with the desired peers,
// serves skein-cni on a root-only unix socket, and serves the debug endpoint.
//
// Run wires the parts; each part's logic lives in its own package. The only
// kernel work done here is finding the underlay and enabling forwarding.
package agent
