// Package audit describes who changed what in Skein's store: the record
// written in the same etcd transaction as every change made through the CLI
// (store.Config.Audit), the field diff of a value, the identity of the
// caller, and the filters of `skein audit`. It does no I/O but reading the
// caller's certificate and OS user.
package audit
