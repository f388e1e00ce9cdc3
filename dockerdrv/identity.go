package dockerdrv

import (
	"maps"
	"sort"
	"strings"

	"github.com/skeinnet/skein/api"
)

// NamespaceLabel on a container (or, for all its containers, on a network)
// names the Skein namespace of the container's endpoint.
const NamespaceLabel = "skein.dev/namespace"

// ContainerLabel is set on a Docker container's endpoint to its short id,
// so an endpoint can be told back to `docker ps`.
const ContainerLabel = "skein.dev/docker-container"

// defaultNamespace is the namespace of a container no label places.
const defaultNamespace = "default"

// shortIDLen is the length of Docker's short ids.
const shortIDLen = 12

// containerInfo is what the engine API tells about the container behind an
// endpoint and its network.
type containerInfo struct {
	ID            string
	Name          string
	Labels        map[string]string
	NetworkLabels map[string]string
}

// podOf returns the endpoint identity of a Docker attachment: the
// container's name, its labels over its network's, and the namespace from
// NamespaceLabel (the container's wins), default "default". Labels that are
// not valid Kubernetes labels cannot be selected by a policy and are left
// out, named in skipped. Without a container yet (c.ID empty), the name is
// the endpoint's short id.
func podOf(endpointID string, c containerInfo) (pod api.PodInfo, skipped []string) {
	labels := map[string]string{}
	maps.Copy(labels, c.NetworkLabels)
	maps.Copy(labels, c.Labels)
	pod.Namespace = defaultNamespace
	if ns, ok := labels[NamespaceLabel]; ok {
		if api.ValidatePodNamespace(ns) == nil {
			pod.Namespace = ns
		} else {
			skipped = append(skipped, NamespaceLabel)
		}
		delete(labels, NamespaceLabel)
	}
	pod.Name = "ep-" + short(endpointID)
	if name := strings.TrimPrefix(c.Name, "/"); name != "" && api.ValidatePodName(name) == nil {
		pod.Name = name
	}
	for k, v := range labels {
		if api.ValidateLabelKey(k) != nil || api.ValidateLabelValue(v) != nil {
			skipped = append(skipped, k)
			delete(labels, k)
		}
	}
	if c.ID != "" {
		labels[ContainerLabel] = short(c.ID)
	}
	if len(labels) > 0 {
		pod.Labels = labels
	}
	sort.Strings(skipped)
	return pod, skipped
}

// samePod reports whether two identities would make the same endpoint record.
func samePod(a, b api.PodInfo) bool {
	return a.Namespace == b.Namespace && a.Name == b.Name && maps.Equal(a.Labels, b.Labels)
}

func short(id string) string {
	if len(id) > shortIDLen {
		return id[:shortIDLen]
	}
	return id
}

// networkLabels returns the labels and driver options given to `docker
// network create` as libnetwork hands them to CreateNetwork: the map under
// "com.docker.network.generic" (driver options, -o) and, where the engine
// passes them, the labels.
func networkLabels(opts map[string]any) map[string]string {
	out := map[string]string{}
	for _, key := range []string{"com.docker.network.generic", "com.docker.network.labels"} {
		m, ok := opts[key].(map[string]any)
		if !ok {
			continue
		}
		for k, v := range m {
			if s, ok := v.(string); ok {
				out[k] = s
			}
		}
	}
	return out
}
