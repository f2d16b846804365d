package notify

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The glibc utmp record on 64-bit Linux (utmp.h): 384 bytes.
const (
	utmpSize       = 384
	utUserProcess  = 7
	utLineOffset   = 8
	utLineSize     = 32
	utUserOffset   = 44
	utUserSize     = 32
	maxUtmpRecords = 65536
)

// terminals returns the terminal lines (ut_line, e.g. "pts/3") where user
// is logged in, from a utmp file, without duplicates.
func terminals(utmpPath, user string) ([]string, error) {
	f, err := os.Open(utmpPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	seen := map[string]bool{}
	buf := make([]byte, utmpSize)
	for i := 0; i < maxUtmpRecords; i++ {
		if _, err := io.ReadFull(f, buf); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				break
			}
			return nil, err
		}
		if int16(binary.LittleEndian.Uint16(buf[0:2])) != utUserProcess {
			continue
		}
		if cstr(buf[utUserOffset:utUserOffset+utUserSize]) != user {
			continue
		}
		line := cstr(buf[utLineOffset : utLineOffset+utLineSize])
		if !validLine(line) || seen[line] {
			continue
		}
		seen[line] = true
		out = append(out, line)
	}
	return out, nil
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// validLine accepts the terminal names utmp holds ("pts/3", "tty1") and
// nothing that could lead out of the device folder.
func validLine(line string) bool {
	if line == "" || strings.Contains(line, "..") || strings.HasPrefix(line, "/") {
		return false
	}
	for _, r := range line {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '/' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// writeTerminal writes msg to one terminal, as write(1) would: only to a
// character device, without following links, without waiting on a
// terminal that does not read, without becoming its controlling process.
func writeTerminal(devDir, line string, msg []byte) error {
	p := filepath.Join(devDir, line)
	fd, err := syscall.Open(p, syscall.O_WRONLY|syscall.O_NOCTTY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeCharDevice == 0 {
		return fmt.Errorf("%s is not a terminal", p)
	}
	// A character device is not yet a terminal: a forged utmp line, or a
	// dev_dir pointing elsewhere, could name /dev/mem, /dev/watchdog or
	// /dev/kmsg, where root's write does harm. Only a device that answers
	// the terminal ioctl (isatty) gets the notice.
	if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); err != nil {
		return fmt.Errorf("%s is not a terminal: %w", p, err)
	}
	_, err = f.Write(msg)
	return err
}
