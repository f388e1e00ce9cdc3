package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Down removes the lab: it stops its agents and etcd, deletes its
// namespaces and its run directory.
func (l *Lab) Down(ctx context.Context) error {
	st := l.State()
	return down(ctx, st.Name, st.RunDir, statePIDs(st))
}

// Down removes the lab named name whose run directory is runDir ("" for the
// default). It needs no lab.json, so it also cleans up after a crash: it
// stops every process whose command line names the run directory or that
// runs in one of the lab's namespaces, deletes every network namespace named
// "<name>-*", and removes the run directory if it is marked as this lab's.
// Removing a lab that does not exist succeeds.
func Down(ctx context.Context, name, runDir string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if runDir == "" {
		runDir = DefaultRunDir(name)
	}
	runDir = filepath.Clean(runDir)
	var pids []int
	if st, err := readState(runDir); err == nil && st.Name == name {
		pids = statePIDs(st)
	}
	return down(ctx, name, runDir, pids)
}

// statePIDs returns the pids lab.json records.
func statePIDs(st State) []int {
	var pids []int
	for _, m := range st.Etcd {
		pids = append(pids, m.PID)
	}
	for _, h := range st.Hosts {
		pids = append(pids, h.AgentPID)
	}
	if st.ToR != nil {
		pids = append(pids, st.ToR.PIDs...)
	}
	return pids
}

func down(ctx context.Context, name, runDir string, known []int) error {
	var errs []error
	nss, err := labNamespaces(name)
	if err != nil {
		errs = append(errs, err)
	}

	// Known pids are trusted only while they still name the run directory:
	// a pid from a stale lab.json may belong to someone else by now.
	var pids []int
	for _, p := range known {
		if procAlive(p) && procOfRunDir(p, runDir) {
			pids = append(pids, p)
		}
	}
	pids = append(pids, findLabProcs(runDir, nss)...)
	slices.Sort(pids)
	pids = slices.Compact(pids)
	// Agents first, etcd last: an agent shutting down may still talk to it.
	etcd := slices.DeleteFunc(slices.Clone(pids), func(p int) bool { return !isEtcdProc(p) })
	rest := slices.DeleteFunc(pids, isEtcdProc)
	for _, ps := range [][]int{rest, etcd} {
		if len(ps) == 0 {
			continue
		}
		if err := terminate(ctx, ps, stopGrace); err != nil {
			errs = append(errs, fmt.Errorf("stop processes: %w", err))
		}
	}

	for _, n := range nss {
		if err := delNetNS(ctx, n); err != nil {
			errs = append(errs, err)
		}
	}
	if left, err := labNamespaces(name); err == nil && len(left) > 0 {
		errs = append(errs, fmt.Errorf("namespaces left: %s", strings.Join(left, " ")))
	}

	if err := removeRunDir(name, runDir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lab %s down: %w", name, err)
	}
	return nil
}

// labNamespaces returns the network namespaces named "<name>-*", containers
// first, the underlay last.
func labNamespaces(name string) ([]string, error) {
	all, err := listNetNS()
	if err != nil {
		return nil, err
	}
	return filterNamespaces(name, all), nil
}

// filterNamespaces returns the names in all that start with "<name>-",
// deepest first (containers, then hosts, then the underlay), so that a
// partial failure leaves the outer namespaces, which find the rest again.
func filterNamespaces(name string, all []string) []string {
	var nss []string
	for _, n := range all {
		if strings.HasPrefix(n, name+"-") {
			nss = append(nss, n)
		}
	}
	slices.SortFunc(nss, func(a, b string) int {
		if d := strings.Count(b, "-") - strings.Count(a, "-"); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	return nss
}

// removeRunDir removes runDir when its marker names this lab. A missing run
// directory is fine; one without the marker is left alone unless it is empty.
func removeRunDir(name, runDir string) error {
	b, err := os.ReadFile(filepath.Join(runDir, markerFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		ents, rerr := os.ReadDir(runDir)
		if errors.Is(rerr, fs.ErrNotExist) {
			return nil
		}
		if rerr == nil && len(ents) == 0 {
			return os.Remove(runDir)
		}
		return fmt.Errorf("run dir %s has no lab marker; left in place", runDir)
	case err != nil:
		return fmt.Errorf("run dir: %w", err)
	}
	if got := strings.TrimSpace(string(b)); got != name {
		return fmt.Errorf("run dir %s belongs to lab %q; left in place", runDir, got)
	}
	if err := os.RemoveAll(runDir); err != nil {
		return fmt.Errorf("remove run dir: %w", err)
	}
	return nil
}
