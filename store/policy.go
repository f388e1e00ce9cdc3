package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skeinnet/skein/api"
)

// PutResult says what PutPolicy did.
type PutResult string

// The outcomes of PutPolicy, worded as kubectl does.
const (
	Created    PutResult = "created"
	Configured PutResult = "configured"
	Unchanged  PutResult = "unchanged"
)

// policyKey returns the full key of a policy after checking its segments.
func (c *Client) policyKey(kind, namespace, name string) (string, error) {
	if !api.IsPolicyKind(kind) {
		return "", fmt.Errorf("%q is not a policy kind (want NetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy or ClusterNetworkPolicy)", kind)
	}
	if api.ClusterScoped(kind) {
		if namespace != "" {
			return "", fmt.Errorf("%s is cluster-scoped: no namespace allowed, got %q", kind, namespace)
		}
	} else if err := segment("namespace", namespace); err != nil {
		return "", err
	}
	if err := segment("name", name); err != nil {
		return "", err
	}
	return c.prefix + api.PolicyKey(kind, namespace, name), nil
}

// PutPolicy creates or replaces a policy (NetworkPolicy, AdminNetworkPolicy,
// BaselineAdminNetworkPolicy or ClusterNetworkPolicy) at
// policies/<kind>/<namespace or _>/<name>.
// It does not validate o beyond its key (callers decode with
// api.DecodeDocuments, which does), and writes nothing when the stored value
// is already identical, so watchers see no change.
func (c *Client) PutPolicy(ctx context.Context, o api.Object) (PutResult, error) {
	key, err := c.policyKey(o.GetKind(), o.GetNamespace(), o.GetName())
	if err != nil {
		return "", fmt.Errorf("put policy: %w", err)
	}
	b, err := json.Marshal(o)
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", key, err)
	}
	old, wrote, err := c.replaceKey(ctx, key, func(old []byte) ([]byte, bool, error) {
		return b, !bytes.Equal(old, b), nil
	})
	switch {
	case err != nil:
		return "", fmt.Errorf("put %s: %w", key, err)
	case !wrote:
		return Unchanged, nil
	case old != nil:
		return Configured, nil
	}
	return Created, nil
}

// GetPolicy returns one policy, decoded and validated by api.DecodePolicy;
// ErrNotFound when absent. namespace is "" for cluster-scoped kinds.
func (c *Client) GetPolicy(ctx context.Context, kind, namespace, name string) (api.Object, error) {
	key, err := c.policyKey(kind, namespace, name)
	if err != nil {
		return nil, fmt.Errorf("get policy: %w", err)
	}
	resp, err := c.cli.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	o, err := api.DecodePolicy(kind, resp.Kvs[0].Value)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", key, err)
	}
	return o, nil
}

// ListPolicies returns the policies of kind, or of every policy kind when
// kind is "", sorted by kind, namespace and name. A stored value that does
// not decode is an error naming its key.
func (c *Client) ListPolicies(ctx context.Context, kind string) ([]api.Object, error) {
	p := c.prefix + api.PolicyKeyKind + "/"
	if kind != "" {
		if !api.IsPolicyKind(kind) {
			return nil, fmt.Errorf("list policies: %q is not a policy kind", kind)
		}
		p += kind + "/"
	}
	resp, err := c.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", p, err)
	}
	out := make([]api.Object, 0, len(resp.Kvs))
	var errs []error
	for _, kv := range resp.Kvs {
		k, _, _, ok := api.ParsePolicyKey(strings.TrimPrefix(string(kv.Key), c.prefix))
		if !ok {
			errs = append(errs, fmt.Errorf("%s: not a policy key", kv.Key))
			continue
		}
		o, err := api.DecodePolicy(k, kv.Value)
		if err != nil {
			errs = append(errs, fmt.Errorf("decode %s: %w", kv.Key, err))
			continue
		}
		out = append(out, o)
	}
	return out, errors.Join(errs...)
}

// RawPolicies returns the stored values under policies/, by key without
// the prefix (as in Snapshot.Other), undecoded: callers that must not drop
// an undecodable policy (trace, matrix) handle each value themselves.
func (c *Client) RawPolicies(ctx context.Context) (map[string][]byte, error) {
	p := c.prefix + api.PolicyKeyKind + "/"
	resp, err := c.cli.Get(ctx, p, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", p, err)
	}
	out := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), c.prefix)] = kv.Value
	}
	return out, nil
}

// DeletePolicy removes a policy; ErrNotFound when it does not exist.
func (c *Client) DeletePolicy(ctx context.Context, kind, namespace, name string) error {
	key, err := c.policyKey(kind, namespace, name)
	if err != nil {
		return fmt.Errorf("delete policy: %w", err)
	}
	return c.deleteKey(ctx, key)
}

// deleteKey deletes key with its audit record; ErrNotFound when absent.
func (c *Client) deleteKey(ctx context.Context, key string) error {
	_, _, err := c.replaceKey(ctx, key, func(old []byte) ([]byte, bool, error) {
		if old == nil {
			return nil, false, ErrNotFound
		}
		return nil, true, nil
	})
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// ErrImpliedLabel is returned when a label change touches
// api.NamespaceNameLabel, which every namespace carries implicitly.
var ErrImpliedLabel = errors.New("label " + api.NamespaceNameLabel + " is implied and cannot be changed")

// applyLabels returns labels with set applied and remove deleted, and
// whether anything changed. It never modifies labels.
func applyLabels(labels, set map[string]string, remove []string) (map[string]string, bool) {
	out := maps.Clone(labels)
	if out == nil {
		out = map[string]string{}
	}
	for k, v := range set {
		out[k] = v
	}
	for _, k := range remove {
		delete(out, k)
	}
	if len(out) == 0 {
		out = nil
	}
	return out, !maps.Equal(labels, out)
}

// checkLabelChange validates a label update before any write.
func checkLabelChange(set map[string]string, remove []string) error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(set)) {
		if k == api.NamespaceNameLabel {
			errs = append(errs, ErrImpliedLabel)
			continue
		}
		if err := api.ValidateLabelKey(k); err != nil {
			errs = append(errs, err)
		}
		if err := api.ValidateLabelValue(set[k]); err != nil {
			errs = append(errs, fmt.Errorf("label %s: %w", k, err))
		}
	}
	for _, k := range remove {
		if k == api.NamespaceNameLabel {
			errs = append(errs, ErrImpliedLabel)
			continue
		}
		if _, both := set[k]; both {
			errs = append(errs, fmt.Errorf("label %s is both set and removed", k))
		}
	}
	return errors.Join(errs...)
}

