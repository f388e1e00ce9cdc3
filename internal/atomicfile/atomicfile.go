// Package atomicfile writes small state files so that a crash leaves either
// the old or the new content, never a mix.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Write replaces path with data so that a crash leaves either the
// old or the new content, never a mix: temp file in the same directory,
// fsync, rename, fsync of the directory. The file is mode 0600.
func Write(path string, data []byte) (err error) {
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

// RemoveStaleTemps deletes the temp files an interrupted Write of dir/name left.
func RemoveStaleTemps(dir, name string) error {
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
