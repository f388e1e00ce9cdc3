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
		if unsaid(err) {
			fmt.Fprintln(os.Stderr, "skein:", err)
		}
		os.Exit(exitCode(err))
	}
}

// unsaid reports whether main must print err. A command run by `lab exec`
// already spoke for itself, and so did a verdict printed after a table; for
// those only the exit status passes on.
func unsaid(err error) bool {
	ee, said := (*exec.ExitError)(nil), (*exitError)(nil)
	return !errors.As(err, &ee) && !(errors.As(err, &said) && said.said)
}
