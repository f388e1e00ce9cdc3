package nlretry

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// Attempts bounds how often Dump reads a table that keeps changing.
const Attempts = 5

// Dump calls dump until it returns without netlink.ErrDumpInterrupted, at most
// Attempts times. An error other than an interruption is returned at once;
// after Attempts interruptions Dump returns the zero value and an error that
// wraps netlink.ErrDumpInterrupted, never a partial list.
func Dump[T any](dump func() (T, error)) (T, error) {
	for range Attempts {
		v, err := dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	var zero T
	return zero, fmt.Errorf("dump interrupted %d times: %w", Attempts, netlink.ErrDumpInterrupted)
}
