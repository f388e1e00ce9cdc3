// Command skein is Skein's admin CLI. It talks to etcd for cluster resources
// and, for `skein lab`, builds a virtual multi-host cluster in namespaces.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
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
		// A command run by `lab exec` already spoke for itself; pass on only its status.
		if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) {
			fmt.Fprintln(os.Stderr, "skein:", err)
		}
		os.Exit(exitCode(err))
	}
}
