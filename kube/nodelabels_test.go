package kube

import (
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/skeinnet/skein/api"
)

// TestNodeLabelsFollowKubernetes: labels skein-kube set come and go with the
// Kubernetes Node; the node's own labels (skeind --labels) stay.
func TestNodeLabelsFollowKubernetes(t *testing.T) {
	ctx := t.Context()
	e := newSyncEnv(t, ctx)
	m := &mirror{cli: e.st.Etcd(), prefix: e.st.Prefix()}
	if err := e.st.PutNode(ctx, api.Node{Name: "n1", UnderlayIP: netip.MustParseAddr("192.0.2.1"), Labels: map[string]string{"rack": "r1"}}); err != nil {
		t.Fatal(err)
	}
	check := func(step string, want map[string]string, wantKube []string) {
		t.Helper()
		n, _, err := e.st.GetNodeRecord(ctx, "n1")
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(n.Labels, want) || !slices.Equal(n.KubeLabels, wantKube) {
			t.Errorf("%s: labels %v kubeLabels %v, want %v and %v", step, n.Labels, n.KubeLabels, want, wantKube)
		}
	}
	if _, err := m.setNodeLabels(ctx, "n1", map[string]string{"zone": "a", "kubernetes.io/os": "linux"}); err != nil {
		t.Fatal(err)
	}
	check("labelled", map[string]string{"rack": "r1", "zone": "a", "kubernetes.io/os": "linux"}, []string{"kubernetes.io/os", "zone"})
	if _, err := m.setNodeLabels(ctx, "n1", map[string]string{"zone": "b"}); err != nil {
		t.Fatal(err)
	}
	check("one removed, one changed", map[string]string{"rack": "r1", "zone": "b"}, []string{"zone"})
	changed, err := m.setNodeLabels(ctx, "n1", map[string]string{"zone": "b"})
	if err != nil || changed {
		t.Errorf("same labels again: changed %v err %v, want no write", changed, err)
	}
	if _, err := m.setNodeLabels(ctx, "n1", nil); err != nil {
		t.Fatal(err)
	}
	check("all removed", map[string]string{"rack": "r1"}, nil)
}
