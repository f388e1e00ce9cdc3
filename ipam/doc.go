// Package ipam hands out pod addresses on one node.
//
// Every cluster pool is split into blocks (default /26). A node owns blocks by
// claiming them in the store with a create-if-absent transaction, so no block
// ever has two owners; it claims its first block (the home block) at start and
// another whenever every address of its blocks is taken or cooling down. The
// search for a free block starts at a position derived from a hash of the node
// name, so many nodes starting at once rarely fight over the same block, yet a
// node always searches in the same order.
//
// A block other than the home block that has held no allocation and no
// cooling address for Config.ReleaseGrace goes back to the pool
// (ReleaseEmptyBlocks, run by RunBlockRelease): it is taken out of the blocks
// addresses are picked from before the store is asked, and the store deletes
// it only if it still names the node, so no address is ever handed out of a
// block being released.
//
// Addresses inside the node's blocks are allocated by the node's agent alone
// and never touch the store: the allocator keeps them in two slot files,
// StateDir/ipam.state.0 and .1 (internal/slotfile), rewritten in turn in place
// with one fdatasync before any call returns, so a restart keeps every
// container's address and a crash during a write leaves the previous state.
// A legacy StateDir/ipam.json (earlier versions) is read when the slots hold
// no state yet and removed once they do.
//
// Invariants:
//   - The first address of every block is never handed out; the node's VTEP
//     address is the first address of its home block. Pods are routed as /32, so
//     the last address of a block is an ordinary pod address.
//   - Each allocation records its owner (container ID + ifname, and the pod
//     where known). Release is keyed by owner, so a stale DEL for an owner that
//     no longer holds an address frees nothing, even when the address has since
//     been handed to someone else.
//   - A freed address rests for a cooldown (default 30 s) before reuse, so that
//     conntrack entries and caches pointing at the old owner age out first.
//   - On start the state file is reconciled with the store: blocks the store
//     says the node owns are adopted; blocks the file lists but the store does
//     not are re-claimed, and if another node owns one meanwhile, it is dropped
//     and its allocations are logged at Error level.
//   - The allocator's mutex is never held across a store call: a slow etcd
//     stalls only the Allocates that need a new block. One claim is in flight
//     at a time; the other Allocates that need a block wait for its result.
//
// Only IPv4 pools are supported for now.
package ipam
