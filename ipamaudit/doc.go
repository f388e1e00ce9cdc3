// Package ipamaudit audits address management across the cluster, as
// `skein ipam show`, `check` and `release` report and repair it: Usage
// groups blocks and endpoint addresses by pool; Audit compares what etcd
// holds at one revision with the allocations each agent serves at
// /debug/ipam (Probe) and lists the problems; Release and
// Agent.ReleaseLeak fix those that can be fixed safely. Usage and Audit
// are pure, so tests feed them inventories.
package ipamaudit
