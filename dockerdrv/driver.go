package dockerdrv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/skeinnet/skein/api"
)

// Defaults of Config.
const (
	DefaultNetwork = "docker"
	DefaultResync  = 30 * time.Second
)

// Pool answers of the IPAM driver: one pool that is "everything", as
// addresses come from the node's Skein blocks, not from a Docker subnet; its
// gateway "0.0.0.0/0" tells libnetwork there is no gateway address to
// reserve (the container's gateway is the link-local 169.254.1.1).
const (
	poolID      = "skein"
	poolAll     = "0.0.0.0/0"
	addressSpce = "skein"
	// poolID6 and poolAll6 are the IPv6 pool of a network created with
	// --ipv6: addresses from the node's IPv6 blocks, gateway fe80::1.
	poolID6  = "skein6"
	poolAll6 = "::/0"
	// macOption is the RequestAddress option carrying the endpoint's MAC
	// (libnetwork sends it when the IPAM driver requires a MAC address).
	macOption = "com.docker.network.endpoint.macaddress"
	// enableIPv6Option is CreateNetwork's option for --ipv6.
	enableIPv6Option = "com.docker.network.enable_ipv6"
	// gatewayRequest is the RequestAddressType option of libnetwork's
	// request for a network's gateway address.
	gatewayRequest = "com.docker.network.gateway"
	// ifName is the owner ifname of every Docker attachment (the owner's
	// container id alone is unique; libnetwork names the interface).
	ifName = "eth0"
	// dstPrefix is the container interface's name prefix (libnetwork adds an index).
	dstPrefix = "eth"
	// resolvePending is how soon an endpoint the engine could not name yet
	// is looked up again; resolveIdle how often the driver looks otherwise
	// (a missed kick).
	resolvePending = 50 * time.Millisecond
	resolveIdle    = 5 * time.Second
	// resolveFast is how long after Join an endpoint is looked up at the
	// pending pace; one the engine never names is looked up at the idle pace.
	resolveFast = 30 * time.Second
	// staleAfter is how long an address may stay without an endpoint the
	// engine lists before reconciliation frees it (creating an endpoint and
	// joining it takes well under a second).
	staleAfter = time.Minute
	maxBody    = 1 << 20
)

// Backend is what the driver needs from the agent: the calls skein-cni
// makes over the agent socket, so a Docker attachment is allocated,
// published, enforced and released on the very same path.
type Backend interface {
	Allocate(ctx context.Context, req api.AllocateRequest) (api.AllocateResponse, error)
	Commit(ctx context.Context, req api.CommitRequest) (api.Endpoint, error)
	Release(ctx context.Context, network string, o api.Owner) ([]netip.Addr, error)
	// Collect frees the network's attachments that are not in valid.
	Collect(ctx context.Context, network string, valid []api.Owner) ([]api.Owner, error)
}

// Dataplane creates and removes the host side of an attachment.
type Dataplane interface {
	AddVeth(ctx context.Context, v Veth) error
	// DelVeth removes the host veth (and with it its peer and route);
	// a missing one is not an error.
	DelVeth(ctx context.Context, hostIface string) error
	// SetGatewayNeigh points the container's gateway 169.254.1.1 (and
	// fe80::1 when v6) at the host veth's MAC with a permanent neighbour in
	// netnsPath, as skein-cni does: libnetwork sets none, and proxy ARP
	// answers only on hosts with a route to 169.254.1.1 (a default route).
	SetGatewayNeigh(ctx context.Context, netnsPath, hostIface string, v6 bool) error
}

// Veth is a routed veth pair whose peer libnetwork moves into the container.
type Veth struct {
	HostIface string
	Peer      string
	MTU       int          // 0: the kernel default
	IPs       []netip.Addr // routed as /32 (/128) to HostIface
}

// v6 reports whether the pair carries IPv6: the host veth then has the
// container's IPv6 gateway fe80::1.
func (v Veth) v6() bool {
	for _, ip := range v.IPs {
		if ip.Is6() {
			return true
		}
	}
	return false
}

// engineAPI is what the driver reads from the Docker engine.
type engineAPI interface {
	Network(ctx context.Context, id string) (engineNetwork, error)
	Container(ctx context.Context, id string) (engineContainer, error)
	ContainerPID(ctx context.Context, id string) (int, error)
}

