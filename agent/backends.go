package agent

import "github.com/skeinnet/skein/api"

// bgpDebug returns the BGP speaker's state for the debug endpoint and
// status, or nil when the cluster does not run the bgp backend.
func (a *Agent) bgpDebug() *api.BGPStatus {
	if a.bgp == nil {
		return nil
	}
	d := a.bgp.Debug()
	return &d
}

// policyDebug returns the policy enforcement state (program version, last
// sync, last error, rule and set counts), or nil before policy runs.
func (a *Agent) policyDebug() *api.PolicyStatus {
	if a.pol == nil {
		return nil
	}
	d := a.pol.debug()
	return &d
}