// labelCASAttempts bounds the compare-and-swap retries of label updates.
// Each failed attempt means another writer succeeded; the jittered pause
// between attempts keeps one tight writer from starving another.
const labelCASAttempts = 100

// casUpdate applies update to the JSON value at key and writes the result
// if the key is unchanged since it was read (ModRevision compare), retrying
// on conflict. update gets the current value (zero and exists=false when
// the key is absent) and reports whether to write. casUpdate returns the
// value as stored.
func casUpdate[T any](ctx context.Context, c *Client, key string, update func(v *T, exists bool) (write bool, err error)) (T, error) {
	var zero T
	resp, err := c.cli.Get(ctx, key)
	if err != nil {
		return zero, fmt.Errorf("get %s: %w", key, err)
	}
	kvs := resp.Kvs
	for attempt := range labelCASAttempts {
		var v T
		var rev int64 // ModRevision 0 compares equal for an absent key
		if len(kvs) > 0 {
			if err := api.UnmarshalJSON(kvs[0].Value, &v); err != nil {
				return zero, fmt.Errorf("decode %s: %w", key, err)
			}
			rev = kvs[0].ModRevision
		}
		write, err := update(&v, len(kvs) > 0)
		if err != nil || !write {
			return v, err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return zero, fmt.Errorf("encode %s: %w", key, err)
		}
		var before []byte
		if len(kvs) > 0 {
			before = kvs[0].Value
		}
		rec, err := c.auditOps(key, before, b)
		if err != nil {
			return zero, err
		}
		tresp, err := c.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(append([]clientv3.Op{clientv3.OpPut(key, string(b))}, rec...)...).
			Else(clientv3.OpGet(key)).
			Commit()
		if err != nil {
			return zero, fmt.Errorf("put %s: %w", key, c.writeErr(ctx, key, err))
		}
		if tresp.Succeeded {
			return v, nil
		}
		kvs = tresp.Responses[0].GetResponseRange().Kvs
		if !sleep(ctx, time.Duration(rand.Int64N(int64(attempt+1)*int64(time.Millisecond)))) {
			return zero, fmt.Errorf("put %s: %w", key, ctx.Err())
		}
	}
	return zero, fmt.Errorf("update %s: value kept changing, gave up after %d attempts", key, labelCASAttempts)
}

// LabelNamespace sets and removes labels of a namespace without losing
// concurrent updates (compare-and-swap on the key's revision, retried). A
// namespace that does not exist yet is created, so that labels can be given
// before its first pod. It returns the namespace as stored.
func (c *Client) LabelNamespace(ctx context.Context, name string, set map[string]string, remove []string) (api.Namespace, error) {
	if err := segment("namespace", name); err != nil {
		return api.Namespace{}, fmt.Errorf("label namespace: %w", err)
	}
	if err := checkLabelChange(set, remove); err != nil {
		return api.Namespace{}, fmt.Errorf("label namespace %s: %w", name, err)
	}
	return casUpdate(ctx, c, c.key(kindNamespaces, name), func(ns *api.Namespace, exists bool) (bool, error) {
		ns.Name = name
		labels, changed := applyLabels(ns.Labels, set, remove)
		ns.Labels = labels
		return changed || !exists, nil
	})
}

// LabelEndpoint sets and removes labels of every endpoint (interface) of
// the pod namespace/name, each without losing concurrent updates. It
// returns the endpoints as stored; ErrNotFound when the pod has none.
func (c *Client) LabelEndpoint(ctx context.Context, namespace, name string, set map[string]string, remove []string) ([]api.Endpoint, error) {
	if err := checkLabelChange(set, remove); err != nil {
		return nil, fmt.Errorf("label endpoint %s/%s: %w", namespace, name, err)
	}
	p := c.key(kindEndpoints) + "/"
	resp, err := c.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", p, err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		var ep api.Endpoint
		if err := api.UnmarshalJSON(kv.Value, &ep); err != nil {
			continue // ListEndpoints reports undecodable values
		}
		if ep.Namespace == namespace && ep.Name == name {
			keys = append(keys, string(kv.Key))
		}
	}
	out := make([]api.Endpoint, 0, len(keys))
	for _, key := range keys {
		ep, err := casUpdate(ctx, c, key, func(ep *api.Endpoint, exists bool) (bool, error) {
			if !exists || ep.Namespace != namespace || ep.Name != name {
				// The container went away, or its id now names another pod.
				return false, errGone
			}
			labels, changed := applyLabels(ep.Labels, set, remove)
			ep.Labels = labels
			return changed, nil
		})
		if errors.Is(err, errGone) {
			continue
		}
		if err != nil {
			return out, err
		}
		out = append(out, ep)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("label endpoint %s/%s: %w", namespace, name, ErrNotFound)
	}
	return out, nil
}

// errGone tells LabelEndpoint that an endpoint vanished while it worked.
var errGone = errors.New("endpoint gone")
