//go:build !linux

package main

import (
	"errors"
	"log/slog"
)

// newNetlinkDataplane exists so the package builds (and its pure parts test)
// off Linux; the plugin itself only works on Linux.
func newNetlinkDataplane(*slog.Logger) (dataplane, error) {
	return nil, errors.New("skein-cni runs only on linux")
}
