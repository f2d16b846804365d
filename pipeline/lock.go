package pipeline

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ds01/ds01-pipe/internal/safefile"
)

// maxHolderBytes bounds the holder text read from a held lock.
const maxHolderBytes = 4 << 10

// lock takes the pipeline's flock without waiting and records who holds it.
// flock(2) is released by the kernel when the process ends, so a crash
// never leaves a stale lock behind; DS01's own lock files use it too.
//
// The lock file is opened, never followed: a symbolic link planted at its
// path would make root create or truncate the file it names. With
// trust.Enforce the lock's folder must be one only trusted users can add
// entries to (a sticky /tmp is not: anyone could create the lock first and
// hold it, so that every run "succeeds" with exit 3), and an existing lock
// file must be root's.
//
// It returns the open lock file: closing it (its last descriptor, a
// witness's included) releases the lock.
func lock(path, pipelineName string, trust safefile.Trust) (*os.File, error) {
	dir := filepath.Dir(path)
	refused := func(err error) error {
		var ie *safefile.InsecureError
		if errors.As(err, &ie) {
			return fmt.Errorf("lock %s refused: %s %s, so another user could create the lock first and hold it, "+
				"and every run would be skipped; keep the lock in a folder only root can write (the shipped pipelines use /run/ds01-pipe), "+
				"or pass %s", path, ie.At, ie.Reason, safefile.OverrideFlag)
		}
		return fmt.Errorf("lock %s refused: %w", path, err)
	}
	// The folders that exist are checked before any is created: MkdirAll
	// follows links, and root must not create folders where a user's
	// link on the way points.
	if _, err := safefile.Check(dir, trust); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, refused(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock directory: %w", err)
	}
	if _, err := safefile.CheckDir(dir, trust); err != nil {
		return nil, refused(err)
	}
	// 0600: flock(2) needs only a descriptor open for reading, so a lock
	// others can read is a lock any user can hold for ever, and every
	// run would be skipped (exit 3, success to systemd).
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0o600)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("lock %s is a symbolic link: refused, never followed (remove it; ds01-pipe creates the lock file itself)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("taking lock %s: %w", path, err)
	}
	if err := checkLockFile(f, path, trust); err != nil {
		f.Close()
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder, _ := io.ReadAll(io.LimitReader(f, maxHolderBytes))
			return nil, &LockedError{Path: path, Holder: strings.TrimSpace(string(holder))}
		}
		return nil, fmt.Errorf("taking lock %s: %w", path, err)
	}
	// Same inode, so the lock stays; the text is only for the next run's
	// message.
	if err := writeHolder(f, holderText(pipelineName, "")); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing lock holder to %s: %w", path, err)
	}
	return f, nil
}

// holderText is what a holder writes into the lock file: its PID first
// (holderPID reads it back), then when it started and why it holds it.
func holderText(pipelineName, why string) string {
	if why != "" {
		why = ", " + why
	}
	return fmt.Sprintf("pid %d, started %s, pipeline %s%s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339), pipelineName, why)
}

// witnessHolderText is what a run's witness writes into the run's lock.
func witnessHolderText(pipelineName string, run int) string {
	return holderText(pipelineName, fmt.Sprintf("witness of run pid %d, recording the removals it left unanswered", run))
}

// checkLockFile refuses a lock path that is not a regular file and, with
// trust.Enforce, one that is not root's or that others can write.
func checkLockFile(f *os.File, path string, trust safefile.Trust) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("lock %s: %w", path, &safefile.NotRegularError{Path: path, Type: fi.Mode().Type()})
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) == os.Geteuid() && fi.Mode().Perm()&0o044 != 0 {
		// One of an earlier version (0644): closed to others from now
		// on, whatever the trust rule (a user's read descriptor is all a
		// flock needs).
		if err := f.Chmod(fi.Mode().Perm() &^ 0o044); err != nil && trust.Enforce {
			return fmt.Errorf("lock %s: closing it to other users: %w", path, err)
		}
	}
	if !trust.Enforce {
		return nil
	}
	switch {
	case !ok:
		return fmt.Errorf("lock %s: cannot read its owner", path)
	case st.Uid != 0:
		return fmt.Errorf("lock %s is owned by uid %d, not root: refused (a user who can create it can hold it and stop every run; remove it)", path, st.Uid)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("lock %s has mode %04o: refused (others could write it; remove it, ds01-pipe creates it 0600)", path, fi.Mode().Perm())
	}
	return nil
}

func writeHolder(f *os.File, info string) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(info), 0)
	return err
}
