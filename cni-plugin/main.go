package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"
)

// about is printed on stderr when the binary runs without CNI_COMMAND.
// skel would print it instead of failing; we print it ourselves and still
// fail with error 4, since a runtime that forgot CNI_COMMAND must hear so.
const about = "skein-cni: Skein's CNI plugin (routed veth, addresses and policy from skeind)"

func main() {
	p := &plugin{
		stdout: os.Stdout,
		stderr: os.Stderr,
		newDataplane: func(log *slog.Logger) (dataplane, error) {
			return newNetlinkDataplane(log)
		},
	}
	if os.Getenv("CNI_COMMAND") == "" {
		fmt.Fprintln(os.Stderr, about)
	}
	// skel prints a returned *types.Error as JSON on stdout and exits 1.
	skel.PluginMainFuncs(p.funcs(),
		version.PluginSupports("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"),
		"")
}
