//go:build !linux

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
)

var errLinuxOnly = errors.New("bench: needs Linux (network namespaces)")

func run(context.Context, config, *slog.Logger) error { return errLinuxOnly }

func helperMain([]string) int {
	fmt.Fprintln(os.Stderr, errLinuxOnly)
	return 1
}
