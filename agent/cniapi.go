package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/ipam"
)

// CNI error codes the agent answers with (see the CNI spec).
const (
	codeInvalidConfig  = 7
	codeUnknownCont    = 3
	codeTryAgainLater  = 11
	codeInternal       = 999
	codePoolExhausted  = 110 // plugin-specific: no address left anywhere
	storeCallTimeout   = 5 * time.Second
	maxRequestBodySize = 1 << 20
)

// addrAllocator is what the CNI API needs from ipam. Every call names the
// CNI network: an attachment is network + container id + ifname.
type addrAllocator interface {
	Allocate(ctx context.Context, network string, o api.Owner, pod string) ([]netip.Addr, bool, error)
	AllocateLocal(ctx context.Context, network string, o api.Owner, pod string) ([]netip.Addr, bool, error)
	Release(ctx context.Context, network string, o api.Owner) ([]netip.Addr, error)
	Held(network string, o api.Owner) ([]netip.Addr, error)
	Get(o api.Owner) (ipam.Allocation, error)
	Stale(network string, valid []api.Owner) ([]ipam.Allocation, error)
	Blocks() []netip.Prefix
	Stats() ipam.Stats
}

// endpointStore is what the CNI API needs from the store.
type endpointStore interface {
	PutEndpoint(ctx context.Context, ep api.Endpoint) error
	DeleteEndpoint(ctx context.Context, node string, o api.Owner) error
	EnsureNamespace(ctx context.Context, name string) error
}

// cniServer answers skein-cni on the agent socket.
type cniServer struct {
	node  string
	mtu   int
	alloc addrAllocator
	store endpointStore
	ready func() (bool, string)
	log   *slog.Logger
	// onChange is told when the local endpoint set changed.
	onChange func()
	// enforce returns once the published endpoint's policy is in place.
	enforce func(ctx context.Context, ep api.Endpoint) error
	// forget drops what enforce kept for an endpoint that is gone.
	forget func(o api.Owner)
	// namespaceKnown reports whether the agent's view already holds the
	// namespace record, so an ADD writes it only for a namespace's first
	// pod; optional, nil writes it every time.
	namespaceKnown func(name string) bool
	// endpointOf returns the endpoint record the store holds for a local
	// attachment, as last seen by the watch.
	endpointOf func(o api.Owner) (api.Endpoint, bool)
	// kubePod reads the pod skein-kube mirrored (store.GetKubePod); optional.
	kubePod func(ctx context.Context, namespace, name string) (api.KubePod, bool, error)
	// health, journal and pub carry endpoint changes through an etcd outage.
	health  *etcdHealth
	journal *journal
	pub     *publisher

	mu sync.Mutex
	// published holds the owners whose endpoint is in the store; guarded by mu.
	published map[api.Owner]bool
}

func (s *cniServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+api.PathAllocate, s.allocate)
	mux.HandleFunc("POST "+api.PathCommit, s.commit)
	mux.HandleFunc("POST "+api.PathRelease, s.release)
	mux.HandleFunc("POST "+api.PathCheck, s.check)
	mux.HandleFunc("POST "+api.PathGC, s.gc)
	mux.HandleFunc("GET "+api.PathStatus, s.status)
	return mux
}

