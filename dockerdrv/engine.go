package dockerdrv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// errNotFound: the engine does not know the network or container.
var errNotFound = errors.New("not found")

// engineNetwork is the part of the engine's network inspect the driver reads.
type engineNetwork struct {
	ID         string                    `json:"Id"`
	Name       string                    `json:"Name"`
	Labels     map[string]string         `json:"Labels"`
	Containers map[string]engineEndpoint `json:"Containers"`
	Options    map[string]string         `json:"Options"`
}

type engineEndpoint struct {
	EndpointID string `json:"EndpointID"`
	Name       string `json:"Name"`
}

// engineContainer is the part of the engine's container list the driver reads.
type engineContainer struct {
	ID     string            `json:"Id"`
	Names  []string          `json:"Names"`
	Labels map[string]string `json:"Labels"`
}

// Engine is a client of the Docker engine API on a unix socket. It only
// reads, and only calls that take no container lock (network inspect,
// container list): a container inspect during Join would wait for the
// container start that waits for Join.
type Engine struct {
	c *http.Client
}

// engineCallTimeout bounds one engine API call.
const engineCallTimeout = 5 * time.Second

// NewEngine returns a client of the engine at host, "unix:///path" or a
// path.
func NewEngine(host string) (*Engine, error) {
	path := strings.TrimPrefix(host, "unix://")
	if path == "" || !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("docker host %q: want unix:///path/to/docker.sock", host)
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns: 2,
	}
	return &Engine{c: &http.Client{Transport: tr, Timeout: engineCallTimeout}}, nil
}

// Network inspects a network; errNotFound when the engine has none by id.
func (e *Engine) Network(ctx context.Context, id string) (engineNetwork, error) {
	var n engineNetwork
	err := e.get(ctx, "/networks/"+url.PathEscape(id), &n)
	return n, err
}

// Container returns a container from the container list; errNotFound when
// it is not there.
func (e *Engine) Container(ctx context.Context, id string) (engineContainer, error) {
	f, _ := json.Marshal(map[string][]string{"id": {id}}) // a map of strings always encodes
	var list []engineContainer
	if err := e.get(ctx, "/containers/json?all=1&filters="+url.QueryEscape(string(f)), &list); err != nil {
		return engineContainer{}, err
	}
	for _, c := range list {
		if c.ID == id {
			return c, nil
		}
	}
	return engineContainer{}, fmt.Errorf("container %s: %w", short(id), errNotFound)
}

// ContainerPID returns the pid of a running container's process. This is a
// container inspect: it waits for the container's start to finish, so it
// is never called from a libnetwork call.
func (e *Engine) ContainerPID(ctx context.Context, id string) (int, error) {
	var c struct {
		State struct {
			Pid int `json:"Pid"`
		} `json:"State"`
	}
	if err := e.get(ctx, "/containers/"+url.PathEscape(id)+"/json", &c); err != nil {
		return 0, err
	}
	if c.State.Pid == 0 {
		return 0, fmt.Errorf("container %s has no process: %w", short(id), errNotFound)
	}
	return c.State.Pid, nil
}

func (e *Engine) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+path, nil)
	if err != nil {
		return fmt.Errorf("engine request %s: %w", path, err)
	}
	resp, err := e.c.Do(req)
	if err != nil {
		return fmt.Errorf("docker engine GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("docker engine GET %s: %w", path, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("docker engine GET %s: %w", path, errNotFound)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("docker engine GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("docker engine GET %s: decode: %w", path, err)
	}
	return nil
}
