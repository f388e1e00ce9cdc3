package api

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestGradeLink: the worse known side wins, observed beats reported for a
// side, and a stopped agent never makes a link down by itself.
func TestGradeLink(t *testing.T) {
	up, down, partial := &Link{State: LinkUp, Detail: "3 entries programmed"}, &Link{State: LinkDown}, &Link{State: LinkPartial}
	tests := []struct {
		name      string
		a, b      LinkSide
		state     string
		basis     string
		agentDown []string
	}{
		{"both observed up", LinkSide{Node: "a", AgentUp: true, Observed: up}, LinkSide{Node: "b", AgentUp: true, Observed: up}, LinkUp, BasisObserved, nil},
		{"one side down", LinkSide{Node: "a", AgentUp: true, Observed: up}, LinkSide{Node: "b", AgentUp: true, Reported: LinkDown}, LinkDown, BasisObserved, nil},
		{"observed beats reported", LinkSide{Node: "a", AgentUp: true, Observed: partial, Reported: LinkUp}, LinkSide{Node: "b", AgentUp: true, Reported: LinkUp}, LinkPartial, BasisObserved, nil},
		{"reported only", LinkSide{Node: "a", AgentUp: true, Reported: LinkUp}, LinkSide{Node: "b", AgentUp: true, Reported: LinkPending}, LinkPending, BasisReported, nil},
		{"agent down, data path kept", LinkSide{Node: "a", AgentUp: true, Observed: up}, LinkSide{Node: "b"}, LinkUp, BasisObserved, []string{"b"}},
		{"agent down, reported side", LinkSide{Node: "a", AgentUp: true, Reported: LinkUp}, LinkSide{Node: "b"}, LinkUp, BasisReported, []string{"b"}},
		{"nothing known", LinkSide{Node: "a"}, LinkSide{Node: "b"}, LinkUnknown, BasisNone, []string{"a", "b"}},
		{"kernel lacks entries", LinkSide{Node: "a", AgentUp: true, Observed: down}, LinkSide{Node: "b"}, LinkDown, BasisObserved, []string{"b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := GradeLink(tt.a, tt.b)
			if l.From != "a" || l.To != "b" || l.State != tt.state || l.Basis != tt.basis || l.Observed != (tt.basis == BasisObserved) {
				t.Errorf("GradeLink = %+v, want state %s basis %s", l, tt.state, tt.basis)
			}
			if d := cmp.Diff(tt.agentDown, l.AgentDown); d != "" {
				t.Errorf("agentDown (-want +got):\n%s", d)
			}
		})
	}
}
