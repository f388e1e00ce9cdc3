package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/skeinnet/skein/api"
)

// StateFileName is the name of the allocator's state file inside StateDir.
const StateFileName = "ipam.json"

const stateVersion = 1

// stateFile is the on-disk form of an allocator's state.
type stateFile struct {
	Version     int            `json:"version"`
	Node        string         `json:"node"`
	Home        netip.Prefix   `json:"home"`
	Blocks      []netip.Prefix `json:"blocks"`
	Allocations []Allocation   `json:"allocations"`
	Cooling     []coolingAddr  `json:"cooling,omitempty"`
}

// coolingAddr is a released address and the time it may be reused.
type coolingAddr struct {
	IP    netip.Addr `json:"ip"`
	Until time.Time  `json:"until"`
}

// loadState reads and checks the state file at path. A missing file is an
// empty state (ok=false); anything unreadable is an error naming the file,
// because silently starting empty would hand out addresses containers hold.
func loadState(path, node string) (st stateFile, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return stateFile{}, false, nil
	}
	if err != nil {
		return stateFile{}, false, fmt.Errorf("read ipam state %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return stateFile{}, false, fmt.Errorf("ipam state %s is corrupt (fix or move it away; containers on this node may hold addresses it lists): %w", path, err)
	}
	if err := st.check(node); err != nil {
		return stateFile{}, false, fmt.Errorf("ipam state %s is corrupt (fix or move it away; containers on this node may hold addresses it lists): %w", path, err)
	}
	return st, true, nil
}

// check validates a decoded state file for node.
func (st stateFile) check(node string) error {
	if st.Version != stateVersion {
		return fmt.Errorf("unsupported version %d (want %d)", st.Version, stateVersion)
	}
	if st.Node != node {
		return fmt.Errorf("written by node %q, not %q", st.Node, node)
	}
	blocks := make(map[netip.Prefix]bool, len(st.Blocks))
	for _, b := range st.Blocks {
		if !b.IsValid() || !b.Addr().Is4() || b != b.Masked() || b.Bits() > 30 {
			return fmt.Errorf("block %s: not an IPv4 block of at least 4 addresses", b)
		}
		if blocks[b] {
			return fmt.Errorf("block %s listed twice", b)
		}
		for o := range blocks {
			if o.Overlaps(b) {
				return fmt.Errorf("blocks %s and %s overlap", o, b)
			}
		}
		blocks[b] = true
	}
	if st.Home.IsValid() && !blocks[st.Home] {
		return fmt.Errorf("home block %s is not among the blocks", st.Home)
	}
	ips := make(map[netip.Addr]bool, len(st.Allocations))
	owners := make(map[api.Owner]bool, len(st.Allocations))
	for _, al := range st.Allocations {
		if al.Owner.ContainerID == "" || al.Owner.IfName == "" {
			return fmt.Errorf("allocation %s: empty owner", al.IP)
		}
		if !blocks[al.Block] || !al.Block.Contains(al.IP) {
			return fmt.Errorf("allocation %s of %s: not inside a listed block (block %s)", al.IP, al.Owner, al.Block)
		}
		if ips[al.IP] {
			return fmt.Errorf("address %s allocated twice", al.IP)
		}
		if owners[al.Owner] {
			return fmt.Errorf("owner %s holds two addresses", al.Owner)
		}
		ips[al.IP] = true
		owners[al.Owner] = true
	}
	for _, c := range st.Cooling {
		if !c.IP.IsValid() {
			return fmt.Errorf("cooling entry with invalid address")
		}
	}
	return nil
}

// writeFileAtomic replaces path with data so that a crash leaves either the
// old or the new content, never a mix: temp file in the same directory,
// fsync, rename, fsync of the directory. The file is mode 0600.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temp file in %s: %w", dir, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()      // may already be closed; the write error is what matters
			_ = os.Remove(tmp) // best effort: a leftover temp file is removed at the next start
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	if err := d.Sync(); err != nil {
		_ = d.Close() // read-only handle; the fsync error is what matters
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	if err := d.Close(); err != nil {
		return fmt.Errorf("close %s: %w", dir, err)
	}
	return nil
}

// removeStaleTemps deletes temp files an interrupted writeFileAtomic left in dir.
func removeStaleTemps(dir, name string) error {
	matches, err := filepath.Glob(filepath.Join(dir, "."+name+".tmp-*"))
	if err != nil {
		return fmt.Errorf("glob temp files in %s: %w", dir, err)
	}
	var errs []error
	for _, m := range matches {
		if err := os.Remove(m); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// saveState writes st to path atomically.
func saveState(path string, st stateFile) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode ipam state: %w", err)
	}
	if err := writeFileAtomic(path, append(data, '\n')); err != nil {
		return fmt.Errorf("save ipam state: %w", err)
	}
	return nil
}
