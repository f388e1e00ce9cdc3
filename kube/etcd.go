package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
)

// errForeign reports a record at a key skein-kube would write that the CLI
// (or another tool) owns: the sync leaves it alone.
var errForeign = errors.New("a record not owned by Kubernetes exists at this key; delete it with `skein policy delete` to let Kubernetes own it")

// errConflict reports that a record changed between read and write; the
// key is retried.
var errConflict = errors.New("record changed while it was updated")

// mirror writes Skein records through etcd, each write guarded by the
// revision it read, so that a concurrent writer (an agent, the CLI) never
// loses an update.
type mirror struct {
	cli    *clientv3.Client
	prefix string
}

func (m *mirror) get(ctx context.Context, key string) (value []byte, rev int64, err error) {
	resp, err := m.cli.Get(ctx, m.prefix+key)
	if err != nil {
		return nil, 0, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	return resp.Kvs[0].Value, resp.Kvs[0].ModRevision, nil
}

// put writes value at key if the key is still at rev (0: absent).
func (m *mirror) put(ctx context.Context, key string, rev int64, value []byte) error {
	k := m.prefix + key
	resp, err := m.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).Then(clientv3.OpPut(k, string(value))).Commit()
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("put %s: %w", key, errConflict)
	}
	return nil
}

// del removes key if it is still at rev.
func (m *mirror) del(ctx context.Context, key string, rev int64) error {
	k := m.prefix + key
	resp, err := m.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).Then(clientv3.OpDelete(k)).Commit()
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("delete %s: %w", key, errConflict)
	}
	return nil
}

// setNamespace stores want unless the stored record is already equal.
// Every namespace Kubernetes has belongs to Kubernetes: a record the agents
// created for a pod's namespace, or one the CLI labelled, is adopted.
func (m *mirror) setNamespace(ctx context.Context, want api.Namespace) (changed bool, err error) {
	key := "namespaces/" + want.Name
	raw, rev, err := m.get(ctx, key)
	if err != nil {
		return false, err
	}
	if raw != nil {
		var have api.Namespace
		if api.UnmarshalJSON(raw, &have) == nil && have.Owner == want.Owner && maps.Equal(have.Labels, want.Labels) {
			return false, nil
		}
	}
	b, err := json.Marshal(want)
	if err != nil {
		return false, fmt.Errorf("encode namespace %s: %w", want.Name, err)
	}
	return true, m.put(ctx, key, rev, b)
}

// dropNamespace removes a namespace record Kubernetes owned.
func (m *mirror) dropNamespace(ctx context.Context, name string) (changed bool, err error) {
	key := "namespaces/" + name
	raw, rev, err := m.get(ctx, key)
	if err != nil || raw == nil {
		return false, err
	}
	var have api.Namespace
	if api.UnmarshalJSON(raw, &have) != nil || have.Owner != api.OwnerKubernetes {
		return false, nil
	}
	return true, m.del(ctx, key, rev)
}

// setPolicy stores d unless an equal value is there; errForeign when the
// key holds a policy Kubernetes does not own.
func (m *mirror) setPolicy(ctx context.Context, d policyDoc) (changed bool, err error) {
	key := api.PolicyKey(d.Kind, d.Namespace, d.Name)
	raw, rev, err := m.get(ctx, key)
	if err != nil {
		return false, err
	}
	if raw != nil {
		if !api.OwnedByKubernetes(raw) {
			return false, errForeign
		}
		if string(raw) == string(d.Raw) {
			return false, nil
		}
	}
	return true, m.put(ctx, key, rev, d.Raw)
}

// dropPolicy removes a policy Kubernetes owned.
func (m *mirror) dropPolicy(ctx context.Context, kind, namespace, name string) (changed bool, err error) {
	key := api.PolicyKey(kind, namespace, name)
	raw, rev, err := m.get(ctx, key)
	if err != nil || raw == nil || !api.OwnedByKubernetes(raw) {
		return false, err
	}
	return true, m.del(ctx, key, rev)
}

