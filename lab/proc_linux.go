package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// startInNetNS starts argv inside network namespace ns through `ip netns
// exec` (ip execs argv, so the pid is argv's), detached in its own session,
// with stdout and stderr appended to logPath. Environment variables named
// SKEIN_* are dropped so a user's exported settings (the lab's own hint among
// them) never override the flags the lab passes.
func startInNetNS(ns, logPath string, argv []string) (int, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("open log: %w", err)
	}
	defer f.Close()
	cmd := exec.Command(ipCommand(), append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = []string{} // non-nil: an empty Env would otherwise inherit everything
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SKEIN_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s in %s: %w", filepath.Base(argv[0]), ns, err)
	}
	// Reap the child when it exits so that it never lingers as a zombie in
	// this process; the goroutine ends with the process, which Down stops.
	go func() { _ = cmd.Wait() }() // exits are seen through procAlive; the process logs why
	return cmd.Process.Pid, nil
}

// procAlive reports whether pid runs (zombies count as dead).
func procAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	switch b[i+2] {
	case 'Z', 'X', 'x':
		return false
	}
	return true
}

// procCmdline returns pid's arguments.
func procCmdline(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// procOfRunDir reports whether pid is one the lab started for runDir: an
// agent (--socket under runDir) or an etcd (--dir under runDir). Matching
// the flag and its value, not any mention of the path, spares a user's shell
// or editor that merely names a file in the run directory, and guards
// against pid reuse.
func procOfRunDir(pid int, runDir string) bool {
	return argsOfRunDir(procCmdline(pid), runDir)
}

// isEtcdProc reports whether pid is a lab etcd (`skein lab etcd`).
func isEtcdProc(pid int) bool {
	return slices.Contains(procCmdline(pid), "--"+EtcdFlagClientURLs)
}

// nsID identifies a namespace by its nsfs device and inode.
type nsID struct{ dev, ino uint64 }

func statNS(path string) (nsID, bool) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsID{}, false
	}
	return nsID{dev: st.Dev, ino: st.Ino}, true
}

// findLabProcs returns the pids of the lab's processes: those whose command
// line names a path under runDir and those running in one of the named
// network namespaces. This process is never included.
func findLabProcs(runDir string, namespaces []string) []int {
	ids := make(map[nsID]bool, len(namespaces))
	for _, n := range namespaces {
		if id, ok := statNS(netnsPath(n)); ok {
			ids[id] = true
		}
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || pid == 1 || !procAlive(pid) {
			continue
		}
		if id, ok := statNS(fmt.Sprintf("/proc/%d/ns/net", pid)); ok && ids[id] {
			pids = append(pids, pid)
			continue
		}
		if procOfRunDir(pid, runDir) {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids
}

// terminate sends SIGTERM to pids, waits up to grace for them to exit, then
// sends SIGKILL to the rest and waits again. It reports pids that survive.
func terminate(ctx context.Context, pids []int, grace time.Duration) error {
	signalAll := func(sig unix.Signal) {
		for _, p := range pids {
			if procAlive(p) {
				_ = unix.Kill(p, sig) // ESRCH: it exited meanwhile
			}
		}
	}
	signalAll(unix.SIGTERM)
	if waitExit(ctx, pids, grace) {
		return nil
	}
	signalAll(unix.SIGKILL)
	if waitExit(ctx, pids, 10*time.Second) {
		return nil
	}
	var alive []string
	for _, p := range pids {
		if procAlive(p) {
			alive = append(alive, strconv.Itoa(p))
		}
	}
	return fmt.Errorf("processes %s survived SIGKILL", strings.Join(alive, ","))
}

// killProcs sends SIGKILL to pids at once, as a crash would end them, and
// waits for them to exit.
func killProcs(ctx context.Context, pids []int) error {
	for _, p := range pids {
		if procAlive(p) {
			_ = unix.Kill(p, unix.SIGKILL) // ESRCH: it exited meanwhile
		}
	}
	if !waitExit(ctx, pids, 10*time.Second) {
		return fmt.Errorf("processes %v survived SIGKILL", pids)
	}
	return nil
}

// waitExit reports whether all pids exited within d.
func waitExit(ctx context.Context, pids []int, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		done := true
		for _, p := range pids {
			if procAlive(p) {
				done = false
				break
			}
		}
		if done {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return false
		case <-tick.C:
		}
	}
}
