//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	npv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	npclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
	"sigs.k8s.io/yaml"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
	"github.com/skeinnet/skein/lab/kubeapi"
	"github.com/skeinnet/skein/store"
)

// TestKube runs Skein under a real kube-apiserver (built by `make tools`
// from k8s.io/kubernetes in tools/kube): the API server runs in a lab host
// against the lab's etcd under its own prefix; namespaces, nodes, pods and
// NetworkPolicies are created through the API, pods are bound to lab hosts
// and wired by calling skein-cni as the kubelet would (K8S_* args only, no
// labels); two skein-kube replicas mirror the API into Skein's etcd. Every
// probe on the datapath is compared with `skein policy matrix` and the
// spec's truth table.

var kubeLabName = labName + "k"

const (
	kubeAdminToken = "skein-e2e-admin-token"
	kubeSyncToken  = "skein-e2e-kube-token"
	// kubeWait bounds how long a change made through the API may take to
	// reach etcd (skein-kube), or the API server to start.
	kubeWait = 90 * time.Second
	// kubeLeaseTTL is the replicas' election lease in the test: a killed
	// leader's standby takes over within it.
	kubeLeaseTTL = "3s"
)

// kubeEnv is the API server, clients to it, and the skein-kube replicas.
type kubeEnv struct {
	// top is TestKube's t: processes started in subtests outlive them.
	top     *testing.T
	s       *polSuite
	dir     string
	apiHost lab.Host
	srv     *kubeapi.Server
	url     string
	cs      kubernetes.Interface
	np      npclient.Interface
	dyn     dynamic.Interface
	mapper  *restmapper.DeferredDiscoveryRESTMapper
	st      *store.Client
	bin     string

	mu    sync.Mutex
	syncs map[string]*exec.Cmd // host → skein-kube
}

func TestKube(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("kube e2e: needs root to create network namespaces")
	}
	bin := os.Getenv("SKEIN_BIN")
	if bin == "" {
		wd, _ := os.Getwd()
		bin = filepath.Join(wd, "..", "bin")
	}
	apiserver := filepath.Join(bin, "kube-apiserver")
	if _, err := os.Stat(apiserver); err != nil {
		t.Fatalf("kube-apiserver: %v (build it with `make tools`)", err)
	}
	for _, b := range []string{"skein-kube", "skein"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Fatalf("%s: %v (build it with `make build`)", b, err)
		}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	k := kubeSetup(ctx, t, bin, apiserver)
	s := k.s
	t.Logf("kube lab up in %s", time.Since(start).Round(time.Millisecond))

	t.Run("ManifestsDryRun", func(t *testing.T) { k.testManifests(ctx, t) })
	t.Run("NoPolicy", func(t *testing.T) {
		s.check(ctx, t, "no policy", all4, func(_, _ *polPod, _ polPort) bool { return true })
	})
	n := 0
	for _, c := range polCases(ctx, s) {
		nps, ok := kubeNetworkPolicies(t, c.policies)
		if !ok {
			continue // AdminNetworkPolicy cases: their CRDs are not in network-policy-api v0.3.0
		}
		n++
		t.Run("NP"+c.name, func(t *testing.T) {
			defer k.deleteNetworkPolicies(ctx, t)
			k.createNetworkPolicies(ctx, t, nps)
			s.check(ctx, t, c.name, c.probes, c.want)
			for _, tr := range c.traces {
				s.expectTrace(ctx, t, tr)
			}
		})
	}
	if n < 8 {
		t.Errorf("only %d NetworkPolicy cases found in polCases; want at least 8", n)
	}
	t.Run("ClusterNetworkPolicyAdminDeny", func(t *testing.T) { k.testCNP(ctx, t) })
	t.Run("UnenforceableFailsClosedWithEvent", func(t *testing.T) { k.testUnenforceable(ctx, t) })
	t.Run("CLIRefusesKubernetesOwned", func(t *testing.T) { k.testCLIRefuses(ctx, t) })
	t.Run("RelabelPodViaAPI", func(t *testing.T) { k.testRelabelPod(ctx, t) })
	t.Run("RelabelNamespaceViaAPI", func(t *testing.T) { k.testRelabelNamespace(ctx, t) })
	t.Run("Status", func(t *testing.T) { k.testStatus(ctx, t) })
	t.Run("StandbyTakesOver", func(t *testing.T) { k.testFailover(ctx, t) })
	t.Run("ResyncRemovesWhatVanished", func(t *testing.T) { k.testResync(ctx, t) })
	t.Logf("kube suite took %s", time.Since(start).Round(time.Millisecond))
}

