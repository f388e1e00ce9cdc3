// Package backup saves and restores Skein's keys: a File is every key under
// the prefix at one etcd revision (heartbeats and status records, which
// live on agents' leases, left out), with a format version and a SHA-256
// checksum. Plan (pure) compares a File with a store's current keys and
// says what a restore would create, change and delete, and which of those
// touch a node whose agent is alive.
package backup
