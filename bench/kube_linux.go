package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
	"github.com/skeinnet/skein/lab/kubeapi"
	"github.com/skeinnet/skein/store"
)

// The kube phase (issue 12, item 6): a real kube-apiserver in a lab host
// against the lab's etcd under its own prefix, started as e2e/kube_test.go
// starts it, and one skein-kube replica. It measures (a) a pod label
// written through the API → the pod's address added to a set on every
// host (`nft monitor` in each), with kubeLoadPods pods and kubeLoadPolicies
// NetworkPolicies in the API, and (b) skein-kube's initial sync time and
// VmHWM with kubeSyncPods pods in the API.

var kubeLabName = nsPrefix + "kube"

const (
	kubeToken = "skein-bench-admin-token"
	kubeNS    = "bench"
	// kubeProbes wired client pods, each labelled once: one sample each.
	kubeProbes = 30
	// kubeWait bounds every wait on the API server or the mirror.
	kubeWait = 3 * time.Minute
	// kubeEnforceTimeout bounds one label write → every host.
	kubeEnforceTimeout = 30 * time.Second
	// kubeCreateWorkers create API objects in parallel.
	kubeCreateWorkers = 16
)

// kubeLab is the phase's lab, API server and skein-kube.
type kubeLab struct {
	b    *bench
	l    *lab.Lab
	dir  string
	srv  *kubeapi.Server
	cs   kubernetes.Interface
	st   *store.Client
	sync *exec.Cmd
}

func (b *bench) measureKube(ctx context.Context) (res *KubeResult, err error) {
	dir := filepath.Join(runDir, kubeLabName)
	defer b.labDown(ctx, kubeLabName, dir, true, &err)
	apiserver := filepath.Join(b.cfg.bin, "kube-apiserver")
	for _, f := range []string{apiserver, filepath.Join(b.cfg.bin, "skein-kube")} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("kube phase: %w (make tools build)", err)
		}
	}
	b.log.Info("kube lab up", "name", kubeLabName)
	l, err := lab.Up(ctx, lab.Config{Name: kubeLabName, Hosts: 2, ContainersPerHost: -1, BinDir: b.cfg.bin, RunDir: dir, Log: b.log})
	if err != nil {
		return nil, err
	}
	st, err := store.New(ctx, l.StoreConfig())
	if err != nil {
		return nil, fmt.Errorf("kube phase store: %w", err)
	}
	defer st.Close()
	k := &kubeLab{b: b, l: l, dir: dir, st: st}
	if err := k.startAPIServer(ctx); err != nil {
		return nil, err
	}
	res = &KubeResult{Pods: kubeLoadPods, Policies: kubeLoadPolicies, SyncPods: kubeSyncPods}
	if res.Probes, err = k.measureLabelToSet(ctx); err != nil {
		return res, err
	}
	if err := k.measureSync(ctx, res); err != nil {
		return res, err
	}
	return res, nil
}

// startAPIServer runs kube-apiserver in the lab's first host as
// e2e/kube_test.go does (lab/kubeapi), with an admin token only: the bench
// measures the sync, not the manifests' RBAC.
func (k *kubeLab) startAPIServer(ctx context.Context) error {
	srv, err := kubeapi.Prepare(k.l, k.l.Hosts()[0], k.dir, []kubeapi.Token{{Token: kubeToken, User: "admin", UID: "admin-uid", Groups: []string{"system:masters"}}})
	if err != nil {
		return err
	}
	k.srv = srv
	if _, err := k.start(srv.Host, "kube-apiserver", filepath.Join(k.b.cfg.bin, "kube-apiserver"), srv.Args...); err != nil {
		return err
	}
	if k.cs, err = kubernetes.NewForConfig(srv.RestConfig(kubeToken, 2000, 4000)); err != nil {
		return fmt.Errorf("kube client: %w", err)
	}
	return kubeapi.WaitReady(ctx, k.cs, kubeWait)
}

