// Package auth maps Skein's admin roles onto etcd's own users and roles, so
// that etcd enforces them on every client (the CLI, agents, other tools):
// viewer reads everything; policy-admin writes policies, namespace and
// endpoint labels, optionally only in some namespaces; network-admin writes
// everything under the prefix; node writes what an agent writes. Plan
// (pure) says which etcd roles and permissions a grant needs; Manager
// applies it through etcd's auth API. cert.go issues client certificates
// from an admin's CA.
package auth
