package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/skeinnet/skein/api"
)

// pollInterval paces the lab's readiness polls.
const pollInterval = 50 * time.Millisecond

// errExited reports that a process the lab waited for has exited.
var errExited = errors.New("process exited")

// createHost creates host index's namespace, wires it to the underlay and
// writes its conflist. It does not start the agent.
func (l *Lab) createHost(ctx context.Context, index int) (Host, error) {
	l.mu.Lock()
	tor := ""
	if l.st.ToR != nil {
		tor = l.st.ToR.Kind
	}
	fams := l.st.Underlay
	h := newHost(l.st.Name, l.st.RunDir, fams, hostSubnet(tor, l.st.Subnets, index), index)
	ul := l.st.UnderlayNS
	l.mu.Unlock()
	// Behind a ToR every host routes through it; on the shared subnet 0
	// the hosts need no gateway.
	var gws []netip.Addr
	if tor != "" {
		gws = underlayGateways(fams, h.Subnet)
	}

	for _, d := range []string{h.dir(), h.StateDir, filepath.Dir(h.CNIConfig)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return Host{}, fmt.Errorf("host %s: %w", h.Name, err)
		}
	}
	conf, err := conflist(h.Socket, nil, nil)
	if err != nil {
		return Host{}, fmt.Errorf("host %s: %w", h.Name, err)
	}
	if err := os.WriteFile(h.CNIConfig, conf, 0o644); err != nil {
		return Host{}, fmt.Errorf("host %s: %w", h.Name, err)
	}
	if err := addNetNS(ctx, h.Name); err != nil {
		return Host{}, fmt.Errorf("host %s: %w", h.Name, err)
	}
	l.mu.Lock()
	l.st.Hosts = append(l.st.Hosts, h)
	err = l.saveLocked()
	l.mu.Unlock()
	if err != nil {
		return Host{}, err
	}
	addrs := h.underlayPrefixes()
	if err := attachHost(ul, subnetBridge(h.Subnet), bridgePort(index), h.Name, HostIface, addrs, gws); err != nil {
		return Host{}, fmt.Errorf("host %s: %w", h.Name, err)
	}
	l.progress("host %s up: %s %s", h.Name, HostIface, joinPrefixes(addrs))
	return h, nil
}

// AddHost adds a host with the next free index, starts its agent and waits
// until it is ready.
func (l *Lab) AddHost(ctx context.Context) (Host, error) {
	l.hostMu.Lock()
	defer l.hostMu.Unlock()
	l.mu.Lock()
	index := l.st.nextHostIndex()
	l.mu.Unlock()
	if index > MaxHostsPerSubnet {
		return Host{}, fmt.Errorf("add host: at most %d hosts", MaxHostsPerSubnet)
	}
	h, err := l.createHost(ctx, index)
	if err != nil {
		return Host{}, fmt.Errorf("add host: %w", err)
	}
	if tor := l.State().ToR; tor != nil {
		if err := l.putToRPeers(ctx, []Host{h}); err != nil {
			return Host{}, fmt.Errorf("add host: %w", err)
		}
		if err := l.reconfigureToR(ctx, h); err != nil {
			return Host{}, fmt.Errorf("add host: %w", err)
		}
	}
	if err := l.startAgent(ctx, h.Name); err != nil {
		return Host{}, fmt.Errorf("add host: %w", err)
	}
	return l.Host(h.Name)
}

// StartAgent starts host's agent and waits until it is ready.
func (l *Lab) StartAgent(ctx context.Context, host string) error {
	return l.startAgent(ctx, host)
}

// StartAgentArgs is StartAgent with extra skeind flags for this start only
// (e.g. --take-over-node).
func (l *Lab) StartAgentArgs(ctx context.Context, host string, extra ...string) error {
	return l.startAgent(ctx, host, extra...)
}