// start runs a process inside a lab namespace, logging to the phase's
// directory; the bench stops it (stopProcs).
func (k *kubeLab) start(ns, name, bin string, args ...string) (*exec.Cmd, error) {
	logf, err := os.OpenFile(filepath.Join(k.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := k.b.startTracked(ns, cmd); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", name, ns, err)
	}
	return cmd, nil
}

// startSync starts a skein-kube replica in the lab's second host.
func (k *kubeLab) startSync() error {
	h := k.l.Hosts()[1].Name
	kc := filepath.Join(k.dir, "kubeconfig")
	if err := os.WriteFile(kc, []byte(k.srv.Kubeconfig(kubeToken)), 0o600); err != nil {
		return err
	}
	args := []string{"--kubeconfig=" + kc, "--etcd-endpoints=" + strings.Join(k.l.EtcdUnderlayEndpoints(), ","),
		"--identity=bench", "--lease-ttl=3s"}
	if f := k.l.EtcdTLS(); f != nil {
		args = append(args, "--etcd-ca="+f.CA, "--etcd-cert="+f.Cert, "--etcd-key="+f.Key)
	}
	cmd, err := k.start(h, "skein-kube", filepath.Join(k.b.cfg.bin, "skein-kube"), args...)
	k.sync = cmd
	return err
}

// stopSync stops the replica: SIGTERM (it resigns its lease), then SIGKILL.
func (k *kubeLab) stopSync() {
	if k.sync == nil {
		return
	}
	_ = k.sync.Process.Signal(unix.SIGTERM) // it may be gone
	done := make(chan struct{})
	go func() { _ = k.sync.Wait(); close(done) }() // the status of a stopped replica says nothing
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = k.sync.Process.Kill() // it would not stop
		<-done
	}
	k.sync = nil
}

// waitFor polls cond until it holds, for at most kubeWait.
func (k *kubeLab) waitFor(ctx context.Context, what string, cond func() (bool, error)) error {
	wctx, cancel := context.WithTimeout(ctx, kubeWait)
	defer cancel()
	var err error
	for {
		var ok bool
		if ok, err = cond(); ok && err == nil {
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("%s: not after %s (last error: %v)", what, kubeWait, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// status reads skein-kube's status record.
func (k *kubeLab) status(ctx context.Context) (api.KubeStatus, bool, error) {
	var st api.KubeStatus
	resp, err := k.st.Etcd().Get(ctx, k.st.Prefix()+api.KubeStatusKey)
	if err != nil || len(resp.Kvs) == 0 {
		return st, false, err
	}
	return st, true, json.Unmarshal(resp.Kvs[0].Value, &st)
}

// parallel runs fn(i) for i in [from, to) on kubeCreateWorkers workers and
// returns the first error.
func parallel(ctx context.Context, from, to int, fn func(i int) error) error {
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	next := make(chan int)
	for range kubeCreateWorkers {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					first = cmpErr(first, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := from; i < to && ctx.Err() == nil; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// createPods creates API-only pods fill-from … fill-(to-1), labelled
// app=fill-(i mod kubeLoadPolicies) so the load policies select them.
func (k *kubeLab) createPods(ctx context.Context, from, to int) error {
	return parallel(ctx, from, to, func(i int) error {
		_, err := k.cs.CoreV1().Pods(kubeNS).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("fill-%d", i), Labels: map[string]string{"app": fmt.Sprintf("fill-%d", i%kubeLoadPolicies)}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "serve", Image: "registry.invalid/none:0",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
			}}},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create pod fill-%d: %w", i, err)
		}
		return nil
	})
}

func (k *kubeLab) createPod(ctx context.Context, name, node string, labels map[string]string) error {
	_, err := k.cs.CoreV1().Pods(kubeNS).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "serve", Image: "registry.invalid/none:0"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create pod %s: %w", name, err)
	}
	return nil
}

// ingressFrom is a NetworkPolicy selecting sel, allowing TCP 8080 from from.
func ingressFrom(name string, sel, from map[string]string) *networkingv1.NetworkPolicy {
	port := intstr.FromInt32(8080)
	tcp := corev1.ProtocolTCP
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: sel},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: from}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
			}},
		},
	}
}

