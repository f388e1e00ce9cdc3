package lab

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
)

// cniCall is one libcni invocation as a container runtime on a lab host
// makes it.
type cniCall struct {
	hostNS   string // the runtime's namespace, which the plugin inherits
	binDir   string // CNI_PATH
	cacheDir string // libcni's result cache
	logPath  string // the plugin's stderr
	conf     []byte // the conflist

	containerID string
	netns       string
	ifName      string
	args        [][2]string
}

// cniCallForLocked returns the CNI call for container c on host h; l.mu must be held.
func (l *Lab) cniCallForLocked(h Host, c Container) (cniCall, error) {
	conf, err := conflist(h.Socket, c.Labels, c.Ports)
	if err != nil {
		return cniCall{}, err
	}
	return cniCall{
		hostNS:      h.Name,
		binDir:      l.st.BinDir,
		cacheDir:    filepath.Join(l.st.RunDir, "cni", "cache"),
		logPath:     filepath.Join(h.dir(), "cni.log"),
		conf:        conf,
		containerID: c.ContainerID,
		netns:       c.NetNS,
		ifName:      c.IfName,
		args:        cniArgs(c.PodNS, c.PodName),
	}, nil
}

// AddContainer creates a container namespace on host and attaches it
// through skein-cni, invoked from inside the host's namespace as a runtime
// would. On failure nothing of the container is left.
func (l *Lab) AddContainer(ctx context.Context, host string, opts ContainerOpts) (_ Container, err error) {
	l.mu.Lock()
	h, err := l.st.host(host)
	if err != nil {
		l.mu.Unlock()
		return Container{}, fmt.Errorf("add container: %w", err)
	}
	h.LastContainer++
	name := containerName(h.Name, h.LastContainer)
	c := Container{
		Name:        name,
		Host:        h.Name,
		Index:       h.LastContainer,
		NetNS:       netnsPath(name),
		ContainerID: name,
		IfName:      ContainerIface,
		PodName:     opts.Name,
		PodNS:       opts.Namespace,
		Labels:      maps.Clone(opts.Labels),
		Ports:       slices.Clone(opts.Ports),
	}
	if c.PodName == "" {
		c.PodName = shortName(l.st.Name, name)
	}
	if c.PodNS == "" {
		c.PodNS = "default"
	}
	call, err := l.cniCallForLocked(*h, c)
	if err == nil {
		err = l.saveLocked()
	}
	l.mu.Unlock()
	if err != nil {
		return Container{}, fmt.Errorf("add container %s: %w", name, err)
	}

	if err := addNetNS(ctx, name); err != nil {
		return Container{}, fmt.Errorf("add container: %w", err)
	}
	defer func() {
		if err == nil {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if derr := delNetNS(cctx, name); derr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", derr))
		}
	}()
	if err := setLoUp(name); err != nil {
		return Container{}, fmt.Errorf("add container: %w", err)
	}
	ip, ip6, err := cniAdd(ctx, call)
	if err != nil {
		// The plugin rolls back what it made; a DEL also frees what the
		// agent may hold for the attachment.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if derr := cniDel(cctx, call); derr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", derr))
		}
		return Container{}, fmt.Errorf("add container %s on %s: %w\n--- tail of %s ---\n%s", name, h.Name, err, call.logPath, tailFile(call.logPath, 10))
	}
	c.IP, c.IP6 = ip, ip6

	l.mu.Lock()
	l.st.Containers = append(l.st.Containers, c)
	err = l.saveLocked()
	l.mu.Unlock()
	if err != nil {
		return Container{}, err
	}
	ips := strings.Join(c.Addrs().Strings(), " ")
	l.progress("container %s %s (pod %s/%s)", name, ips, c.PodNS, c.PodName)
	return c, nil
}

// DelContainer detaches a container through CNI DEL and removes its
// namespace. When DEL fails (say the agent is down) the container is kept,
// so the call can be repeated.
func (l *Lab) DelContainer(ctx context.Context, name string) error {
	l.mu.Lock()
	i, err := l.st.container(name)
	if err != nil {
		l.mu.Unlock()
		return fmt.Errorf("delete container: %w", err)
	}
	c := l.st.Containers[i]
	h, err := l.st.host(c.Host)
	var call cniCall
	if err == nil {
		call, err = l.cniCallForLocked(*h, c)
	}
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("delete container %s: %w", c.Name, err)
	}

	if err := cniDel(ctx, call); err != nil {
		return fmt.Errorf("delete container %s: %w", c.Name, err)
	}
	if err := delNetNS(ctx, c.Name); err != nil {
		return fmt.Errorf("delete container %s: %w", c.Name, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.st.Containers = slices.DeleteFunc(l.st.Containers, func(x Container) bool { return x.Name == c.Name })
	if err := l.saveLocked(); err != nil {
		return err
	}
	l.progress("container %s deleted", c.Name)
	return nil
}
