package kube

import (
	"k8s.io/apimachinery/pkg/runtime"
	npv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	npinformers "sigs.k8s.io/network-policy-api/pkg/client/informers/externalversions"

	"github.com/skeinnet/skein/api"
)

// ClusterNetworkPolicy (policy.networking.k8s.io/v1beta1), the successor of
// ANP and BANP.
const (
	kindClusterNetworkPolicy = "ClusterNetworkPolicy"
	policyV1Beta1            = "policy.networking.k8s.io/v1beta1"
)

// clusterNetworkPolicySources mirrors ClusterNetworkPolicies when this
// Skein's policy compiler knows the kind (an older api package would only
// quarantine them).
func clusterNetworkPolicySources(nf npinformers.SharedInformerFactory) []struct {
	gv, resource, kind string
	source             func() *policySource
} {
	if !api.IsPolicyKind(kindClusterNetworkPolicy) {
		return nil
	}
	return []struct {
		gv, resource, kind string
		source             func() *policySource
	}{{policyV1Beta1, "clusternetworkpolicies", kindClusterNetworkPolicy, func() *policySource {
		return &policySource{
			informer: nf.Policy().V1beta1().ClusterNetworkPolicies().Informer(),
			doc: func(obj any) policyDoc {
				p := obj.(*npv1beta1.ClusterNetworkPolicy)
				return newPolicyDoc(policyV1Beta1, kindClusterNetworkPolicy, "", p.Name, p.Labels, p.Spec)
			},
		}
	}}}
}

func addClusterNetworkPolicyScheme(s *runtime.Scheme) error { return npv1beta1.Install(s) }
