package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` keeps named namespaces.
const netnsDir = "/var/run/netns"

// nsPath returns the bind-mount path of a named namespace.
func nsPath(name string) string { return filepath.Join(netnsDir, name) }

// addNS creates a named network namespace with lo up.
func addNS(ctx context.Context, name string) error {
	if !strings.HasPrefix(name, nsPrefix) {
		return fmt.Errorf("namespace %q lacks the bench prefix %q", name, nsPrefix)
	}
	if err := runCmd(ctx, "ip", "netns", "add", name); err != nil {
		return err
	}
	return ipn(ctx, name, "link", "set", "lo", "up")
}

// delNS deletes a named namespace; a missing one is fine.
func delNS(ctx context.Context, name string) error {
	if _, err := os.Lstat(nsPath(name)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return runCmd(ctx, "ip", "netns", "delete", name)
}

// benchNamespaces lists the namespaces whose names start with the bench prefix.
func benchNamespaces() ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), nsPrefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// runCmd runs a command (never one that changes the root namespace: callers pass
// ip -n, bridge -n or netns commands only) and returns its output in errors.
func runCmd(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ipn runs `ip -n ns args...`: every ip command of the bench names its
// namespace, so none can reach the root namespace.
func ipn(ctx context.Context, ns string, args ...string) error {
	return runCmd(ctx, "ip", append([]string{"-n", ns}, args...)...)
}

// ipnOut is ipn returning stdout.
func ipnOut(ctx context.Context, ns string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"-n", ns}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("ip -n %s %s: %w: %s", ns, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// inNS runs fn on a fresh OS thread switched into the named namespace. The
// thread returns to its namespace before it is unlocked; when that fails it
// stays locked, so the runtime discards it with the goroutine.
func inNS(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(nsPath(name))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open namespace %s: %w", name, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace %s: %w", name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("leave namespace %s: %w", name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// startIn starts cmd inside the named namespace: it forks from a thread
// switched into it, so the child is born there (without the mount namespace
// `ip netns exec` sets up, which costs milliseconds we do not want to time).
// Commands that need /sys of the namespace must use `ip netns exec` instead.
func startIn(ns string, cmd *exec.Cmd) error {
	return inNS(ns, cmd.Start)
}

// runIn runs cmd inside the named namespace and waits for it.
func runIn(ns string, cmd *exec.Cmd) error {
	if err := startIn(ns, cmd); err != nil {
		return err
	}
	return cmd.Wait()
}

// outputIn runs name args inside ns and returns stdout; errors carry stderr.
func outputIn(ctx context.Context, ns, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := runIn(ns, cmd); err != nil {
		return stdout.String(), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), ns, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// writeSysctl writes a /proc/sys/net value from inside ns (net sysctls are
// per namespace and resolved by the opening thread's namespace).
func writeSysctl(ns, key, value string) error {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	if !strings.HasPrefix(path, "/proc/sys/net/") {
		return fmt.Errorf("sysctl %s: only net sysctls are per namespace", key)
	}
	return inNS(ns, func() error {
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", key, value, ns, err)
		}
		return nil
	})
}

// handleIn returns a netlink handle whose socket lives in the named namespace.
func handleIn(ns string) (*netlink.Handle, error) {
	h, err := netns.GetFromPath(nsPath(ns))
	if err != nil {
		return nil, fmt.Errorf("open namespace %s: %w", ns, err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", ns, err)
	}
	return nh, nil
}

// nsInode returns the inode of a named namespace, as /proc/<pid>/ns/net
// shows it ("net:[inode]").
func nsInode(name string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(nsPath(name), &st); err != nil {
		return 0, fmt.Errorf("stat namespace %s: %w", name, err)
	}
	return st.Ino, nil
}
