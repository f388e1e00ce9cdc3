// Package dockerdrv is Skein's libnetwork remote network and IPAM driver:
// the Docker engine's `docker network create -d skein --ipam-driver skein`.
//
// It speaks the plugin protocol (plain HTTP/JSON on a unix socket) and
// wires a container exactly as skein-cni does, through the same agent calls:
// the IPAM driver's RequestAddress is the CNI ADD's allocation, Join plumbs
// a routed veth (/32, gateway 169.254.1.1) and commits the same endpoint
// record, ReleaseAddress is the CNI DEL. Docker attachments live in the
// Skein network named by Config.Network, so `skein ipam check`, GC, policy
// and `skein endpoint list` see them like any other.
//
// libnetwork tells the driver neither the container nor its labels. Those
// come from the engine API (network inspect, container list) after Join,
// and the endpoint record is committed again with them.
package dockerdrv
