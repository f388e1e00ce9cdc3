package api

import "encoding/json"

// PolicyTarget is what can still be read of a stored policy that does not
// decode or validate: the pods it was meant to govern. The agent isolates
// them (fail closed) instead of dropping the policy.
type PolicyTarget struct {
	// Kind, Namespace and Name come from the policy's key, which is where
	// the store put it whatever its value says; Namespace is "" for
	// cluster-scoped kinds.
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// PodSelector selects the pods of Namespace that a namespaced policy
	// names; nil when it cannot be read: every pod of Namespace.
	PodSelector *LabelSelector `json:"podSelector,omitempty"`
	// Subject is a cluster-scoped policy's subject; nil when it cannot be
	// read: every pod of the cluster.
	Subject *AdminNetworkPolicySubject `json:"subject,omitempty"`
}

// ReadPolicyTarget reads the selector of a stored policy leniently: only
// spec.podSelector (namespaced kinds) or spec.subject (cluster-scoped
// kinds) is decoded and validated. Whatever is doubtful (a duplicate key
// anywhere, a selector of the wrong shape or with invalid labels or
// operators) widens the target to the whole namespace, or to every pod for
// a cluster-scoped kind: an invalid policy must never isolate fewer pods
// than it names. Kinds this version does not know count as cluster-scoped
// when namespace is "", else as namespaced.
func ReadPolicyTarget(kind, namespace, name string, raw []byte) PolicyTarget {
	t := PolicyTarget{Kind: kind, Namespace: namespace, Name: name}
	if !IsPolicyKind(kind) || CheckDuplicateKeys(raw, 0) != nil {
		return t
	}
	var v struct {
		Spec struct {
			PodSelector *LabelSelector             `json:"podSelector"`
			Subject     *AdminNetworkPolicySubject `json:"subject"`
		} `json:"spec"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return t
	}
	var e errs
	if ClusterScoped(kind) {
		s := v.Spec.Subject
		if s == nil || (s.Namespaces == nil) == (s.Pods == nil) {
			return t
		}
		e.selector(s.Namespaces, "spec.subject.namespaces")
		e.namespacedPod(s.Pods, "spec.subject.pods")
		if len(e.list) == 0 {
			t.Subject = s
		}
		return t
	}
	if s := v.Spec.PodSelector; s != nil {
		e.selector(s, "spec.podSelector")
		if len(e.list) == 0 {
			t.PodSelector = s
		}
	}
	return t
}
