//go:build !linux

package bgp

import (
	"errors"
	"log/slog"
)

func defaultDataplane(Config, *slog.Logger) (RouteDataplane, error) {
	return nil, errors.New("kernel routes are only implemented on linux; set Config.Dataplane")
}
