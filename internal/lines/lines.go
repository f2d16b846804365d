// Package lines reads newline-separated records whose length someone else
// may choose (a container name is a user's, up to a megabyte and more): a
// line longer than the bound is skipped, never the end of the reading.
// bufio.Scanner stops at the first such line (bufio.ErrTooLong), which
// would make everything after it unreadable.
package lines

import (
	"bufio"
	"errors"
	"io"
)

// Each calls fn with each line of r, without its newline, that is at most
// max bytes long; longer lines are skipped and counted. The last line
// needs no newline. fn returns false to stop the reading. The slice is
// valid only during the call. Each returns the number of lines skipped
// and the first error other than io.EOF.
func Each(r io.Reader, max int, fn func(line []byte) bool) (skipped int, err error) {
	br := bufio.NewReaderSize(r, max+1)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			skipped++
			if err := discardLine(br); err != nil {
				return skipped, eofIsEnd(err)
			}
			continue
		case err != nil && !errors.Is(err, io.EOF):
			return skipped, err
		}
		if n := len(line); n > 0 && line[n-1] == '\n' {
			line = line[:n-1]
		} else if n == 0 {
			return skipped, nil // the end, no last line
		}
		if !fn(line) || err != nil {
			return skipped, nil
		}
	}
}

// discardLine reads up to and including the next newline.
func discardLine(br *bufio.Reader) error {
	for {
		_, err := br.ReadSlice('\n')
		if !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
	}
}

func eofIsEnd(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
