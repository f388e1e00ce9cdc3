//go:build !linux

package dockerdrv

import (
	"context"
	"errors"
)

// NetlinkDataplane is Linux-only.
type NetlinkDataplane struct{}

// NewNetlinkDataplane fails off Linux.
func NewNetlinkDataplane() (*NetlinkDataplane, error) {
	return nil, errors.New("the docker driver needs Linux")
}

// Close does nothing.
func (*NetlinkDataplane) Close() {}

// AddVeth fails off Linux.
func (*NetlinkDataplane) AddVeth(context.Context, Veth) error { return errors.New("linux only") }

// DelVeth fails off Linux.
func (*NetlinkDataplane) DelVeth(context.Context, string) error { return errors.New("linux only") }

// SetGatewayNeigh fails off Linux.
func (*NetlinkDataplane) SetGatewayNeigh(context.Context, string, string, bool) error {
	return errors.New("linux only")
}
