package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/skeinnet/skein/internal/namedns"
)

// nsPath returns the bind-mount path of a named namespace.
func nsPath(name string) string { return namedns.Path(name) }

// addNS creates a named namespace with lo up.
func addNS(ctx context.Context, name string) error {
	if !strings.HasPrefix(name, nsPrefix) {
		return fmt.Errorf("namespace %q lacks the bench prefix %q", name, nsPrefix)
	}
	if err := namedns.Add(ctx, name); err != nil {
		return err
	}
	return ipn(ctx, name, "link", "set", "lo", "up")
}

// delNS deletes a named namespace; a missing one is fine.
func delNS(ctx context.Context, name string) error { return namedns.Delete(ctx, name) }

// benchNamespaces lists the namespaces whose names start with the bench prefix.
func benchNamespaces() ([]string, error) {
	all, err := namedns.List()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range all {
		if strings.HasPrefix(n, nsPrefix) {
			out = append(out, n)
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
	return namedns.RunIP(ctx, append([]string{"-n", ns}, args...)...)
}

// ipnOut is ipn returning stdout.
func ipnOut(ctx context.Context, ns string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, namedns.IPCommand(), append([]string{"-n", ns}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("ip -n %s %s: %w: %s", ns, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// inNS runs fn on a thread switched into the named namespace (namedns.Do).
func inNS(name string, fn func() error) error { return namedns.Do(name, fn) }

// startIn starts cmd inside the named namespace: it forks from a thread
// switched into it, so the child is born there (without the mount namespace
// `ip netns exec` sets up, which costs milliseconds we do not want to time).
// Commands that need /sys of the namespace must use `ip netns exec` instead.
func startIn(ns string, cmd *exec.Cmd) error { return namedns.Start(ns, cmd) }

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

// writeSysctl writes a /proc/sys/net value ("net.ipv4.ip_forward") from
// inside ns: net sysctls are per namespace.
func writeSysctl(ns, key, value string) error {
	return namedns.SetSysctls(ns, map[string]string{strings.ReplaceAll(key, ".", "/"): value})
}

// handleIn returns a netlink handle whose socket lives in the named namespace.
func handleIn(ns string) (*netlink.Handle, error) { return namedns.Handle(ns) }

// nsInode returns the inode of a named namespace, as /proc/<pid>/ns/net
// shows it ("net:[inode]").
func nsInode(name string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(nsPath(name), &st); err != nil {
		return 0, fmt.Errorf("stat namespace %s: %w", name, err)
	}
	return st.Ino, nil
}
