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
	"github.com/skeinnet/skein/internal/slotfile"
)

// StateName names the allocator's state inside StateDir: two slot files,
// StateName+".0" and StateName+".1", rewritten in turn in place with one
// fdatasync per change (internal/slotfile).
const StateName = "ipam.state"

// StateFileName is the state file earlier versions rewrote whole (temp file,
// fsync, rename, directory fsync) on every change. New reads it when no slot
// holds a state yet and removes it once the slots hold one.
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

// loadState reads and checks the legacy whole-file state at path. A missing
// file is an empty state (ok=false); anything unreadable is an error naming
// the file, because silently starting empty would hand out addresses
// containers hold.
func loadState(path, node string) (st stateFile, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return stateFile{}, false, nil
	}
	if err != nil {
		return stateFile{}, false, fmt.Errorf("read ipam state %s: %w", path, err)
	}
	st, err = decodeState(b, path, node)
	return st, err == nil, err
}

// decodeState parses and checks one state document read from where.
func decodeState(b []byte, where, node string) (st stateFile, err error) {
	if err := json.Unmarshal(b, &st); err != nil {
		return stateFile{}, fmt.Errorf("ipam state %s is corrupt (fix or move it away; containers on this node may hold addresses it lists): %w", where, err)
	}
	if err := st.check(node); err != nil {
		return stateFile{}, fmt.Errorf("ipam state %s is corrupt (fix or move it away; containers on this node may hold addresses it lists): %w", where, err)
	}
	return st, nil
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
		if !b.IsValid() || b != b.Masked() || (b.Addr().Is4() && b.Bits() > 30) ||
			(b.Addr().Is6() && (b.Bits() < api.MinBlockSizeV6 || b.Bits() > api.MaxBlockSizeV6)) {
			return fmt.Errorf("block %s: not an IPv4 block of at least 4 addresses or an IPv6 block /%d to /%d", b, api.MinBlockSizeV6, api.MaxBlockSizeV6)
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

// encodeState renders st as the document the slots (or the legacy file) hold.
func encodeState(st stateFile) ([]byte, error) {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode ipam state: %w", err)
	}
	return append(data, '\n'), nil
}

// openState opens the state slots in dir and returns the newest state: from
// the slots, or, when they hold none yet, from the legacy file (legacy=true).
func openState(dir, node string) (slots *slotfile.File, st stateFile, found, legacy bool, err error) {
	slots, doc, found, err := slotfile.Open(dir, StateName)
	if err != nil {
		return nil, stateFile{}, false, false, fmt.Errorf("ipam state in %s is corrupt (fix or move it away; containers on this node may hold addresses it lists): %w", dir, err)
	}
	if found {
		st, err = decodeState(doc, filepath.Join(dir, StateName+".{0,1}"), node)
		return slots, st, err == nil, false, err
	}
	st, found, err = loadState(filepath.Join(dir, StateFileName), node)
	return slots, st, found, found, err
}
