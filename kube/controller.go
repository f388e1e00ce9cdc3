package kube

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/skeinnet/skein/api"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	npinformers "sigs.k8s.io/network-policy-api/pkg/client/informers/externalversions"
)

// Queue key kinds besides the policy kinds (api.Kind*).
const (
	kindNamespace = "Namespace"
	kindPod       = "Pod"
	kindNode      = "Node"
)

// objKey names one object to reconcile: a Kubernetes object, or the
// Skein record of one (the reconcile reads both sides).
type objKey struct {
	kind, ns, name string
}

func (k objKey) String() string { return k.kind + " " + objectName(k.ns, k.name) }

func compareKeys(a, b objKey) int {
	return cmp.Or(strings.Compare(a.kind, b.kind), strings.Compare(a.ns, b.ns), strings.Compare(a.name, b.name))
}

// controller mirrors the informers' objects into etcd, one key at a time.
type controller struct {
	log      *slog.Logger
	m        *mirror
	kube     kubernetes.Interface
	queue    workqueue.TypedRateLimitingInterface[objKey]
	recorder record.EventRecorder
	idx      *endpointIndex
	sources  map[string]*policySource // by kind

	namespaces informers.SharedInformerFactory
	nsInf      cache.SharedIndexInformer
	podInf     cache.SharedIndexInformer
	nodeInf    cache.SharedIndexInformer
	npFactory  npinformers.SharedInformerFactory

	stat *statusTracker
}

// newController sets up the informers (nothing runs until run).
func newController(ctx context.Context, cfg Config, m *mirror, st *statusTracker) (*controller, error) {
	c := &controller{
		log:   cfg.Log,
		m:     m,
		kube:  cfg.Kube,
		idx:   newEndpointIndex(),
		stat:  st,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[objKey](), workqueue.TypedRateLimitingQueueConfig[objKey]{Name: "skein-kube"}),
	}
	f := informers.NewSharedInformerFactory(cfg.Kube, cfg.Resync)
	c.namespaces = f
	c.nsInf = f.Core().V1().Namespaces().Informer()
	c.podInf = f.Core().V1().Pods().Informer()
	c.nodeInf = f.Core().V1().Nodes().Informer()
	// 10 000 pods: keep only what the mirror reads.
	if err := c.podInf.SetTransform(slimPod); err != nil {
		return nil, fmt.Errorf("pod informer: %w", err)
	}
	if err := c.nodeInf.SetTransform(slimNode); err != nil {
		return nil, fmt.Errorf("node informer: %w", err)
	}
	c.npFactory = npinformers.NewSharedInformerFactory(cfg.Policy, cfg.Resync)
	srcs, err := policySources(cfg, f, c.npFactory)
	if err != nil {
		return nil, err
	}
	c.sources = srcs
	for _, inf := range []struct {
		kind string
		inf  cache.SharedIndexInformer
	}{{kindNamespace, c.nsInf}, {kindPod, c.podInf}, {kindNode, c.nodeInf}} {
		if err := c.watch(inf.kind, inf.inf); err != nil {
			return nil, err
		}
	}
	for _, kind := range slices.Sorted(maps.Keys(srcs)) {
		if err := c.watch(kind, srcs[kind].informer); err != nil {
			return nil, err
		}
	}
	sch := runtime.NewScheme()
	if err := addSchemes(sch); err != nil {
		return nil, err
	}
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cfg.Kube.CoreV1().Events("")})
	c.recorder = b.NewRecorder(sch, corev1.EventSource{Component: "skein-kube"})
	return c, nil
}

// watch queues the key of every object inf adds, changes or removes.
func (c *controller) watch(kind string, inf cache.SharedIndexInformer) error {
	enqueue := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		o, ok := obj.(metav1.Object)
		if !ok {
			return
		}
		c.queue.Add(objKey{kind: kind, ns: o.GetNamespace(), name: o.GetName()})
		c.stat.event()
	}
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	})
	if err != nil {
		return fmt.Errorf("watch %s: %w", kind, err)
	}
	return nil
}

