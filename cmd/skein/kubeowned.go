package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// refuseKubeOwned returns an error when the policy at kind/ns/name is
// mirrored from Kubernetes by skein-kube, or when o (nil on delete) claims
// to be: skein-kube would undo any change made here.
func refuseKubeOwned(ctx context.Context, cl *store.Client, o api.Object, kind, ns, name string) error {
	what := strings.ToLower(kind) + " " + objectRef(ns, name)
	if o != nil {
		if b, err := json.Marshal(o); err == nil && api.OwnedByKubernetes(b) {
			return fmt.Errorf("%s: annotation %s=%s is reserved for skein-kube; create the object in Kubernetes instead", what, api.OwnerAnnotation, api.OwnerKubernetes)
		}
	}
	if kind == api.KindNamespace {
		ns, err := cl.GetNamespace(ctx, name)
		if err == nil && ns.Owner == api.OwnerKubernetes {
			return fmt.Errorf("%s is owned by Kubernetes (mirrored by skein-kube): edit it with kubectl", what)
		}
		return nil
	}
	resp, err := cl.Etcd().Get(ctx, cl.Prefix()+api.PolicyKey(kind, ns, name))
	if err != nil {
		return fmt.Errorf("read %s: %w", what, err)
	}
	if len(resp.Kvs) > 0 && api.OwnedByKubernetes(resp.Kvs[0].Value) {
		return fmt.Errorf("%s is owned by Kubernetes (mirrored by skein-kube): edit or delete it with kubectl", what)
	}
	return nil
}
