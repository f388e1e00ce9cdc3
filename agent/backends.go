package agent

import "github.com/skeinnet/skein/api"

// policyDebug returns the policy enforcement state (program version, last
// sync, last error, rule and set counts), or nil before policy runs.
func (a *Agent) policyDebug() *api.PolicyStatus {
	if a.pol == nil {
		return nil
	}
	d := a.pol.debug()
	return &d
}
