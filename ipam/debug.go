package ipam

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/skeinnet/skein/api"
)

// debugState is what ServeHTTPDebug shows.
type debugState struct {
	Node        string         `json:"node"`
	Home        netip.Prefix   `json:"home"`
	VTEP        netip.Addr     `json:"vtep"`
	Blocks      []netip.Prefix `json:"blocks"`
	Stats       Stats          `json:"stats"`
	Allocations []Allocation   `json:"allocations"`
	Cooling     []coolingAddr  `json:"cooling"`
	StateFile   string         `json:"stateFile"`
	Now         time.Time      `json:"now"`
	// EmptyBlocks are the blocks with no allocation and no cooling
	// address (when they go back to the pool is in the node's status
	// record: the agent decides whether they do); Releasing those being returned to the pool (or whose
	// release failed and is retried); Claiming whether a block claim is in
	// flight.
	EmptyBlocks []api.EmptyBlock `json:"emptyBlocks"`
	Releasing   []netip.Prefix   `json:"releasing,omitempty"`
	Claiming    bool             `json:"claiming,omitempty"`
}

// ServeHTTPDebug writes the allocator's blocks, allocations and cooling
// addresses as JSON, for the agent's /debug/ipam.
func (a *Allocator) ServeHTTPDebug(w http.ResponseWriter, _ *http.Request) {
	writeDebug(w, a.debugSnapshot())
}

// writeDebug writes v as indented JSON.
func writeDebug(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}

// debugSnapshot is what ServeHTTPDebug shows.
func (a *Allocator) debugSnapshot() debugState {
	a.mu.Lock()
	now := a.now()
	d := debugState{
		Node:        a.node,
		Home:        a.home,
		VTEP:        a.home.Masked().Addr(),
		Blocks:      slices.Clone(a.blocks),
		Stats:       a.statsLocked(now),
		Allocations: a.sortedAllocsLocked(),
		Cooling:     []coolingAddr{},
		StateFile:   a.slots.Newest(),
		Now:         now,
		EmptyBlocks: a.emptyBlocksLocked(now),
		Claiming:    a.claiming != nil,
	}
	for b := range a.releasing {
		d.Releasing = append(d.Releasing, b)
	}
	for ip, until := range a.cooling {
		if until.After(now) {
			d.Cooling = append(d.Cooling, coolingAddr{IP: ip, Until: until})
		}
	}
	a.mu.Unlock()
	slices.SortFunc(d.Cooling, func(x, y coolingAddr) int { return x.IP.Compare(y.IP) })
	slices.SortFunc(d.Releasing, comparePrefixes)
	return d
}
