package dockerdrv

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/atomicfile"
)

// attachment is one address handed to libnetwork and, once libnetwork made
// an endpoint of it, that endpoint. The owner is made up at RequestAddress:
// libnetwork's IPAM call names neither the endpoint nor the container.
type attachment struct {
	Owner     api.Owner  `json:"owner"`
	IP        netip.Addr `json:"ip"`
	Allocated time.Time  `json:"allocated"`
	// IP6 is the IPv6 address the agent allocated with IP in a dual-stack
	// cluster (both families or neither); V6 is set once libnetwork took it
	// for an endpoint on a network created with --ipv6. An IPv4-only
	// network leaves it held and unused: it goes with IP.
	IP6 netip.Addr `json:"ip6,omitzero"`
	V6  bool       `json:"v6,omitempty"`
	// MAC is the endpoint's MAC as libnetwork passes it to both of its
	// RequestAddress calls: what pairs the IPv6 request with the IPv4 one.
	MAC string `json:"mac,omitempty"`
	// Set by CreateEndpoint.
	NetworkID  string `json:"networkID,omitempty"`
	EndpointID string `json:"endpointID,omitempty"`
	// Set by Join; cleared by Leave.
	HostIface string    `json:"hostIface,omitempty"`
	Joined    time.Time `json:"joined,omitzero"`
	// Container is the Docker container id, once the engine named it.
	Container string `json:"container,omitempty"`
	// Neigh is true once the container's gateway neighbour is set.
	Neigh bool `json:"neigh,omitempty"`
	// Pod is the identity last committed; Committed is false until Join's
	// commit succeeded.
	MTU       int         `json:"mtu,omitempty"`
	Pod       api.PodInfo `json:"pod"`
	Committed bool        `json:"committed,omitempty"`
}

// network is a Docker network of this driver.
type network struct {
	ID     string            `json:"id"`
	Labels map[string]string `json:"labels,omitempty"`
	// Created is when CreateNetwork came; Resolved is true once the
	// labels were read from the engine (CreateNetwork carries only the
	// driver options).
	Created  time.Time `json:"created,omitzero"`
	Resolved bool      `json:"resolved,omitempty"`
}

// state is everything the driver must remember across restarts of skeind
// and of dockerd, saved whole on every change (a node has tens of Docker
// attachments, not thousands).
type state struct {
	Networks    map[string]network     `json:"networks"`
	Attachments map[string]*attachment `json:"attachments"` // by owner container id
}

func newState() *state {
	return &state{Networks: map[string]network{}, Attachments: map[string]*attachment{}}
}

// byIP returns the attachment holding ip (of either family).
func (s *state) byIP(ip netip.Addr) (*attachment, bool) {
	for _, a := range s.Attachments {
		if a.IP == ip || (a.IP6.IsValid() && a.IP6 == ip) {
			return a, true
		}
	}
	return nil, false
}

// ips is what the attachment's endpoint holds: its IPv4 address and, on
// an IPv6 network, its IPv6 one.
func (a *attachment) ips() []netip.Addr {
	if a.V6 {
		return []netip.Addr{a.IP, a.IP6}
	}
	return []netip.Addr{a.IP}
}

// byEndpoint returns the attachment of a libnetwork endpoint.
func (s *state) byEndpoint(endpointID string) (*attachment, bool) {
	for _, a := range s.Attachments {
		if a.EndpointID == endpointID {
			return a, true
		}
	}
	return nil, false
}

// owners returns every attachment's owner, sorted.
func (s *state) owners() []api.Owner {
	out := make([]api.Owner, 0, len(s.Attachments))
	for _, a := range s.Attachments {
		out = append(out, a.Owner)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ContainerID < out[j].ContainerID })
	return out
}

// loadState reads the state file; a missing file is an empty state.
func loadState(path string) (*state, error) {
	if err := atomicfile.RemoveStaleTemps(filepath.Dir(path), filepath.Base(path)); err != nil {
		return nil, fmt.Errorf("docker driver state: %w", err)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return newState(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read docker driver state: %w", err)
	}
	st := newState()
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("docker driver state %s: %w", path, err)
	}
	if st.Networks == nil {
		st.Networks = map[string]network{}
	}
	if st.Attachments == nil {
		st.Attachments = map[string]*attachment{}
	}
	return st, nil
}

// save writes the state file atomically (a crash leaves the old or the new
// state, never a mix).
func (s *state) save(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode docker driver state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("docker driver state dir: %w", err)
	}
	if err := atomicfile.Write(path, b); err != nil {
		return fmt.Errorf("save docker driver state: %w", err)
	}
	return nil
}
