// Command skein is Skein's admin CLI. It talks to etcd for cluster resources
// and, for `skein lab`, builds a virtual multi-host cluster in namespaces.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
	root := newRootCmd()
	err := root.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "skein:", err)
		os.Exit(exitCode(err))
	}
}
