package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// config holds the command-line settings.
type config struct {
	bin, out      string
	rounds        int
	pbRounds      int // rounds of the policy and BGP phases
	iperfSeconds  int
	rrCount       int
	cniCount      int
	joins         int
	restarts      int
	idle          time.Duration
	timeout       time.Duration
	phases        map[string]bool // -phases, by key
	rows          map[string]bool // -rows, by key; nil means all
	noSettings    bool
	profile       bool
	extraSettings bool
	verbose       bool
	// wireguardLab prefixes the WireGuard phase's two labs (+"p", +"e").
	wireguardLab string
	scaleConfig
}

func main() {
	// Internal helper subcommands, which the bench execs (inside namespaces).
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		os.Exit(helperMain(os.Args[1:]))
	}
	var cfg config
	flag.StringVar(&cfg.bin, "bin", "bin", "directory with skeind, skein, skein-cni, cnitool and ref/{bridge,host-local}")
	flag.StringVar(&cfg.out, "out", "docs/benchmarks.md", "markdown report to write")
	flag.IntVar(&cfg.rounds, "rounds", 5, "interleaved data-plane rounds (at least 3)")
	flag.IntVar(&cfg.pbRounds, "policy-bgp-rounds", 3, "interleaved rounds of the policy and BGP phases (at least 3)")
	flag.IntVar(&cfg.iperfSeconds, "iperf-seconds", 5, "length of each iperf3 run")
	flag.IntVar(&cfg.rrCount, "rr", 2000, "request/response round trips per path and round")
	flag.IntVar(&cfg.cniCount, "cni", 50, "containers per plugin chain in the CNI phase")
	flag.IntVar(&cfg.joins, "joins", 12, "node joins in the convergence phase")
	flag.IntVar(&cfg.restarts, "restarts", 12, "agent restarts in the start → ready phase")
	flag.DurationVar(&cfg.idle, "idle", 30*time.Second, "idle window for the agent CPU figure")
	flag.DurationVar(&cfg.timeout, "timeout", 45*time.Minute, "bound on the whole run (cleanup comes on top)")
	flag.BoolVar(&cfg.noSettings, "no-settings", false, "skip the candidate settings rows")
	flag.BoolVar(&cfg.profile, "profile", true, "sample the CPUs with perf during the data-plane rounds and report the netfilter CPU per GB of each row (needs perf)")
	flag.BoolVar(&cfg.extraSettings, "extra-settings", false, "also measure GRO on the pod veths, threaded NAPI and the hand-built pair without br_netfilter")
	flag.BoolVar(&cfg.verbose, "v", false, "debug logging")
	flag.StringVar(&cfg.wireguardLab, "wireguard-lab", nsPrefix+"wg", "lab name prefix of the WireGuard phase (its labs are NAMEp, plain, and NAMEe, encrypted)")
	parseScale := scaleFlags(&cfg.scaleConfig)
	phases := flag.String("phases", allPhases, "comma-separated phases to run: "+allPhases)
	rows := flag.String("rows", "", "comma-separated data-plane rows to measure (default all; bare and every base row are always kept), e.g. skein,skein+gro")
	flag.Parse()
	cfg.phases = set(*phases)
	if err := parseScale(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	for p := range cfg.phases {
		if !strings.Contains(","+allPhases+",", ","+p+",") {
			fmt.Fprintf(os.Stderr, "bench: unknown phase %q (want some of %s)\n", p, allPhases)
			os.Exit(2)
		}
	}
	if *rows != "" {
		cfg.rows = set(*rows)
	}
	if cfg.rounds < 3 || cfg.pbRounds < 3 {
		fmt.Fprintln(os.Stderr, "bench: -rounds and -policy-bgp-rounds must be at least 3")
		os.Exit(2)
	}

	level := slog.LevelInfo
	if cfg.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("bench failed", "err", err)
		stop()
		os.Exit(1)
	}
}

// allPhases lists the phases in the order they run.
const allPhases = "dataplane,agent,cni,ready,join,policy,bgp,scale,fanout,kube,droplog,wireguard"

// set splits a comma-separated list into a set.
func set(list string) map[string]bool {
	m := map[string]bool{}
	for _, x := range strings.Split(list, ",") {
		if x = strings.TrimSpace(x); x != "" {
			m[x] = true
		}
	}
	return m
}
