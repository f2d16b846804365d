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
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0o644)
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

// errLockTaken says another run took the lock after its holder died.
var errLockTaken = errors.New("another run took the lock")

// takeOverLock makes the lock a dead run held through f (a descriptor of
// the lock file this process inherited from it) this process's own: the
// kernel lists a flock under the PID that took it, so a run that died
// would still be named as the holder of a lock its witness keeps. The
// same file is opened again through /proc (never its path, which may have
// changed), f is closed, which releases the dead run's lock, and the new
// descriptor takes it. If another run took it in between, that run holds
// it: errLockTaken.
func takeOverLock(f *os.File, pipelineName, why string) (*os.File, error) {
	nf, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.O_RDWR|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("lock %s: reopening: %w", f.Name(), err)
	}
	_ = f.Close()
	if err := syscall.Flock(int(nf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		nf.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errLockTaken
		}
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	if err := writeHolder(nf, holderText(pipelineName, why)); err != nil {
		nf.Close()
		return nil, fmt.Errorf("writing lock holder to %s: %w", f.Name(), err)
	}
	return nf, nil
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
	if !trust.Enforce {
		return nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !ok:
		return fmt.Errorf("lock %s: cannot read its owner", path)
	case st.Uid != 0:
		return fmt.Errorf("lock %s is owned by uid %d, not root: refused (a user who can create it can hold it and stop every run; remove it)", path, st.Uid)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("lock %s has mode %04o: refused (others could write it; remove it, ds01-pipe creates it 0644)", path, fi.Mode().Perm())
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
