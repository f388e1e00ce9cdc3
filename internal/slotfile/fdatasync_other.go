//go:build !linux

package slotfile

import "os"

// fdatasync falls back to a full fsync where the kernel has no fdatasync.
func fdatasync(fh *os.File) error {
	return fh.Sync()
}