// measureLabelToSet loads the API with kubeLoadPods pods and
// kubeLoadPolicies policies, wires a server pod on each host and
// kubeProbes client pods, then labels each client through the API and
// times the write to its address being added to a set on every host.
func (k *kubeLab) measureLabelToSet(ctx context.Context) ([]time.Duration, error) {
	hosts := k.l.Hosts()
	if _, err := k.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: kubeNS, Labels: map[string]string{"ns": kubeNS}}}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", kubeNS, err)
	}
	for _, h := range hosts {
		if _, err := k.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: h.Name}}, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("create node %s: %w", h.Name, err)
		}
	}
	// Wired: one server per host and the probe clients, alternating hosts.
	type wired struct {
		name, host string
		labels     map[string]string
	}
	var pods []wired
	for i, h := range hosts {
		pods = append(pods, wired{fmt.Sprintf("server-%d", i), h.Name, map[string]string{"role": "server"}})
	}
	for i := range kubeProbes {
		pods = append(pods, wired{fmt.Sprintf("probe-%d", i), hosts[i%len(hosts)].Name, map[string]string{"role": "client"}})
	}
	for _, p := range pods {
		if err := k.createPod(ctx, p.name, p.host, p.labels); err != nil {
			return nil, err
		}
	}
	if err := k.createPods(ctx, 0, kubeLoadPods-len(pods)); err != nil {
		return nil, err
	}
	policies := k.cs.NetworkingV1().NetworkPolicies(kubeNS)
	if _, err := policies.Create(ctx, ingressFrom("servers", map[string]string{"role": "server"}, map[string]string{"probe": "on"}), metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("create policy servers: %w", err)
	}
	if err := parallel(ctx, 1, kubeLoadPolicies, func(i int) error {
		np := ingressFrom(fmt.Sprintf("load-%d", i), map[string]string{"app": fmt.Sprintf("fill-%d", i)}, map[string]string{"app": fmt.Sprintf("fill-%d", (i+1)%kubeLoadPolicies)})
		if _, err := policies.Create(ctx, np, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create policy load-%d: %w", i, err)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := k.startSync(); err != nil {
		return nil, err
	}
	if err := k.waitFor(ctx, "skein-kube synced with the load", func() (bool, error) {
		st, ok, err := k.status(ctx)
		if err != nil || !ok {
			return false, err
		}
		if st.Synced && st.Policies >= kubeLoadPolicies && st.Pods >= kubeLoadPods {
			return true, nil
		}
		return false, fmt.Errorf("status %+v", st)
	}); err != nil {
		return nil, err
	}
	k.b.log.Info("kube load mirrored", "pods", kubeLoadPods, "policies", kubeLoadPolicies, "took", time.Since(start).Round(time.Millisecond))

	// The kubelet's part: CNI ADD with the K8S_* args only.
	addrs := make([]netip.Addr, len(pods))
	errs := make([]error, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		wg.Go(func() {
			c, err := k.l.AddContainer(ctx, p.host, lab.ContainerOpts{Name: p.name, Namespace: kubeNS})
			addrs[i], errs[i] = c.IP, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("wire pods: %w", err)
	}
	// Both servers must carry their label before a probe is timed: the
	// sets exist on a host only once its server is selected.
	if err := k.waitFor(ctx, "wired pods labelled from the API", func() (bool, error) {
		eps, err := k.st.ListEndpoints(ctx)
		if err != nil {
			return false, err
		}
		n := 0
		for _, ep := range eps {
			if ep.Labels["role"] != "" {
				n++
			}
		}
		if n >= len(pods) {
			return true, nil
		}
		return false, fmt.Errorf("%d of %d wired endpoints labelled", n, len(pods))
	}); err != nil {
		return nil, err
	}

	seen := make([]*firstSeen, len(hosts))
	for i, h := range hosts {
		seen[i] = &firstSeen{at: map[netip.Addr]time.Time{}}
		stop, err := k.b.monitorSetAdds(h.Name, seen[i])
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(polMonitorStart):
	}
	patch := []byte(`{"metadata":{"labels":{"probe":"on"}}}`)
	var res []time.Duration
	for i := range kubeProbes {
		name, a := pods[len(hosts)+i].name, addrs[len(hosts)+i]
		t0 := time.Now()
		if _, err := k.cs.CoreV1().Pods(kubeNS).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return res, fmt.Errorf("label pod %s: %w", name, err)
		}
		deadline := time.Now().Add(kubeEnforceTimeout)
		for {
			var last time.Time
			all := true
			for _, s := range seen {
				t, ok := s.get(a)
				if ok && t.Before(t0) {
					// In a set before its label: something else put it
					// there, so this probe would measure nothing.
					return res, fmt.Errorf("pod %s (%s) was in a set before it was labelled", name, a)
				}
				all = all && ok
				last = later(last, t)
			}
			if all {
				res = append(res, last.Sub(t0))
				break
			}
			if time.Now().After(deadline) {
				return res, fmt.Errorf("pod %s (%s) labelled through the API: not in a set on every host after %s", name, a, kubeEnforceTimeout)
			}
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(2 * time.Millisecond):
			}
		}
	}
	k.b.log.Info("API label → set on every host", "p50", percentile(res, 50), "p99", percentile(res, 99))
	return res, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// measureSync fills the API up to kubeSyncPods pods, restarts skein-kube
// and times its initial full resync; VmHWM is read once it is synced.
func (k *kubeLab) measureSync(ctx context.Context, res *KubeResult) error {
	k.stopSync()
	if err := k.createPods(ctx, kubeLoadPods, kubeSyncPods); err != nil {
		return err
	}
	start := time.Now()
	if err := k.startSync(); err != nil {
		return err
	}
	var st api.KubeStatus
	if err := k.waitFor(ctx, "skein-kube synced at the sync load", func() (bool, error) {
		var ok bool
		var err error
		st, ok, err = k.status(ctx)
		if err != nil || !ok {
			return false, err
		}
		if st.Synced && st.Updated.After(start) && st.Pods >= kubeSyncPods {
			return true, nil
		}
		return false, fmt.Errorf("status %+v", st)
	}); err != nil {
		return err
	}
	// The status record is written every 5 s, so its arrival bounds the
	// sync only loosely; the replica's log line says when it finished.
	done, err := kubeSyncDone(filepath.Join(k.dir, "skein-kube.log"), start)
	if err != nil {
		return err
	}
	res.SyncWall = done.Sub(start)
	if d, err := time.ParseDuration(st.SyncDuration); err == nil {
		res.SyncReported = d
	}
	res.SyncMirrored = st.Pods
	hwm, err := vmHWM(k.sync.Process.Pid)
	if err != nil {
		return err
	}
	res.HWMBytes = hwm
	k.b.log.Info("skein-kube initial sync", "pods", st.Pods, "wall", res.SyncWall.Round(time.Millisecond), "reported", st.SyncDuration, "VmHWM", mb(hwm))
	return nil
}

// kubeSyncDone returns the time of skein-kube's last "initial sync done"
// log line after since.
func kubeSyncDone(logPath string, since time.Time) (time.Time, error) {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return time.Time{}, err
	}
	var done time.Time
	for line := range strings.Lines(string(b)) {
		if !strings.Contains(line, `msg="initial sync done"`) {
			continue
		}
		ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return time.Time{}, fmt.Errorf("%s: time of %q: %w", logPath, strings.TrimSpace(line), err)
		}
		if t.After(since) {
			done = t
		}
	}
	if done.IsZero() {
		return done, fmt.Errorf("%s: no initial sync done after %s", logPath, since.Format(time.RFC3339Nano))
	}
	return done, nil
}

// vmHWM reads a process's peak resident set from /proc.
func vmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("pid %d VmHWM %q: %w", pid, v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("pid %d: no VmHWM", pid)
}
