package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
)

// labFlags are the flags every `skein lab` subcommand shares.
type labFlags struct {
	name   string
	runDir string
}

func newLabCmd(g *globalFlags) *cobra.Command {
	lf := &labFlags{}
	cmd := &cobra.Command{
		Use:     "lab",
		Example: "  skein lab up --hosts 3 --containers-per-host 2\n  skein lab check\n  skein lab down",
		Short:   "Run a virtual multi-host cluster in network namespaces on this machine",
		Long: `A lab is a Skein cluster on one machine: an underlay bridge, an etcd, and
hosts as network namespaces each running a real skeind, with containers
(namespaces) wired by the real skein-cni. Nothing touches the machine's own
network namespace; every name carries the lab's prefix (--name).`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&lf.name, "name", lab.DefaultName, "lab name: the prefix of its namespaces")
	pf.StringVar(&lf.runDir, "run-dir", "", "run directory (default "+lab.DefaultRunDirBase+"/<name>)")
	cmd.AddCommand(newLabUpCmd(lf), newLabDownCmd(lf), newLabStatusCmd(g, lf), newLabExecCmd(lf), newLabCheckCmd(g, lf), newLabEtcdCmd())
	return cmd
}

func newLabUpCmd(lf *labFlags) *cobra.Command {
	cfg := lab.Config{}
	var (
		verbose  bool
		podCIDRs []string
	)
	cmd := &cobra.Command{
		Use:     "up",
		Example: "  skein lab up\n  skein lab up --hosts 4 --containers-per-host 3\n  skein lab up --name bgp --backend bgp --tor bird --subnets 2\n  skein lab up --pod-cidr 10.244.0.0/16 --pod-cidr fd00:10:244::/56   # dual-stack",
		Short:   "Create a lab: underlay, etcd, hosts with agents, containers",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Name, cfg.RunDir = lf.name, lf.runDir
			cfg.PodCIDR = strings.Join(podCIDRs, ",")
			if cfg.BinDir == "" {
				dir, err := selfDir()
				if err != nil {
					return fmt.Errorf("--bin-dir: %w", err)
				}
				cfg.BinDir = dir
			}
			if cfg.Hosts == 0 {
				cfg.Hosts = -1 // an explicit 0: no hosts
			}
			if cfg.ContainersPerHost == 0 {
				cfg.ContainersPerHost = -1
			}
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelDebug
			}
			cfg.Out = cmd.OutOrStdout()
			cfg.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			l, err := lab.Up(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			printLabHints(cmd, l, lf)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Hosts, "hosts", lab.DefaultHosts, "number of hosts")
	f.IntVar(&cfg.ContainersPerHost, "containers-per-host", lab.DefaultContainersPerHost, "containers on each host")
	f.StringVar(&cfg.Backend, "backend", lab.DefaultBackend, "cluster backend: vxlan or bgp")
	f.StringVar(&cfg.Encryption, "encryption", "", "wireguard: encrypt pod traffic between hosts (backend vxlan)")
	f.BoolVar(&cfg.VXLANDirectRouting, "vxlan-direct-routing", false, "with backend vxlan: hosts on one underlay subnet route pod blocks directly; with --tor and --subnets 2 the lab shows both kinds of path")
	f.StringVar(&cfg.ToR, "tor", "", "with --backend bgp: a top-of-rack router namespace running bird (BIRD 2) or frr (FRR), route reflector for every host (node mesh off)")
	f.BoolVar(&cfg.ToRIPv6Sessions, "tor-ipv6-sessions", false, "with --tor and --underlay dual: the ToR also peers with every host over IPv6 and carries IPv6 routes there (the IPv4 sessions then carry IPv4 only); the lab registers an IPv6 external peer (tor6)")
	f.StringVar(&cfg.Underlay, "underlay", lab.DefaultUnderlay, "underlay address families: ipv4, dual (hosts, gateways and etcd have IPv4 and IPv6) or ipv6 (IPv6 only: agents register their IPv6 address and VXLAN runs over IPv6)")
	f.IntVar(&cfg.Subnets, "subnets", 1, "with --tor: spread the hosts over this many underlay subnets, routed only by the ToR")
	f.IntVar(&cfg.EtcdMembers, "etcd-members", 1, fmt.Sprintf("etcd members, each its own process, as one raft cluster (1 to %d)", lab.MaxEtcdMembers))
	f.BoolVar(&cfg.EtcdTLS, "etcd-tls", false, "etcd serves TLS only (clients and peers), with a CA and certificates the lab writes under <run dir>/tls")
	f.StringVar(&cfg.BinDir, "bin-dir", "", "directory with skeind, skein and skein-cni (default: this binary's directory)")
	f.StringSliceVar(&podCIDRs, "pod-cidr", []string{lab.DefaultPodCIDR}, "pod address pools, repeatable or comma-separated; add an IPv6 pool for a dual-stack lab (e.g. --pod-cidr 10.244.0.0/16 --pod-cidr fd00:10:244::/56), or give IPv6 pools alone for an IPv6-only one")
	f.IntVar(&cfg.BlockSize, "block-size", api.DefaultBlockSize, "prefix length of the IPv4 pools' blocks")
	f.IntVar(&cfg.BlockSizeV6, "block-size-v6", api.DefaultBlockSizeV6, "prefix length of the IPv6 pools' blocks")
	f.BoolVarP(&verbose, "verbose", "v", false, "log every step to stderr")
	return cmd
}

