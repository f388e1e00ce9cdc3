package agent

// bgpDebug returns the BGP speaker's state for the debug endpoint and
// status, or nil when the cluster does not run the bgp backend.
func (a *Agent) bgpDebug() any {
	if a.bgp == nil {
		return nil
	}
	return a.bgp.Debug()
}

// policyDebug returns the policy enforcement state (program version, last
// sync, last error, rule and set counts), or nil before policy runs.
func (a *Agent) policyDebug() any {
	if a.pol == nil {
		return nil
	}
	return a.pol.debug()
}
