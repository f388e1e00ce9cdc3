package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/skeinnet/skein/api"
)

// statusRefresh is how often the status record is rewritten regardless;
// statusCheck how often it is recomputed to catch changes nothing signals
// (a BGP session coming up).
const (
	statusRefresh = 10 * time.Second
	statusCheck   = time.Second
)

// publishStatus hands the heartbeat the newest NodeStatus without blocking:
// a pending older value is replaced. It returns what it handed over.
func (a *Agent) publishStatus() api.NodeStatus {
	st := a.nodeStatus()
	select {
	case <-a.statusCh:
	default:
	}
	select {
	case a.statusCh <- st:
	default:
	}
	return st
}

// requestStatus asks the status loop for a fresh record at once, without
// building it here: the CNI calls that change the status must not wait for
// it (building one took up to ~13 ms of a DEL, measured in issue 11).
func (a *Agent) requestStatus() {
	select {
	case a.statusKick <- struct{}{}:
	default: // a request is pending; it will see this change too
	}
}

func (a *Agent) statusLoop(ctx context.Context) error {
	t := time.NewTicker(statusCheck)
	defer t.Stop()
	var last string
	var lastAt time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.statusKick:
			last, lastAt = statusFingerprint(a.publishStatus()), time.Now()
		case <-t.C:
			fp := statusFingerprint(a.nodeStatus())
			if fp != last || time.Since(lastAt) >= statusRefresh {
				a.publishStatus()
				last, lastAt = fp, time.Now()
			}
		}
	}
}

// statusFingerprint is what makes a status worth republishing at once.
func statusFingerprint(st api.NodeStatus) string {
	fp := fmt.Sprint(st.Ready, st.LastError, st.Peers, st.PeersUp, st.Endpoints, st.Blocks, st.PolicyVersion, st.PolicyError, st.InvalidPolicies, st.Unpublished, st.EtcdUnreachable)
	for _, b := range st.EmptyBlocks {
		fp += " empty=" + b.CIDR.String()
	}
	for _, n := range st.BGP {
		fp += " " + n.Name + "=" + n.State
	}
	fp += fmt.Sprint(" links=", st.Links) // fmt sorts map keys
	return fp
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
	grace := a.cfg.BlockReleaseGrace
	if grace <= 0 {
		grace = -1 // release is off: no block has a release time
	}
	st.EmptyBlocks = a.alloc.EmptyBlocks(grace)
	a.be.status(&st)
	if a.pol != nil {
		d := a.pol.rec.Debug()
		st.PolicyVersion, st.PolicySync, st.PolicyError = d.AppliedVersion, d.LastSync, d.LastError
		st.InvalidPolicies = a.pol.invalidPolicies()
	}
	if a.pub != nil {
		o := a.pub.state()
		st.Unpublished, st.UnpublishedSince, st.EtcdUnreachable = o.Unpublished, o.Oldest, !o.Etcd.Reachable
	}
	if st.LastError == "" && !ready {
		st.LastError = reason
	}
	return st
}
