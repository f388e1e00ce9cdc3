package namedns

import (
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
)

// Dir is where `ip netns` keeps named namespaces.
const Dir = "/var/run/netns"

// Path returns the bind-mount path of the named namespace.
func Path(name string) string { return filepath.Join(Dir, name) }

// IPCommand returns the path of iproute2's ip (sbin is not always in PATH).
func IPCommand() string {
	if p, err := exec.LookPath("ip"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "ip"
}

// RunIP runs ip with args and returns its output in the error.
func RunIP(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, IPCommand(), args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Add creates a named network namespace. It uses `ip netns add` so that
// /run/netns is a shared mount as every other tool expects.
func Add(ctx context.Context, name string) error {
	return RunIP(ctx, "netns", "add", name)
}

// Delete deletes a named network namespace; a missing one is not an error.
func Delete(ctx context.Context, name string) error {
	if _, err := os.Lstat(Path(name)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return RunIP(ctx, "netns", "delete", name)
}

// List returns the names of all named network namespaces.
func List() ([]string, error) {
	ents, err := os.ReadDir(Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list network namespaces: %w", err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

// ErrThreadStuck reports that a thread could not return to its namespace; it
// was left locked so that the runtime discards it.
var ErrThreadStuck = errors.New("thread left in the target namespace (discarded)")

// Do runs fn on a fresh OS thread switched into the named namespace. Sockets
// fn creates and processes it forks live in that namespace.
func Do(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		clean, err := switchAndRun(name, fn)
		if clean {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// switchAndRun is Do's body; clean reports whether the calling thread is
// back in its original namespace.
func switchAndRun(name string, fn func() error) (clean bool, err error) {
	orig, err := netns.Get()
	if err != nil {
		return true, fmt.Errorf("get current network namespace: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(Path(name))
	if err != nil {
		return true, fmt.Errorf("open network namespace %s: %w", name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		// setns failed, so the thread never left.
		return true, fmt.Errorf("enter network namespace %s: %w", name, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		return false, errors.Join(ferr, fmt.Errorf("leave network namespace %s: %w: %w", name, err, ErrThreadStuck))
	}
	return true, ferr
}

// Handle returns a netlink handle whose sockets live in the named namespace.
func Handle(name string) (*netlink.Handle, error) {
	ns, err := netns.GetFromPath(Path(name))
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", name, err)
	}
	return h, nil
}

// SetSysctls writes net sysctls ("net/ipv4/ip_forward" → "1") inside the
// named namespace: /proc/sys/net resolves to the writing thread's namespace,
// so only keys under net/ are accepted.
func SetSysctls(name string, kv map[string]string) error {
	for k := range kv {
		if !strings.HasPrefix(k, "net/") {
			return fmt.Errorf("sysctl %s in %s: only net/ sysctls are per namespace", k, name)
		}
	}
	return Do(name, func() error {
		for k, v := range kv {
			if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s in %s: %w", k, v, name, err)
			}
		}
		return nil
	})
}

// Start starts cmd inside the named namespace: it forks from a thread
// switched into it, so the child is born there (without the mount namespace
// `ip netns exec` sets up, so /sys shows the caller's namespace).
func Start(name string, cmd *exec.Cmd) error {
	return Do(name, cmd.Start)
}