// Config configures a Driver.
type Config struct {
	Backend   Backend   // required
	Dataplane Dataplane // required
	StatePath string    // required: where the driver's state is saved
	// Engine is the Docker engine API; optional, nil: endpoints get only
	// their network's labels and nothing is reconciled with dockerd.
	Engine *Engine
	// Network is the Skein network of Docker attachments; optional,
	// default DefaultNetwork.
	Network string
	// Resync is the period of reconciliation with dockerd; optional,
	// default DefaultResync.
	Resync time.Duration
	// IPv6 is set when the cluster has an IPv6 pool: networks may then be
	// created with --ipv6.
	IPv6 bool
	Log  *slog.Logger // optional
}

// Driver serves libnetwork's remote network and IPAM driver calls.
type Driver struct {
	backend   Backend
	dp        Dataplane
	engine    engineAPI // nil without Config.Engine
	statePath string
	network   string
	resync    time.Duration
	ipv6      bool
	log       *slog.Logger
	kick      chan struct{}

	mu sync.Mutex
	st *state // guarded by mu
	// missing counts consecutive reconciliations that did not find an
	// attachment's endpoint in the engine; guarded by mu.
	missing map[string]int
}

// New loads the driver's state.
func New(cfg Config) (*Driver, error) {
	if cfg.Backend == nil || cfg.Dataplane == nil || cfg.StatePath == "" {
		return nil, errors.New("docker driver: Backend, Dataplane and StatePath are required")
	}
	st, err := loadState(cfg.StatePath)
	if err != nil {
		return nil, err
	}
	d := &Driver{
		backend:   cfg.Backend,
		dp:        cfg.Dataplane,
		statePath: cfg.StatePath,
		network:   cfg.Network,
		resync:    cfg.Resync,
		ipv6:      cfg.IPv6,
		log:       cfg.Log,
		kick:      make(chan struct{}, 1),
		st:        st,
		missing:   map[string]int{},
	}
	if cfg.Engine != nil {
		d.engine = cfg.Engine
	}
	if d.network == "" {
		d.network = DefaultNetwork
	}
	if d.resync == 0 {
		d.resync = DefaultResync
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	return d, nil
}

// Handler serves the plugin protocol.
func (d *Driver) Handler() http.Handler {
	mux := http.NewServeMux()
	handle := func(name string, fn func(context.Context, []byte) (any, error)) {
		mux.HandleFunc("POST /"+name, func(w http.ResponseWriter, r *http.Request) {
			body, err := readBody(w, r)
			var resp any
			if err == nil {
				resp, err = fn(r.Context(), body)
			}
			if err != nil {
				d.log.Warn("docker driver call failed", "call", name, "err", err)
				writeJSON(w, http.StatusInternalServerError, errorResponse{Err: err.Error()})
				return
			}
			writeJSON(w, http.StatusOK, resp)
		})
	}
	empty := func(context.Context, []byte) (any, error) { return struct{}{}, nil }
	handle("Plugin.Activate", func(context.Context, []byte) (any, error) {
		return activateResponse{Implements: []string{"NetworkDriver", "IpamDriver"}}, nil
	})
	handle("NetworkDriver.GetCapabilities", func(context.Context, []byte) (any, error) {
		return capabilitiesResponse{Scope: "local", ConnectivityScope: "global"}, nil
	})
	handle("NetworkDriver.CreateNetwork", d.createNetwork)
	handle("NetworkDriver.DeleteNetwork", d.deleteNetwork)
	handle("NetworkDriver.CreateEndpoint", d.createEndpoint)
	handle("NetworkDriver.DeleteEndpoint", d.deleteEndpoint)
	handle("NetworkDriver.EndpointOperInfo", func(context.Context, []byte) (any, error) {
		return operInfoResponse{Value: map[string]any{}}, nil
	})
	handle("NetworkDriver.Join", d.join)
	handle("NetworkDriver.Leave", d.leave)
	// Swarm and port publishing: nothing to do for a routed network.
	for _, m := range []string{"DiscoverNew", "DiscoverDelete", "ProgramExternalConnectivity", "RevokeExternalConnectivity", "AllocateNetwork", "FreeNetwork"} {
		handle("NetworkDriver."+m, empty)
	}
	handle("IpamDriver.GetCapabilities", func(context.Context, []byte) (any, error) {
		// The MAC is the one thing libnetwork passes to both of an
		// endpoint's RequestAddress calls: it pairs IPv6 with IPv4.
		return ipamCapabilitiesResponse{RequiresMACAddress: true}, nil
	})
	handle("IpamDriver.GetDefaultAddressSpaces", func(context.Context, []byte) (any, error) {
		return addressSpacesResponse{LocalDefaultAddressSpace: addressSpce, GlobalDefaultAddressSpace: addressSpce}, nil
	})
	handle("IpamDriver.RequestPool", d.requestPool)
	handle("IpamDriver.ReleasePool", empty)
	handle("IpamDriver.RequestAddress", d.requestAddress)
	handle("IpamDriver.ReleaseAddress", d.releaseAddress)
	return mux
}

func (d *Driver) requestPool(_ context.Context, body []byte) (any, error) {
	var req requestPoolRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("decode RequestPool request: %w", err)
	}
	switch {
	case req.V6 && !d.ipv6:
		return nil, errors.New("skein IPAM: --ipv6: the Skein cluster has no IPv6 pool (skein cluster init --pod-cidr <v4> --pod-cidr <v6>); leave out --ipv6")
	case req.V6 && req.Pool != "" && req.Pool != poolAll6:
		return nil, fmt.Errorf("skein IPAM: --subnet %s: IPv6 addresses come from the node's Skein blocks; leave out the IPv6 --subnet (or give %s), --ip-range and --gateway", req.Pool, poolAll6)
	case req.V6:
		return requestPoolResponse{PoolID: poolID6, Pool: poolAll6, Data: map[string]string{gatewayRequest: poolAll6}}, nil
	case req.Pool != "" && req.Pool != poolAll:
		return nil, fmt.Errorf("skein IPAM: --subnet %s: addresses come from the node's Skein blocks; leave out --subnet, --ip-range and --gateway", req.Pool)
	}
	return requestPoolResponse{PoolID: poolID, Pool: poolAll, Data: map[string]string{gatewayRequest: poolAll}}, nil
}

