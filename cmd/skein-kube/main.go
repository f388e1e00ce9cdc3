// Command skein-kube mirrors Kubernetes namespaces, pods, nodes and network
// policies into Skein's etcd (package kube). Run two replicas: one leads,
// the other waits on the etcd election. Wiring only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	npclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/skeinnet/skein/internal/flagsource"
	"github.com/skeinnet/skein/kube"
	"github.com/skeinnet/skein/store"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "skein-kube:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("skein-kube", flag.ContinueOnError)
	host, _ := os.Hostname()
	daemon := flagsource.AddDaemon(fs, " of Skein's etcd")
	var (
		kubeconfig = fs.String("kubeconfig", "", "kubeconfig file (default: the in-cluster service account)")
		identity   = fs.String("identity", envOr("POD_NAME", host), "this replica's name in the leader election (default: $POD_NAME or the hostname)")
		leaseTTL   = fs.Duration("lease-ttl", 15*time.Second, "how long a dead leader keeps the lead before a standby takes over")
		resync     = fs.Duration("resync", 10*time.Minute, "informer resync period")
		workers    = fs.Int("workers", 4, "objects mirrored in parallel")
		qps        = fs.Float64("kube-qps", 50, "requests per second to the API server")
	)
	log, printed, err := daemon.Load(fs, args, version, os.Stdout, os.Stderr)
	if err != nil || printed {
		return err
	}
	rc, err := restConfig(*kubeconfig)
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = float32(*qps), int(*qps*2)
	rc.UserAgent = "skein-kube/" + version
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	pc, err := npclient.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("network-policy-api client: %w", err)
	}
	st, err := store.New(ctx, daemon.Store(log))
	if err != nil {
		return err
	}
	defer st.Close()
	log.Info("skein-kube starting", "version", version, "node", *identity)
	err = kube.Run(ctx, kube.Config{
		Kube: kc, Policy: pc, Store: st, Identity: *identity,
		LeaseTTL: *leaseTTL, Resync: *resync, Workers: *workers, Log: log,
	})
	if errors.Is(err, kube.ErrLostLead) {
		log.Error("lost the lead; exiting so that a restart campaigns again", "err", err)
	}
	log.Info("skein-kube stopped", "err", err)
	return err
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config (give --kubeconfig outside a cluster): %w", err)
		}
		return rc, nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
	}
	return rc, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