func (s *cniServer) allocate(w http.ResponseWriter, r *http.Request) {
	var req api.AllocateRequest
	if !decode(w, r, &req) || !validOwner(w, req.Owner, req.Network) {
		return
	}
	resp, cerr := s.allocateAttachment(r.Context(), req)
	if cerr != nil {
		cerr.write(w)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// allocateAttachment gives an attachment its address: the CNI ADD's first
// step and the Docker IPAM driver's RequestAddress.
func (s *cniServer) allocateAttachment(ctx context.Context, req api.AllocateRequest) (api.AllocateResponse, *callError) {
	// A new ADD of an attachment whose DEL is still waiting for etcd keeps
	// the address: the queued unpublish must not release it under the new
	// container.
	if cancelled, err := s.journal.cancelUnpublish(req.Network, req.Owner); err != nil {
		return api.AllocateResponse{}, newCallError(http.StatusInternalServerError, codeInternal, "journal", err)
	} else if cancelled {
		s.log.Info("queued unpublish cancelled by a new ADD", "network", req.Network, "container_id", req.ContainerID, "ifname", req.IfName)
	}
	allocate := s.alloc.Allocate
	if !s.health.reachable() {
		// Only the node's own blocks: a new block needs etcd.
		allocate = s.alloc.AllocateLocal
	}
	ips, existing, err := allocate(ctx, req.Network, req.Owner, podName(req.Pod))
	if err != nil {
		code, status := uint(codeInternal), http.StatusServiceUnavailable
		switch {
		case errors.Is(err, ipam.ErrOtherNetwork):
			code, status = codeInvalidConfig, http.StatusConflict
		case errors.Is(err, ipam.ErrNeedsBlock):
			return api.AllocateResponse{}, newCallError(status, codeTryAgainLater, "etcd is unreachable and this node's blocks have no free address (a new block needs etcd)", err)
		case s.health.observe(err, time.Now()):
			return api.AllocateResponse{}, newCallError(status, codeTryAgainLater, "etcd is unreachable (claiming a new block needs etcd)", err)
		case errors.Is(err, ipam.ErrExhausted):
			code = codePoolExhausted
			if s.alloc.Stats().Cooling > 0 {
				code = codeTryAgainLater // addresses come back when their cooldown ends
			}
		}
		return api.AllocateResponse{}, newCallError(status, code, "allocate address", err)
	}
	s.log.Debug("address allocated", "network", req.Network, "container_id", req.ContainerID, "ifname", req.IfName, "ip", ips, "existing", existing)
	resp := api.AllocateResponse{
		MTU:      s.mtu,
		Existing: existing,
	}
	// One gateway per family the attachment has: none of IPv4 in an
	// IPv6-only cluster.
	for _, ip := range ips {
		resp.IPs = append(resp.IPs, netip.PrefixFrom(ip, ip.BitLen()))
		if ip.Is6() {
			resp.Gateway6 = netip.MustParseAddr(api.GatewayIPv6)
		} else {
			resp.Gateway = netip.MustParseAddr(api.GatewayIP)
		}
	}
	return resp, nil
}

func (s *cniServer) commit(w http.ResponseWriter, r *http.Request) {
	var req api.CommitRequest
	if !decode(w, r, &req) || !validOwner(w, req.Owner, req.Network) {
		return
	}
	ep, cerr := s.commitAttachment(r.Context(), req)
	if cerr != nil {
		cerr.write(w)
		return
	}
	writeJSON(w, http.StatusOK, api.CommitResponse{Endpoint: ep})
}

// commitAttachment publishes the endpoint of a plumbed attachment and waits
// for its policy: the CNI ADD's last step and the Docker driver's Join.
func (s *cniServer) commitAttachment(ctx context.Context, req api.CommitRequest) (api.Endpoint, *callError) {
	held, err := s.alloc.Held(req.Network, req.Owner)
	if err != nil {
		return api.Endpoint{}, newCallError(http.StatusConflict, codeInvalidConfig, "commit endpoint", err)
	}
	if err := validPod(req.Pod); err != nil {
		return api.Endpoint{}, newCallError(http.StatusBadRequest, codeInvalidConfig, "commit endpoint", err)
	}
	for _, ip := range req.IPs {
		if !containsAddr(held, ip) {
			return api.Endpoint{}, newCallError(http.StatusConflict, codeInvalidConfig, "commit endpoint",
				fmt.Errorf("%s does not hold %s (held: %v)", req.Owner, ip, held))
		}
	}
	ep := api.Endpoint{
		Namespace:   req.Pod.Namespace,
		Name:        req.Pod.Name,
		Labels:      req.Pod.Labels,
		Ports:       req.Pod.Ports,
		IPs:         req.IPs,
		Node:        s.node,
		ContainerID: req.ContainerID,
		IfName:      req.IfName,
		HostIface:   req.HostIface,
		Network:     req.Network,
		Created:     time.Now().UTC(),
	}
	if ep.Namespace == "" {
		ep.Namespace = "default"
	}
	s.addKubeLabels(ctx, &ep, req.Pod.UID)
	journaled, err := s.publish(ctx, ep)
	if err != nil {
		return api.Endpoint{}, newCallError(http.StatusServiceUnavailable, codeTryAgainLater, "publish endpoint", err)
	}
	s.onChange()
	// The ADD returns only once the endpoint's policy is enforced: no
	// container ever starts with an open window. A journaled endpoint is
	// enforced locally the same way (the enforcer's pending endpoints).
	if err := s.enforce(ctx, ep); err != nil {
		return api.Endpoint{}, newCallError(http.StatusServiceUnavailable, codeTryAgainLater, "enforce policy", err)
	}
	if journaled {
		s.log.Warn("endpoint started while etcd is unreachable; journaled until etcd is back", "network", req.Network, "container_id", req.ContainerID, "ifname", req.IfName, "pod", ep.Namespace+"/"+ep.Name, "ip", req.IPs)
	} else {
		s.log.Info("endpoint published", "network", req.Network, "container_id", req.ContainerID, "ifname", req.IfName, "pod", ep.Namespace+"/"+ep.Name, "ip", req.IPs)
	}
	return ep, nil
}

// publish puts ep in the store, or, when etcd is unreachable (or earlier
// changes still wait in the journal, which must land first), journals it.
// A refusal by etcd is an error, never journaled.
func (s *cniServer) publish(ctx context.Context, ep api.Endpoint) (journaled bool, err error) {
	o := api.Owner{ContainerID: ep.ContainerID, IfName: ep.IfName}
	if s.journal.empty() && s.health.reachable() {
		cctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
		defer cancel()
		// The namespace record appears with its first pod, so `skein namespace
		// list` and policy see it; an admin's labels are never overwritten.
		var err error
		if s.namespaceKnown == nil || !s.namespaceKnown(ep.Namespace) {
			err = s.store.EnsureNamespace(cctx, ep.Namespace)
		}
		if err == nil {
			err = s.store.PutEndpoint(cctx, ep)
		}
		if err == nil {
			s.health.observe(nil, time.Now())
			s.markPublished(o, true)
			return false, nil
		}
		if ctx.Err() != nil || !s.health.observe(err, time.Now()) {
			return false, err
		}
	}
	if err := s.journal.add(opPublish, ep, time.Now()); err != nil {
		return false, fmt.Errorf("journal endpoint %s: %w", o, err)
	}
	s.pub.signal()
	return true, nil
}

// unpublish deletes the attachment's endpoint from the store, or journals
// the delete as publish does. A journaled delete keeps the address held
// until it lands (the publisher releases it then).
func (s *cniServer) unpublish(ctx context.Context, network string, o api.Owner) (journaled bool, err error) {
	if s.journal.empty() && s.health.reachable() {
		cctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
		defer cancel()
		err := s.store.DeleteEndpoint(cctx, s.node, o)
		if err == nil {
			s.health.observe(nil, time.Now())
			return false, nil
		}
		if ctx.Err() != nil || !s.health.observe(err, time.Now()) {
			return false, err
		}
	}
	ep := api.Endpoint{Node: s.node, ContainerID: o.ContainerID, IfName: o.IfName, Network: network}
	if err := s.journal.add(opUnpublish, ep, time.Now()); err != nil {
		return false, fmt.Errorf("journal unpublish of %s: %w", o, err)
	}
	s.pub.signal()
	return true, nil
}

func (s *cniServer) markPublished(o api.Owner, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.published[o] = true
	} else {
		delete(s.published, o)
	}
}

// otherNetwork returns the network other than network that holds o: by its
// allocation, or, when none is left, by its endpoint record.
func (s *cniServer) otherNetwork(network string, o api.Owner) (string, bool) {
	if al, err := s.alloc.Get(o); err == nil && al.Network != "" && al.Network != network {
		return al.Network, true
	}
	if ep, ok := s.endpointOf(o); ok && ep.Network != "" && ep.Network != network {
		return ep.Network, true
	}
	return "", false
}

func (s *cniServer) release(w http.ResponseWriter, r *http.Request) {
	var req api.ReleaseRequest
	if !decode(w, r, &req) || !validOwner(w, req.Owner, req.Network) {
		return
	}
	freed, cerr := s.releaseQuiet(r.Context(), req.Network, req.Owner)
	if cerr != nil {
		cerr.write(w)
		return
	}
	writeJSON(w, http.StatusOK, api.ReleaseResponse{Released: freed})
	// The status record follows the release; building it took up to ~13 ms
	// of the DEL (measured), so the plugin has its answer first.
	if err := http.NewResponseController(w).Flush(); err != nil {
		s.log.Debug("flush release answer", "err", err)
	}
	s.onChange()
}

// releaseAttachment unpublishes an attachment's endpoint and frees its
// addresses, then updates the status: the Docker IPAM driver's
// ReleaseAddress.
func (s *cniServer) releaseAttachment(ctx context.Context, network string, o api.Owner) ([]netip.Addr, *callError) {
	freed, cerr := s.releaseQuiet(ctx, network, o)
	if cerr == nil {
		s.onChange()
	}
	return freed, cerr
}

// releaseQuiet is releaseAttachment without the status update of a
// completed release, which the CNI DEL makes after its answer.
func (s *cniServer) releaseQuiet(ctx context.Context, network string, o api.Owner) ([]netip.Addr, *callError) {
	if other, ok := s.otherNetwork(network, o); ok {
		s.log.Warn("DEL for an attachment of another network: nothing freed", "network", network, "container_id", o.ContainerID, "ifname", o.IfName, "held_by", other)
		return nil, nil
	}
	// Unpublish first: an address must never be free while an endpoint still names it.
	journaled, err := s.unpublish(ctx, network, o)
	if err != nil {
		return nil, newCallError(http.StatusServiceUnavailable, codeTryAgainLater, "unpublish endpoint", err)
	}
	s.markPublished(o, false)
	s.forget(o)
	if journaled {
		s.onChange()
		s.log.Warn("endpoint deleted while etcd is unreachable; address held until the unpublish lands", "network", network, "container_id", o.ContainerID, "ifname", o.IfName)
		return nil, nil
	}
	freed, err := s.alloc.Release(ctx, network, o)
	if err != nil {
		return nil, newCallError(http.StatusInternalServerError, codeInternal, "release address", err)
	}
	if len(freed) > 0 {
		s.log.Info("endpoint released", "network", network, "container_id", o.ContainerID, "ifname", o.IfName, "ip", freed)
	}
	return freed, nil
}

func (s *cniServer) check(w http.ResponseWriter, r *http.Request) {
	var req api.ReleaseRequest
	if !decode(w, r, &req) || !validOwner(w, req.Owner, req.Network) {
		return
	}
	if other, ok := s.otherNetwork(req.Network, req.Owner); ok {
		writeJSON(w, http.StatusOK, api.CheckResponse{HeldBy: other, MTU: s.mtu})
		return
	}
	ips, err := s.alloc.Held(req.Network, req.Owner)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, codeInternal, "check", err)
		return
	}
	if len(ips) == 0 {
		writeErr(w, http.StatusNotFound, codeUnknownCont, "check", fmt.Errorf("agent holds no address for %s in network %q", req.Owner, req.Network))
		return
	}
	s.mu.Lock()
	pub := s.published[req.Owner]
	s.mu.Unlock()
	// A journaled endpoint counts as published: it will be, in order, and
	// `skein ipam release --leaked` must not take its address.
	pub = pub || s.journal.pending(opPublish, req.Owner)
	writeJSON(w, http.StatusOK, api.CheckResponse{IPs: ips, Published: pub, MTU: s.mtu})
}

