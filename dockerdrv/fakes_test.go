package dockerdrv

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/skeinnet/skein/api"
)

// fakeBackend is the agent's side: addresses from 10.244.0.0/24 by owner,
// endpoint records by owner.
type fakeBackend struct {
	mu   sync.Mutex
	next int
	held map[api.Owner]netip.Addr
	// dual: a dual-stack cluster, each owner also holds an IPv6 address
	// from fd00:10:244::/120 (in held6).
	dual     bool
	held6    map[api.Owner]netip.Addr
	records  map[api.Owner]api.Endpoint
	commits  int
	failWith error // returned by Allocate and Commit when set
	valid    []api.Owner
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{held: map[api.Owner]netip.Addr{}, held6: map[api.Owner]netip.Addr{}, records: map[api.Owner]api.Endpoint{}}
}

func (b *fakeBackend) Allocate(_ context.Context, req api.AllocateRequest) (api.AllocateResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failWith != nil {
		return api.AllocateResponse{}, b.failWith
	}
	if req.Network != DefaultNetwork {
		return api.AllocateResponse{}, fmt.Errorf("network %q", req.Network)
	}
	b.next++
	ip := netip.AddrFrom4([4]byte{10, 244, 0, byte(b.next)})
	b.held[req.Owner] = ip
	resp := api.AllocateResponse{IPs: []netip.Prefix{netip.PrefixFrom(ip, 32)}, Gateway: netip.MustParseAddr(api.GatewayIP), MTU: 1450}
	if b.dual {
		ip6 := netip.MustParseAddr(fmt.Sprintf("fd00:10:244::%x", b.next))
		b.held6[req.Owner] = ip6
		resp.IPs = append(resp.IPs, netip.PrefixFrom(ip6, 128))
	}
	return resp, nil
}

func (b *fakeBackend) Commit(_ context.Context, req api.CommitRequest) (api.Endpoint, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failWith != nil {
		return api.Endpoint{}, b.failWith
	}
	ip, ok := b.held[req.Owner]
	if !ok || len(req.IPs) == 0 || len(req.IPs) > 2 || req.IPs[0] != ip || (len(req.IPs) == 2 && req.IPs[1] != b.held6[req.Owner]) {
		return api.Endpoint{}, fmt.Errorf("%s does not hold %v", req.Owner, req.IPs)
	}
	b.commits++
	ep := api.Endpoint{Namespace: req.Pod.Namespace, Name: req.Pod.Name, Labels: req.Pod.Labels, IPs: req.IPs,
		ContainerID: req.ContainerID, IfName: req.IfName, HostIface: req.HostIface, Network: req.Network}
	b.records[req.Owner] = ep
	return ep, nil
}

func (b *fakeBackend) Release(_ context.Context, network string, o api.Owner) ([]netip.Addr, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if network != DefaultNetwork {
		return nil, errors.New("wrong network")
	}
	ip, ok := b.held[o]
	ip6, ok6 := b.held6[o]
	delete(b.held, o)
	delete(b.held6, o)
	delete(b.records, o)
	if !ok {
		return nil, nil
	}
	if ok6 {
		return []netip.Addr{ip, ip6}, nil
	}
	return []netip.Addr{ip}, nil
}

func (b *fakeBackend) Collect(_ context.Context, _ string, valid []api.Owner) ([]api.Owner, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.valid = valid
	keep := map[api.Owner]bool{}
	for _, o := range valid {
		keep[o] = true
	}
	var freed []api.Owner
	for o := range b.held {
		if !keep[o] {
			delete(b.held, o)
			delete(b.held6, o)
			delete(b.records, o)
			freed = append(freed, o)
		}
	}
	return freed, nil
}

func (b *fakeBackend) record(o api.Owner) (api.Endpoint, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ep, ok := b.records[o]
	return ep, ok
}

func (b *fakeBackend) heldCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.held)
}

func (b *fakeBackend) held6Count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.held6)
}

// fakeDataplane keeps the veths it was asked for.
type fakeDataplane struct {
	mu      sync.Mutex
	veths   map[string]Veth
	neighs  map[string]string // host iface → netns path
	neighs6 map[string]bool   // host iface → IPv6 gateway neighbour set too
}

func newFakeDataplane() *fakeDataplane {
	return &fakeDataplane{veths: map[string]Veth{}, neighs: map[string]string{}, neighs6: map[string]bool{}}
}

func (d *fakeDataplane) AddVeth(_ context.Context, v Veth) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.veths[v.HostIface]; ok {
		return fmt.Errorf("%s exists", v.HostIface)
	}
	d.veths[v.HostIface] = v
	return nil
}

func (d *fakeDataplane) DelVeth(_ context.Context, name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.veths, name)
	return nil
}

func (d *fakeDataplane) SetGatewayNeigh(_ context.Context, netnsPath, hostIface string, v6 bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.veths[hostIface]; !ok {
		return fmt.Errorf("%s missing", hostIface)
	}
	d.neighs[hostIface] = netnsPath
	d.neighs6[hostIface] = v6
	return nil
}

func (d *fakeDataplane) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.veths)
}

// fakeEngine answers network inspect and container list from maps.
type fakeEngine struct {
	mu         sync.Mutex
	networks   map[string]engineNetwork
	containers map[string]engineContainer
	pids       map[string]int
	down       bool
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{networks: map[string]engineNetwork{}, containers: map[string]engineContainer{}, pids: map[string]int{}}
}

func (e *fakeEngine) Network(_ context.Context, id string) (engineNetwork, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.down {
		return engineNetwork{}, errors.New("connection refused")
	}
	n, ok := e.networks[id]
	if !ok {
		return engineNetwork{}, errNotFound
	}
	return n, nil
}

func (e *fakeEngine) Container(_ context.Context, id string) (engineContainer, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.containers[id]
	if !ok {
		return engineContainer{}, errNotFound
	}
	return c, nil
}

func (e *fakeEngine) ContainerPID(_ context.Context, id string) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	pid, ok := e.pids[id]
	if !ok {
		return 0, errNotFound
	}
	return pid, nil
}
