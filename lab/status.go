package lab

import (
	"context"
	"net/netip"
	"strings"
)

// Status is a lab's live state.
type Status struct {
	Name   string `json:"name"`
	RunDir string `json:"runDir"`
	// EtcdEndpoint are the admin endpoints (unix sockets) for the root
	// namespace, one per member, joined by commas as SKEIN_ETCD_ENDPOINTS
	// takes them.
	EtcdEndpoint string `json:"etcdEndpoint"`
	// EtcdTLS is set when etcd serves TLS: the files a client needs.
	EtcdTLS *TLSFiles `json:"etcdTLS,omitempty"`
	// Etcd are the etcd members by index.
	Etcd       []EtcdStatus `json:"etcd"`
	Hosts      []HostStatus `json:"hosts"`
	Containers []Container  `json:"containers"`
	// ToR is the top-of-rack router's state, nil without one.
	ToR *ToRStatus `json:"tor,omitempty"`
}

// ToRStatus is the top-of-rack router's state.
type ToRStatus struct {
	Kind     string     `json:"kind"`
	NetNS    string     `json:"netns"`
	RouterID netip.Addr `json:"routerID"`
	PIDs     []int      `json:"pids"`
	// Alive reports whether every daemon runs.
	Alive bool `json:"alive"`
	// Client is the command line that queries the daemon.
	Client   string       `json:"client"`
	Sessions []ToRSession `json:"sessions,omitempty"`
	Reason   string       `json:"reason,omitempty"`
}

// EtcdStatus is one etcd member's state.
type EtcdStatus struct {
	Name  string `json:"name"`
	PID   int    `json:"pid"`
	Alive bool   `json:"alive"`
	// Leader reports whether the member leads the cluster.
	Leader    bool   `json:"leader"`
	ClientURL string `json:"clientURL"`
	AdminURL  string `json:"adminURL"`
	// Reason says why a member is not running or not in the cluster.
	Reason string `json:"reason,omitempty"`
}

// HostStatus is one host's agent state.
type HostStatus struct {
	Name       string     `json:"name"`
	UnderlayIP netip.Addr `json:"underlayIP"`
	// UnderlayIP6 is the host's IPv6 underlay address (dual or IPv6 underlay).
	UnderlayIP6 netip.Addr `json:"underlayIP6,omitzero"`
	AgentPID    int        `json:"agentPID"`
	// Alive reports whether the agent process runs.
	Alive bool `json:"alive"`
	// Ready is the agent's own answer on its socket.
	Ready  bool     `json:"ready"`
	Reason string   `json:"reason,omitempty"`
	Blocks []string `json:"blocks,omitempty"`
}

// Status reports whether each process runs and what each agent says about
// its readiness.
func (l *Lab) Status(ctx context.Context) (Status, error) {
	st := l.State()
	s := Status{
		Name:         st.Name,
		RunDir:       st.RunDir,
		EtcdEndpoint: strings.Join(l.EtcdEndpoints(), ","),
		EtcdTLS:      st.TLS,
		Etcd:         etcdStatuses(ctx, st),
		Containers:   st.Containers,
	}
	for _, h := range st.Hosts {
		hs := HostStatus{Name: h.Name, UnderlayIP: h.UnderlayIP, UnderlayIP6: h.UnderlayIP6, AgentPID: h.AgentPID}
		hs.Alive = procAlive(h.AgentPID) && procOfRunDir(h.AgentPID, st.RunDir)
		if hs.Alive {
			as, err := agentStatus(ctx, h.Socket)
			if err != nil {
				hs.Reason = err.Error()
			} else {
				hs.Ready, hs.Reason, hs.Blocks = as.Ready, as.Reason, as.Blocks
			}
		} else {
			hs.Reason = "agent not running"
		}
		s.Hosts = append(s.Hosts, hs)
	}
	if t := st.ToR; t != nil {
		ts := &ToRStatus{Kind: t.Kind, NetNS: t.NetNS, RouterID: t.RouterID, PIDs: t.PIDs, Client: t.ClientCommand(), Alive: len(t.PIDs) > 0}
		for _, p := range t.PIDs {
			ts.Alive = ts.Alive && procAlive(p) && procOfRunDir(p, st.RunDir)
		}
		if ts.Alive {
			ss, err := l.ToRSessions(ctx)
			if err != nil {
				ts.Reason = err.Error()
			}
			ts.Sessions = ss
		} else {
			ts.Reason = "daemon not running"
		}
		s.ToR = ts
	}
	return s, ctx.Err()
}
