package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
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

// addrAllocator is what the CNI API needs from ipam.
type addrAllocator interface {
	Allocate(ctx context.Context, o api.Owner, pod string) (netip.Addr, bool, error)
	Release(ctx context.Context, o api.Owner) ([]netip.Addr, error)
	Lookup(o api.Owner) []netip.Addr
	GC(ctx context.Context, valid []api.Owner) ([]api.Owner, error)
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
	if !decode(w, r, &req) || !validOwner(w, req.Owner) {
		return
	}
	ip, existing, err := s.alloc.Allocate(r.Context(), req.Owner, podName(req.Pod))
	if err != nil {
		code := uint(codeInternal)
		if errors.Is(err, ipam.ErrExhausted) {
			code = codePoolExhausted
			if s.alloc.Stats().Cooling > 0 {
				code = codeTryAgainLater // addresses come back when their cooldown ends
			}
		}
		writeErr(w, http.StatusServiceUnavailable, code, "allocate address", err)
		return
	}
	s.log.Debug("address allocated", "container_id", req.ContainerID, "ifname", req.IfName, "ip", ip, "existing", existing)
	writeJSON(w, http.StatusOK, api.AllocateResponse{
		IPs:      []netip.Prefix{netip.PrefixFrom(ip, ip.BitLen())},
		Gateway:  netip.MustParseAddr(api.GatewayIP),
		MTU:      s.mtu,
		Existing: existing,
	})
}

func (s *cniServer) commit(w http.ResponseWriter, r *http.Request) {
	var req api.CommitRequest
	if !decode(w, r, &req) || !validOwner(w, req.Owner) {
		return
	}
	if err := validPod(req.Pod); err != nil {
		writeErr(w, http.StatusBadRequest, codeInvalidConfig, "commit endpoint", err)
		return
	}
	held := s.alloc.Lookup(req.Owner)
	for _, ip := range req.IPs {
		if !containsAddr(held, ip) {
			writeErr(w, http.StatusConflict, codeInvalidConfig, "commit endpoint",
				fmt.Errorf("%s does not hold %s (held: %v)", req.Owner, ip, held))
			return
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
		Created:     time.Now().UTC(),
	}
	if ep.Namespace == "" {
		ep.Namespace = "default"
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeCallTimeout)
	defer cancel()
	// The namespace record appears with its first pod, so `skein namespace
	// list` and policy see it; an admin's labels are never overwritten.
	if err := s.store.EnsureNamespace(ctx, ep.Namespace); err != nil {
		writeErr(w, http.StatusServiceUnavailable, codeTryAgainLater, "publish namespace", err)
		return
	}
	if err := s.store.PutEndpoint(ctx, ep); err != nil {
		writeErr(w, http.StatusServiceUnavailable, codeTryAgainLater, "publish endpoint", err)
		return
	}
	s.mu.Lock()
	s.published[req.Owner] = true
	s.mu.Unlock()
	s.onChange()
	// The ADD returns only once the endpoint's policy is enforced: no
	// container ever starts with an open window.
	if err := s.enforce(r.Context(), ep); err != nil {
		writeErr(w, http.StatusServiceUnavailable, codeTryAgainLater, "enforce policy", err)
		return
	}
	s.log.Info("endpoint published", "container_id", req.ContainerID, "ifname", req.IfName, "pod", ep.Namespace+"/"+ep.Name, "ip", req.IPs)
	writeJSON(w, http.StatusOK, api.CommitResponse{Endpoint: ep})
}

func (s *cniServer) release(w http.ResponseWriter, r *http.Request) {
	var req api.ReleaseRequest
	if !decode(w, r, &req) || !validOwner(w, req.Owner) {
		return
	}
	// Unpublish first: an address must never be free while an endpoint still names it.
	ctx, cancel := context.WithTimeout(r.Context(), storeCallTimeout)
	defer cancel()
	if err := s.store.DeleteEndpoint(ctx, s.node, req.Owner); err != nil {
		writeErr(w, http.StatusServiceUnavailable, codeTryAgainLater, "unpublish endpoint", err)
		return
	}
	s.mu.Lock()
	delete(s.published, req.Owner)
	s.mu.Unlock()
	s.forget(req.Owner)
	freed, err := s.alloc.Release(r.Context(), req.Owner)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, codeInternal, "release address", err)
		return
	}
	s.onChange()
	if len(freed) > 0 {
		s.log.Info("endpoint released", "container_id", req.ContainerID, "ifname", req.IfName, "ip", freed)
	}
	writeJSON(w, http.StatusOK, api.ReleaseResponse{Released: freed})
}

func (s *cniServer) check(w http.ResponseWriter, r *http.Request) {
	var req api.ReleaseRequest
	if !decode(w, r, &req) || !validOwner(w, req.Owner) {
		return
	}
	ips := s.alloc.Lookup(req.Owner)
	if len(ips) == 0 {
		writeErr(w, http.StatusNotFound, codeUnknownCont, "check", fmt.Errorf("agent holds no address for %s", req.Owner))
		return
	}
	s.mu.Lock()
	pub := s.published[req.Owner]
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, api.CheckResponse{IPs: ips, Published: pub, MTU: s.mtu})
}

func (s *cniServer) gc(w http.ResponseWriter, r *http.Request) {
	var req api.GCRequest
	if !decode(w, r, &req) {
		return
	}
	freed, err := s.alloc.GC(r.Context(), req.Valid)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, codeInternal, "garbage-collect addresses", err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeCallTimeout)
	defer cancel()
	var errs []error
	for _, o := range freed {
		if err := s.store.DeleteEndpoint(ctx, s.node, o); err != nil {
			errs = append(errs, err)
		}
		s.mu.Lock()
		delete(s.published, o)
		s.mu.Unlock()
		s.forget(o)
	}
	if len(freed) > 0 {
		s.onChange()
		s.log.Info("attachments garbage-collected", "count", len(freed))
	}
	if err := errors.Join(errs...); err != nil {
		writeErr(w, http.StatusServiceUnavailable, codeTryAgainLater, "unpublish collected endpoints", err)
		return
	}
	writeJSON(w, http.StatusOK, api.GCResponse{Freed: freed})
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

func validOwner(w http.ResponseWriter, o api.Owner) bool {
	if o.ContainerID == "" || o.IfName == "" {
		writeErr(w, http.StatusBadRequest, codeInvalidConfig, "bad request", errors.New("containerID and ifName are required"))
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

func writeErr(w http.ResponseWriter, status int, code uint, msg string, err error) {
	writeJSON(w, status, api.AgentError{Code: code, Message: msg, Details: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// The client may have gone away; there is nobody left to tell.
	_ = json.NewEncoder(w).Encode(v)
}
