//go:build unix

package main

import (
	"fmt"
	"os"
	"syscall"
)

// isJournalStream reports whether f is the stream JOURNAL_STREAM names
// ("<device>:<inode>", decimal, as systemd writes it).
func isJournalStream(f *os.File, journalStream string) bool {
	if journalStream == "" {
		return false
	}
	var dev, ino uint64
	if n, err := fmt.Sscanf(journalStream, "%d:%d", &dev, &ino); n != 2 || err != nil {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && uint64(st.Dev) == dev && uint64(st.Ino) == ino
}