// gc frees the attachments of the request's network that are not valid.
// Each one is unpublished (or its unpublish journaled) before its address is
// released, as in DEL; one that cannot be unpublished keeps its address.
func (s *cniServer) gc(w http.ResponseWriter, r *http.Request) {
	var req api.GCRequest
	if !decode(w, r, &req) || !validNetwork(w, req.Network) {
		return
	}
	freed, cerr := s.collectAttachments(r.Context(), req.Network, req.Valid)
	if cerr != nil {
		cerr.write(w)
		return
	}
	writeJSON(w, http.StatusOK, api.GCResponse{Freed: freed})
}

// collectAttachments frees the attachments of network that are not valid:
// the CNI GC and the Docker driver's reconciliation with dockerd.
// Each one is unpublished (or its unpublish journaled) before its address is
// released, as in DEL; one that cannot be unpublished keeps its address.
func (s *cniServer) collectAttachments(ctx context.Context, network string, valid []api.Owner) ([]api.Owner, *callError) {
	stale, err := s.alloc.Stale(network, valid)
	if err != nil {
		return nil, newCallError(http.StatusInternalServerError, codeInternal, "garbage-collect addresses", err)
	}
	var errs []error
	freed := []api.Owner{}
	for _, al := range stale {
		o := al.Owner
		journaled, err := s.unpublish(ctx, network, o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.markPublished(o, false)
		s.forget(o)
		if !journaled {
			if _, err := s.alloc.Release(ctx, network, o); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		freed = append(freed, o)
		s.log.Debug("attachment garbage-collected", "network", network, "container_id", o.ContainerID, "ifname", o.IfName, "ip", al.IP, "journaled", journaled)
	}
	if len(freed) > 0 {
		s.onChange()
		s.log.Info("attachments garbage-collected", "network", network, "count", len(freed))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, newCallError(http.StatusServiceUnavailable, codeTryAgainLater, "unpublish collected endpoints", err)
	}
	return freed, nil
}

func (s *cniServer) status(w http.ResponseWriter, _ *http.Request) {
	ok, reason := s.ready()
	var blocks []string
	for _, b := range s.alloc.Blocks() {
		blocks = append(blocks, b.String())
	}
	writeJSON(w, http.StatusOK, api.AgentStatus{Node: s.node, Ready: ok, Blocks: blocks, Reason: reason})
}

func podName(p api.PodInfo) string {
	if p.Name == "" {
		return ""
	}
	ns := p.Namespace
	if ns == "" {
		ns = "default"
	}
	return ns + "/" + p.Name
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

// validPod checks the names a runtime gave the pod (CNI_ARGS
// K8S_POD_NAMESPACE and K8S_POD_NAME): they become keys and policy
// references, and a bad one is the runtime's config, not a reason to retry.
func validPod(p api.PodInfo) error {
	if p.Namespace != "" {
		if err := api.ValidatePodNamespace(p.Namespace); err != nil {
			return fmt.Errorf("pod.namespace (K8S_POD_NAMESPACE): %w", err)
		}
	}
	if p.Name != "" {
		if err := api.ValidatePodName(p.Name); err != nil {
			return fmt.Errorf("pod.name (K8S_POD_NAME): %w", err)
		}
	}
	return nil
}

func validOwner(w http.ResponseWriter, o api.Owner, network string) bool {
	if o.ContainerID == "" || o.IfName == "" {
		writeErr(w, http.StatusBadRequest, codeInvalidConfig, "bad request", errors.New("containerID and ifName are required"))
		return false
	}
	return validNetwork(w, network)
}

func validNetwork(w http.ResponseWriter, network string) bool {
	if network == "" {
		writeErr(w, http.StatusBadRequest, codeInvalidConfig, "bad request", errors.New("network (the CNI config's name) is required"))
		return false
	}
	return true
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBodySize))
	if err := dec.Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, codeInvalidConfig, "decode request", err)
		return false
	}
	return true
}

