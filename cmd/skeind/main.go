// Command skeind is Skein's per-host agent: flags → agent.Config → agent.Run.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/agent"
	"github.com/skeinnet/skein/internal/flagsource"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// The agent's heap is mostly its long-lived view of the cluster:
	// collecting at 50 % growth instead of Go's 100 % keeps resident memory
	// near what that view needs. GOGC, when set, decides.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "skeind:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("skeind", flag.ContinueOnError)
	daemon := flagsource.AddDaemon(fs, "")
	var (
		nodeName   = fs.String("node-name", "", "name of this node (default: the hostname)")
		embedded   = fs.Bool("embedded-etcd", false, "run an in-process etcd (single machine); --etcd-endpoints then gives its listen URLs")
		embCert    = fs.String("embedded-etcd-cert", "", "with --embedded-etcd: server certificate for its client listener (https:// endpoints)")
		embKey     = fs.String("embedded-etcd-key", "", "with --embedded-etcd: key of --embedded-etcd-cert")
		embCA      = fs.String("embedded-etcd-client-ca", "", "with --embedded-etcd: require client certificates signed by this CA")
		iface      = fs.String("iface", "", "underlay interface (default: the default-route interface)")
		underlayIP = fs.String("underlay-ip", "", "underlay address VXLAN, BGP and etcd use: IPv4, or IPv6 on an IPv6-only node (default: the first IPv4 address of --iface, else its first global IPv6 address)")
		underlay6  = fs.String("underlay-ip6", "", "IPv6 underlay address, next hop of IPv6 routes over the underlay (default: the first global IPv6 address of --iface, if any)")
		socket     = fs.String("socket", agent.DefaultSocket, "unix socket skein-cni talks to (root-only)")
		stateDir   = fs.String("state-dir", agent.DefaultStateDir, "where allocations are persisted")
		debugAddr  = fs.String("debug-addr", agent.DefaultDebugAddr, "debug HTTP address (topology, metrics, pprof); \"off\" disables")
		labels     = fs.String("labels", "", "node labels k=v,k2=v2 (e.g. skein.dev/route-reflector=10.0.0.1 makes a BGP route reflector)")
		takeOver   = fs.Bool("take-over-node", false, "take the node name from another identity that is not alive (this host re-installed or its --state-dir wiped); refused while the other heartbeats")

		dockerSocket = fs.String("docker-plugin-socket", "", "serve the Docker network and IPAM driver \"skein\" on this unix socket (e.g. /run/docker/plugins/skein.sock); empty: off")
		dockerHost   = fs.String("docker-host", "unix:///var/run/docker.sock", "with --docker-plugin-socket: the Docker engine API, read for container names and labels")

		releaseGrace = fs.Duration("block-release-grace", agent.DefaultBlockReleaseGrace,
			"return a block other than the home block to the pool once it has been empty this long (no container, no address cooling down); 0 disables")
		dropLog  = fs.Bool("drop-log", true, "log policy and anti-spoofing drops to NFLOG for /debug/drops and skein policy drops (rate-limited per endpoint); false leaves the log rules out")
		trackAll = fs.Bool("conntrack-all-pods", false,
			"connection-track all pod traffic, not only that of pods a policy selects: for a conntrack-based service proxy (kube-proxy) that NATs pod-to-pod connections")
	)
	log, printed, err := daemon.Load(fs, args, version, os.Stdout, os.Stderr)
	if err != nil || printed {
		return err
	}
	cfg := agent.Config{
		NodeName:     *nodeName,
		Etcd:         daemon.Store(log),
		EmbeddedEtcd: *embedded,
		EmbeddedTLS:  agent.EmbeddedTLS{CertFile: *embCert, KeyFile: *embKey, ClientCAFile: *embCA},
		Iface:        *iface,
		SocketPath:   *socket,
		StateDir:     *stateDir,
		DebugAddr:    *debugAddr,
		TakeOverNode: *takeOver,
		Version:      version,
		Log:          log,

		BlockReleaseGrace: *releaseGrace,
		ConntrackAllPods:  *trackAll,
		NoDropLog:         !*dropLog,
	}
	if *dockerSocket != "" {
		cfg.DockerPluginSocket, cfg.DockerHost = *dockerSocket, *dockerHost
	}
	if cfg.NodeName == "" {
		if cfg.NodeName, err = os.Hostname(); err != nil {
			return fmt.Errorf("--node-name not set and hostname unknown: %w", err)
		}
	}
	if cfg.Labels, err = parseLabels(*labels); err != nil {
		return err
	}
	if *underlayIP != "" {
		if cfg.UnderlayIP, err = netip.ParseAddr(*underlayIP); err != nil {
			return fmt.Errorf("--underlay-ip: %w", err)
		}
	}
	if *underlay6 != "" {
		if cfg.UnderlayIP6, err = netip.ParseAddr(*underlay6); err != nil {
			return fmt.Errorf("--underlay-ip6: %w", err)
		}
	}
	return agent.Run(ctx, cfg)
}

// applyEnvAndFile fills flags not given on the command line from SKEIN_*
// variables, then from the config file.

// parseLabels parses "k=v,k2=v2".
func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range flagsource.List(s) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--labels: %q is not key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}