func (d *Driver) requestAddress(ctx context.Context, body []byte) (any, error) {
	var req requestAddressRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("decode RequestAddress request: %w", err)
	}
	if req.Options[requestAddressType] == gatewayRequest {
		// Only asked when the pool's data names no gateway; there is none.
		if req.PoolID == poolID6 {
			return requestAddressResponse{Address: poolAll6}, nil
		}
		return requestAddressResponse{Address: poolAll}, nil
	}
	if req.Address != "" {
		return nil, fmt.Errorf("skein IPAM: --ip %s: Skein assigns container addresses itself; leave out --ip and --ip6", req.Address)
	}
	mac := req.Options[macOption]
	if req.PoolID == poolID6 {
		return d.requestAddress6(mac)
	}
	o := api.Owner{ContainerID: "docker-" + randomID(), IfName: ifName}
	resp, err := d.backend.Allocate(ctx, api.AllocateRequest{Owner: o, Network: d.network})
	if err != nil {
		return nil, fmt.Errorf("skein IPAM: allocate an address: %w", err)
	}
	var ip, ip6 netip.Addr
	for _, p := range resp.IPs {
		switch a := p.Addr(); {
		case a.Is4() && !ip.IsValid():
			ip = a
		case a.Is6() && !ip6.IsValid():
			ip6 = a
		}
	}
	if !ip.IsValid() {
		d.releaseQuietly(ctx, o)
		return nil, fmt.Errorf("skein IPAM: agent answered no IPv4 address (%v)", resp.IPs)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.st.Attachments[o.ContainerID] = &attachment{Owner: o, IP: ip, IP6: ip6, MAC: mac, Allocated: time.Now().UTC(), MTU: resp.MTU}
	if err := d.saveLocked(); err != nil {
		delete(d.st.Attachments, o.ContainerID)
		d.releaseQuietly(ctx, o)
		return nil, err
	}
	d.log.Info("docker address allocated", "owner", o.ContainerID, "ip", ip, "ip6", ip6)
	return requestAddressResponse{Address: netip.PrefixFrom(ip, 32).String()}, nil
}

