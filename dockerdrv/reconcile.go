package dockerdrv

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/skeinnet/skein/api"
)

// CollectUnknown frees the addresses the agent holds for the driver's
// network that the driver's state does not know: a RequestAddress whose
// answer never got saved (skeind stopped in between). Called before the
// socket serves, so no allocation is in flight.
func (d *Driver) CollectUnknown(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	freed, err := d.backend.Collect(ctx, d.network, d.st.owners())
	switch {
	case err != nil:
		d.log.Warn("docker driver: freeing addresses unknown to its state failed; next start retries", "err", err)
	case len(freed) > 0:
		d.log.Info("docker driver: freed addresses unknown to its state", "count", len(freed))
	}
}

// Run names endpoints after their containers and reconciles the state with
// what dockerd reports, until ctx ends.
func (d *Driver) Run(ctx context.Context) error {
	if d.engine == nil {
		<-ctx.Done()
		return nil
	}
	resync := time.NewTicker(d.resync)
	defer resync.Stop()
	next := time.NewTimer(0)
	defer next.Stop()
	d.reconcile(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.kick:
		case <-next.C:
		case <-resync.C:
			d.reconcile(ctx)
			continue
		}
		// A container being started shows in the engine a few
		// milliseconds after Join: look again soon while one is pending.
		wait := resolveIdle
		if d.resolveAll(ctx) > 0 {
			wait = resolvePending
		}
		next.Reset(wait)
	}
}

// resolveAll asks the engine which container each unnamed endpoint belongs
// to, commits the endpoint again with the container's name and labels, and
// sets the container's gateway neighbour.
func (d *Driver) resolveAll(ctx context.Context) (pending int) {
	pending = d.resolveNetworks(ctx)
	type todo struct {
		owner, network, endpoint, container, hostIface string
		fresh, v6                                      bool
	}
	var work []todo
	d.mu.Lock()
	for _, a := range d.st.Attachments {
		if a.Committed && a.EndpointID != "" && a.HostIface != "" && (a.Container == "" || !a.Neigh) {
			work = append(work, todo{a.Owner.ContainerID, a.NetworkID, a.EndpointID, a.Container, a.HostIface, time.Since(a.Joined) < resolveFast, a.V6})
		}
	}
	d.mu.Unlock()
	for _, t := range work {
		cid := t.container
		if cid == "" {
			var err error
			if cid, err = d.name(ctx, t.owner, t.network, t.endpoint); err != nil {
				if !errors.Is(err, errNotFound) {
					d.log.Debug("docker endpoint not resolved yet", "endpoint", short(t.endpoint), "err", err)
				}
				if t.fresh {
					pending++
				}
				continue
			}
		}
		if err := d.neigh(ctx, t.owner, t.endpoint, cid, t.hostIface, t.v6); err != nil {
			if !errors.Is(err, errNotFound) {
				d.log.Debug("docker container gateway neighbour not set yet", "container", short(cid), "err", err)
			}
			if t.fresh {
				pending++
			}
		}
	}
	return pending
}

// resolveNetworks reads the labels of new networks from the engine, where
// a network appears once CreateNetwork returned, so that the first Join on
// a network already has them.
func (d *Driver) resolveNetworks(ctx context.Context) (pending int) {
	var ids []string
	d.mu.Lock()
	for id, n := range d.st.Networks {
		if !n.Resolved {
			ids = append(ids, id)
		}
	}
	d.mu.Unlock()
	for _, id := range ids {
		n, err := d.engine.Network(ctx, id)
		if err != nil {
			d.mu.Lock()
			if nw, ok := d.st.Networks[id]; ok && time.Since(nw.Created) < resolveFast {
				pending++
			}
			d.mu.Unlock()
			continue
		}
		d.learnNetwork(id, n)
	}
	return pending
}

// learnNetwork keeps the labels and driver options the engine reports for
// a network. libnetwork passes only the options to CreateNetwork.
func (d *Driver) learnNetwork(id string, n engineNetwork) map[string]string {
	labels := mergeLabels(n.Options, n.Labels)
	d.mu.Lock()
	defer d.mu.Unlock()
	if nw, ok := d.st.Networks[id]; ok {
		nw.Labels, nw.Resolved = labels, true
		d.st.Networks[id] = nw
		if err := d.saveLocked(); err != nil {
			d.log.Warn("docker driver: save network labels", "err", err)
		}
	}
	return labels
}

