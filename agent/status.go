package agent

import (
	"context"
	"time"

	"github.com/skeinnet/skein/api"
)

const statusRefresh = 10 * time.Second

// publishStatus hands the heartbeat the newest NodeStatus without blocking:
// a pending older value is replaced.
func (a *Agent) publishStatus() {
	st := a.nodeStatus()
	select {
	case <-a.statusCh:
	default:
	}
	select {
	case a.statusCh <- st:
	default:
	}
}

func (a *Agent) statusLoop(ctx context.Context) error {
	t := time.NewTicker(statusRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			a.publishStatus()
		}
	}
}

func (a *Agent) nodeStatus() api.NodeStatus {
	ready, reason := a.readiness()
	st := api.NodeStatus{
		Node:      a.cfg.NodeName,
		Version:   a.cfg.Version,
		Backend:   a.cluster.Backend,
		Ready:     ready,
		DebugAddr: a.cfg.DebugAddr,
		Updated:   time.Now().UTC(),
	}
	for _, b := range a.alloc.Blocks() {
		st.Blocks = append(st.Blocks, b.String())
	}
	st.Endpoints = len(a.alloc.Allocations())
	d := a.vx.Debug()
	st.LastSync = d.LastSync
	st.Peers = d.Neighs
	if d.LastError != "" {
		st.LastError = d.LastError
	} else if !ready {
		st.LastError = reason
	}
	return st
}
