package store

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// unavailableErrs are the etcd answers that mean "no etcd to talk to right
// now" rather than "etcd said no".
var unavailableErrs = []error{
	context.DeadlineExceeded, // the client retries an unreachable etcd until the deadline
	rpctypes.ErrNoLeader,
	rpctypes.ErrLeaderChanged,
	rpctypes.ErrTimeout,
	rpctypes.ErrTimeoutDueToLeaderFail,
	rpctypes.ErrTimeoutDueToConnectionLost,
	rpctypes.ErrUnhealthy,
	rpctypes.ErrTooManyRequests,
}

// IsUnavailable reports whether err means etcd could not be reached or had
// no quorum, as opposed to a refusal (permission denied, bad request, a
// failed comparison) that retrying later would not fix by itself.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	for _, u := range unavailableErrs {
		if errors.Is(err, u) {
			return true
		}
	}
	// A connection that broke mid-call ("error reading from server").
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}
