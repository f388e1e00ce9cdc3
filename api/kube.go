package api

import (
	"encoding/json"
	"time"
)

// OwnerKubernetes marks records skein-kube mirrors from the Kubernetes API:
// the value of OwnerAnnotation on policies and of Namespace.Owner. The CLI
// refuses to change such records (edit them in Kubernetes), and the sync
// never touches records without it.
const OwnerKubernetes = "kubernetes"

// OwnerAnnotation is the metadata annotation that names a policy's owner.
const OwnerAnnotation = "skein.dev/owner"

// KubeSyncKey is skein-kube's key prefix, relative to the store prefix. It
// sorts after status/, so agents' watches never see its frequent writes.
const KubeSyncKey = "sync/kube"

// KubeStatusKey is where the active skein-kube publishes its KubeStatus.
const KubeStatusKey = KubeSyncKey + "/status"

// KubeLeaderKey is the election prefix of the skein-kube replicas.
const KubeLeaderKey = KubeSyncKey + "/leader/"

// KubePodsKey prefixes the pods skein-kube mirrors, by namespace/name
// (sync/kube/pods/<ns>/<name>): the agent reads a pod's record when the CNI
// ADD publishes its endpoint, so policies that select the pod by label
// cover it from its first packet, before skein-kube labels the record.
const KubePodsKey = KubeSyncKey + "/pods/"

// KubePod is one mirrored pod: its UID (a record of an earlier pod of the
// same name is never applied to a new one), labels and named ports.
type KubePod struct {
	UID    string            `json:"uid"`
	Labels map[string]string `json:"labels,omitempty"`
	Ports  []NamedPort       `json:"ports,omitempty"`
}

// KubeStatus is the health of the Kubernetes sync, at sync/kube/status,
// written by the active skein-kube every few seconds and on change.
type KubeStatus struct {
	// Leader is the identity of the replica that wrote the record.
	Leader string `json:"leader"`
	// Connected reports whether the last request to the API server worked.
	Connected bool `json:"connected"`
	// Synced reports that the initial full resync finished.
	Synced bool `json:"synced"`
	// SyncDuration is how long the initial full resync took.
	SyncDuration string `json:"syncDuration,omitempty"`
	// LastEvent is when the last Kubernetes change was mirrored.
	LastEvent time.Time `json:"lastEvent,omitzero"`
	// Namespaces, Pods and Policies count the objects mirrored; Endpoints
	// counts the endpoints that carry their pod's labels.
	Namespaces int `json:"namespaces"`
	Pods       int `json:"pods"`
	Endpoints  int `json:"endpoints"`
	Policies   int `json:"policies"`
	// Errors are the objects the sync could not mirror or Skein cannot
	// enforce, as "kind ns/name: reason", sorted.
	Errors  []string  `json:"errors,omitempty"`
	Updated time.Time `json:"updated"`
}

// OwnedByKubernetes reports whether a stored policy value carries the
// owner annotation of skein-kube. An undecodable value is not owned.
func OwnedByKubernetes(raw []byte) bool {
	var v struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return false
	}
	return v.Metadata.Annotations[OwnerAnnotation] == OwnerKubernetes
}
