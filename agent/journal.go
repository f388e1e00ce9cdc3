package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/skeinnet/skein/api"
	"github.com/skeinnet/skein/internal/atomicfile"
)

// JournalFileName is the journal of endpoint changes not yet in etcd, inside
// the agent's state dir.
const JournalFileName = "journal.json"

const journalVersion = 1

// journalOp is what an entry asks of the store.
type journalOp string

const (
	// opPublish ensures the endpoint's namespace and puts the endpoint.
	opPublish journalOp = "publish"
	// opUnpublish deletes the endpoint; only once that landed is the
	// attachment's address released.
	opUnpublish journalOp = "unpublish"
)

// journalEntry is one endpoint change made while etcd was unreachable.
type journalEntry struct {
	Seq uint64    `json:"seq"`
	Op  journalOp `json:"op"`
	// Endpoint is the record to publish, or (unpublish) the attachment:
	// node, container id, ifname and network.
	Endpoint api.Endpoint `json:"endpoint"`
	Queued   time.Time    `json:"queued"`
}

func (e journalEntry) owner() api.Owner {
	return api.Owner{ContainerID: e.Endpoint.ContainerID, IfName: e.Endpoint.IfName}
}

// journalFile is the journal on disk.
type journalFile struct {
	Version int            `json:"version"`
	Node    string         `json:"node"`
	Entries []journalEntry `json:"entries"`
}

// journal keeps, in order and on disk, the endpoint changes the store has not
// seen yet. Entries are replayed in order and each is idempotent (a put or a
// delete of one key), so a crash between a store write and the journal write
// only repeats a write.
type journal struct {
	path string
	node string

	// mu guards entries and next, and is held across each file write so the
	// file always holds what was answered.
	mu      sync.Mutex
	entries []journalEntry
	next    uint64
}

// openJournal loads the journal in dir, or starts an empty one. An
// unreadable journal is an error: dropping it would lose endpoints that
// started offline, or free addresses still named in etcd.
func openJournal(dir, node string) (*journal, error) {
	j := &journal{path: filepath.Join(dir, JournalFileName), node: node, next: 1}
	if err := atomicfile.RemoveStaleTemps(dir, JournalFileName); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	b, err := os.ReadFile(j.path)
	if errors.Is(err, fs.ErrNotExist) {
		return j, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read journal %s: %w", j.path, err)
	}
	f, err := decodeJournal(b, node)
	if err != nil {
		return nil, fmt.Errorf("journal %s is corrupt (fix or move it away; it lists endpoint changes etcd has not seen): %w", j.path, err)
	}
	j.entries = f.Entries
	if n := len(f.Entries); n > 0 {
		j.next = f.Entries[n-1].Seq + 1
	}
	return j, nil
}

// decodeJournal decodes and checks a journal file of node.
func decodeJournal(b []byte, node string) (journalFile, error) {
	var f journalFile
	if err := json.Unmarshal(b, &f); err != nil {
		return journalFile{}, err
	}
	if f.Version != journalVersion {
		return journalFile{}, fmt.Errorf("unsupported version %d (want %d)", f.Version, journalVersion)
	}
	if f.Node != node {
		return journalFile{}, fmt.Errorf("written by node %q, not %q", f.Node, node)
	}
	var last uint64
	for i, e := range f.Entries {
		if e.Seq <= last {
			return journalFile{}, fmt.Errorf("entry %d: seq %d not after %d", i, e.Seq, last)
		}
		last = e.Seq
		if e.Op != opPublish && e.Op != opUnpublish {
			return journalFile{}, fmt.Errorf("entry %d (seq %d): unknown op %q", i, e.Seq, e.Op)
		}
		if e.Endpoint.Node != node || e.Endpoint.ContainerID == "" || e.Endpoint.IfName == "" || e.Endpoint.Network == "" {
			return journalFile{}, fmt.Errorf("entry %d (seq %d): endpoint needs node %q, container id, ifname and network", i, e.Seq, node)
		}
	}
	return f, nil
}

// saveLocked writes the journal; j.mu must be held.
func (j *journal) saveLocked() error {
	f := journalFile{Version: journalVersion, Node: j.node, Entries: j.entries}
	if f.Entries == nil {
		f.Entries = []journalEntry{}
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode journal: %w", err)
	}
	if err := atomicfile.Write(j.path, append(b, '\n')); err != nil {
		return fmt.Errorf("save journal: %w", err)
	}
	return nil
}

// add appends an entry; it is on disk when add returns.
func (j *journal) add(op journalOp, ep api.Endpoint, now time.Time) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.entries = append(j.entries, journalEntry{Seq: j.next, Op: op, Endpoint: ep, Queued: now})
	if err := j.saveLocked(); err != nil {
		j.entries = j.entries[:len(j.entries)-1]
		return err
	}
	j.next++
	return nil
}

// head returns the oldest entry.
func (j *journal) head() (journalEntry, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.entries) == 0 {
		return journalEntry{}, false
	}
	return j.entries[0], true
}

// done removes entry seq once the store holds it. then, when set, runs under
// the journal's lock after the removal is on disk, so cancelUnpublish cannot
// slip in between (it releases an unpublished attachment's address). A seq
// that is gone (cancelled meanwhile) is no error and then is not run.
func (j *journal) done(seq uint64, then func()) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	i := slices.IndexFunc(j.entries, func(e journalEntry) bool { return e.Seq == seq })
	if i < 0 {
		return nil
	}
	removed := j.entries[i]
	j.entries = slices.Delete(j.entries, i, i+1)
	if err := j.saveLocked(); err != nil {
		j.entries = slices.Insert(j.entries, i, removed)
		return err
	}
	if then != nil {
		then()
	}
	return nil
}

// cancelUnpublish drops pending unpublishes of network's attachment o, and
// reports whether there were any: a new ADD of the same attachment keeps its
// address, which the unpublish would otherwise release under the new
// container. Another network's unpublish of o stays (that ADD is refused).
func (j *journal) cancelUnpublish(network string, o api.Owner) (bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	kept := make([]journalEntry, 0, len(j.entries))
	for _, e := range j.entries {
		if e.Op == opUnpublish && e.owner() == o && e.Endpoint.Network == network {
			continue
		}
		kept = append(kept, e)
	}
	if len(kept) == len(j.entries) {
		return false, nil
	}
	old := j.entries
	j.entries = kept
	if err := j.saveLocked(); err != nil {
		j.entries = old
		return false, err
	}
	return true, nil
}

// pending reports whether an unpublished change of op for o is queued.
func (j *journal) pending(op journalOp, o api.Owner) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.ContainsFunc(j.entries, func(e journalEntry) bool { return e.Op == op && e.owner() == o })
}

func (j *journal) stats() api.JournalStats {
	j.mu.Lock()
	defer j.mu.Unlock()
	s := api.JournalStats{Unpublished: len(j.entries)}
	if len(j.entries) > 0 {
		s.Oldest = j.entries[0].Queued
	}
	return s
}

// empty reports whether nothing is waiting for the store.
func (j *journal) empty() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.entries) == 0
}