// callError is a failed call of the local API with the CNI error code and
// HTTP status it is answered with.
type callError struct {
	status int
	code   uint
	msg    string
	err    error
}

func newCallError(status int, code uint, msg string, err error) *callError {
	return &callError{status: status, code: code, msg: msg, err: err}
}

func (e *callError) Error() string { return e.msg + ": " + e.err.Error() }
func (e *callError) Unwrap() error { return e.err }

func (e *callError) write(w http.ResponseWriter) { writeErr(w, e.status, e.code, e.msg, e.err) }

func writeErr(w http.ResponseWriter, status int, code uint, msg string, err error) {
	writeJSON(w, status, api.AgentError{Code: code, Message: msg, Details: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, codeInternal, "encode reply", err)
		return
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	// With its length known the client has the whole answer as soon as it
	// is flushed, not when the handler returns: the release updates the
	// status record after answering, and the plugin's DEL read to the end
	// of the body used to wait those ~13 ms.
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	// The client may have gone away; there is nobody left to tell.
	_, _ = w.Write(b)
}

// kubePodTimeout bounds the read of a mirrored pod at ADD.
const kubePodTimeout = 500 * time.Millisecond

// addKubeLabels gives a Kubernetes pod's endpoint (uid from K8S_POD_UID) the
// labels and named ports skein-kube mirrored for that pod, so the policies
// that select it by label cover it from its first packet rather than from
// when skein-kube labels the record. A record of another pod of the same
// name, none at all, or etcd not answering leaves ep as the runtime gave it
// (skein-kube labels it as soon as it sees it).
func (s *cniServer) addKubeLabels(ctx context.Context, ep *api.Endpoint, uid string) {
	if uid == "" || ep.Name == "" || s.kubePod == nil || (s.health != nil && !s.health.reachable()) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, kubePodTimeout)
	defer cancel()
	p, ok, err := s.kubePod(ctx, ep.Namespace, ep.Name)
	switch {
	case err != nil:
		s.log.Warn("mirrored pod not read; the endpoint gets its labels when skein-kube sees it", "pod", ep.Namespace+"/"+ep.Name, "err", err)
		return
	case !ok || p.UID != uid:
		return
	}
	ep.Labels = p.Labels
	if len(p.Ports) > 0 {
		ep.Ports = p.Ports
	}
}
