package slotfile

import (
	"os"

	"golang.org/x/sys/unix"
)

// fdatasync flushes fh's data and the size when it grew, not its timestamps.
func fdatasync(fh *os.File) error {
	return unix.Fdatasync(int(fh.Fd()))
}
