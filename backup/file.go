package backup

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Format names the file type; Version is the newest version this code
// reads and the one it writes.
const (
	Format  = "skein-backup"
	Version = 1
)

// ErrNewerVersion, ErrChecksum and ErrFormat are the ways a file is refused.
var (
	ErrNewerVersion = errors.New("backup from a newer format version")
	ErrChecksum     = errors.New("checksum mismatch: the file is corrupted or was edited")
	ErrFormat       = errors.New("not a skein backup")
)

// KV is one key (without the prefix) and its value.
type KV struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// File is a backup.
type File struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// Prefix is the prefix the keys were read under (informational: a
	// restore writes under its own store's prefix).
	Prefix string `json:"prefix"`
	// Revision is the etcd revision every key was read at.
	Revision int64     `json:"revision"`
	Taken    time.Time `json:"taken"`
	// Checksum is "sha256:<hex>" of the JSON encoding of Keys.
	Checksum string `json:"checksum"`
	Keys     []KV   `json:"keys"`
}

// Skipped reports whether a key (without prefix) is left out of backups:
// heartbeats and status records belong to running agents' leases.
func Skipped(key string) bool {
	return strings.HasPrefix(key, "alive/") || strings.HasPrefix(key, "status/")
}

// New returns the File of keys read at rev, sorted, with its checksum.
func New(prefix string, rev int64, taken time.Time, keys map[string][]byte) (File, error) {
	f := File{Format: Format, Version: Version, Prefix: prefix, Revision: rev, Taken: taken.UTC()}
	for k, v := range keys {
		if !Skipped(k) {
			f.Keys = append(f.Keys, KV{Key: k, Value: string(v)})
		}
	}
	slices.SortFunc(f.Keys, func(a, b KV) int { return strings.Compare(a.Key, b.Key) })
	sum, err := checksum(f.Keys)
	if err != nil {
		return File{}, err
	}
	f.Checksum = sum
	return f, nil
}

func checksum(keys []KV) (string, error) {
	if keys == nil {
		keys = []KV{}
	}
	b, err := json.Marshal(keys)
	if err != nil {
		return "", fmt.Errorf("backup checksum: %w", err)
	}
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:]), nil
}

// Encode returns f as the file's bytes.
func Encode(f File) ([]byte, error) {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode backup: %w", err)
	}
	return append(b, '\n'), nil
}

// Decode reads a file and checks its format, version, checksum and keys.
func Decode(b []byte) (File, error) {
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return File{}, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	if f.Format != Format {
		return File{}, fmt.Errorf("%w: format %q, want %q", ErrFormat, f.Format, Format)
	}
	if f.Version > Version {
		return File{}, fmt.Errorf("%w: version %d, this skein reads up to %d (use a newer skein)", ErrNewerVersion, f.Version, Version)
	}
	if f.Version < 1 {
		return File{}, fmt.Errorf("%w: version %d", ErrFormat, f.Version)
	}
	sum, err := checksum(f.Keys)
	if err != nil {
		return File{}, err
	}
	if sum != f.Checksum {
		return File{}, fmt.Errorf("%w (file says %s, content is %s)", ErrChecksum, f.Checksum, sum)
	}
	seen := make(map[string]bool, len(f.Keys))
	for _, kv := range f.Keys {
		switch {
		case kv.Key == "" || strings.HasPrefix(kv.Key, "/") || strings.Contains(kv.Key, ".."):
			return File{}, fmt.Errorf("%w: bad key %q", ErrFormat, kv.Key)
		case seen[kv.Key]:
			return File{}, fmt.Errorf("%w: key %q twice", ErrFormat, kv.Key)
		case Skipped(kv.Key):
			return File{}, fmt.Errorf("%w: key %q belongs to a running agent and is never restored", ErrFormat, kv.Key)
		}
		seen[kv.Key] = true
	}
	return f, nil
}
