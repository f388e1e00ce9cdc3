package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
)

// The WireGuard phase (issue 14, item 2): two 2-host VXLAN labs of its own,
// one plain and one with --encryption wireguard (wireguard-go on TUN here:
// the kernel has no WireGuard module), measured in interleaved rounds with
// iperf3 between the containers on the two hosts. CPU is read around each
// run: the two agents' utime+stime (where wireguard-go encrypts) and the
// whole machine's busy time from /proc/stat (which includes the kernel's
// share and whatever else runs on the machine: read it with the load).

// WireGuardResult is the phase's figures by path.
type WireGuardResult struct {
	Rounds int
	// Device is the encrypted lab's WireGuard device kind.
	Device           string
	Plain, Encrypted WGPath
}

// WGPath is one path's samples, one per round.
type WGPath struct {
	Gbps    []float64
	Retrans []int
	// AgentCores is the agents' CPU during the run in cores (CPU seconds
	// per second); MachineCores the whole machine's.
	AgentCores   []float64
	MachineCores []float64
}

// wgLabs returns the phase's lab names: plain, encrypted.
func (b *bench) wgLabs() (string, string) { return b.cfg.wireguardLab + "p", b.cfg.wireguardLab + "e" }

func (b *bench) measureWireGuard(ctx context.Context) (res *WireGuardResult, err error) {
	plainName, encName := b.wgLabs()
	res = &WireGuardResult{Rounds: b.cfg.rounds}
	defer func() {
		b.stopProcs()
		for _, n := range []string{plainName, encName} {
			if derr := b.downLab(ctx, n); derr != nil {
				err = errors.Join(err, derr)
			}
		}
	}()
	type path struct {
		l        *lab.Lab
		cl, srv  endpoint
		out      *WGPath
		hostPIDs []int
	}
	var paths []*path
	for _, c := range []struct {
		name string
		enc  api.Encryption
		out  *WGPath
	}{{plainName, api.EncryptionNone, &res.Plain}, {encName, api.EncryptionWireGuard, &res.Encrypted}} {
		_ = b.downLab(ctx, c.name) // a killed earlier run
		l, err := lab.Up(ctx, lab.Config{
			Name: c.name, Hosts: 2, ContainersPerHost: 1, Encryption: string(c.enc),
			BinDir: b.cfg.bin, RunDir: filepath.Join(runDir, c.name), Log: b.log,
		})
		if err != nil {
			return res, fmt.Errorf("lab %s: %w", c.name, err)
		}
		ctrs := l.Containers()
		if len(ctrs) < 2 || ctrs[0].Host == ctrs[1].Host {
			return res, fmt.Errorf("lab %s: want one container on each of two hosts", c.name)
		}
		p := &path{l: l, out: c.out}
		for i, ep := range []*endpoint{&p.cl, &p.srv} {
			ns, err := l.NetNS(ctrs[i].Name)
			if err != nil {
				return res, err
			}
			*ep = endpoint{ns: ns, ip: ctrs[i].IP}
		}
		for _, h := range l.Hosts() {
			p.hostPIDs = append(p.hostPIDs, h.AgentPID)
		}
		if err := b.startServers(ctx, p.srv); err != nil {
			return res, err
		}
		// The first packets of the encrypted path wait for a handshake.
		pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err = l.Ping(pctx, ctrs[0].Name, ctrs[1].IP)
		cancel()
		if err != nil {
			return res, fmt.Errorf("lab %s: %s does not reach %s: %w", c.name, ctrs[0].Name, ctrs[1].IP, err)
		}
		paths = append(paths, p)
	}
	if out, err := os.ReadFile(filepath.Join(paths[1].l.Hosts()[0].LogPath)); err == nil {
		for _, kind := range []string{"userspace", "kernel"} {
			if strings.Contains(string(out), "kind="+kind) {
				res.Device = kind
				break
			}
		}
	}
	for round := range b.cfg.rounds {
		// Alternate which path goes first, so drift in the machine's load
		// does not favour one.
		order := []*path{paths[0], paths[1]}
		if round%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, p := range order {
			agent0, err := agentTicks(p.hostPIDs)
			if err != nil {
				return res, err
			}
			busy0, total0, err := machineTicks()
			if err != nil {
				return res, err
			}
			start := time.Now()
			gbps, retr, err := b.iperf(ctx, p.cl, p.srv)
			if err != nil {
				return res, fmt.Errorf("round %d: %w", round+1, err)
			}
			wall := time.Since(start).Seconds()
			agent1, _ := agentTicks(p.hostPIDs)
			busy1, total1, _ := machineTicks()
			p.out.Gbps = append(p.out.Gbps, gbps)
			p.out.Retrans = append(p.out.Retrans, retr)
			p.out.AgentCores = append(p.out.AgentCores, float64(agent1-agent0)/clockTicks/wall)
			// /proc/stat counts every CPU: busy/total is the share of all
			// of them, times the count is cores.
			p.out.MachineCores = append(p.out.MachineCores, float64(busy1-busy0)/float64(max(total1-total0, 1))*float64(numCPU()))
		}
		b.log.Info("wireguard round", "round", round+1, "plain_gbps", res.Plain.Gbps[round], "encrypted_gbps", res.Encrypted.Gbps[round])
	}
	return res, nil
}

// agentTicks sums utime+stime of the agents.
func agentTicks(pids []int) (int64, error) {
	var sum int64
	for _, pid := range pids {
		t, err := procCPUTicks(pid)
		if err != nil {
			return 0, err
		}
		sum += t
	}
	return sum, nil
}

// machineTicks reads the busy and total ticks of all CPUs from /proc/stat.
func machineTicks() (busy, total int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i, s := range f[1:] {
		if i >= 8 { // guest time is already in user
			break
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total, nil
}

func numCPU() int {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 1
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "cpu") && len(l) > 3 && l[3] >= '0' && l[3] <= '9' {
			n++
		}
	}
	return max(n, 1)
}
