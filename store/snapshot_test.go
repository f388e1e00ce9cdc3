package store

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/skeinnet/skein/api"
)

func TestStateApply(t *testing.T) {
	t.Parallel()
	const p = "/skein/"
	type kv struct {
		key   string
		value string // "" deletes
	}
	block := netip.MustParsePrefix("10.244.0.0/26")
	for _, tc := range []struct {
		name     string
		events   []kv
		want     Snapshot
		wantDiff []bool // per event: whether the snapshot changed
	}{
		{
			name: "typed kinds",
			events: []kv{
				{p + "cluster", `{"backend":"vxlan"}`},
				{p + "nodes/a", `{"name":"a"}`},
				{p + "blocks/10.244.0.0-26", `{"cidr":"10.244.0.0/26","node":"a"}`},
				{p + "endpoints/a/c1/eth0", `{"name":"pod","node":"a","containerID":"c1","ifName":"eth0"}`},
				{p + "namespaces/default", `{"name":"default"}`},
				{p + "alive/a", `{"node":"a"}`},
				{p + "policies/NetworkPolicy/default/deny", `{"x":1}`},
				{p + "status/a", `{"node":"a"}`},
				{"/other/nodes/b", `{"name":"b"}`},
			},
			want: Snapshot{
				Cluster:    &api.Cluster{Backend: api.BackendVXLAN},
				Nodes:      map[string]api.Node{"a": {Name: "a"}},
				Blocks:     map[netip.Prefix]api.Block{block: {CIDR: block, Node: "a"}},
				Endpoints:  map[string]api.Endpoint{"a/c1/eth0": {Name: "pod", Node: "a", ContainerID: "c1", IfName: "eth0"}},
				Namespaces: map[string]api.Namespace{"default": {Name: "default"}},
				Alive:      map[string]bool{"a": true},
				Other:      map[string][]byte{"policies/NetworkPolicy/default/deny": []byte(`{"x":1}`)},
			},
			wantDiff: []bool{true, true, true, true, true, true, true, false, false},
		},
		{
			name: "deletes",
			events: []kv{
				{p + "cluster", `{"backend":"vxlan"}`},
				{p + "nodes/a", `{"name":"a"}`},
				{p + "alive/a", `{}`},
				{p + "blocks/10.244.0.0-26", `{"node":"a"}`},
				{p + "cluster", ""},
				{p + "nodes/a", ""},
				{p + "alive/a", ""},
				{p + "blocks/10.244.0.0-26", ""},
			},
			want:     Snapshot{},
			wantDiff: []bool{true, true, true, true, true, true, true, true},
		},
		{
			name: "corrupt values are reported and replace the old value",
			events: []kv{
				{p + "nodes/a", `{"name":"a"}`},
				{p + "nodes/a", `{"name":`},
				{p + "nodes/b", `{"name":"b"}`},
				{p + "blocks/10.244.0.0-26", `{"cidr":"10.244.0.0/26"}`},
				{p + "blocks/not-a-cidr", `{"node":"a"}`},
				{p + "endpoints/a/c1", `{}`},
				{p + "cluster", `[]`},
			},
			want: Snapshot{
				Nodes: map[string]api.Node{"b": {Name: "b"}},
				// Errors are compared by key only: messages come from encoding/json and net/netip.
				Errors: []string{
					p + "blocks/10.244.0.0-26",
					p + "blocks/not-a-cidr",
					p + "cluster",
					p + "endpoints/a/c1",
					p + "nodes/a",
				},
			},
			wantDiff: []bool{true, true, true, true, true, true, true},
		},
		{
			name: "fixing a corrupt value clears its error",
			events: []kv{
				{p + "nodes/a", `nope`},
				{p + "nodes/a", `{"name":"a"}`},
				{p + "status/a", `nope`},
				{p + "status/a", ""},
			},
			want:     Snapshot{Nodes: map[string]api.Node{"a": {Name: "a"}}},
			wantDiff: []bool{true, true, false, false},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newState(p)
			var diffs []bool
			for _, ev := range tc.events {
				var v []byte
				if ev.value != "" {
					v = []byte(ev.value)
				}
				diffs = append(diffs, s.apply(ev.key, v))
			}
			got := s.snapshot()
			for i, e := range got.Errors {
				key, msg, ok := strings.Cut(e, ": ")
				if !ok || msg == "" {
					t.Errorf("error %q is not \"key: error\"", e)
				}
				got.Errors[i] = key
			}
			opts := []cmp.Option{cmpPrefix, cmpAddr, cmpopts.EquateEmpty()}
			if d := cmp.Diff(tc.want, got, opts...); d != "" {
				t.Errorf("snapshot mismatch (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.wantDiff, diffs); d != "" {
				t.Errorf("changed per event mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestSnapshotIsACopy(t *testing.T) {
	t.Parallel()
	s := newState("/skein/")
	s.apply("/skein/nodes/a", []byte(`{"name":"a"}`))
	s.apply("/skein/cluster", []byte(`{"backend":"vxlan"}`))
	snap := s.snapshot()
	s.apply("/skein/nodes/b", []byte(`{"name":"b"}`))
	s.apply("/skein/nodes/a", nil)
	s.apply("/skein/cluster", []byte(`{"backend":"bgp"}`))
	if d := cmp.Diff(map[string]api.Node{"a": {Name: "a"}}, snap.Nodes, cmpAddr); d != "" {
		t.Errorf("earlier snapshot changed (-want +got):\n%s", d)
	}
	if snap.Cluster.Backend != api.BackendVXLAN {
		t.Errorf("earlier snapshot's cluster changed to %q", snap.Cluster.Backend)
	}
}

// TestStateDuplicateKeys: a stored value with a key given twice is reported
// in Snapshot.Errors with the key's path, never decoded last-wins.
func TestStateDuplicateKeys(t *testing.T) {
	s := newState("/skein/")
	s.apply("/skein/nodes/a", []byte(`{"name":"a","underlayIP":"10.0.0.1","underlayIP":"10.0.0.9"}`))
	s.apply("/skein/blocks/10.244.0.0-26", []byte(`{"node":"a","node":"b"}`))
	snap := s.snapshot()
	if len(snap.Nodes) != 0 || len(snap.Blocks) != 0 {
		t.Errorf("values with duplicate keys decoded: nodes %v, blocks %v", snap.Nodes, snap.Blocks)
	}
	want := []string{
		"/skein/blocks/10.244.0.0-26: line 1: node: duplicate key (first at line 1)",
		"/skein/nodes/a: line 1: underlayIP: duplicate key (first at line 1)",
	}
	if d := cmp.Diff(want, snap.Errors); d != "" {
		t.Errorf("Snapshot.Errors mismatch (-want +got):\n%s", d)
	}
}