// kubeSetup brings up the lab, the API server, the model's objects in the
// API, two skein-kube replicas and the nine pods' containers.
func kubeSetup(ctx context.Context, t *testing.T, bin, apiserver string) *kubeEnv {
	t.Helper()
	_ = lab.Down(ctx, kubeLabName, "") // best effort: a crashed earlier run may have left it
	l, err := lab.Up(ctx, lab.Config{
		Name:              kubeLabName,
		Hosts:             3,
		ContainersPerHost: -1,
		BinDir:            bin,
		Log:               slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("kube lab up: %v", err)
	}
	t.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := l.Down(dctx); err != nil {
			t.Errorf("kube lab down: %v", err)
		}
	})
	s := &polSuite{l: l, bin: filepath.Join(bin, "skein"), podCIDR: l.State().PodCIDR, byKey: map[string]*polPod{}}
	s.nextPort.Store(uint32(time.Now().UnixNano() % 40000))
	st, err := store.New(ctx, l.StoreConfig())
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() }) // best effort at the end
	k := &kubeEnv{top: t, s: s, dir: t.TempDir(), apiHost: l.Hosts()[0], st: st, bin: bin, syncs: map[string]*exec.Cmd{}}
	k.startAPIServer(ctx, t, apiserver)
	k.applyRBAC(ctx, t)
	k.installCRDs(ctx, t)

	hosts := l.Hosts()
	for _, h := range hosts {
		k.mustCreate(ctx, t, "node "+h.Name, func() error {
			_, err := k.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: h.Name, Labels: map[string]string{"skein.dev/e2e": "kube"}}}, metav1.CreateOptions{})
			return err
		})
	}
	for _, ns := range []string{"x", "y", "z"} {
		k.mustCreate(ctx, t, "namespace "+ns, func() error {
			_, err := k.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"ns": ns}}}, metav1.CreateOptions{})
			return err
		})
	}
	i := 0
	for _, ns := range []string{"x", "y", "z"} {
		for _, name := range []string{"a", "b", "c"} {
			p := &polPod{ns: ns, name: name, c: lab.Container{Host: hosts[(i/3+i%3)%3].Name}}
			s.pods = append(s.pods, p)
			s.byKey[p.key()] = p
			i++
			var ports []corev1.ContainerPort
			for _, np := range polNamedPorts() {
				ports = append(ports, corev1.ContainerPort{Name: np.Name, ContainerPort: int32(np.Port), Protocol: corev1.Protocol(np.Protocol)})
			}
			k.mustCreate(ctx, t, "pod "+p.key(), func() error {
				_, err := k.cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"pod": name}},
					Spec: corev1.PodSpec{NodeName: p.c.Host, Containers: []corev1.Container{{
						Name: "serve", Image: "registry.invalid/none:0", Ports: ports,
					}}},
				}, metav1.CreateOptions{})
				return err
			})
		}
	}
	// Two replicas on two hosts; one leads.
	k.startSync(ctx, t, hosts[1].Name)
	k.startSync(ctx, t, hosts[2].Name)

	// The kubelet's part: CNI ADD with K8S_POD_NAMESPACE/K8S_POD_NAME only.
	var wg sync.WaitGroup
	errs := make([]error, len(s.pods))
	for i, p := range s.pods {
		wg.Go(func() {
			c, err := l.AddContainer(ctx, p.c.Host, lab.ContainerOpts{Name: p.name, Namespace: p.ns})
			p.c, errs[i] = c, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("add pods: %v", err)
	}
	for _, p := range s.pods {
		srv, err := polServe(ctx, l, p.c)
		if err != nil {
			t.Fatalf("servers in %s: %v", p.key(), err)
		}
		t.Cleanup(srv.close)
		p.srv = srv
	}
	// Labels and named ports come from the API only.
	want := map[string]map[string]string{}
	for _, p := range s.pods {
		want[p.key()] = map[string]string{"pod": p.name}
	}
	k.waitEndpointLabels(ctx, t, want, true)
	for _, ns := range []string{"x", "y", "z"} {
		k.waitNamespaceLabels(ctx, t, ns, map[string]string{"ns": ns})
	}
	return k
}

// --- the API server ---

func (k *kubeEnv) startAPIServer(ctx context.Context, t *testing.T, apiserver string) {
	t.Helper()
	// skein-kube authenticates as its ServiceAccount, so the manifests'
	// RBAC is what authorizes it.
	srv, err := kubeapi.Prepare(k.s.l, k.apiHost, k.dir, []kubeapi.Token{
		{Token: kubeAdminToken, User: "admin", UID: "admin-uid", Groups: []string{"system:masters"}},
		{Token: kubeSyncToken, User: "system:serviceaccount:kube-system:skein-kube", UID: "skein-kube-uid", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	k.srv, k.url = srv, srv.URL
	k.startIn(ctx, t, k.apiHost.Name, "kube-apiserver", apiserver, srv.Args...)

	rc := srv.RestConfig(kubeAdminToken, 100, 200)
	if k.cs, err = kubernetes.NewForConfig(rc); err != nil {
		t.Fatal(err)
	}
	if k.dyn, err = dynamic.NewForConfig(rc); err != nil {
		t.Fatal(err)
	}
	if k.np, err = npclient.NewForConfig(rc); err != nil {
		t.Fatal(err)
	}
	if err := kubeapi.WaitReady(ctx, k.cs, kubeWait); err != nil {
		t.Fatalf("%v\n%s", err, kubeTail(filepath.Join(k.dir, "kube-apiserver.log"), 30))
	}
	k.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(k.cs.Discovery()))
}

// startIn starts a process inside a lab namespace; the test stops it.
func (k *kubeEnv) startIn(ctx context.Context, t *testing.T, ns, name, bin string, args ...string) *exec.Cmd {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(k.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, bin}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s in %s: %v", name, ns, err)
	}
	k.top.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGTERM) // best effort: it may be gone
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }() // its exit status after SIGTERM says nothing
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill() // it would not stop
				<-done
			}
		}
		logf.Close()
		if k.top.Failed() {
			k.top.Logf("--- tail of %s.log ---\n%s", name, kubeTail(logf.Name(), 25))
		}
	})
	_ = ctx
	return cmd
}

