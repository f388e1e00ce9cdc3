package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/lab"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat
// (100 on every Linux architecture Skein runs on).
const clockTicks = 100

// procStatus reads fields of /proc/<pid>/status in bytes (for kB values)
// or as plain numbers.
func procStatus(pid int) (rss, hwm int64, threads int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			hwm = n << 10
		case "Threads":
			threads = int(n)
		}
	}
	if rss == 0 {
		return 0, 0, 0, fmt.Errorf("pid %d: no VmRSS", pid)
	}
	return rss, hwm, threads, nil
}

// procCPUTicks returns utime+stime of pid in clock ticks.
func procCPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("pid %d: malformed stat", pid)
	}
	// Fields after the command name start at field 3 (state); utime and
	// stime are fields 14 and 15.
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("pid %d: short stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("pid %d: stat: %w", pid, err)
	}
	return ut + st, nil
}

// measureAgents reads every lab agent's RSS and its CPU time over an idle
// window.
func (b *bench) measureAgents(ctx context.Context, l *lab.Lab) (*AgentStats, error) {
	hosts := l.Hosts()
	count := map[string]int{}
	for _, c := range l.Containers() {
		count[c.Host]++
	}
	res := &AgentStats{Window: b.cfg.idle}
	start := make([]int64, len(hosts))
	for i, h := range hosts {
		rss, _, _, err := procStatus(h.AgentPID)
		if err != nil {
			return nil, fmt.Errorf("agent on %s: %w", h.Name, err)
		}
		t, err := procCPUTicks(h.AgentPID)
		if err != nil {
			return nil, fmt.Errorf("agent on %s: %w", h.Name, err)
		}
		start[i] = t
		res.Agents = append(res.Agents, AgentUsage{Host: h.Name, Containers: count[h.Name], RSSBytes: rss})
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(b.cfg.idle):
	}
	window := time.Since(t0)
	for i, h := range hosts {
		t, err := procCPUTicks(h.AgentPID)
		if err != nil {
			return nil, fmt.Errorf("agent on %s: %w", h.Name, err)
		}
		rss, hwm, threads, err := procStatus(h.AgentPID)
		if err != nil {
			return nil, fmt.Errorf("agent on %s: %w", h.Name, err)
		}
		a := &res.Agents[i]
		a.CPUTicks = t - start[i]
		a.IdleCPUPct = float64(a.CPUTicks) / clockTicks / window.Seconds() * 100
		a.RSSEndBytes, a.PeakRSSBytes, a.ThreadsAtIdle = rss, hwm, threads
		b.log.Info("agent usage", "node", h.Name, "rss_mb", fmt.Sprintf("%.1f", float64(rss)/(1<<20)), "cpu_pct", fmt.Sprintf("%.2f", a.IdleCPUPct))
	}
	return res, nil
}

// measureReady restarts the first host's agent cfg.restarts times and
// records how long each start took to become ready.
func (b *bench) measureReady(ctx context.Context, l *lab.Lab) (*ReadyResult, error) {
	host := l.Hosts()[0].Name
	hc, err := l.HTTPClient(host)
	if err != nil {
		return nil, err
	}
	res := &ReadyResult{Host: host}
	for i := range b.cfg.restarts {
		if err := l.StopAgent(ctx, host); err != nil {
			return res, err
		}
		t0 := time.Now()
		errc := make(chan error, 1)
		go func() { errc <- l.StartAgent(ctx, host) }()
		ext, perr := pollReady(ctx, hc, t0)
		if err := <-errc; err != nil {
			return res, err
		}
		if perr != nil {
			return res, perr
		}
		// /readyz answers from the live conditions; readyAfter is recorded
		// by the agent's ready loop a few milliseconds later.
		var top api.Topology
		for deadline := time.Now().Add(5 * time.Second); top.ReadyAfter == "" && time.Now().Before(deadline); {
			if top, err = debugGet[api.Topology](ctx, hc, "/debug/topology"); err != nil {
				return res, err
			}
			if top.ReadyAfter == "" {
				time.Sleep(5 * time.Millisecond)
			}
		}
		d, err := time.ParseDuration(top.ReadyAfter)
		if err != nil {
			return res, fmt.Errorf("agent on %s: readyAfter %q: %w", host, top.ReadyAfter, err)
		}
		res.Agent = append(res.Agent, d)
		res.External = append(res.External, ext)
		b.log.Info("agent restart", "n", i+1, "ready_after", d, "from_exec", ext.Round(time.Microsecond))
	}
	return res, nil
}

// pollReady polls the agent's /readyz every 2 ms until it answers 200 and
// returns the time since t0.
func pollReady(ctx context.Context, hc *http.Client, t0 time.Time) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, lab.AgentReadyTimeout)
	defer cancel()
	for {
		rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		req, err := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+lab.AgentDebugAddr+"/readyz", nil)
		if err != nil {
			rcancel()
			return 0, err
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				rcancel()
				return time.Since(t0), nil
			}
		}
		rcancel()
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("agent not ready: %w", ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// debugGet reads one of the agent's debug endpoints (path, e.g.
// "/debug/bgp") into a value of its api type, within 5 s.
func debugGet[T any](ctx context.Context, hc *http.Client, path string) (T, error) {
	var v T
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+lab.AgentDebugAddr+path, nil)
	if err != nil {
		return v, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return v, fmt.Errorf("%s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return v, fmt.Errorf("%s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return v, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}