// setNodeLabels sets the Kubernetes labels of a node on its Skein record
// (labels the record has besides them stay: skeind --labels, skein node
// label). A node without a record yet is skipped: its agent registers it.
func (m *mirror) setNodeLabels(ctx context.Context, name string, labels map[string]string) (changed bool, err error) {
	key := "nodes/" + name
	raw, rev, err := m.get(ctx, key)
	if err != nil || raw == nil {
		return false, err
	}
	var n map[string]any // keep every field of the record as it is
	if err := api.UnmarshalJSON(raw, &n); err != nil {
		return false, fmt.Errorf("decode %s: %w", key, err)
	}
	have, _ := n["labels"].(map[string]any)
	merged := map[string]any{}
	maps.Copy(merged, have)
	// Labels Kubernetes set before and no longer has go; the node's own
	// (skeind --labels) stay: kubeLabels names the keys that came from here.
	var prev []string
	if l, ok := n["kubeLabels"].([]any); ok {
		for _, k := range l {
			if s, ok := k.(string); ok {
				prev = append(prev, s)
			}
		}
	}
	for _, k := range prev {
		if _, still := labels[k]; !still {
			delete(merged, k)
		}
	}
	for k, v := range labels {
		merged[k] = v
	}
	keys := slices.Sorted(maps.Keys(labels))
	if len(merged) == len(have) && allEqual(have, labels) && slices.Equal(keys, slices.Sorted(slices.Values(prev))) {
		return false, nil
	}
	n["labels"] = merged
	if len(keys) > 0 {
		n["kubeLabels"] = keys
	} else {
		delete(n, "kubeLabels")
	}
	b, err := json.Marshal(n)
	if err != nil {
		return false, fmt.Errorf("encode %s: %w", key, err)
	}
	return true, m.put(ctx, key, rev, b)
}

func allEqual(have map[string]any, want map[string]string) bool {
	for k, v := range want {
		if s, ok := have[k].(string); !ok || s != v {
			return false
		}
	}
	return true
}

// setKubePod stores pod namespace/name's mirror record unless it is equal.
func (m *mirror) setKubePod(ctx context.Context, namespace, name string, want api.KubePod) (changed bool, err error) {
	key := api.KubePodsKey + namespace + "/" + name
	raw, rev, err := m.get(ctx, key)
	if err != nil {
		return false, err
	}
	b, err := json.Marshal(want)
	if err != nil {
		return false, fmt.Errorf("encode pod %s/%s: %w", namespace, name, err)
	}
	if raw != nil && bytes.Equal(raw, b) {
		return false, nil
	}
	return true, m.put(ctx, key, rev, b)
}

// dropKubePod removes pod namespace/name's mirror record, if any.
func (m *mirror) dropKubePod(ctx context.Context, namespace, name string) (changed bool, err error) {
	key := api.KubePodsKey + namespace + "/" + name
	raw, rev, err := m.get(ctx, key)
	if err != nil || raw == nil {
		return false, err
	}
	return true, m.del(ctx, key, rev)
}

// ownedKeys lists the namespace, policy and pod records Kubernetes owns, as
// queue keys, for the resync that removes what vanished while no replica
// ran.
func (m *mirror) ownedKeys(ctx context.Context) ([]objKey, error) {
	var out []objKey
	resp, err := m.cli.Get(ctx, m.prefix+"namespaces/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	for _, kv := range resp.Kvs {
		var ns api.Namespace
		if api.UnmarshalJSON(kv.Value, &ns) == nil && ns.Owner == api.OwnerKubernetes {
			out = append(out, objKey{kind: kindNamespace, name: ns.Name})
		}
	}
	resp, err = m.cli.Get(ctx, m.prefix+api.PolicyKeyKind+"/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	for _, kv := range resp.Kvs {
		kind, ns, name, ok := api.ParsePolicyKey(strings.TrimPrefix(string(kv.Key), m.prefix))
		if ok && api.OwnedByKubernetes(kv.Value) {
			out = append(out, objKey{kind: kind, ns: ns, name: name})
		}
	}
	resp, err = m.cli.Get(ctx, m.prefix+api.KubePodsKey, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("list mirrored pods: %w", err)
	}
	for _, kv := range resp.Kvs {
		ns, name, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), m.prefix+api.KubePodsKey), "/")
		if ok {
			out = append(out, objKey{kind: kindPod, ns: ns, name: name})
		}
	}
	slices.SortFunc(out, compareKeys)
	return out, nil
}
