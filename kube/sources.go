package kube

import (
	"fmt"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/cache"
	npv1alpha1 "sigs.k8s.io/network-policy-api/apis/v1alpha1"
	npinformers "sigs.k8s.io/network-policy-api/pkg/client/informers/externalversions"

	"github.com/skeinnet/skein/api"
)

// policySource is one policy kind the API server serves: its informer and
// how one of its objects becomes a Skein record.
type policySource struct {
	informer cache.SharedIndexInformer
	doc      func(obj any) policyDoc
}

// policySources returns a source per policy kind the API server serves.
// NetworkPolicy is always there; the network-policy-api kinds exist only
// where their CRDs are installed (ANP and BANP are not in v0.3.0's CRDs).
func policySources(cfg Config, f informers.SharedInformerFactory, nf npinformers.SharedInformerFactory) (map[string]*policySource, error) {
	out := map[string]*policySource{
		api.KindNetworkPolicy: {
			informer: f.Networking().V1().NetworkPolicies().Informer(),
			doc: func(obj any) policyDoc {
				p := obj.(*networkingv1.NetworkPolicy)
				return newPolicyDoc(api.NetworkingV1, api.KindNetworkPolicy, p.Namespace, p.Name, p.Labels, p.Spec)
			},
		},
	}
	optional := []struct {
		gv, resource, kind string
		source             func() *policySource
	}{
		{api.PolicyV1Alpha1, "adminnetworkpolicies", api.KindAdminNetworkPolicy, func() *policySource {
			return &policySource{
				informer: nf.Policy().V1alpha1().AdminNetworkPolicies().Informer(),
				doc: func(obj any) policyDoc {
					p := obj.(*npv1alpha1.AdminNetworkPolicy)
					return newPolicyDoc(api.PolicyV1Alpha1, api.KindAdminNetworkPolicy, "", p.Name, p.Labels, p.Spec)
				},
			}
		}},
		{api.PolicyV1Alpha1, "baselineadminnetworkpolicies", api.KindBaselineAdminNetworkPolicy, func() *policySource {
			return &policySource{
				informer: nf.Policy().V1alpha1().BaselineAdminNetworkPolicies().Informer(),
				doc: func(obj any) policyDoc {
					p := obj.(*npv1alpha1.BaselineAdminNetworkPolicy)
					return newPolicyDoc(api.PolicyV1Alpha1, api.KindBaselineAdminNetworkPolicy, "", p.Name, p.Labels, p.Spec)
				},
			}
		}},
	}
	optional = append(optional, clusterNetworkPolicySources(nf)...)
	for _, o := range optional {
		ok, err := served(cfg, o.gv, o.resource)
		if err != nil {
			return nil, err
		}
		if !ok {
			cfg.Log.Info("policy kind not served by the API server; not mirrored", "op", o.kind)
			continue
		}
		out[o.kind] = o.source()
	}
	return out, nil
}

// addSchemes registers every kind Events may be recorded on.
func addSchemes(s *runtime.Scheme) error {
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, npv1alpha1.Install, addClusterNetworkPolicyScheme} {
		if err := add(s); err != nil {
			return fmt.Errorf("event scheme: %w", err)
		}
	}
	return nil
}
