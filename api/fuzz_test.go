package api

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzDecodeDocuments: no input crashes the policy file decoder or takes
// it past its limits; an error names the file; a decoded object encodes to
// JSON that decodes (strictly) to the same object.
func FuzzDecodeDocuments(f *testing.F) {
	f.Add([]byte(goodYAML))
	f.Add([]byte("a: &a {b: *a}\n"))
	f.Add([]byte(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x","name":"y"}}`))
	f.Add([]byte(`[{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}}]}]`))
	f.Add([]byte("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: n, namespace: x}\nspec:\n  podSelector: &s {matchLabels: {a: b}}\n  ingress: [{from: [{podSelector: *s}], ports: [{port: serve-80, protocol: UDP}]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := DecodeDocuments("f.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.yaml: ") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		for _, o := range objs {
			j, err := json.Marshal(o)
			if err != nil {
				t.Fatalf("encode %s: %v", ObjectName(o), err)
			}
			back, err := decodeObject(j)
			if err != nil {
				t.Fatalf("decode %s again: %v\n%s", ObjectName(o), err, j)
			}
			j2, err := json.Marshal(back)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(j, j2) {
				t.Fatalf("round trip changed %s:\n%s\n%s", ObjectName(o), j, j2)
			}
		}
	})
}

// FuzzDecodePolicy: a stored policy value either decodes to an object that
// round-trips, or fails with an error naming its kind; either way the
// lenient read of its selector (what a quarantine isolates) never crashes,
// and for a valid policy it reads exactly the policy's own selector.
func FuzzDecodePolicy(f *testing.F) {
	f.Add(uint8(0), []byte(`{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"deny","namespace":"x"},"spec":{"podSelector":{"matchLabels":{"app":"db"}},"policyTypes":["Ingress"]}}`))
	f.Add(uint8(0), []byte(`{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"deny","namespace":"x"},"spec":{"podSelector":{},"podSelector":{"matchLabels":{"a":"b"}}}}`))
	f.Add(uint8(1), []byte(`{"apiVersion":"policy.networking.k8s.io/v1alpha1","kind":"AdminNetworkPolicy","metadata":{"name":"a"},"spec":{"priority":3,"subject":{"pods":{"namespaceSelector":{},"podSelector":{"matchExpressions":[{"key":"k","operator":"Exists"}]}}},"egress":[{"action":"Deny","to":[{"networks":["10.0.0.0/8"]}]}]}}`))
	f.Add(uint8(2), []byte(`{"apiVersion":"policy.networking.k8s.io/v1alpha1","kind":"BaselineAdminNetworkPolicy","metadata":{"name":"default"},"spec":{"subject":{"namespaces":{}},"ingress":[{"action":"Deny","from":[{"namespaces":{}}]}]}}`))
	kinds := []string{KindNetworkPolicy, KindAdminNetworkPolicy, KindBaselineAdminNetworkPolicy}
	f.Fuzz(func(t *testing.T, k uint8, raw []byte) {
		kind := kinds[int(k)%len(kinds)]
		target := ReadPolicyTarget(kind, "x", "p", raw)
		o, err := DecodePolicy(kind, raw)
		if err != nil {
			if !strings.Contains(err.Error(), kind) {
				t.Fatalf("error %q does not name the kind %s", err, kind)
			}
			return
		}
		j, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodePolicy(kind, j)
		if err != nil {
			t.Fatalf("decode again: %v\n%s", err, j)
		}
		if j2, _ := json.Marshal(back); !bytes.Equal(j, j2) {
			t.Fatalf("round trip changed the policy:\n%s\n%s", j, j2)
		}
		var want any
		switch p := o.(type) {
		case *NetworkPolicy:
			want, _ = json.Marshal(&p.Spec.PodSelector)
			got, _ := json.Marshal(target.PodSelector)
			// nil (unreadable) widens to the whole namespace: equal to {}.
			if target.PodSelector == nil && p.Spec.PodSelector.Empty() {
				got = want.([]byte)
			}
			if !bytes.Equal(want.([]byte), got) {
				t.Fatalf("quarantine of a valid policy reads selector %s, the policy selects %s", got, want)
			}
		case *AdminNetworkPolicy:
			want, _ = json.Marshal(&p.Spec.Subject)
		case *BaselineAdminNetworkPolicy:
			want, _ = json.Marshal(&p.Spec.Subject)
		}
		if target.Subject != nil || kind != KindNetworkPolicy {
			got, _ := json.Marshal(target.Subject)
			if !bytes.Equal(want.([]byte), got) {
				t.Fatalf("quarantine of a valid policy reads subject %s, the policy selects %s", got, want)
			}
		}
	})
}

// FuzzCheckDuplicateKeys: the duplicate-key check agrees with a decode
// into a generic value: input encoding/json accepts either has no
// duplicate key or loses a value by decoding, and an error names a line
// inside the input.
func FuzzCheckDuplicateKeys(f *testing.F) {
	f.Add([]byte(`{"a": 1, "b": {"a": 2}, "c": [{"a": 1}, {"a": 2}]}`))
	f.Add([]byte("{\n\"a\": 1,\n\"a\": 2}"))
	f.Add([]byte(`[{"": 1, "": 2}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		err := CheckDuplicateKeys(data, 0)
		if err == nil {
			return
		}
		de, ok := err.(*DuplicateKeyError)
		if !ok {
			t.Fatalf("error %v is %T, want *DuplicateKeyError", err, err)
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		if de.Line < 1 || de.Line > lines || de.FirstLine < 1 || de.FirstLine > de.Line || de.Path == "" {
			t.Fatalf("error %v: lines outside the input (%d lines) or no path", err, lines)
		}
	})
}
