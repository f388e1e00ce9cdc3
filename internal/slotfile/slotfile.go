// Package slotfile keeps a small state document durable at the cost of one
// fdatasync per write: two pre-created files (slots) are rewritten in place in
// turn, each behind a header that carries a sequence number, the length and a
// CRC-32C of the document. A crash during a write tears only the slot being
// written; the other slot still holds the last document a Write returned for,
// and Read picks the newest slot whose checksum holds.
//
// Rewriting in place avoids what makes a temp-file-and-rename write slow: a
// new inode, a rename and a directory fsync are metadata the filesystem
// journals on every write. A slot file is created (with a directory fsync)
// once; afterwards a write changes only its data, and its size only when the
// document grows past every earlier one.
package slotfile

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/skeinnet/skein/internal/atomicfile"
)

// The header is one fixed-width text line, so a slot stays readable with
// `tail -n +2`: "skein-slot v1 seq=<20 digits> len=<10 digits> crc32c=<8 hex>\n".
const (
	magic     = "skein-slot v1 "
	headerLen = len(magic) + len("seq=") + 20 + len(" len=") + 10 + len(" crc32c=") + 8 + 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt means a slot file exists but no slot holds a whole document.
var ErrCorrupt = errors.New("no slot holds a complete document")

// File is a two-slot state file. It is not safe for concurrent use: the
// caller serialises Writes (the ipam allocator holds its lock across them).
type File struct {
	paths [2]string
	seq   uint64 // sequence of the newest complete slot
	last  int    // index of that slot, or -1 when none
	size  [2]int // current size of each slot file, so shorter writes pad it
}

// Paths returns the two slot files of dir/name.
func Paths(dir, name string) [2]string {
	return [2]string{filepath.Join(dir, name+".0"), filepath.Join(dir, name+".1")}
}

// Open reads the slots of dir/name and returns the newest complete document
// (nil, found=false when neither slot file exists or both are still empty).
// Slot files that do not exist are created, empty, with a directory fsync,
// so every later Write is an in-place rewrite. A slot file that exists but
// holds no complete document while the other holds none either is
// ErrCorrupt: starting empty would forget what was written.
func Open(dir, name string) (f *File, doc []byte, found bool, err error) {
	f = &File{paths: Paths(dir, name), last: -1}
	var (
		docs    [2][]byte
		seqs    [2]uint64
		exists  [2]bool
		torn    [2]error
		missing []int
	)
	for i, p := range f.paths {
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, i)
			continue
		}
		if err != nil {
			return nil, nil, false, fmt.Errorf("read %s: %w", p, err)
		}
		exists[i] = true
		f.size[i] = len(b)
		seqs[i], docs[i], torn[i] = parse(b)
	}
	for i := range 2 {
		if !exists[i] || torn[i] != nil || seqs[i] == 0 {
			continue
		}
		if f.last < 0 || seqs[i] > f.seq {
			f.last, f.seq = i, seqs[i]
		} else if seqs[i] == f.seq {
			return nil, nil, false, fmt.Errorf("%s and %s: both slots carry sequence %d: %w", f.paths[0], f.paths[1], f.seq, ErrCorrupt)
		}
	}
	if f.last < 0 {
		for i := range 2 {
			if torn[i] != nil {
				return nil, nil, false, fmt.Errorf("%s: %w (%w)", f.paths[i], ErrCorrupt, torn[i])
			}
		}
	}
	for _, i := range missing {
		if err := atomicfile.Write(f.paths[i], nil); err != nil {
			return nil, nil, false, fmt.Errorf("create slot: %w", err)
		}
	}
	if f.last < 0 {
		return f, nil, false, nil
	}
	return f, docs[f.last], true, nil
}

// parse checks one slot's bytes. An empty file is a slot never written
// (sequence 0, no error).
func parse(b []byte) (seq uint64, doc []byte, err error) {
	if len(b) == 0 {
		return 0, nil, nil
	}
	if len(b) < headerLen || !bytes.HasPrefix(b, []byte(magic)) || b[headerLen-1] != '\n' {
		return 0, nil, errors.New("bad header")
	}
	h := string(b[len(magic) : headerLen-1])
	var seqS, lenS, crcS string
	if _, err := fmt.Sscanf(h, "seq=%s len=%s crc32c=%s", &seqS, &lenS, &crcS); err != nil {
		return 0, nil, fmt.Errorf("bad header: %w", err)
	}
	seq, err1 := strconv.ParseUint(seqS, 10, 64)
	n, err2 := strconv.ParseUint(lenS, 10, 32)
	sum, err3 := strconv.ParseUint(crcS, 16, 32)
	if err := errors.Join(err1, err2, err3); err != nil {
		return 0, nil, fmt.Errorf("bad header: %w", err)
	}
	if uint64(len(b)-headerLen) < n {
		return 0, nil, fmt.Errorf("document of %d bytes cut at %d", n, len(b)-headerLen)
	}
	doc = b[headerLen : headerLen+int(n)]
	if crc32.Checksum(doc, castagnoli) != uint32(sum) {
		return 0, nil, errors.New("checksum mismatch (torn write)")
	}
	return seq, doc, nil
}

// Write makes doc the newest document: it rewrites the older slot in place
// (padding with newlines up to the slot's earlier size, so no stale bytes
// follow the document) and fdatasyncs it. When Write returns nil, doc survives
// a crash or power loss; when it fails, the newest slot is unchanged and Read
// after a restart returns either doc or the previous document.
func (f *File) Write(doc []byte) error {
	i := 0
	if f.last == 0 {
		i = 1
	}
	seq := f.seq + 1
	buf := make([]byte, 0, max(headerLen+len(doc), f.size[i]))
	buf = fmt.Appendf(buf, "%sseq=%020d len=%010d crc32c=%08x\n", magic, seq, len(doc), crc32.Checksum(doc, castagnoli))
	buf = append(buf, doc...)
	for len(buf) < f.size[i] {
		buf = append(buf, '\n')
	}
	fh, err := os.OpenFile(f.paths[i], os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open slot: %w", err)
	}
	if _, err := fh.WriteAt(buf, 0); err != nil {
		_ = fh.Close() // the write error is what matters
		return fmt.Errorf("write %s: %w", f.paths[i], err)
	}
	if err := fdatasync(fh); err != nil {
		_ = fh.Close()
		return fmt.Errorf("fdatasync %s: %w", f.paths[i], err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("close %s: %w", f.paths[i], err)
	}
	f.size[i] = len(buf)
	f.last, f.seq = i, seq
	return nil
}

// Newest returns the path of the slot holding the newest document (slot 0
// before the first Write).
func (f *File) Newest() string {
	return f.paths[max(f.last, 0)]
}
