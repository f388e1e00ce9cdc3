// Package store is Skein's typed access to etcd v3.
//
// Everything lives under one key prefix (default "/skein/"), one JSON-encoded
// api value per key:
//
//	cluster                                 api.Cluster
//	nodes/<node>                            api.Node
//	alive/<node>                            heartbeat, on the node's lease
//	blocks/<cidr with - for />              api.Block (see api.BlockKeyName)
//	endpoints/<node>/<container>/<ifname>   api.Endpoint
//	namespaces/<ns>                         api.Namespace
//	status/<node>                           api.NodeStatus, on the node's lease
//
// Invariants kept here rather than by callers: a block is claimed with a
// create-if-absent transaction, so no two nodes ever own the same block, and
// it is released only while its value still names the releasing node. Agents
// follow the cluster with Watch, which loads a snapshot and watches from its
// revision, resyncing when the watch is compacted or broken. Heartbeat keeps
// alive/<node> and status/<node> on a lease that it re-grants after etcd
// forgets it; routes never depend on these keys.
//
// StartEmbedded runs an in-process etcd for a single machine, the lab and tests.
package store
