// Package api holds Skein's resource types (Cluster, Node, Block, Endpoint,
// Namespace, NodeStatus), their validation, and the wire types spoken between
// skein-cni and skeind over the agent socket.
//
// Domain types use net/netip; net.IP appears only at the netlink/CNI edges in
// other packages. Every type marshals to the JSON stored under /skein/ in etcd.
package api