// run starts the informers and the endpoint watch, resyncs fully, then
// works the queue until ctx ends.
func (c *controller) run(ctx context.Context, workers int) error {
	start := time.Now()
	c.namespaces.Start(ctx.Done())
	c.npFactory.Start(ctx.Done())
	var wg sync.WaitGroup
	defer wg.Wait()
	// Workers block in queue.Get: shut it down before waiting for them.
	defer c.queue.ShutDown()
	loaded := make(chan struct{})
	wg.Go(func() {
		_ = watchEndpoints(ctx, c.m.cli, c.m.prefix, c.idx, func(pod string) {
			ns, name, _ := strings.Cut(pod, "/")
			c.queue.Add(objKey{kind: kindPod, ns: ns, name: name})
		}, func() { close(loaded) })
	})
	synced := []cache.InformerSynced{c.nsInf.HasSynced, c.podInf.HasSynced, c.nodeInf.HasSynced}
	for _, s := range c.sources {
		synced = append(synced, s.informer.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("wait for informers: %w", ctx.Err())
	}
	select {
	case <-loaded:
	case <-ctx.Done():
		return ctx.Err()
	}
	// Full resync: every object of every informer, and every record
	// Kubernetes owns in etcd (those whose object is gone are removed).
	owned, err := c.m.ownedKeys(ctx)
	if err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	for _, k := range owned {
		c.queue.Add(k)
	}
	for _, pod := range c.idx.pods() {
		ns, name, _ := strings.Cut(pod, "/")
		c.queue.Add(objKey{kind: kindPod, ns: ns, name: name})
	}
	// The informers queued their objects already (their initial adds).
	for i := 0; i < workers; i++ {
		wg.Go(func() {
			for c.next(ctx) {
			}
		})
	}
	c.waitDrained(ctx)
	c.stat.synced(time.Since(start))
	c.log.Info("initial sync done", "dur", time.Since(start).Round(time.Millisecond), "count", c.stat.snapshot().Endpoints)
	<-ctx.Done()
	return nil
}

// waitDrained waits until the queue is empty once (the initial sync).
func (c *controller) waitDrained(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for c.queue.Len() > 0 || c.stat.busy() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// next reconciles one key; false once the queue shut down.
func (c *controller) next(ctx context.Context) bool {
	k, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(k)
	c.stat.begin()
	defer c.stat.end()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := c.reconcile(rctx, k)
	cancel()
	switch {
	case err == nil:
		c.queue.Forget(k)
	case errors.Is(err, errConflict):
		c.log.Debug("record changed meanwhile; retrying", "op", k.String())
		c.queue.AddRateLimited(k)
	default:
		c.log.Warn("mirror failed; retrying", "op", k.String(), "err", err)
		c.queue.AddRateLimited(k)
	}
	return true
}

func (c *controller) reconcile(ctx context.Context, k objKey) error {
	switch k.kind {
	case kindNamespace:
		return c.syncNamespace(ctx, k)
	case kindPod:
		return c.syncPod(ctx, k)
	case kindNode:
		return c.syncNode(ctx, k)
	}
	return c.syncPolicy(ctx, k)
}

func (c *controller) syncNamespace(ctx context.Context, k objKey) error {
	obj, exists, err := c.nsInf.GetIndexer().GetByKey(k.name)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", k.name, err)
	}
	if !exists {
		c.stat.setNamespace(k.name, false)
		_, err := c.m.dropNamespace(ctx, k.name)
		return err
	}
	ns := obj.(*corev1.Namespace)
	if _, err := c.m.setNamespace(ctx, namespaceRecord(ns)); err != nil {
		return err
	}
	c.stat.setNamespace(k.name, true)
	return nil
}

func (c *controller) syncPod(ctx context.Context, k objKey) error {
	pod := objectName(k.ns, k.name)
	obj, exists, err := c.podInf.GetIndexer().GetByKey(pod)
	if err != nil {
		return fmt.Errorf("pod %s: %w", pod, err)
	}
	entries := c.idx.of(pod)
	if !exists {
		// The pod is gone; its endpoint records go with its CNI DEL.
		c.stat.setPod(pod, false, 0)
		_, err := c.m.dropKubePod(ctx, k.ns, k.name)
		return err
	}
	p := obj.(*corev1.Pod)
	labels, ports := podLabels(p.Labels), podPorts(&p.Spec)
	// The record first: an ADD that comes now finds the labels.
	if _, err := c.m.setKubePod(ctx, k.ns, k.name, api.KubePod{UID: string(p.UID), Labels: labels, Ports: ports}); err != nil {
		return err
	}
	_, err = labelEndpoints(ctx, c.m, entries, labels, ports)
	c.stat.setPod(pod, true, len(entries))
	return err
}

func (c *controller) syncNode(ctx context.Context, k objKey) error {
	obj, exists, err := c.nodeInf.GetIndexer().GetByKey(k.name)
	if err != nil || !exists {
		return err
	}
	_, err = c.m.setNodeLabels(ctx, k.name, obj.(*corev1.Node).Labels)
	return err
}

func (c *controller) syncPolicy(ctx context.Context, k objKey) error {
	src, ok := c.sources[k.kind]
	if !ok {
		// Owned by Kubernetes in etcd, but its kind is not served (CRD
		// removed): nothing in Kubernetes says it should still exist.
		c.stat.setPolicy(k, false, "")
		_, err := c.m.dropPolicy(ctx, k.kind, k.ns, k.name)
		return err
	}
	obj, exists, err := src.informer.GetIndexer().GetByKey(objectName(k.ns, k.name))
	if err != nil {
		return fmt.Errorf("%s: %w", k, err)
	}
	if !exists {
		c.stat.setPolicy(k, false, "")
		_, err := c.m.dropPolicy(ctx, k.kind, k.ns, k.name)
		return err
	}
	d := src.doc(obj)
	_, err = c.m.setPolicy(ctx, d)
	switch {
	case errors.Is(err, errForeign):
		msg := fmt.Sprintf("not mirrored: %v", err)
		if c.stat.setPolicy(k, false, msg) {
			c.recorder.Event(obj.(runtime.Object), corev1.EventTypeWarning, "SkeinConflict", msg)
			c.log.Warn("policy not mirrored", "op", k.String(), "err", err)
		}
		return nil
	case err != nil:
		return err
	}
	msg := ""
	if d.Err != nil {
		msg = fmt.Sprintf("Skein cannot enforce this policy; the pods it selects are isolated until it is fixed: %v", d.Err)
	}
	if c.stat.setPolicy(k, true, msg) && msg != "" {
		c.recorder.Event(obj.(runtime.Object), corev1.EventTypeWarning, "SkeinCannotEnforce", msg)
		c.log.Warn("policy cannot be enforced; selected pods isolated", "op", k.String(), "err", d.Err)
	}
	return nil
}

// slimPod keeps what the mirror reads of a pod: identity, labels, node and
// container ports.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: p.Name, Namespace: p.Namespace, UID: p.UID, Labels: p.Labels, ResourceVersion: p.ResourceVersion,
	}}
	out.Spec.NodeName = p.Spec.NodeName
	out.Spec.Containers = slimContainers(p.Spec.Containers)
	out.Spec.InitContainers = slimContainers(p.Spec.InitContainers)
	return out, nil
}

func slimContainers(cs []corev1.Container) []corev1.Container {
	var out []corev1.Container
	for _, c := range cs {
		if len(c.Ports) > 0 {
			out = append(out, corev1.Container{Name: c.Name, Ports: c.Ports})
		}
	}
	return out
}

// slimNode keeps a node's identity and labels.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, Labels: n.Labels, ResourceVersion: n.ResourceVersion}}, nil
}

// served reports whether the API server serves resource in groupVersion.
func served(cfg Config, groupVersion, resource string) (bool, error) {
	list, err := cfg.Kube.Discovery().ServerResourcesForGroupVersion(groupVersion)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discover %s: %w", groupVersion, err)
	}
	for _, r := range list.APIResources {
		if r.Name == resource {
			return true, nil
		}
	}
	return false, nil
}