// selfDir returns the directory of the running binary.
func selfDir() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	if p, err := filepath.EvalSymlinks(exe); err == nil {
		exe = p
	}
	return filepath.Dir(exe), nil
}

// printLabHints tells the user how to reach the new lab.
func printLabHints(cmd *cobra.Command, l *lab.Lab, lf *labFlags) {
	w := cmd.OutOrStdout()
	flags := ""
	if lf.name != lab.DefaultName {
		flags += " --name " + lf.name
	}
	if lf.runDir != "" {
		flags += " --run-dir " + lf.runDir
	}
	switch n := len(l.EtcdEndpoints()); {
	case l.EtcdTLS() != nil:
		fmt.Fprintf(w, "\nThe admin CLI reaches the lab's etcd (%d member(s), TLS) through unix sockets with the lab's client certificate:\n", n)
	case n > 1:
		fmt.Fprintf(w, "\nThe admin CLI reaches the lab's etcd (%d members) through unix sockets:\n", n)
	default:
		fmt.Fprintf(w, "\nThe admin CLI reaches the lab's etcd through a unix socket:\n")
	}
	for _, kv := range l.EtcdEnv() {
		fmt.Fprintf(w, "  export %s\n", kv)
	}
	fmt.Fprintf(w, "Then try:\n")
	fmt.Fprintf(w, "  skein node list\n  skein endpoint list\n  skein lab status%s\n", flags)
	hs, cs := l.Hosts(), l.Containers()
	if len(hs) > 0 {
		short := strings.TrimPrefix(hs[0].Name, l.Name()+"-")
		fmt.Fprintf(w, "  skein lab exec%s %s -- ip route\n", flags, short)
		fmt.Fprintf(w, "  skein lab exec%s %s -- curl -s http://%s/debug/topology\n", flags, short, hs[0].DebugAddr)
	}
	if len(cs) > 1 {
		fmt.Fprintf(w, "  skein lab exec%s %s -- ping -c1 %s\n", flags, strings.TrimPrefix(cs[0].Name, l.Name()+"-"), cs[len(cs)-1].Addr())
	}
	if t, err := l.ToR(); err == nil {
		fmt.Fprintf(w, "  skein bgp status\n")
		fmt.Fprintf(w, "  skein lab exec%s tor -- ip route\n", flags)
		fmt.Fprintf(w, "  %s %s\n", t.ClientCommand(), torHint(t.Kind))
	}
	fmt.Fprintf(w, "  skein lab down%s\n", flags)
}

// torHint is a query worth trying on a ToR daemon.
func torHint(kind string) string {
	if kind == lab.ToRFRR {
		return "-c 'show bgp ipv4 unicast'"
	}
	return "show route"
}

