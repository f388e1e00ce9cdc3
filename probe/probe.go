// Package probe asks the agents' debug endpoints, all at once and each
// within a deadline, for what only an agent knows (its own view of its
// links, its allocations, its BGP sessions). The addresses come from the
// node and status records in etcd; a node that cannot be asked is an
// answer too, never a fatal error.
package probe

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/store"
)

// MaxParallel bounds the agents asked at once.
const MaxParallel = 16

// maxAnswer bounds an agent's answer (a topology of a large cluster is a
// few MB).
const maxAnswer = 64 << 20

// Status decodes node's status record; ok is false when it has none, err
// is set when it does not decode.
func Status(inv store.Inventory, node string) (st api.NodeStatus, ok bool, err error) {
	raw, ok := inv.Status[node]
	if !ok {
		return st, false, nil
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, false, fmt.Errorf("status record of %s: %w", node, err)
	}
	return st, true, nil
}

// Addr returns where node's debug endpoint listens, seen from another
// host: an unspecified host part means the node's underlay address. It is
// empty when the agent serves none.
func Addr(n api.Node, st api.NodeStatus) string {
	addr := st.DebugAddr
	if addr == "" {
		addr = n.DebugAddr
	}
	if addr == "" || addr == "off" {
		return ""
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		if !n.UnderlayIP.IsValid() {
			return ""
		}
		host = n.UnderlayIP.String()
	}
	return net.JoinHostPort(host, port)
}

// NoAddr is the message Each hands failed for a node whose agent serves
// no debug endpoint.
const NoAddr = "no address"

// Each runs get against the debug address of every node of inv, all at
// once (up to MaxParallel), each with an HTTP client bounded by timeout; a
// node without an address gets failed(NoAddr). The result has one entry
// per node.
func Each[P any](ctx context.Context, inv store.Inventory, timeout time.Duration, failed func(msg string) P,
	get func(ctx context.Context, hc *http.Client, name string, n api.Node, addr string) P) map[string]P {
	// No proxy from the environment: debug endpoints are on the hosts' own networks.
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: timeout}
	out := map[string]P{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, MaxParallel)
	for name, n := range inv.Nodes {
		st, _, _ := Status(inv, name) // a bad record falls back to the node record
		addr := Addr(n, st)
		if addr == "" {
			out[name] = failed(NoAddr)
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			p := get(ctx, hc, name, n, addr)
			mu.Lock()
			out[name] = p
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// Get GETs http://addr+path and decodes the JSON answer into v.
func Get(ctx context.Context, hc *http.Client, addr, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return fmt.Errorf("%s%s: %w", addr, path, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return ShortErr(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s%s: %s", addr, path, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(v); err != nil {
		return fmt.Errorf("%s%s: decode: %w", addr, path, err)
	}
	return nil
}

// ShortErr trims the URL noise from an HTTP client error: the URL is
// already in the caller's message, and the cause is what an admin reads.
func ShortErr(err error) error {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.HasPrefix(msg, "Get ") {
		return fmt.Errorf("%s", msg[i+2:])
	}
	return err
}
