package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/skeinnet/skein/api"
)

// maxReplyBytes bounds what the plugin reads from the agent.
const maxReplyBytes = 1 << 20

// agentClient speaks the wire protocol of api/wire.go to skeind over its unix
// socket. It keeps one HTTP connection alive, so ADD's allocate and commit
// (and a rollback's release) share a single connection.
//
// Every error it returns is a *types.Error: 11 (try again later) when the
// agent cannot be reached or does not answer in time, otherwise the code the
// agent put in its api.AgentError.
type agentClient struct {
	socket string
	tr     *http.Transport
	hc     *http.Client
}

func newAgentClient(socket string) *agentClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
	}
	return &agentClient{socket: socket, tr: tr, hc: &http.Client{Transport: tr}}
}

// Close drops the idle connection.
func (c *agentClient) Close() { c.tr.CloseIdleConnections() }

// Allocate asks for the owner's addresses (idempotent per owner).
func (c *agentClient) Allocate(ctx context.Context, req api.AllocateRequest) (api.AllocateResponse, error) {
	var resp api.AllocateResponse
	err := c.call(ctx, http.MethodPost, api.PathAllocate, req, &resp)
	return resp, err
}

// Commit publishes the plumbed endpoint; the agent answers once it is
// published and its policy is in place.
func (c *agentClient) Commit(ctx context.Context, req api.CommitRequest) error {
	var resp api.CommitResponse
	return c.call(ctx, http.MethodPost, api.PathCommit, req, &resp)
}

// Release frees the owner's addresses; it succeeds when the owner holds none.
func (c *agentClient) Release(ctx context.Context, network string, o api.Owner) (api.ReleaseResponse, error) {
	var resp api.ReleaseResponse
	err := c.call(ctx, http.MethodPost, api.PathRelease, api.ReleaseRequest{Owner: o, Network: network}, &resp)
	return resp, err
}

// Check reports what the agent holds for the owner.
func (c *agentClient) Check(ctx context.Context, network string, o api.Owner) (api.CheckResponse, error) {
	var resp api.CheckResponse
	err := c.call(ctx, http.MethodPost, api.PathCheck, api.ReleaseRequest{Owner: o, Network: network}, &resp)
	return resp, err
}

// GC frees every attachment of network not in valid and returns the freed ones.
func (c *agentClient) GC(ctx context.Context, network string, valid []api.Owner) (api.GCResponse, error) {
	var resp api.GCResponse
	if valid == nil {
		valid = []api.Owner{} // "nothing is valid", never null
	}
	err := c.call(ctx, http.MethodPost, api.PathGC, api.GCRequest{Network: network, Valid: valid}, &resp)
	return resp, err
}

// Status returns the agent's readiness.
func (c *agentClient) Status(ctx context.Context) (api.AgentStatus, error) {
	var resp api.AgentStatus
	err := c.call(ctx, http.MethodGet, api.PathStatus, nil, &resp)
	return resp, err
}

func (c *agentClient) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return types.NewError(types.ErrInternal, "encode "+path+" request", err.Error())
		}
		body = bytes.NewReader(b)
	}
	// The host part is ignored by the unix dialer; it only names the peer in errors.
	req, err := http.NewRequestWithContext(ctx, method, "http://skeind"+path, body)
	if err != nil {
		return types.NewError(types.ErrInternal, "build "+path+" request", err.Error())
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.unreachable(path, err)
	}
	defer func() { _ = resp.Body.Close() }() // fully read below; nothing to report
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
	if err != nil {
		return c.unreachable(path, err)
	}
	if resp.StatusCode/100 != 2 {
		return agentError(path, resp.StatusCode, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return types.NewError(types.ErrInternal, "decode skeind "+path+" reply", err.Error())
	}
	return nil
}

// unreachable is error 11: the agent may be restarting, so the runtime
// should retry. The message names the socket so an operator knows where to look.
func (c *agentClient) unreachable(path string, err error) *types.Error {
	if errors.Is(err, context.DeadlineExceeded) {
		return types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("skeind at %s did not answer %s in time", c.socket, path), err.Error())
	}
	return types.NewError(types.ErrTryAgainLater,
		fmt.Sprintf("skeind not reachable at %s", c.socket), fmt.Sprintf("%s: %v", path, err))
}

// agentError turns a non-2xx reply into the agent's CNI error. A reply
// without an api.AgentError body (a proxy, a crashing agent) is "try again"
// for 502-504 and an internal error otherwise.
func agentError(path string, status int, body []byte) *types.Error {
	var ae api.AgentError
	if err := json.Unmarshal(body, &ae); err != nil || (ae.Code == 0 && ae.Message == "") {
		code := types.ErrInternal
		switch status {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			code = types.ErrTryAgainLater
		}
		return types.NewError(code, fmt.Sprintf("skeind %s: HTTP %d", path, status), string(bytes.TrimSpace(body)))
	}
	code := ae.Code
	if code == 0 {
		code = types.ErrInternal
	}
	msg := ae.Message
	if msg == "" {
		msg = http.StatusText(status)
	}
	return types.NewError(code, "skeind "+path+": "+msg, ae.Details)
}
