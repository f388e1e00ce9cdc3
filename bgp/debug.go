package bgp

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"slices"
	"time"
)

// debugTimeout bounds the gobgp query behind Debug.
const debugTimeout = 5 * time.Second

// NeighborState is one neighbour in the debug state.
type NeighborState struct {
	Name                 string     `json:"name"`
	Address              netip.Addr `json:"address"`
	ASN                  uint32     `json:"asn"`
	Port                 int        `json:"port,omitempty"`
	RouteReflectorClient bool       `json:"routeReflectorClient,omitempty"`
	Passive              bool       `json:"passive,omitempty"`
	Description          string     `json:"description,omitempty"`
	// State is Idle, Connect, Active, OpenSent, OpenConfirm or Established;
	// NotConfigured before gobgp has the peer, Stopped when not running.
	State string `json:"state"`
	// Since is when the session last went up (Established) or down.
	Since time.Time `json:"since,omitzero"`
	// Uptime is how long the session has been Established.
	Uptime string `json:"uptime,omitempty"`
	// Received, Accepted and Advertised count IPv4 unicast prefixes.
	Received   int `json:"prefixesReceived"`
	Accepted   int `json:"prefixesAccepted"`
	Advertised int `json:"prefixesAdvertised"`
	// Flaps counts sessions that went down soon after coming up.
	Flaps int `json:"flaps,omitempty"`
	// GracefulRestart reports that graceful restart was negotiated;
	// PeerRestarting that the peer's routes are kept while it restarts.
	GracefulRestart bool `json:"gracefulRestart,omitempty"`
	PeerRestarting  bool `json:"peerRestarting,omitempty"`
	// LastError is the last reason gobgp gave for a failed or lost session.
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
}

// DebugState is what the debug endpoint shows about BGP.
type DebugState struct {
	RouterID        netip.Addr `json:"routerID"`
	ASN             uint32     `json:"asn"`
	Listen          string     `json:"listen"`
	Running         bool       `json:"running"`
	GracefulRestart bool       `json:"gracefulRestart"`
	// ClusterID is set when the speaker is a route reflector.
	ClusterID netip.Addr `json:"clusterID,omitzero"`
	// Syncing reports that routes of an earlier run are kept until the
	// peers have re-sent theirs (or StaleRouteTime passes).
	Syncing bool `json:"syncing"`
	// WaitingForAdvertised reports that peers are not configured because
	// SetAdvertised was never called.
	WaitingForAdvertised bool            `json:"waitingForAdvertised,omitempty"`
	Neighbors            []NeighborState `json:"neighbors"`
	Advertised           []netip.Prefix  `json:"advertised"`
	NextHop              netip.Addr      `json:"nextHop,omitzero"`
	Local                []netip.Prefix  `json:"local"`
	// Routes are the kernel routes the speaker owns, as of the last sync.
	Routes []string `json:"routes"`
	// Rejected are learned best paths that are not installed, and why.
	Rejected []Rejection `json:"rejected,omitempty"`
	// Blocked are destinations held by a route the speaker does not own.
	Blocked []string `json:"blocked,omitempty"`
	// LastSync, LastDuration, Syncs and Failures are about route syncs.
	LastSync     time.Time     `json:"lastSync,omitzero"`
	LastDuration time.Duration `json:"lastDuration"`
	LastError    string        `json:"lastError,omitempty"`
	Syncs        int           `json:"syncs"`
	Failures     int           `json:"failures"`
}

// Debug returns a snapshot for the debug endpoint. While Run runs it asks
// gobgp for the session states.
func (s *Speaker) Debug() DebugState {
	s.mu.Lock()
	d := DebugState{
		RouterID:             s.cfg.RouterID,
		ASN:                  s.cfg.ASN,
		Listen:               "none",
		Running:              s.router != nil,
		GracefulRestart:      !s.cfg.DisableGracefulRestart,
		Syncing:              s.syncing,
		WaitingForAdvertised: s.peersSet && s.advertised == nil,
		Local:                slices.Clone(s.local),
		Rejected:             slices.Clone(s.rejected),
		LastSync:             s.lastSync,
		LastDuration:         s.lastDur,
		Syncs:                s.syncs,
		Failures:             s.failures,
	}
	if s.cfg.ListenPort > 0 {
		d.Listen = netip.AddrPortFrom(s.cfg.ListenAddr, uint16(s.cfg.ListenPort)).String()
	}
	if s.cfg.RouteReflector != nil {
		d.ClusterID = s.cfg.RouteReflector.ClusterID
	}
	for p, nh := range s.advertised {
		d.Advertised = append(d.Advertised, p)
		d.NextHop = nh
	}
	slices.SortFunc(d.Advertised, comparePrefix)
	if err := errorsJoinNonNil(s.cfgErr, s.routeErr); err != "" {
		d.LastError = err
	}
	peers := slices.Clone(s.peers)
	r := s.router
	s.mu.Unlock()

	var ns []neighbor
	configured := map[netip.Addr]bool{}
	if r != nil {
		ctx, cancel := context.WithTimeout(context.Background(), debugTimeout)
		var err error
		ns, err = r.neighbors(ctx)
		cancel()
		if err != nil && d.LastError == "" {
			d.LastError = err.Error()
		}
		for a := range r.configuredPeers() {
			configured[a] = true
		}
	}
	now := time.Now()
	for _, p := range peers {
		n := NeighborState{
			Name: p.Name, Address: p.Address, ASN: p.ASN, Port: p.Port,
			RouteReflectorClient: p.RouteReflectorClient, Passive: p.Passive, Description: p.Description,
			State: "Stopped",
		}
		if r != nil {
			n.State = "NotConfigured"
		}
		if i := slices.IndexFunc(ns, func(n neighbor) bool { return n.Address == p.Address }); i >= 0 && configured[p.Address] {
			g := ns[i]
			n.State, n.Flaps = g.State, g.Flaps
			n.Received, n.Accepted, n.Advertised = g.Received, g.Accepted, g.Advertised
			n.GracefulRestart, n.PeerRestarting = g.GR, g.PeerRestarting
			if g.established() {
				n.Since = g.Uptime
				if !g.Uptime.IsZero() {
					n.Uptime = now.Sub(g.Uptime).Round(time.Second).String()
				}
			} else {
				n.Since = g.Downtime
			}
		}
		if e, ok := s.gl.lastPeerError(p.Address.String()); ok {
			n.LastError, n.LastErrorAt = e.Text, e.At
		}
		d.Neighbors = append(d.Neighbors, n)
	}
	slices.SortFunc(d.Neighbors, func(a, b NeighborState) int { return cmp.Compare(a.Name, b.Name) })
	installed, blocked := s.routes.state()
	for _, rt := range installed {
		d.Routes = append(d.Routes, rt.String())
	}
	d.Blocked = blocked
	return d
}

func errorsJoinNonNil(errs ...error) string {
	out := ""
	for _, err := range errs {
		if err == nil {
			continue
		}
		if out != "" {
			out += "; "
		}
		out += err.Error()
	}
	return out
}

// ServeHTTPDebug writes Debug as JSON.
func (s *Speaker) ServeHTTPDebug(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s.Debug()); err != nil {
		s.log.Debug("write debug state", "err", err)
	}
}