// --- manifests ---

// manifestObjects reads every document of deploy/kubernetes/*.yaml.
func manifestObjects(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "deploy", "kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("deploy/kubernetes/*.yaml: %v (%d files)", err, len(files))
	}
	var out []*unstructured.Unstructured
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(b), "\n---") {
			var m map[string]any
			if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			if len(m) == 0 {
				continue
			}
			out = append(out, &unstructured.Unstructured{Object: m})
		}
	}
	return out
}

// apply applies u server-side (dry run: validated and admitted, not stored).
func (k *kubeEnv) apply(ctx context.Context, u *unstructured.Unstructured, dryRun bool) error {
	gvk := u.GroupVersionKind()
	m, err := k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("%s %s: %w", gvk.Kind, u.GetName(), err)
	}
	opts := metav1.ApplyOptions{FieldManager: "skein-e2e", Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	r := k.dyn.Resource(m.Resource)
	if u.GetNamespace() != "" {
		_, err = r.Namespace(u.GetNamespace()).Apply(ctx, u.GetName(), u, opts)
	} else {
		_, err = r.Apply(ctx, u.GetName(), u, opts)
	}
	if err != nil {
		return fmt.Errorf("apply %s %s: %w", gvk.Kind, u.GetName(), err)
	}
	return nil
}

// applyRBAC applies the manifests' ServiceAccounts and RBAC for real: the
// skein-kube replicas run with exactly those permissions.
func (k *kubeEnv) applyRBAC(ctx context.Context, t *testing.T) {
	t.Helper()
	n := 0
	for _, u := range manifestObjects(t) {
		switch u.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding":
			if err := k.apply(ctx, u, false); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	if n < 4 {
		t.Fatalf("manifests hold %d RBAC objects, want ServiceAccounts, a ClusterRole and its binding", n)
	}
}

func (k *kubeEnv) testManifests(ctx context.Context, t *testing.T) {
	kinds := map[string]int{}
	for _, u := range manifestObjects(t) {
		if err := k.apply(ctx, u, true); err != nil {
			t.Error(err)
			continue
		}
		kinds[u.GetKind()]++
	}
	for _, want := range []string{"DaemonSet", "Deployment", "ClusterRole", "ClusterRoleBinding", "ServiceAccount", "ConfigMap", "Secret"} {
		if kinds[want] == 0 {
			t.Errorf("deploy/kubernetes has no %s (applied: %v)", want, kinds)
		}
	}
	// An invalid object must fail the same dry run: the check can fail.
	bad := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "DaemonSet",
		"metadata": map[string]any{"name": "broken", "namespace": "kube-system"},
		"spec":     map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"a": "b"}}},
	}}
	if err := k.apply(ctx, bad, true); err == nil {
		t.Error("a DaemonSet without a template passed the server-side dry run")
	}
}

// --- skein-kube ---

func (k *kubeEnv) startSync(ctx context.Context, t *testing.T, host string) {
	t.Helper()
	kc := filepath.Join(k.dir, "kubeconfig-"+host)
	if err := os.WriteFile(kc, []byte(k.srv.Kubeconfig(kubeSyncToken)), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--kubeconfig=" + kc, "--etcd-endpoints=" + strings.Join(k.s.l.EtcdUnderlayEndpoints(), ","),
		"--identity=" + host, "--lease-ttl=" + kubeLeaseTTL, "--log-level=debug"}
	if f := k.s.l.EtcdTLS(); f != nil {
		args = append(args, "--etcd-ca="+f.CA, "--etcd-cert="+f.Cert, "--etcd-key="+f.Key)
	}
	cmd := k.startIn(ctx, t, host, "skein-kube-"+host, filepath.Join(k.bin, "skein-kube"), args...)
	k.mu.Lock()
	k.syncs[host] = cmd
	k.mu.Unlock()
}

// stopSync stops a replica: SIGTERM (it resigns), SIGKILL after 10 s.
func stopSync(t *testing.T, host string, cmd *exec.Cmd) {
	t.Helper()
	start := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM) // it may be gone already
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }() // the exit status of a stopped replica says nothing
	select {
	case <-done:
		t.Logf("skein-kube on %s stopped in %s", host, time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Errorf("skein-kube on %s did not stop within 10s of SIGTERM; killed", host)
		_ = cmd.Process.Kill() // it would not stop
		<-done
	}
}

// status reads skein-kube's status record.
func (k *kubeEnv) status(ctx context.Context) (api.KubeStatus, bool, error) {
	var st api.KubeStatus
	resp, err := k.st.Etcd().Get(ctx, k.st.Prefix()+api.KubeStatusKey)
	if err != nil || len(resp.Kvs) == 0 {
		return st, false, err
	}
	return st, true, json.Unmarshal(resp.Kvs[0].Value, &st)
}

// --- waiting for the mirror ---

func (k *kubeEnv) waitFor(ctx context.Context, t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, kubeWait)
	defer cancel()
	var err error
	for wctx.Err() == nil {
		var ok bool
		if ok, err = cond(); ok && err == nil {
			return
		}
		pauseCtx(wctx, 100*time.Millisecond)
	}
	k.mu.Lock()
	var logs []string
	for h := range k.syncs {
		logs = append(logs, fmt.Sprintf("--- skein-kube on %s ---\n%s", h, kubeTail(filepath.Join(k.dir, "skein-kube-"+h+".log"), 15)))
	}
	k.mu.Unlock()
	t.Fatalf("%s: not after %s (last error: %v)\n%s", what, kubeWait, err, strings.Join(logs, "\n"))
}

// waitEndpointLabels waits until every endpoint of each pod carries
// exactly the given labels (and, with ports, the model's named ports).
func (k *kubeEnv) waitEndpointLabels(ctx context.Context, t *testing.T, want map[string]map[string]string, ports bool) {
	t.Helper()
	k.waitFor(ctx, t, "endpoint labels from the API", func() (bool, error) {
		eps, err := k.st.ListEndpoints(ctx)
		if err != nil {
			return false, err
		}
		seen := map[string]bool{}
		for _, ep := range eps {
			key := ep.Namespace + "/" + ep.Name
			w, ok := want[key]
			if !ok {
				continue
			}
			if !mapsEqual(ep.Labels, w) {
				return false, fmt.Errorf("%s has labels %v, want %v", key, ep.Labels, w)
			}
			if ports && len(ep.Ports) != len(polNamedPorts()) {
				return false, fmt.Errorf("%s has ports %v", key, ep.Ports)
			}
			seen[key] = true
		}
		if len(seen) != len(want) {
			return false, fmt.Errorf("%d of %d pods have endpoints", len(seen), len(want))
		}
		return true, nil
	})
}

func (k *kubeEnv) waitNamespaceLabels(ctx context.Context, t *testing.T, ns string, want map[string]string) {
	t.Helper()
	k.waitFor(ctx, t, "namespace "+ns+" labels from the API", func() (bool, error) {
		got, err := k.st.GetNamespace(ctx, ns)
		if err != nil {
			return false, err
		}
		if got.Owner != api.OwnerKubernetes || !mapsEqual(got.Labels, want) {
			return false, fmt.Errorf("namespace %s: %+v, want labels %v owned by kubernetes", ns, got, want)
		}
		return true, nil
	})
}

// waitPolicies waits until the stored NetworkPolicies are exactly want, by
// "ns/name" → spec (as JSON).
func (k *kubeEnv) waitPolicies(ctx context.Context, t *testing.T, want map[string]string) {
	t.Helper()
	k.waitFor(ctx, t, fmt.Sprintf("%d NetworkPolicies mirrored", len(want)), func() (bool, error) {
		raw, err := k.st.RawPolicies(ctx)
		if err != nil {
			return false, err
		}
		got := map[string]string{}
		for key, v := range raw {
			kind, ns, name, ok := api.ParsePolicyKey(key)
			if !ok || kind != api.KindNetworkPolicy {
				continue
			}
			if !api.OwnedByKubernetes(v) {
				return false, fmt.Errorf("%s is not marked as owned by Kubernetes", key)
			}
			var doc struct {
				Spec json.RawMessage `json:"spec"`
			}
			if err := json.Unmarshal(v, &doc); err != nil {
				return false, err
			}
			got[ns+"/"+name] = canonJSON(doc.Spec)
		}
		if !mapsEqual(got, want) {
			return false, fmt.Errorf("stored %d policies, want %d", len(got), len(want))
		}
		return true, nil
	})
}

// --- policies through the API ---

// kubeNetworkPolicies decodes a case's documents; ok is false when any is
// not a NetworkPolicy.
func kubeNetworkPolicies(t *testing.T, docs string) ([]*networkingv1.NetworkPolicy, bool) {
	t.Helper()
	// Skein's decoder reads the cases as `skein policy apply` does (YAML
	// 1.2: "y" is a string, not a boolean); its JSON is the upstream schema.
	objs, err := api.DecodeDocuments("case", []byte(docs))
	if err != nil {
		t.Fatalf("decode case: %v", err)
	}
	var out []*networkingv1.NetworkPolicy
	for _, o := range objs {
		if o.GetKind() != api.KindNetworkPolicy {
			return nil, false
		}
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		var np networkingv1.NetworkPolicy
		if err := json.Unmarshal(b, &np); err != nil {
			t.Fatalf("NetworkPolicy %s: %v", b, err)
		}
		out = append(out, &np)
	}
	return out, len(out) > 0
}

func (k *kubeEnv) createNetworkPolicies(ctx context.Context, t *testing.T, nps []*networkingv1.NetworkPolicy) {
	t.Helper()
	want := map[string]string{}
	for _, np := range nps {
		got, err := k.cs.NetworkingV1().NetworkPolicies(np.Namespace).Create(ctx, np, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create NetworkPolicy %s/%s: %v", np.Namespace, np.Name, err)
		}
		b, err := json.Marshal(got.Spec)
		if err != nil {
			t.Fatal(err)
		}
		want[got.Namespace+"/"+got.Name] = canonJSON(b)
	}
	k.waitPolicies(ctx, t, want)
}

func (k *kubeEnv) deleteNetworkPolicies(ctx context.Context, t *testing.T) {
	t.Helper()
	for _, ns := range []string{"x", "y", "z"} {
		if err := k.cs.NetworkingV1().NetworkPolicies(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			t.Errorf("delete NetworkPolicies in %s: %v", ns, err)
		}
	}
	k.waitPolicies(ctx, t, map[string]string{})
}

func (k *kubeEnv) testCLIRefuses(ctx context.Context, t *testing.T) {
	nps, _ := kubeNetworkPolicies(t, polNP("x", "from-k8s", polDenyIngressX))
	defer k.deleteNetworkPolicies(ctx, t)
	k.createNetworkPolicies(ctx, t, nps)
	out, err := k.s.skein(ctx, "policy", "delete", "np", "x/from-k8s")
	if err == nil || !strings.Contains(err.Error(), "owned by Kubernetes") {
		t.Errorf("skein policy delete of a mirrored policy: err=%v out=%s; want a refusal naming Kubernetes", err, out)
	}
	f := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(f, []byte(polNP("x", "from-k8s", "podSelector: {}\npolicyTypes: [Egress]")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := k.s.skein(ctx, "policy", "apply", "-f", f); err == nil || !strings.Contains(err.Error(), "owned by Kubernetes") {
		t.Errorf("skein policy apply over a mirrored policy: err=%v out=%s; want a refusal", err, out)
	}
	// A CLI-owned policy is never touched by the sync.
	if err := os.WriteFile(f, []byte(polNP("y", "from-cli", polDenyIngressX)), 0o644); err != nil {
		t.Fatal(err)
	}
	k.s.mustSkein(ctx, t, "policy", "apply", "-f", f)
	defer k.s.mustSkein(ctx, t, "policy", "delete", "np", "y/from-cli")
	k.restartSyncs(ctx, t) // a full resync must keep it
	if _, err := k.st.GetPolicy(ctx, api.KindNetworkPolicy, "y", "from-cli"); err != nil {
		t.Errorf("CLI-owned policy after skein-kube's resync: %v", err)
	}
}

// restartSyncs stops every replica and starts them again, then waits for
// a finished initial sync newer than the restart.
func (k *kubeEnv) restartSyncs(ctx context.Context, t *testing.T) {
	t.Helper()
	k.mu.Lock()
	hosts := slices.Sorted(func(yield func(string) bool) {
		for h := range k.syncs {
			if !yield(h) {
				return
			}
		}
	})
	cmds := k.syncs
	k.syncs = map[string]*exec.Cmd{}
	k.mu.Unlock()
	for _, h := range hosts {
		stopSync(t, h, cmds[h])
	}
	since := time.Now()
	for _, h := range hosts {
		k.startSync(ctx, t, h)
	}
	k.waitSynced(ctx, t, since, "")
}

// waitSynced waits for a status record written after since by a leader
// that finished its initial sync (and is not notLeader, when given).
func (k *kubeEnv) waitSynced(ctx context.Context, t *testing.T, since time.Time, notLeader string) api.KubeStatus {
	t.Helper()
	var st api.KubeStatus
	k.waitFor(ctx, t, "skein-kube synced", func() (bool, error) {
		var ok bool
		var err error
		st, ok, err = k.status(ctx)
		if err != nil || !ok {
			return false, err
		}
		if st.Synced && st.Connected && st.Updated.After(since) && st.Leader != notLeader {
			return true, nil
		}
		return false, fmt.Errorf("status %+v", st)
	})
	return st
}

func (k *kubeEnv) patchLabels(ctx context.Context, t *testing.T, ns, pod string, labels map[string]any) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels}})
	if err != nil {
		t.Fatal(err)
	}
	if pod == "" {
		_, err = k.cs.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, b, metav1.PatchOptions{})
	} else {
		_, err = k.cs.CoreV1().Pods(ns).Patch(ctx, pod, types.MergePatchType, b, metav1.PatchOptions{})
	}
	if err != nil {
		t.Fatalf("label %s/%s: %v", ns, pod, err)
	}
}

func (k *kubeEnv) podLabels(key, value string) map[string]map[string]string {
	want := map[string]map[string]string{}
	for _, p := range k.s.pods {
		want[p.key()] = map[string]string{"pod": p.name}
	}
	if key != "" {
		want[key] = map[string]string{"pod": value}
	}
	return want
}

func (k *kubeEnv) testRelabelPod(ctx context.Context, t *testing.T) {
	s := k.s
	nps, _ := kubeNetworkPolicies(t, polNP("x", "a-from-b", `
podSelector: {matchLabels: {pod: a}}
ingress:
- from:
  - namespaceSelector: {}
    podSelector: {matchLabels: {pod: b}}`))
	defer func() {
		k.patchLabels(ctx, t, "y", "c", map[string]any{"pod": "c"})
		k.patchLabels(ctx, t, "x", "a", map[string]any{"pod": "a"})
		k.deleteNetworkPolicies(ctx, t)
	}()
	k.createNetworkPolicies(ctx, t, nps)
	base := func(from, to *polPod, _ polPort) bool { return to.key() != "x/a" || from.name == "b" }
	s.check(ctx, t, "x/a from pods b", []polPort{tcp80}, base)

	k.patchLabels(ctx, t, "y", "c", map[string]any{"pod": "b"})
	k.waitEndpointLabels(ctx, t, k.podLabels("y/c", "b"), false)
	s.check(ctx, t, "y/c relabelled pod=b via the API", []polPort{tcp80}, func(from, to *polPod, pp polPort) bool {
		return base(from, to, pp) || from.key() == "y/c"
	})
	k.patchLabels(ctx, t, "y", "c", map[string]any{"pod": "c"})
	k.patchLabels(ctx, t, "x", "a", map[string]any{"pod": "q"})
	k.waitEndpointLabels(ctx, t, k.podLabels("x/a", "q"), false)
	s.check(ctx, t, "x/a relabelled pod=q via the API (no longer selected)", []polPort{tcp80}, func(_, _ *polPod, _ polPort) bool { return true })
	k.patchLabels(ctx, t, "x", "a", map[string]any{"pod": "a"})
	k.waitEndpointLabels(ctx, t, k.podLabels("", ""), false)
	s.check(ctx, t, "labels restored", []polPort{tcp80}, base)
}

func (k *kubeEnv) testRelabelNamespace(ctx context.Context, t *testing.T) {
	s := k.s
	nps, _ := kubeNetworkPolicies(t, polNP("x", "from-ns-y", `
podSelector: {}
ingress:
- from:
  - namespaceSelector: {matchLabels: {ns: y}}
  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: z}}
    podSelector: {matchLabels: {pod: a}}`))
	defer func() {
		k.patchLabels(ctx, t, "y", "", map[string]any{"ns": "y"})
		k.patchLabels(ctx, t, "z", "", map[string]any{"ns": "z"})
		k.deleteNetworkPolicies(ctx, t)
	}()
	k.createNetworkPolicies(ctx, t, nps)
	base := func(from, to *polPod, _ polPort) bool { return to.ns != "x" || from.ns == "y" || from.key() == "z/a" }
	s.check(ctx, t, "x from ns=y or z/a", []polPort{tcp80}, base)

	k.patchLabels(ctx, t, "z", "", map[string]any{"ns": "y"})
	k.waitNamespaceLabels(ctx, t, "z", map[string]string{"ns": "y"})
	s.check(ctx, t, "z relabelled ns=y via the API", []polPort{tcp80}, func(from, to *polPod, _ polPort) bool {
		return to.ns != "x" || from.ns == "y" || from.ns == "z"
	})
	k.patchLabels(ctx, t, "y", "", map[string]any{"ns": nil})
	k.waitNamespaceLabels(ctx, t, "y", nil)
	s.check(ctx, t, "y's ns label removed via the API", []polPort{tcp80}, func(from, to *polPod, _ polPort) bool {
		return to.ns != "x" || from.ns == "z"
	})
	k.patchLabels(ctx, t, "y", "", map[string]any{"ns": "y"})
	k.patchLabels(ctx, t, "z", "", map[string]any{"ns": "z"})
	k.waitNamespaceLabels(ctx, t, "y", map[string]string{"ns": "y"})
	k.waitNamespaceLabels(ctx, t, "z", map[string]string{"ns": "z"})
	s.check(ctx, t, "namespace labels restored", []polPort{tcp80}, base)
}

func (k *kubeEnv) testStatus(ctx context.Context, t *testing.T) {
	var st api.KubeStatus
	k.waitFor(ctx, t, "status: ≥3 namespaces, 9 pods on 9 endpoints, no errors", func() (bool, error) {
		var err error
		if st, _, err = k.status(ctx); err != nil {
			return false, err
		}
		if !st.Synced || !st.Connected || st.Namespaces < 3 || st.Pods != 9 || st.Endpoints != 9 || len(st.Errors) != 0 {
			return false, fmt.Errorf("status %+v", st)
		}
		return true, nil
	})
	out, err := k.s.skein(ctx, "status", "--agents=false")
	if err != nil {
		t.Errorf("skein status: %v", err)
	}
	if !strings.Contains(out, "kubernetes sync: leader "+st.Leader+", connected") {
		t.Errorf("skein status does not show the sync:\n%s", out)
	}
}

// testFailover kills the leader (SIGKILL: it cannot resign) while policies
// change, and sees the standby take over and enforce a policy created
// after the kill.
func (k *kubeEnv) testFailover(ctx context.Context, t *testing.T) {
	st := k.waitSynced(ctx, t, time.Time{}, "")
	k.mu.Lock()
	leader := k.syncs[st.Leader]
	k.mu.Unlock()
	if leader == nil {
		t.Fatalf("leader %q is none of the replicas started", st.Leader)
	}
	killed := time.Now()
	if err := leader.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = leader.Wait() // killed on purpose
	nps, _ := kubeNetworkPolicies(t, polNP("x", "deny-ingress", polDenyIngressX))
	defer k.deleteNetworkPolicies(ctx, t)
	k.createNetworkPolicies(ctx, t, nps)
	k.s.check(ctx, t, "policy created after the leader was killed", []polPort{tcp80}, func(_, to *polPod, _ polPort) bool { return to.ns != "x" })
	now := k.waitSynced(ctx, t, killed, st.Leader)
	t.Logf("leader %s killed; %s leads (took over within %s)", st.Leader, now.Leader, time.Since(killed).Round(time.Millisecond))
	k.startSync(ctx, t, st.Leader) // back to two replicas
}

// testResync: objects deleted while no replica runs are removed when one
// starts again.
func (k *kubeEnv) testResync(ctx context.Context, t *testing.T) {
	nps, _ := kubeNetworkPolicies(t, polNP("z", "gone-while-down", polDenyIngressX))
	k.createNetworkPolicies(ctx, t, nps)
	k.mu.Lock()
	cmds := k.syncs
	k.syncs = map[string]*exec.Cmd{}
	k.mu.Unlock()
	var hosts []string
	for h, c := range cmds {
		stopSync(t, h, c)
		hosts = append(hosts, h)
	}
	if err := k.cs.NetworkingV1().NetworkPolicies("z").Delete(ctx, "gone-while-down", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.st.GetPolicy(ctx, api.KindNetworkPolicy, "z", "gone-while-down"); err != nil {
		t.Fatalf("with no replica running the policy should still be stored: %v", err)
	}
	for _, h := range hosts {
		k.startSync(ctx, t, h)
	}
	k.waitPolicies(ctx, t, map[string]string{})
}

// --- ClusterNetworkPolicy ---

// installCRDs installs the ClusterNetworkPolicy CRD of network-policy-api
// v0.3.0 (from the module cache) and waits until the API serves it: the
// experimental channel's, which has the domainNames peer (the standard
// one prunes it).
func (k *kubeEnv) installCRDs(ctx context.Context, t *testing.T) {
	t.Helper()
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/network-policy-api").Output()
	if err != nil {
		t.Fatalf("go list -m sigs.k8s.io/network-policy-api: %v (run go mod download)", err)
	}
	f := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "experimental", "policy.networking.k8s.io_clusternetworkpolicies.yaml")
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", f, err)
	}
	if err := k.apply(ctx, &unstructured.Unstructured{Object: m}, false); err != nil {
		t.Fatal(err)
	}
	k.waitFor(ctx, t, "ClusterNetworkPolicy served", func() (bool, error) {
		_, err := k.np.PolicyV1beta1().ClusterNetworkPolicies().List(ctx, metav1.ListOptions{})
		return err == nil, err
	})
	k.mapper.Reset()
}

// waitStored waits until n policies of kind owned by Kubernetes are stored.
func (k *kubeEnv) waitStored(ctx context.Context, t *testing.T, kind string, n int) {
	t.Helper()
	k.waitFor(ctx, t, fmt.Sprintf("%d %s mirrored", n, kind), func() (bool, error) {
		raw, err := k.st.RawPolicies(ctx)
		if err != nil {
			return false, err
		}
		got := 0
		for key, v := range raw {
			if kd, _, _, ok := api.ParsePolicyKey(key); ok && kd == kind && api.OwnedByKubernetes(v) {
				got++
			}
		}
		if got != n {
			return false, fmt.Errorf("%d stored", got)
		}
		return true, nil
	})
}

func (k *kubeEnv) createCNP(ctx context.Context, t *testing.T, name, doc string) {
	t.Helper()
	var cnp npv1beta1.ClusterNetworkPolicy
	if err := yaml.Unmarshal([]byte(doc), &cnp); err != nil {
		t.Fatalf("decode CNP %s: %v", name, err)
	}
	cnp.Name = name
	if _, err := k.np.PolicyV1beta1().ClusterNetworkPolicies().Create(ctx, &cnp, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ClusterNetworkPolicy %s: %v", name, err)
	}
}

func (k *kubeEnv) deleteCNPs(ctx context.Context, t *testing.T) {
	t.Helper()
	if err := k.np.PolicyV1beta1().ClusterNetworkPolicies().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Errorf("delete ClusterNetworkPolicies: %v", err)
	}
	k.waitStored(ctx, t, api.KindClusterNetworkPolicy, 0)
}

// The documents below quote label values: sigs.k8s.io/yaml reads YAML 1.1,
// where a bare y is a boolean.
func (k *kubeEnv) testCNP(ctx context.Context, t *testing.T) {
	defer k.deleteCNPs(ctx, t)
	k.createCNP(ctx, t, "x-deny-from-z", `
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {ns: "x"}}}
  ingress:
  - name: no-z
    action: Deny
    from: [{namespaces: {matchLabels: {ns: "z"}}}]`)
	k.waitStored(ctx, t, api.KindClusterNetworkPolicy, 1)
	k.s.check(ctx, t, "ClusterNetworkPolicy: x denies z", []polPort{tcp80, udp81}, func(from, to *polPod, _ polPort) bool {
		return to.ns != "x" || from.ns != "z"
	})
}

// testUnenforceable: a CNP Kubernetes accepts and Skein cannot represent
// (a domainNames peer) isolates the pods it selects and gets an Event.
func (k *kubeEnv) testUnenforceable(ctx context.Context, t *testing.T) {
	defer k.deleteCNPs(ctx, t)
	k.createCNP(ctx, t, "ya-to-domain", `
spec:
  tier: Admin
  priority: 20
  subject: {pods: {namespaceSelector: {matchLabels: {ns: "y"}}, podSelector: {matchLabels: {pod: "a"}}}}
  egress:
  - action: Accept
    to: [{domainNames: ["example.com"]}]`)
	k.waitStored(ctx, t, api.KindClusterNetworkPolicy, 1)
	k.s.check(ctx, t, "unenforceable CNP: y/a isolated", []polPort{tcp80}, func(from, to *polPod, _ polPort) bool {
		return from.key() != "y/a" && to.key() != "y/a"
	})
	k.waitFor(ctx, t, "Event SkeinCannotEnforce on the CNP", func() (bool, error) {
		evs, err := k.cs.CoreV1().Events("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, ev := range evs.Items {
			if ev.InvolvedObject.Kind == api.KindClusterNetworkPolicy && ev.InvolvedObject.Name == "ya-to-domain" && ev.Reason == "SkeinCannotEnforce" {
				if !strings.Contains(ev.Message, "domainNames") {
					return false, fmt.Errorf("event message %q does not name the field", ev.Message)
				}
				return true, nil
			}
		}
		return false, fmt.Errorf("%d events, none for ya-to-domain", len(evs.Items))
	})
	k.waitFor(ctx, t, "the CNP listed in the status record", func() (bool, error) {
		st, _, err := k.status(ctx)
		if err != nil {
			return false, err
		}
		if !strings.Contains(strings.Join(st.Errors, "\n"), "ClusterNetworkPolicy ya-to-domain") {
			return false, fmt.Errorf("errors %v", st.Errors)
		}
		return true, nil
	})
}

// --- helpers ---

func mapsEqual[V comparable](a, b map[string]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// canonJSON re-encodes JSON with sorted keys.
func canonJSON(b []byte) string {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return string(b)
	}
	out, _ := json.Marshal(v) // re-encoding decoded JSON cannot fail
	return string(out)
}

func pauseCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func kubeTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func (k *kubeEnv) mustCreate(ctx context.Context, t *testing.T, what string, create func() error) {
	t.Helper()
	_ = ctx
	if err := create(); err != nil {
		t.Fatalf("create %s: %v", what, err)
	}
}
