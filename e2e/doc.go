// Package e2e holds Skein's end-to-end tests (build tag e2e): a lab of
// several hosts in network namespaces with real skeind processes, containers
// made through the real skein-cni binary, and real traffic between them.
// Run them with `make e2e` (root; SKEIN_BIN names the built binaries).
package e2e
