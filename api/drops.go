package api

import (
	"net/netip"
	"time"
)

// Drops is what an agent's /debug/drops serves: the packets its policy and
// anti-spoofing rules dropped recently, as nftables logged them (rate-limited
// per policed endpoint, so a flood shows as a sample).
type Drops struct {
	Node string    `json:"node"`
	Now  time.Time `json:"now"`
	// Capacity is the ring's size: older drops are forgotten.
	Capacity int `json:"capacity"`
	// Total counts every logged drop since the agent started.
	Total uint64 `json:"total"`
	// Reader is the NFLOG reader's error, when it is not running.
	Reader string `json:"readerError,omitempty"`
	// Drops are oldest first; with ?since=SEQ only those after SEQ.
	Drops []Drop `json:"drops"`
}

// Drop is one logged dropped packet.
type Drop struct {
	// Seq numbers the drops of one agent run, from 1.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Rule names the rule that dropped, as `skein policy trace` prints it.
	Rule    string     `json:"rule"`
	Src     netip.Addr `json:"src"`
	Dst     netip.Addr `json:"dst"`
	Proto   string     `json:"proto"`
	SrcPort uint16     `json:"srcPort,omitempty"`
	DstPort uint16     `json:"dstPort,omitempty"`
	// From and To are the endpoints that own Src and Dst, when known.
	From *EndpointRef `json:"from,omitempty"`
	To   *EndpointRef `json:"to,omitempty"`
}

// EndpointRef names an endpoint.
type EndpointRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}
