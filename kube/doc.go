// Package kube is skein-kube: it mirrors what Kubernetes knows about pods,
// namespaces, nodes and network policies into Skein's etcd, in Skein's own
// formats, so that skeind enforces policy on a Kubernetes node exactly as it
// does anywhere else and never needs to talk to the API server.
//
// What goes where:
//   - Namespace labels → namespaces/<ns> (Owner "kubernetes").
//   - Pod labels and named container ports → every endpoint record of that
//     pod (matched by namespace and pod name, which skein-cni records from
//     K8S_POD_NAMESPACE/K8S_POD_NAME); the pod may reach the informer before
//     or after its CNI ADD: an etcd watch on endpoints/ catches the late ones.
//   - Node labels → the labels of the Skein node record of the same name.
//   - NetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy (and
//     ClusterNetworkPolicy) → policies/<kind>/<ns or _>/<name>, annotated
//     skein.dev/owner=kubernetes, which `skein policy apply/delete` refuses to
//     change. Records without the annotation are never touched.
//
// A policy Skein cannot represent is still written, in a form every agent
// refuses to decode but whose selector it can read, so the pods it selects
// are isolated (fail closed); a Kubernetes Event on the object names the
// field. One replica is active at a time (an etcd election on the lease of
// its session); it resyncs fully when it starts, so objects deleted while
// no replica ran are removed, and publishes api.KubeStatus for `skein status`.
//
// This is the only package of Skein that links client-go; skeind and
// skein-cni must not import it (deps_test.go).
package kube
