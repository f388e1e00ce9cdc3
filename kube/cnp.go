package kube

import (
	"k8s.io/apimachinery/pkg/runtime"
	npv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	npinformers "sigs.k8s.io/network-policy-api/pkg/client/informers/externalversions"

	"github.com/skeinnet/skein/api"
)

// clusterNetworkPolicySources mirrors ClusterNetworkPolicies (v1beta1, the
// successor of ANP and BANP) where the API server serves them.
func clusterNetworkPolicySources(nf npinformers.SharedInformerFactory) []struct {
	gv, resource, kind string
	source             func() *policySource
} {
	return []struct {
		gv, resource, kind string
		source             func() *policySource
	}{{api.PolicyV1Beta1, "clusternetworkpolicies", api.KindClusterNetworkPolicy, func() *policySource {
		return &policySource{
			informer: nf.Policy().V1beta1().ClusterNetworkPolicies().Informer(),
			doc: func(obj any) policyDoc {
				p := obj.(*npv1beta1.ClusterNetworkPolicy)
				return newPolicyDoc(api.PolicyV1Beta1, api.KindClusterNetworkPolicy, "", p.Name, p.Labels, p.Spec)
			},
		}
	}}}
}

func addClusterNetworkPolicyScheme(s *runtime.Scheme) error { return npv1beta1.Install(s) }