func newLabDownCmd(lf *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "down",
		Example: "  skein lab down\n  skein lab down --name bgp",
		Short:   "Remove a lab: stop its processes, delete its namespaces and run directory",
		Long: `Remove a lab. Works without lab.json too (after a crash): every process
whose command line names the run directory or that runs in one of the lab's
namespaces is stopped, and every namespace named <name>-* is deleted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Let the removal finish even when interrupted: a half-removed
			// lab is worse than a slow Ctrl-C.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(cmd.Context()), 2*time.Minute)
			defer cancel()
			if err := lab.Down(ctx, lf.name, lf.runDir); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab %s down\n", lf.name)
			return nil
		},
	}
}

func newLabStatusCmd(g *globalFlags, lf *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "status",
		Example: "  skein lab status\n  skein lab status -o json",
		Short:   "Show a lab's hosts, agents and containers",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := lab.Load(lf.name, lf.runDir)
			if err != nil {
				return fmt.Errorf("%w (is the lab up? `skein lab up`)", err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			st, err := l.Status(ctx)
			if err != nil {
				return err
			}
			return g.render(cmd.OutOrStdout(), st, func(tw *tabwriter.Writer, wide bool) {
				renderLabStatus(tw, st, wide)
			})
		},
	}
}

// renderLabStatus prints the status tables.
func renderLabStatus(tw *tabwriter.Writer, st lab.Status, wide bool) {
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	fmt.Fprintf(tw, "LAB\tETCD\tPID\tALIVE\tLEADER\tENDPOINT")
	if wide {
		fmt.Fprintf(tw, "\tUNDERLAY\tREASON")
	}
	fmt.Fprintln(tw)
	for _, m := range st.Etcd {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s", st.Name, m.Name, m.PID, yes(m.Alive), yes(m.Leader), m.AdminURL)
		if wide {
			fmt.Fprintf(tw, "\t%s\t%s", m.ClientURL, m.Reason)
		}
		fmt.Fprintln(tw)
	}
	if st.EtcdTLS != nil {
		fmt.Fprintf(tw, "  (TLS: --etcd-ca %s --etcd-cert %s --etcd-key %s)\n", st.EtcdTLS.CA, st.EtcdTLS.Cert, st.EtcdTLS.Key)
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "HOST\tUNDERLAY\tAGENT PID\tALIVE\tREADY\tBLOCKS")
	if wide {
		fmt.Fprintf(tw, "\tREASON")
	}
	fmt.Fprintln(tw)
	for _, h := range st.Hosts {
		ul := h.UnderlayIP.String()
		if h.UnderlayIP6.IsValid() && h.UnderlayIP6 != h.UnderlayIP {
			ul += "," + h.UnderlayIP6.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s", h.Name, ul, h.AgentPID, yes(h.Alive), yes(h.Ready), strings.Join(h.Blocks, ","))
		if wide {
			fmt.Fprintf(tw, "\t%s", h.Reason)
		}
		fmt.Fprintln(tw)
	}
	if t := st.ToR; t != nil {
		fmt.Fprintf(tw, "\nTOR\tNETNS\tROUTER ID\tPIDS\tALIVE\tCLIENT\n")
		pids := make([]string, 0, len(t.PIDs))
		for _, p := range t.PIDs {
			pids = append(pids, fmt.Sprint(p))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Kind, t.NetNS, t.RouterID, strings.Join(pids, ","), yes(t.Alive), t.Client)
		if t.Reason != "" {
			fmt.Fprintf(tw, "  (%s)\n", t.Reason)
		}
		fmt.Fprintf(tw, "\nTOR SESSION\tNEIGHBOR\tSTATE\tRECEIVED\n")
		for _, s := range t.Sessions {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", s.Name, s.Neighbor, s.State, s.Received)
		}
	}
	fmt.Fprintf(tw, "\nCONTAINER\tHOST\tPOD\tIP")
	if wide {
		fmt.Fprintf(tw, "\tLABELS")
	}
	fmt.Fprintln(tw)
	for _, c := range st.Containers {
		ips := strings.Join(c.Addrs().Strings(), ",")
		fmt.Fprintf(tw, "%s\t%s\t%s/%s\t%s", c.Name, c.Host, c.PodNS, c.PodName, ips)
		if wide {
			var ls []string
			for k, v := range c.Labels {
				ls = append(ls, k+"="+v)
			}
			fmt.Fprintf(tw, "\t%s", strings.Join(ls, ","))
		}
		fmt.Fprintln(tw)
	}
}

func newLabExecCmd(lf *labFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "exec HOST|CONTAINER -- COMMAND [ARG...]",
		Example: "  skein lab exec h1 -- ip route\n  skein lab exec h2-c1 -- ping -c1 10.244.1.1",
		Short:   "Run a command inside a lab host or container (h1, h1-c1, sklab-h1, ul)",
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := lab.Load(lf.name, lf.runDir)
			if err != nil {
				return fmt.Errorf("%w (is the lab up? `skein lab up`)", err)
			}
			// Interrupts reach the child through the terminal; cancelling
			// here would SIGKILL an interactive shell on its first Ctrl-C.
			// With interspersed flags off, pflag leaves a "--" after the
			// target in args.
			argv := args[1:]
			if argv[0] == "--" {
				argv = argv[1:]
			}
			if len(argv) == 0 {
				return errors.New("lab exec: no command after --")
			}
			c, err := l.Command(context.WithoutCancel(cmd.Context()), args[0], argv...)
			if err != nil {
				return err
			}
			c.Stdin, c.Stdout, c.Stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
			err = c.Run()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code := ee.ExitCode()
				if ws, ok := ee.Sys().(unix.WaitStatus); ok && ws.Signaled() {
					code = 128 + int(ws.Signal())
				}
				return &exitError{code: code, err: fmt.Errorf("exec in %s: %w", args[0], err)}
			}
			return err
		},
	}
	// Everything after the target is the command, flags included.
	cmd.Flags().SetInterspersed(false)
	return cmd
}

func newLabEtcdCmd() *cobra.Command {
	cfg := lab.EtcdConfig{}
	cmd := &cobra.Command{
		Use:    "etcd",
		Short:  "Serve the lab's etcd (started by `skein lab up` inside the underlay namespace)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), unix.SIGINT, unix.SIGTERM)
			defer stop()
			cfg.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			return lab.RunEtcd(ctx, cfg)
		},
	}
	cfg.RegisterFlags(cmd.Flags())
	return cmd
}
