//go:build !linux

package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

// newLabCmd stands in for `skein lab` where there are no network
// namespaces: every other command works from any OS, this one says why it
// does not.
func newLabCmd(*globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:                "lab",
		Short:              "Run a virtual multi-host cluster in network namespaces (Linux only)",
		Example:            "  skein lab up   # on a Linux machine, as root",
		DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error {
			return fmt.Errorf("skein lab needs Linux (network namespaces); this skein runs on %s: run it on a Linux machine", runtime.GOOS)
		},
	}
}
