package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/atomicfile"
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

// saveState writes st to path atomically.
func saveState(path string, st stateFile) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode ipam state: %w", err)
	}
	if err := atomicfile.Write(path, append(data, '\n')); err != nil {
		return fmt.Errorf("save ipam state: %w", err)
	}
	return nil
}
