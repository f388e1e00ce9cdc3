package bgp

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/skeinnet/skein/api"
)

// debugTimeout bounds the gobgp query behind Debug.
const debugTimeout = 5 * time.Second

// NeighborState is one neighbour in the debug state.
type NeighborState = api.BGPSession

// DebugState is what the debug endpoint shows about BGP.
type DebugState = api.BGPStatus

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
		if nh.Is4() {
			d.NextHop = nh
		}
	}
	d.NextHop6 = s.nextHop6
	slices.SortFunc(d.Advertised, comparePrefix)
	if s.cfg.ListenPort > 0 && s.cfg.ListenAddr6.IsValid() {
		d.Listen6 = netip.AddrPortFrom(s.cfg.ListenAddr6, uint16(s.cfg.ListenPort)).String()
	}
	if err := errorsJoinNonNil(s.advErr, s.peersErr, s.cfgErr, s.routeErr); err != "" {
		d.LastError = err
	}
	peers := slices.Clone(s.peers)
	noSession := slices.Clone(s.noSession)
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
			n.Received6, n.Advertised6 = g.Received6, g.Advertised6
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
	for _, p := range noSession {
		d.Neighbors = append(d.Neighbors, NeighborState{
			Name: p.Name, Address: p.Address, ASN: p.ASN, Port: p.Port, Description: p.Description,
			State: api.BGPNoSession, LastError: "no session: " + errNoIPv6,
		})
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
