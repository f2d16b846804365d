// Package safefile is the one way ds01-pipe reads a file: pipeline, policy
// and groups files, the GPU simulation file, the events file, the previous
// metrics file and saved plans all go through Open or Read.
//
// Every read is of a regular file only (a FIFO, device, socket or folder is
// refused by its type before it is opened, and again by fstat after), opened
// without blocking, bounded in size, and checked against the caller's
// deadline between chunks. With Trust.Enforce set (ds01-pipe runs as root),
// every component of the path is checked too: see Trust.
package safefile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// OverrideFlag is the command-line flag that turns the trust check off.
const OverrideFlag = "--allow-insecure-files"

// chunk is how much Read reads between two looks at the deadline.
const chunk = 256 << 10

// NotRegularError says a path names something other than a regular file.
type NotRegularError struct {
	Path string
	Type fs.FileMode // fs.ModeNamedPipe, fs.ModeDir, ...
}

func (e *NotRegularError) Error() string { return e.Path + " " + e.Brief() }

// Brief is the error without the path, for callers that name it already.
func (e *NotRegularError) Brief() string {
	return fmt.Sprintf("is %s, not a regular file: refused (reading it could block or never end)", typeName(e.Type))
}

// TooLargeError says a file is larger than its reader accepts.
type TooLargeError struct {
	Path  string
	Limit int64
}

func (e *TooLargeError) Error() string { return e.Path + " " + e.Brief() }

// Brief is the error without the path, for callers that name it already.
func (e *TooLargeError) Brief() string {
	return fmt.Sprintf("is larger than %d bytes: refused (a wrong path, not the file it should be)", e.Limit)
}

// Brief returns err without the path it names, when it is one of this
// package's errors about a file's type or size, else err's text.
func Brief(err error) string {
	var nr *NotRegularError
	var tl *TooLargeError
	var pe *fs.PathError
	switch {
	case errors.As(err, &nr):
		return nr.Brief()
	case errors.As(err, &tl):
		return tl.Brief()
	case errors.As(err, &pe):
		return pe.Err.Error()
	}
	return err.Error()
}

func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeDir != 0:
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return fmt.Sprintf("of type %s", m.Type())
}

// Options say how to read one file.
type Options struct {
	// MaxSize bounds the file; a larger one is a *TooLargeError. It must
	// be positive.
	MaxSize int64
	// Trust is who may have written the file.
	Trust Trust
}

// Open opens path for reading, refusing anything but a regular file and,
// with trust.Enforce, a file (or any folder or link on its path) that an
// untrusted user could have written. Nothing is opened that is not a
// regular file: opening a device can have effects of its own (a tape
// rewinds). A path that does not exist gives an error that
// errors.Is(err, fs.ErrNotExist) (after the existing folders above it
// passed the trust check, so a missing optional file in a folder users can
// write is refused, not taken as "none").
func Open(path string, trust Trust) (*os.File, fs.FileInfo, error) {
	target := path
	var want fs.FileInfo
	if trust.Enforce {
		w, err := walk(path, trust, false)
		if err != nil {
			return nil, nil, err
		}
		if !w.info.Mode().IsRegular() {
			return nil, nil, &NotRegularError{Path: path, Type: w.info.Mode().Type()}
		}
		// Every folder on the resolved path is trusted, so nobody
		// untrusted can swap the file between this check and the open;
		// O_NOFOLLOW and the inode comparison below catch anyone who could.
		target, want = w.real, w.info
	} else {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, nil, err
		}
		if !fi.Mode().IsRegular() {
			return nil, nil, &NotRegularError{Path: path, Type: fi.Mode().Type()}
		}
		want = fi
	}
	flags := os.O_RDONLY | syscall.O_NONBLOCK | syscall.O_CLOEXEC
	if trust.Enforce {
		flags |= syscall.O_NOFOLLOW
	}
	f, err := os.OpenFile(target, flags, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, &NotRegularError{Path: path, Type: fi.Mode().Type()}
	}
	if !os.SameFile(fi, want) {
		f.Close()
		return nil, nil, fmt.Errorf("%s changed while it was being opened: refused", path)
	}
	if trust.Enforce {
		if reason := trust.fileReason(fi); reason != "" {
			f.Close()
			return nil, nil, &InsecureError{Path: path, At: target, Reason: reason}
		}
	}
	return f, fi, nil
}

// Read reads a whole file through Open, at most o.MaxSize bytes, checking
// ctx between chunks.
func Read(ctx context.Context, path string, o Options) ([]byte, error) {
	if o.MaxSize <= 0 {
		return nil, errors.New("safefile: MaxSize must be positive")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, fi, err := Open(path, o.Trust)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi.Size() > o.MaxSize {
		return nil, &TooLargeError{Path: path, Limit: o.MaxSize}
	}
	data, err := ReadAll(ctx, io.LimitReader(f, o.MaxSize+1), int(min(fi.Size()+1, o.MaxSize+1)))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if int64(len(data)) > o.MaxSize {
		return nil, &TooLargeError{Path: path, Limit: o.MaxSize} // it grew while being read
	}
	return data, nil
}

// ReadAll reads r to its end in chunks, stopping with ctx's error when the
// deadline passes between two of them. sizeHint presizes the buffer.
func ReadAll(ctx context.Context, r io.Reader, sizeHint int) ([]byte, error) {
	buf := make([]byte, 0, max(sizeHint, 512))
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), len(buf)+chunk)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// Reader wraps r so that each Read first checks ctx: a long scan (the
// events file) stops at the run's deadline.
func Reader(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx: ctx, r: r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
