package kube

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/skeinnet/skein/api"
)

// policyDoc is a Kubernetes policy object reduced to what Skein stores.
type policyDoc struct {
	Kind, Namespace, Name string
	// Raw is the value to store at the policy's key.
	Raw []byte
	// Err says why Skein cannot enforce the object (nil when it can). Raw
	// is then a value every agent refuses, so the selected pods are
	// isolated.
	Err error
}

// newPolicyDoc builds the stored form of a Kubernetes policy: apiVersion,
// kind, name, namespace, labels, the owner annotation and the spec as the
// API server returned it. It is decoded the way `skein policy apply`
// decodes files (strict: a field Skein does not know is an error).
func newPolicyDoc(apiVersion, kind, namespace, name string, labels map[string]string, spec any) policyDoc {
	d := policyDoc{Kind: kind, Namespace: namespace, Name: name}
	rawSpec, err := json.Marshal(spec)
	if err != nil {
		d.Err = fmt.Errorf("encode spec: %w", err)
		return d
	}
	meta := map[string]any{"name": name, "annotations": map[string]string{api.OwnerAnnotation: api.OwnerKubernetes}}
	if namespace != "" {
		meta["namespace"] = namespace
	}
	if len(labels) > 0 {
		meta["labels"] = labels
	}
	doc := map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": meta, "spec": json.RawMessage(rawSpec)}
	if d.Raw, err = json.Marshal(doc); err != nil {
		d.Err = fmt.Errorf("encode %s: %w", kind, err)
		return d
	}
	if _, err := api.DecodeDocuments(kind+" "+objectName(namespace, name), d.Raw); err != nil {
		d.Err = err
		d.Raw = poisoned(doc, err)
	}
	return d
}

// poisoned returns doc in a form api.DecodePolicy refuses (so agents
// quarantine what it selects) while its podSelector or subject stays
// readable (api.ReadPolicyTarget): the reason replaces the apiVersion. An
// agent would otherwise drop the fields it does not know and enforce the
// rest, which is not what the object says.
func poisoned(doc map[string]any, reason error) []byte {
	doc["apiVersion"] = "skein.dev/unenforceable"
	meta, _ := doc["metadata"].(map[string]any) // set by newPolicyDoc
	meta["annotations"] = map[string]string{
		api.OwnerAnnotation:       api.OwnerKubernetes,
		"skein.dev/unenforceable": firstLine(reason.Error()),
	}
	b, err := json.Marshal(doc)
	if err != nil {
		// Every value in doc was marshalled once already.
		panic(fmt.Sprintf("kube: re-encode policy: %v", err))
	}
	return b
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func objectName(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// namespaceRecord is the Skein record of a Kubernetes namespace. The name
// label is implied in Skein, so it is not stored.
func namespaceRecord(ns *corev1.Namespace) api.Namespace {
	labels := maps.Clone(ns.Labels)
	delete(labels, api.NamespaceNameLabel)
	if len(labels) == 0 {
		labels = nil
	}
	return api.Namespace{Name: ns.Name, Labels: labels, Owner: api.OwnerKubernetes}
}

// podPorts returns the named container ports of a pod, sorted by name,
// protocol and port; unnamed ports cannot be referred to by name and are
// left out. Init containers count too (restartable sidecars serve).
func podPorts(spec *corev1.PodSpec) []api.NamedPort {
	var out []api.NamedPort
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range cs {
			for _, p := range c.Ports {
				if p.Name == "" {
					continue
				}
				out = append(out, api.NamedPort{Name: p.Name, Port: int(p.ContainerPort), Protocol: protocolOr(string(p.Protocol))})
			}
		}
	}
	slices.SortFunc(out, func(a, b api.NamedPort) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		if c := strings.Compare(a.Protocol, b.Protocol); c != 0 {
			return c
		}
		return a.Port - b.Port
	})
	return slices.Compact(out)
}

func protocolOr(p string) string {
	if p == "" {
		return api.ProtocolTCP
	}
	return p
}

// podLabels returns a pod's labels as an endpoint stores them (nil when none).
func podLabels(labels map[string]string) map[string]string {
	if len(labels) == 0 {
		return nil
	}
	return maps.Clone(labels)
}