// StopAgent stops host's agent: SIGTERM, then SIGKILL after 15 s. Stopping
// a stopped agent does nothing.
func (l *Lab) StopAgent(ctx context.Context, host string) error {
	l.mu.Lock()
	h, err := l.st.host(host)
	if err != nil {
		l.mu.Unlock()
		return fmt.Errorf("stop agent: %w", err)
	}
	name, pid, runDir := h.Name, h.AgentPID, l.st.RunDir
	l.mu.Unlock()

	if procAlive(pid) && procOfRunDir(pid, runDir) {
		if err := terminate(ctx, []int{pid}, stopGrace); err != nil {
			return fmt.Errorf("stop agent %s: %w", name, err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if h, err := l.st.host(name); err == nil && h.AgentPID == pid {
		h.AgentPID = 0
	}
	if err := l.saveLocked(); err != nil {
		return err
	}
	l.log.Info("agent stopped", "node", name, "pid", pid)
	return nil
}

// RestartAgent stops host's agent, starts it again and waits until it is ready.
func (l *Lab) RestartAgent(ctx context.Context, host string) error {
	if err := l.StopAgent(ctx, host); err != nil {
		return err
	}
	return l.StartAgent(ctx, host)
}

// startAgent starts host's skeind and waits until it reports ready.
func (l *Lab) startAgent(ctx context.Context, host string, extra ...string) error {
	l.mu.Lock()
	h, err := l.st.host(host)
	if err != nil {
		l.mu.Unlock()
		return fmt.Errorf("start agent: %w", err)
	}
	hc, runDir, binDir, tls := *h, l.st.RunDir, l.st.BinDir, l.st.TLS
	var etcdURLs []string
	for _, m := range l.st.Etcd {
		etcdURLs = append(etcdURLs, m.ClientURL)
	}
	l.mu.Unlock()

	if procAlive(hc.AgentPID) && procOfRunDir(hc.AgentPID, runDir) {
		return fmt.Errorf("start agent %s: already running (pid %d)", hc.Name, hc.AgentPID)
	}
	// A socket left by a killed agent would answer nothing; remove it so
	// readiness only ever sees the new agent's.
	if err := os.Remove(hc.Socket); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("start agent %s: %w", hc.Name, err)
	}
	start := time.Now()
	argv := append([]string{filepath.Join(binDir, binSkeind)}, skeindArgs(hc, etcdURLs, tls)...)
	argv = append(argv, extra...)
	pid, err := startInNetNS(hc.Name, hc.LogPath, argv)
	if err != nil {
		return fmt.Errorf("start agent %s: %w", hc.Name, err)
	}
	l.mu.Lock()
	if h, err := l.st.host(hc.Name); err == nil {
		h.AgentPID = pid
	}
	err = l.saveLocked()
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if err := waitAgentReady(ctx, hc, pid); err != nil {
		return err
	}
	l.progress("host %s agent ready (%s, pid %d)", hc.Name, since(start), pid)
	return nil
}

// waitAgentReady polls the agent's status over its socket until it reports
// ready, its process exits, or AgentReadyTimeout passes. Errors carry the
// tail of the agent's log.
func waitAgentReady(ctx context.Context, h Host, pid int) error {
	wctx, cancel := context.WithTimeout(ctx, AgentReadyTimeout)
	defer cancel()
	last := "no answer on " + h.Socket
	err := poll(wctx, func() (bool, error) {
		if !procAlive(pid) {
			return false, errExited
		}
		st, err := agentStatus(wctx, h.Socket)
		switch {
		case err != nil:
			last = err.Error()
			return false, nil
		case !st.Ready:
			last = "not ready: " + st.Reason
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("agent %s (pid %d) not ready: %w (last: %s)\n--- tail of %s ---\n%s",
			h.Name, pid, err, last, h.LogPath, tailFile(h.LogPath, 30))
	}
	return nil
}

// agentStatus asks an agent for its status over its unix socket.
func agentStatus(ctx context.Context, socket string) (api.AgentStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://skeind"+api.PathStatus, nil)
	if err != nil {
		return api.AgentStatus{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return api.AgentStatus{}, fmt.Errorf("agent status: %w", err)
	}
	defer resp.Body.Close()
	var st api.AgentStatus
	if resp.StatusCode != http.StatusOK {
		var ae api.AgentError
		if json.NewDecoder(resp.Body).Decode(&ae) == nil && ae.Message != "" {
			return st, fmt.Errorf("agent status: %s: %w", resp.Status, &ae)
		}
		return st, fmt.Errorf("agent status: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("agent status: decode: %w", err)
	}
	return st, nil
}

// poll calls cond every pollInterval until it reports done, fails, or ctx ends.
func poll(ctx context.Context, cond func() (bool, error)) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		done, err := cond()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