// name finds the container of an endpoint and commits the endpoint with the
// container's identity; it returns the container id.
func (d *Driver) name(ctx context.Context, owner, networkID, endpointID string) (string, error) {
	n, err := d.engine.Network(ctx, networkID)
	if err != nil {
		return "", err
	}
	cid := ""
	for id, ep := range n.Containers {
		if ep.EndpointID == endpointID {
			cid = id
		}
	}
	if cid == "" {
		return "", fmt.Errorf("endpoint %s not in network %s yet: %w", short(endpointID), short(networkID), errNotFound)
	}
	c, err := d.engine.Container(ctx, cid)
	if err != nil {
		return "", err
	}
	name := ""
	if len(c.Names) > 0 {
		name = c.Names[0]
	}
	netLabels := d.learnNetwork(networkID, n)
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.st.Attachments[owner]
	if !ok || a.EndpointID != endpointID || !a.Committed {
		return "", fmt.Errorf("endpoint %s left meanwhile: %w", short(endpointID), errNotFound)
	}
	pod, skipped := podOf(endpointID, containerInfo{ID: cid, Name: name, Labels: c.Labels, NetworkLabels: netLabels})
	if len(skipped) > 0 {
		d.log.Warn("docker labels that are not valid Skein labels left out", "container", short(cid), "labels", skipped)
	}
	if !samePod(pod, a.Pod) {
		if _, err := d.backend.Commit(ctx, api.CommitRequest{
			Owner: a.Owner, Network: d.network, Pod: pod, IPs: a.ips(), HostIface: a.HostIface,
		}); err != nil {
			return "", fmt.Errorf("commit endpoint of container %s: %w", short(cid), err)
		}
		d.log.Info("docker endpoint named after its container", "container", short(cid), "pod", pod.Namespace+"/"+pod.Name, "labels", pod.Labels)
	}
	a.Pod, a.Container = pod, cid
	return cid, d.saveLocked()
}

// neigh sets the gateway neighbours (IPv6 too when v6) in a running
// container's netns.
func (d *Driver) neigh(ctx context.Context, owner, endpointID, cid, hostIface string, v6 bool) error {
	pid, err := d.engine.ContainerPID(ctx, cid)
	if err != nil {
		return err
	}
	if err := d.dp.SetGatewayNeigh(ctx, fmt.Sprintf("/proc/%d/ns/net", pid), hostIface, v6); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if a, ok := d.st.Attachments[owner]; ok && a.EndpointID == endpointID {
		a.Neigh = true
		return d.saveLocked()
	}
	return nil
}

// reconcile frees attachments whose endpoint dockerd no longer has: a
// container that went while skeind was down, a network deleted meanwhile.
// An attachment must be missing twice in a row, and be older than
// staleAfter, so one being created is never taken.
func (d *Driver) reconcile(ctx context.Context) {
	d.mu.Lock()
	networks := map[string]bool{}
	for _, a := range d.st.Attachments {
		if a.NetworkID != "" {
			networks[a.NetworkID] = true
		}
	}
	for id := range d.st.Networks {
		networks[id] = true
	}
	d.mu.Unlock()
	live := map[string]bool{} // endpoint ids dockerd lists
	gone := map[string]bool{} // networks dockerd no longer has
	for id := range networks {
		n, err := d.engine.Network(ctx, id)
		switch {
		case errors.Is(err, errNotFound):
			gone[id] = true
		case err != nil:
			d.log.Debug("docker reconciliation: engine unreachable; nothing freed", "err", err)
			return
		default:
			for _, ep := range n.Containers {
				live[ep.EndpointID] = true
			}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	for id, a := range d.st.Attachments {
		present := a.EndpointID != "" && live[a.EndpointID]
		if present || now.Sub(a.Allocated) < staleAfter {
			delete(d.missing, id)
			continue
		}
		d.missing[id]++
		if d.missing[id] < 2 {
			continue
		}
		if err := d.freeLocked(ctx, a); err != nil {
			d.log.Warn("docker reconciliation: release of a gone endpoint failed; next pass retries", "owner", id, "err", err)
			continue
		}
		d.log.Info("docker reconciliation: freed an attachment dockerd no longer has", "owner", id, "endpoint", short(a.EndpointID), "ip", a.IP)
	}
	for id := range gone {
		delete(d.st.Networks, id)
	}
	if err := d.saveLocked(); err != nil {
		d.log.Warn("docker reconciliation: save state", "err", err)
	}
}

func mergeLabels(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}