// requestAddress6 hands out the IPv6 address the agent allocated with the
// endpoint's IPv4 one: libnetwork asks for IPv4 first, then IPv6, each time
// with the endpoint's MAC. An endpoint never gets one family only from
// here: without its IPv4 attachment, or one without IPv6, the call fails
// and libnetwork releases the IPv4 address, which frees both.
func (d *Driver) requestAddress6(mac string) (any, error) {
	if mac == "" {
		return nil, errors.New("skein IPAM: IPv6 address requested without the endpoint's MAC address (this Docker does not honour RequiresMACAddress)")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var a *attachment
	for _, c := range d.st.Attachments {
		if c.MAC == mac && c.EndpointID == "" && !c.V6 && (a == nil || c.Allocated.After(a.Allocated)) {
			a = c
		}
	}
	switch {
	case a == nil:
		return nil, fmt.Errorf("skein IPAM: IPv6 address requested for MAC %s, which got no IPv4 address first", mac)
	case !a.IP6.IsValid():
		return nil, fmt.Errorf("skein IPAM: the agent allocated %s no IPv6 address: its node has no IPv6 block", a.IP)
	}
	a.V6 = true
	if err := d.saveLocked(); err != nil {
		a.V6 = false
		return nil, err
	}
	d.log.Info("docker IPv6 address handed out", "owner", a.Owner.ContainerID, "ip", a.IP, "ip6", a.IP6)
	return requestAddressResponse{Address: netip.PrefixFrom(a.IP6, 128).String()}, nil
}

// requestAddressType is the option naming what an address is for.
const requestAddressType = "RequestAddressType"

func (d *Driver) releaseAddress(ctx context.Context, body []byte) (any, error) {
	var req releaseAddressRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("decode ReleaseAddress request: %w", err)
	}
	ip, err := parseAddr(req.Address)
	if err != nil {
		return nil, fmt.Errorf("skein IPAM: ReleaseAddress: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.st.byIP(ip)
	if !ok {
		return struct{}{}, nil // released already, or never ours (the gateway)
	}
	if err := d.freeLocked(ctx, a); err != nil {
		return nil, fmt.Errorf("skein IPAM: release %s: %w", ip, err)
	}
	return struct{}{}, nil
}

// freeLocked removes an attachment entirely: its veth, its endpoint record
// and address (the CNI DEL's release), its state. d.mu must be held.
func (d *Driver) freeLocked(ctx context.Context, a *attachment) error {
	if a.HostIface != "" {
		if err := d.dp.DelVeth(ctx, a.HostIface); err != nil {
			return err
		}
		a.HostIface = ""
	}
	freed, err := d.backend.Release(ctx, d.network, a.Owner)
	if err != nil {
		return err
	}
	delete(d.st.Attachments, a.Owner.ContainerID)
	delete(d.missing, a.Owner.ContainerID)
	d.log.Info("docker attachment released", "owner", a.Owner.ContainerID, "endpoint", short(a.EndpointID), "container", short(a.Container), "ip", freed)
	return d.saveLocked()
}

func (d *Driver) createNetwork(_ context.Context, body []byte) (any, error) {
	var req createNetworkRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("decode CreateNetwork request: %w", err)
	}
	for _, p := range req.IPv4Data {
		if p.Pool != poolAll {
			return nil, fmt.Errorf("skein: network pool %s is not Skein's: create the network with --ipam-driver skein", p.Pool)
		}
	}
	for _, p := range req.IPv6Data {
		if p.Pool != poolAll6 {
			return nil, fmt.Errorf("skein: network IPv6 pool %s is not Skein's: create the network with --ipam-driver skein", p.Pool)
		}
	}
	v6, _ := req.Options[enableIPv6Option].(bool)
	if (v6 || len(req.IPv6Data) > 0) && !d.ipv6 {
		return nil, errors.New("skein: --ipv6: the Skein cluster has no IPv6 pool (skein cluster init --pod-cidr <v4> --pod-cidr <v6>); leave out --ipv6")
	}
	if v6 && len(req.IPv6Data) == 0 {
		// An older Docker asks the IPAM driver for no IPv6 pool unless an
		// IPv6 subnet is given: its containers would get no IPv6 address.
		return nil, fmt.Errorf("skein: --ipv6 without an IPv6 pool: this Docker asks for one only with an IPv6 subnet; add --subnet %s", poolAll6)
	}
	n := network{ID: req.NetworkID, Labels: networkLabels(req.Options), Created: time.Now().UTC()}
	d.log.Debug("docker network options", "network", short(req.NetworkID), "options", req.Options)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.st.Networks[req.NetworkID] = n
	if err := d.saveLocked(); err != nil {
		return nil, err
	}
	d.log.Info("docker network created", "network", short(req.NetworkID), "labels", n.Labels)
	d.signal()
	return struct{}{}, nil
}

func (d *Driver) deleteNetwork(_ context.Context, body []byte) (any, error) {
	var req networkRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("decode DeleteNetwork request: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.st.Networks, req.NetworkID)
	return struct{}{}, d.saveLocked()
}

func (d *Driver) createEndpoint(_ context.Context, body []byte) (any, error) {
	var req createEndpointRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("decode CreateEndpoint request: %w", err)
	}
	d.log.Debug("docker endpoint", "endpoint", short(req.EndpointID), "options", req.Options)
	if req.Interface == nil || req.Interface.Address == "" {
		return nil, errors.New("skein: endpoint without an address: create the network with --ipam-driver skein")
	}
	ip, err := parseAddr(req.Interface.Address)
	if err != nil {
		return nil, fmt.Errorf("skein: CreateEndpoint: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.st.byIP(ip)
	if !ok || a.IP != ip {
		return nil, fmt.Errorf("skein: address %s was not handed out by Skein's IPAM driver: create the network with --ipam-driver skein", ip)
	}
	if req.Interface.AddressIPv6 != "" {
		ip6, err := parseAddr(req.Interface.AddressIPv6)
		if err != nil {
			return nil, fmt.Errorf("skein: CreateEndpoint: %w", err)
		}
		if !a.V6 || ip6 != a.IP6 {
			return nil, fmt.Errorf("skein: IPv6 address %s was not handed out with %s by Skein's IPAM driver: create the network with --ipam-driver skein", ip6, ip)
		}
	} else if a.V6 {
		return nil, fmt.Errorf("skein: endpoint with %s lacks its IPv6 address %s", ip, a.IP6)
	}
	if a.EndpointID != "" && a.EndpointID != req.EndpointID {
		return nil, fmt.Errorf("skein: address %s already belongs to endpoint %s", ip, short(a.EndpointID))
	}
	a.NetworkID, a.EndpointID = req.NetworkID, req.EndpointID
	if err := d.saveLocked(); err != nil {
		return nil, err
	}
	return createEndpointResponse{}, nil
}

func (d *Driver) deleteEndpoint(ctx context.Context, body []byte) (any, error) {
	var req endpointRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("decode DeleteEndpoint request: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.st.byEndpoint(req.EndpointID)
	if !ok {
		return struct{}{}, nil
	}
	// The address (and the endpoint record) go with ReleaseAddress, which
	// libnetwork sends next; the veth goes now if Leave did not take it.
	if a.HostIface != "" {
		if err := d.dp.DelVeth(ctx, a.HostIface); err != nil {
			return nil, fmt.Errorf("skein: delete endpoint %s: %w", short(req.EndpointID), err)
		}
		a.HostIface = ""
	}
	a.EndpointID = ""
	return struct{}{}, d.saveLocked()
}

func (d *Driver) join(ctx context.Context, body []byte) (any, error) {
	var req joinRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("decode Join request: %w", err)
	}
	d.log.Debug("docker join", "endpoint", short(req.EndpointID), "sandbox", req.SandboxKey, "options", req.Options)
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.st.byEndpoint(req.EndpointID)
	if !ok {
		return nil, fmt.Errorf("skein: join: endpoint %s unknown (not created through this driver)", short(req.EndpointID))
	}
	v := Veth{HostIface: api.HostIfaceName(a.Owner), MTU: a.MTU, IPs: a.ips()}
	v.Peer = "sp" + strings.TrimPrefix(v.HostIface, "sk")
	// A repeated Join (libnetwork retrying) starts from scratch.
	if err := d.dp.DelVeth(ctx, v.HostIface); err != nil {
		return nil, fmt.Errorf("skein: join: %w", err)
	}
	if err := d.dp.AddVeth(ctx, v); err != nil {
		_ = d.dp.DelVeth(context.WithoutCancel(ctx), v.HostIface) // the AddVeth error is the one to report
		return nil, fmt.Errorf("skein: join: %w", err)
	}
	a.HostIface = v.HostIface
	pod, skipped := podOf(a.EndpointID, containerInfo{NetworkLabels: d.st.Networks[a.NetworkID].Labels})
	if len(skipped) > 0 {
		d.log.Warn("docker network labels that are not valid Skein labels left out", "network", short(a.NetworkID), "labels", skipped)
	}
	if _, err := d.backend.Commit(ctx, api.CommitRequest{
		Owner: a.Owner, Network: d.network, Pod: pod, IPs: v.IPs, HostIface: v.HostIface, Netns: req.SandboxKey,
	}); err != nil {
		_ = d.dp.DelVeth(context.WithoutCancel(ctx), v.HostIface) // the commit error is the one to report
		a.HostIface = ""
		return nil, fmt.Errorf("skein: join: %w", err)
	}
	a.Pod, a.Committed, a.Container, a.Neigh, a.Joined = pod, true, "", false, time.Now().UTC()
	if err := d.saveLocked(); err != nil {
		return nil, err
	}
	d.signal()
	return joinResponse{
		InterfaceName:         interfaceName{SrcName: v.Peer, DstPrefix: dstPrefix},
		StaticRoutes:          gatewayRoutes(a.V6),
		DisableGatewayService: true,
	}, nil
}

// gatewayRoutes are the container's routes: its link-local gateway on the
// interface, and the default route through it, per family (as skein-cni
// sets them). The gateway route on the link lets libnetwork find the
// interface for the next hop before the kernel has a link-local prefix.
func gatewayRoutes(v6 bool) []staticRoute {
	rs := []staticRoute{
		{Destination: api.GatewayIP + "/32", RouteType: routeConnected},
		{Destination: poolAll, RouteType: routeNextHop, NextHop: api.GatewayIP},
	}
	if v6 {
		rs = append(rs,
			staticRoute{Destination: api.GatewayIPv6 + "/128", RouteType: routeConnected},
			staticRoute{Destination: poolAll6, RouteType: routeNextHop, NextHop: api.GatewayIPv6},
		)
	}
	return rs
}

func (d *Driver) leave(ctx context.Context, body []byte) (any, error) {
	var req endpointRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("decode Leave request: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.st.byEndpoint(req.EndpointID)
	if !ok || a.HostIface == "" {
		return struct{}{}, nil
	}
	if err := d.dp.DelVeth(ctx, a.HostIface); err != nil {
		return nil, fmt.Errorf("skein: leave: %w", err)
	}
	a.HostIface = ""
	return struct{}{}, d.saveLocked()
}

// releaseQuietly gives back an address the driver could not hand out.
func (d *Driver) releaseQuietly(ctx context.Context, o api.Owner) {
	if _, err := d.backend.Release(context.WithoutCancel(ctx), d.network, o); err != nil {
		d.log.Error("release of an address not handed out failed; reconciliation retries", "owner", o.ContainerID, "err", err)
	}
}

func (d *Driver) saveLocked() error {
	return d.st.save(d.statePath)
}

func (d *Driver) signal() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// parseAddr accepts an address with or without a prefix length.
func parseAddr(s string) (netip.Addr, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("address %q: %w", s, err)
	}
	return a, nil
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("read request: %w", err)
	}
	if len(b) == 0 {
		b = []byte("{}") // Plugin.Activate and friends come without a body
	}
	return b, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/vnd.docker.plugins.v1+json")
	w.WriteHeader(status)
	// The caller may have gone away; there is nobody left to tell.
	_ = json.NewEncoder(w).Encode(v)
}
