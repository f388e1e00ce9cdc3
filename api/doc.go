// Package api holds Skein's resource types (Cluster, Node, Block, Endpoint,
// Namespace, NodeStatus), their validation, and the wire types spoken between
// skein-cni and skeind over the agent socket.
//
// It also holds the policy resources with their upstream Kubernetes schemas
// (NetworkPolicy networking.k8s.io/v1, AdminNetworkPolicy and
// BaselineAdminNetworkPolicy policy.networking.k8s.io/v1alpha1), the
// Namespace and Endpoint documents of offline policy files, API-server-like
// defaulting and validation, and DecodeDocuments for multi-document YAML or
// JSON files.
//
// Domain types use net/netip; net.IP appears only at the netlink/CNI edges in
// other packages. Every type marshals to the JSON stored under /skein/ in etcd.
package api
