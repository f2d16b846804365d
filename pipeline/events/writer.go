package events

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"
)

// Writer appends events to an events.jsonl file.
//
// DS01's own scripts append to the same file while readers tail it, so
// every line goes out in exactly one write(2) on an O_APPEND descriptor:
// the kernel then places each line whole at the end of the file, never
// interleaved with another writer's line. A Writer may be shared by
// goroutines for the same reason.
type Writer struct {
	path string
	f    *os.File
	// repair is set when the file did not end in a newline when it was
	// opened: the first line then starts with one (see writeLine). Atomic:
	// goroutines share a Writer, and exactly one line may carry the newline.
	repair atomic.Bool
	host   string // Event.Host of events written without one
}

// openFlags open the file for appending (read access only to look at its
// last byte, see writeLine). O_NOFOLLOW makes a symlink
// planted as the file itself fail the open instead of redirecting root's
// writes elsewhere; O_NONBLOCK makes a FIFO planted there fail (ENXIO, no
// reader) instead of hanging the run.
const openFlags = os.O_RDWR | os.O_APPEND | os.O_CREATE | syscall.O_CLOEXEC | syscall.O_NOFOLLOW | syscall.O_NONBLOCK

// OpenFile opens path for appending events, creating it (mode 0640) and its
// parent directory (mode 0755) when missing. It refuses a path whose last
// component is a symlink or anything but a regular file.
func OpenFile(path string) (*Writer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("events file %s: create directory: %w", path, err)
	}
	f, err := os.OpenFile(path, openFlags, 0o640)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("events file %s: refusing a symbolic link: %w", path, err)
		}
		return nil, fmt.Errorf("events file: %w", err)
	}
	w, err := NewWriter(f)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return w, nil
}

// NewWriter appends events to f, an events file opened for appending
// (O_APPEND; read access lets it look at the last byte), as another
// process of this program passes it on: the file is checked, never its
// path, which may have changed since. It refuses anything but a regular
// file with one name. The Writer owns f.
func NewWriter(f *os.File) (*Writer, error) {
	path := f.Name()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("events file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("events file %s: not a regular file (%s)", path, st.Mode().Type())
	}
	// A second name is a hard link a user planted in a folder they can
	// write (where the kernel lets them link files not their own): the
	// appends would go into that other file, one of root's.
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Nlink > 1 {
		return nil, fmt.Errorf("events file %s: refusing a file with %d names (a hard link to another file)", path, sys.Nlink)
	}
	w := &Writer{path: path, f: f, host: hostname()}
	w.repair.Store(!endsInNewline(f))
	return w, nil
}

// File is the open events file, to hand on to another process of this
// program (see NewWriter).
func (w *Writer) File() *os.File { return w.f }

// hostname is the node's name for Event.Host. A host whose name cannot be
// read writes events without it, as DS01 does, rather than none at all.
func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}

// SetHost sets the host written into events that have none; "" writes
// none. OpenFile starts with the node's host name.
func (w *Writer) SetHost(host string) { w.host = host }

// Path is the file the writer appends to.
func (w *Writer) Path() string { return w.path }

// Write encodes ev and appends it as one line. An event without a host
// gets the writer's.
func (w *Writer) Write(ev Event) error {
	if ev.Host == "" {
		ev.Host = w.host
	}
	line, err := ev.Encode()
	if err != nil {
		return fmt.Errorf("events file %s: %w", w.path, err)
	}
	return w.writeLine(line)
}

// writeLine appends line with a single write(2). os.File.Write would loop
// over a short write and could put the rest of the line after another
// writer's line, so the system call is made directly and a short write is
// an error. When the file did not end in a newline (an earlier writer's
// short write, a crash half-way through a line) the newline goes first, in
// the same write(2), so every line stays one JSON object: the damaged line
// is lost, not the new one too. That is checked once, when the file is
// opened: checking before every line would race with other appenders.
func (w *Writer) writeLine(line []byte) error {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return fmt.Errorf("events file %s: %w", w.path, err)
	}
	var n int
	var werr error
	// The one line that repairs the file is the one that clears the flag.
	repair := w.repair.CompareAndSwap(true, false)
	if repair {
		line = append([]byte{'\n'}, line...)
	}
	err = rc.Write(func(fd uintptr) bool {
		n, werr = write(fd, line)
		if werr == nil && n > 0 && n < len(line) {
			// Best effort: end the partial line, so the next appender's
			// line (ours or a DS01 script's) starts on a line of its own
			// and readers lose one event, not two.
			_, _ = write(fd, []byte{'\n'})
		}
		return true
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		if repair && n == 0 {
			w.repair.Store(true) // nothing written: the next line repairs
		}
		return fmt.Errorf("events file %s: write: %w", w.path, err)
	}
	if n != len(line) {
		return fmt.Errorf("events file %s: short write: %d of %d bytes", w.path, n, len(line))
	}
	return nil
}

// endsInNewline reports whether the file is empty or ends in a newline.
// A file that cannot be read is taken to end in one: the check repairs,
// it must never stop an append. Another appender's write(2) in progress
// can show a larger size before its last bytes are in (a page at a time),
// so a missing newline counts only once the file has stayed the same for a
// moment; a line cut short by a crash stays that way.
func endsInNewline(f *os.File) bool {
	const looks, pause = 5, time.Millisecond
	for range looks {
		size, last, ok := tail(f)
		if !ok || size == 0 || last == '\n' {
			return true
		}
		time.Sleep(pause)
		size2, last2, ok := tail(f)
		if !ok || size2 == 0 || last2 == '\n' {
			return true
		}
		if size2 == size {
			return false
		}
	}
	return true
}

// tail returns the file's size and last byte.
func tail(f *os.File) (int64, byte, bool) {
	st, err := f.Stat()
	if err != nil {
		return 0, 0, false
	}
	if st.Size() == 0 {
		return 0, 0, true
	}
	var b [1]byte
	if n, err := f.ReadAt(b[:], st.Size()-1); err != nil || n != 1 {
		return 0, 0, false
	}
	return st.Size(), b[0], true
}

// write is one write(2), repeated only when a signal interrupted it before
// anything was written.
func write(fd uintptr, b []byte) (int, error) {
	for {
		n, err := syscall.Write(int(fd), b)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

// Close closes the file.
func (w *Writer) Close() error {
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("events file %s: %w", w.path, err)
	}
	return nil
}
