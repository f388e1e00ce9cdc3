package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
)

// Policy steps of the scale phase: the policy phase's NetworkPolicies
// (benchPolicy) on top of the largest node step. A server container on the
// real host is selected by every polServerEvery-th policy, which allows the
// pods of one team's namespaces; with at least polServerEvery × polTeams
// policies every simulated endpoint belongs in one of the server's sets.

// addServer starts the container the policies select on the real host.
func (s *scaleLab) addServer(ctx context.Context) error {
	_, err := s.l.AddContainer(ctx, s.host, lab.ContainerOpts{Namespace: polNamespace, Name: polServerApp, Labels: map[string]string{polLabelKey: polServerApp}})
	return err
}

// policyStep makes the first st.Policies benchPolicy policies the cluster's
// with the agent stopped, times its start → ready, and measures as after a
// sync, plus new endpoint → remote set.
func (s *scaleLab) policyStep(ctx context.Context, st *ScaleStep) error {
	if err := s.l.StopAgent(ctx, s.host); err != nil {
		return err
	}
	if st.Policies < s.level {
		if _, err := s.sc.Etcd().Delete(ctx, s.sc.Prefix()+api.PolicyKeyKind+"/", clientv3.WithPrefix()); err != nil {
			return fmt.Errorf("delete policies: %w", err)
		}
		s.level = 0
	}
	var ops []clientv3.Op
	for i := s.level; i < st.Policies; i++ {
		np := benchPolicy(i)
		v, err := json.Marshal(np)
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(s.sc.Prefix()+api.PolicyKey(np.Kind, np.Namespace, np.Name), string(v)))
	}
	if err := s.commit(ctx, ops); err != nil {
		return err
	}
	s.level = st.Policies
	t0 := time.Now()
	if err := s.l.StartAgent(ctx, s.host); err != nil {
		return err
	}
	st.ReadyExt = time.Since(t0)
	if top, err := debugGet[api.Topology](ctx, s.hc, "/debug/topology"); err == nil {
		if d, err := time.ParseDuration(top.ReadyAfter); err == nil {
			st.Ready = d
		}
	}
	s.b.log.Info("scale policy start", "nodes", st.Nodes, "policies", st.Policies, "ready", st.Ready, "from_exec", st.ReadyExt.Round(time.Millisecond))
	if err := s.steady(ctx, st); err != nil {
		return err
	}
	return s.newEndpoints(ctx, st)
}

// newEndpoints puts scaleNewEndpoints new remote endpoints, one at a time,
// and times each from just before its put to its address being added to a
// set in the host's nftables (`nft monitor` there). The start is before the
// commit, so etcd's commit time is included. They are in namespace fake-00,
// of team 0, which the first server policy allows, so the server's sets
// hold them at any policy count. `nft monitor` may lose events when the
// table is large; a poller of the sets that hold a known fake-00 address
// backs it (its sighting is up to one poll late).
func (s *scaleLab) newEndpoints(ctx context.Context, st *ScaleStep) error {
	inSet := &firstSeen{at: map[netip.Addr]time.Time{}}
	stopMonitor, err := s.b.monitorSetAdds(s.host, inSet)
	if err != nil {
		return err
	}
	defer stopMonitor()
	if err := sleepCtx(ctx, polMonitorStart); err != nil {
		return err
	}
	pid, err := s.agentPID()
	if err != nil {
		return err
	}
	if err := s.quiesce(ctx, pid); err != nil {
		return err
	}
	// Node 0's first endpoint is in the probes' namespace (fake-00).
	poll, err := newSetPoller(s.host, s.written[0].Masked().Addr().Next())
	if err != nil {
		return err
	}
	defer poll.close()
	s.b.log.Info("scale set poller", "sets", len(poll.sets))
	for range scaleNewEndpoints {
		op, a, err := s.changeOp(s.extra, polFakeNamespace(0))
		if err != nil {
			return err
		}
		s.extra++
		t0 := time.Now()
		if err := s.commit(ctx, []clientv3.Op{op}); err != nil {
			return err
		}
		deadline := time.Now().Add(scaleSetTimeout)
		// The earlier of `nft monitor`'s line and the poller's sighting.
		for {
			if poll.has(a) {
				inSet.mark(a, time.Now())
			}
			if t, ok := inSet.get(a); ok {
				st.NewEndpoint = append(st.NewEndpoint, t.Sub(t0))
				s.b.log.Debug("scale new endpoint", "addr", a, "took", t.Sub(t0))
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("new endpoint %s: not in a set on %s after %s", a, s.host, scaleSetTimeout)
			}
			if err := sleepCtx(ctx, 2*time.Millisecond); err != nil {
				return err
			}
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	s.b.log.Info("scale new endpoint → set", "policies", st.Policies, "p50", percentile(st.NewEndpoint, 50), "p99", percentile(st.NewEndpoint, 99))
	return nil
}
