package ipamaudit

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/probe"
	"github.com/skeinnet/skein/store"
)

// Agent talks to the local agent over its unix socket, as skein-cni does,
// to free leaked addresses: only the agent holds its allocations.
type Agent struct {
	hc   *http.Client
	node string
}

// DialAgent connects to the agent serving the socket at path and asks it
// which node it is.
func DialAgent(ctx context.Context, path string) (*Agent, error) {
	s := &Agent{hc: &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
	var st api.AgentStatus
	if code, err := s.call(ctx, http.MethodGet, api.PathStatus, nil, &st); err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("agent socket %s (--socket): status %d: %v", path, code, err)
	}
	s.node = st.Node
	return s, nil
}

// call sends req (nil for none) and decodes a 200 answer into resp.
func (s *Agent) call(ctx context.Context, method, path string, req, resp any) (int, error) {
	var body io.Reader
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	r, err := http.NewRequestWithContext(ctx, method, "http://skeind"+path, body)
	if err != nil {
		return 0, err
	}
	res, err := s.hc.Do(r)
	if err != nil {
		return 0, probe.ShortErr(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		var ae api.AgentError
		_ = json.NewDecoder(res.Body).Decode(&ae) // the status says enough without it
		return res.StatusCode, fmt.Errorf("%s: %s", path, ae.Message)
	}
	if resp != nil {
		if err := json.NewDecoder(res.Body).Decode(resp); err != nil {
			return res.StatusCode, fmt.Errorf("%s: decode: %w", path, err)
		}
	}
	return res.StatusCode, nil
}

// ReleaseLeak frees a LeakedAddress finding through the agent after
// checking, as late as possible and within timeout, that it is still
// unpublished and still the same.
func (s *Agent) ReleaseLeak(ctx context.Context, cl *store.Client, f Finding, timeout time.Duration) string {
	if s.node != f.Node {
		return fmt.Sprintf("skipped: the agent on --socket is node %s; run this on %s", s.node, f.Node)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := cl.GetEndpoint(cctx, f.Node, f.owner); err == nil {
		return "skipped: its endpoint was published meanwhile"
	} else if !errors.Is(err, store.ErrNotFound) {
		return "failed: " + err.Error()
	}
	// An allocation from before networks were recorded names none; any
	// network name adopts it, and it is being released anyway.
	network := cmp.Or(f.network, "skein")
	var cr api.CheckResponse
	code, err := s.call(cctx, http.MethodPost, api.PathCheck, api.ReleaseRequest{Owner: f.owner, Network: network}, &cr)
	switch {
	case code == http.StatusNotFound:
		return "skipped: the agent no longer holds it"
	case err != nil:
		return "failed: " + err.Error()
	case cr.HeldBy != "":
		return "skipped: network " + cr.HeldBy + " holds it now"
	case cr.Published:
		return "skipped: the agent published it meanwhile"
	case !slices.Equal(cr.IPs, f.IPs):
		return fmt.Sprintf("skipped: the owner now holds %v", cr.IPs)
	}
	var rr api.ReleaseResponse
	if _, err := s.call(cctx, http.MethodPost, api.PathRelease, api.ReleaseRequest{Owner: f.owner, Network: network}, &rr); err != nil {
		return "failed: " + err.Error()
	}
	return fmt.Sprintf("released: %v freed by the agent", rr.Released)
}
