// Package report grades the cluster's health from one place, as `skein
// status`, `skein topology` and `skein bgp status` print it: what etcd holds
// at one revision (node, status and heartbeat records) and, where an
// agent's debug endpoint answers, that agent's own view. Build, NewGraph
// and BuildBGP are pure, so tests feed them inventories; the Probe
// functions ask the agents. Rendering is the CLI's.
package report
