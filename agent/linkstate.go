package agent

import (
	"strings"
)

// LinkUnknown: neither end could say anything about the link (both agents
// down and no status record). It is never shown as down: the kernels keep
// what they had.
const LinkUnknown = "unknown"

// Where a link's state comes from (PairLink.Basis).
const (
	// BasisObserved: the agent at one end graded its side from its kernel
	// (or its BGP speaker) just now.
	BasisObserved = "observed"
	// BasisReported: no agent answered; the state is what the ends last
	// published in their status records.
	BasisReported = "reported"
	// BasisNone: nothing was known about either side.
	BasisNone = "none"
)

// LinkSide is what is known about one end's side of a link: the entries
// (or the session) that end has toward the other.
type LinkSide struct {
	// Node is the end's name.
	Node string
	// AgentUp is false when the end's agent has no heartbeat. Its kernel
	// keeps the routes and FDB entries it had, so the data path is kept.
	AgentUp bool
	// Observed is the end agent's own grade of its side, asked just now
	// (its debug endpoint, or this agent's kernel); nil when not known.
	Observed *Link
	// Reported is the grade the end last published in its status record
	// (api.NodeStatus.Links); "" when none.
	Reported string
}

// PairLink is the link between two nodes, as `skein status`, `skein
// topology`, /debug/topology (and so /ui) show it.
type PairLink struct {
	From  string `json:"from"`
	To    string `json:"to"`
	State string `json:"state"`
	// Observed is true when Basis is observed.
	Observed bool   `json:"observed"`
	Basis    string `json:"basis"`
	// AgentDown names the ends whose agent has no heartbeat: their data
	// path is kept, which does not make the link down.
	AgentDown []string `json:"agentDown,omitempty"`
	Detail    string   `json:"detail,omitempty"`
}

// linkRank orders states from worst to best: a link is as good as its
// worse side, since traffic needs both.
var linkRank = map[string]int{LinkDown: 0, LinkPartial: 1, LinkPending: 2, LinkNone: 3, LinkUp: 4}

// GradeLink is the one place a link's state is decided. Each side is
// graded by its own end, observed when that end's agent answered, else as
// it last reported; the link takes the worse known side. A side whose
// agent is down and that reported nothing is unknown, not down: a stopped
// agent leaves its kernel forwarding.
func GradeLink(a, b LinkSide) PairLink {
	l := PairLink{From: a.Node, To: b.Node, State: LinkUnknown, Basis: BasisNone}
	var details []string
	for _, s := range []LinkSide{a, b} {
		if !s.AgentUp {
			l.AgentDown = append(l.AgentDown, s.Node)
		}
		state, detail, basis := "", "", ""
		switch {
		case s.Observed != nil && s.Observed.State != "":
			state, detail, basis = s.Observed.State, s.Observed.Detail, BasisObserved
		case s.Reported != "":
			state, basis = s.Reported, BasisReported
		default:
			continue
		}
		if detail == "" {
			detail = state
		}
		details = append(details, basis+" by "+s.Node+": "+detail)
		if l.Basis != BasisObserved {
			l.Basis = basis
		}
		if l.State == LinkUnknown || linkRank[state] < linkRank[l.State] {
			l.State = state
		}
	}
	l.Observed = l.Basis == BasisObserved
	if len(l.AgentDown) > 0 {
		details = append(details, strings.Join(l.AgentDown, " and ")+": "+AgentDownDataPathKept)
	}
	l.Detail = strings.Join(details, "; ")
	return l
}

// AgentState is how a node's agent is shown: "up", or "agent down, data
// path kept" when it has no heartbeat (its routes and FDB entries stay
// programmed on every host until `skein node delete`).
func AgentState(alive bool) string {
	if alive {
		return "up"
	}
	return AgentDownDataPathKept
}

// AgentDownDataPathKept is the state of a node whose agent has no heartbeat.
const AgentDownDataPathKept = "agent down, data path kept"
