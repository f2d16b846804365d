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

	"github.com/ds01/ds01-pipe/policy"
)

// ds01-pipe runs as root and removes other people's containers, and its
// pipeline, policy and simulation files decide which. A file that a
// non-root user could have written hands that decision to that user, so
// when the program runs as root it refuses such files, as sudo refuses a
// sudoers file and sshd (StrictModes) an authorized_keys file that others
// can write: the file must be owned by root and must not be writable by
// group or others (no 022 bits). A symbolic link is followed; the link
// itself must be root's too (its mode bits mean nothing on Linux), and so
// must every link along the way.
//
// What this does not cover: the directories above the file. A user who can
// write a parent directory can swap the file after the check; keep the
// configuration under root-owned directories (/etc, /opt/ds01-infra).

// InsecureFilesFlag is the command-line flag that turns the check off.
const InsecureFilesFlag = "--allow-insecure-files"

// maxLinkHops bounds a chain of symbolic links, as the kernel's own limit (40).
const maxLinkHops = 40

// InsecureFileError says a configuration file could have been written by a
// user other than root.
type InsecureFileError struct {
	Path   string // the path as configured
	At     string // the link or file that failed the check, when not Path itself
	Reason string // "is owned by uid 1000, not root", ...
}

func (e *InsecureFileError) Error() string {
	what := e.Path
	if e.At != "" && e.At != e.Path {
		what = fmt.Sprintf("%s (via %s)", e.Path, e.At)
	}
	return fmt.Sprintf("%s %s, so a non-root user could have written it; ds01-pipe runs as root, "+
		"and this file decides what gets removed. Make it root's and not writable by group or others "+
		"(chown root: %s; chmod go-w %s), or pass %s to accept it",
		what, e.Reason, shellWord(e.At, e.Path), shellWord(e.At, e.Path), InsecureFilesFlag)
}

func shellWord(at, path string) string {
	if at != "" {
		return at
	}
	return path
}

// CheckFilePermissions checks that only root could have written path: every
// symbolic link on the way to the file and the file itself are owned by
// uid 0, and the file (or directory) is not writable by group or others.
// The file must be a regular file or a directory: a FIFO or a device would
// hang or flood the read. A path that does not exist gives the *fs.PathError
// of os.Lstat (errors.Is(err, fs.ErrNotExist)), so callers can treat a
// missing optional file as they always do.
func CheckFilePermissions(path string) error {
	p := path
	for hop := 0; ; hop++ {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: cannot read its owner", p)
		}
		at := ""
		if p != path {
			at = p
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if st.Uid != 0 {
				return &InsecureFileError{Path: path, At: at, Reason: fmt.Sprintf("is a symbolic link owned by uid %d, not root", st.Uid)}
			}
			if hop >= maxLinkHops {
				return &InsecureFileError{Path: path, At: at, Reason: fmt.Sprintf("goes through more than %d symbolic links", maxLinkHops)}
			}
			dest, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if !filepath.IsAbs(dest) {
				dest = filepath.Join(filepath.Dir(p), dest)
			}
			p = dest
			continue
		}
		switch {
		case st.Uid != 0:
			return &InsecureFileError{Path: path, At: at, Reason: fmt.Sprintf("is owned by uid %d, not root", st.Uid)}
		case fi.Mode().Perm()&0o022 != 0:
			return &InsecureFileError{Path: path, At: at, Reason: fmt.Sprintf("has mode %04o (%s can write it)", fi.Mode().Perm(), writers(fi.Mode().Perm()))}
		case !fi.Mode().IsRegular() && !fi.IsDir():
			return &InsecureFileError{Path: path, At: at, Reason: fmt.Sprintf("is not a regular file (%s)", fi.Mode().Type())}
		}
		return nil
	}
}

func writers(perm fs.FileMode) string {
	var w []string
	if perm&0o020 != 0 {
		w = append(w, "its group")
	}
	if perm&0o002 != 0 {
		w = append(w, "every user")
	}
	return strings.Join(w, " and ")
}

// checkOptional is CheckFilePermissions for a file that may be missing.
func checkOptional(path string) error {
	if path == "" {
		return nil
	}
	err := CheckFilePermissions(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // the loader that reads it says what a missing file means
	}
	return err
}

// checkGroupsDir checks the groups directory and the *.members files in it.
func checkGroupsDir(dir string) error {
	if err := checkOptional(dir); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil // the policy loader says what that means
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".members") {
			continue
		}
		if err := checkOptional(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// checkPolicyFiles checks every policy file that exists, and the groups
// directory with its members files.
func checkPolicyFiles(f policy.Files) error {
	for _, p := range []string{f.LimitsFile, f.OverridesFile, f.ExemptionsFile} {
		if err := checkOptional(p); err != nil {
			return err
		}
	}
	if f.GroupsDir == "" {
		return nil
	}
	return checkGroupsDir(f.GroupsDir)
}

// readLimited reads a regular file of at most limit bytes. The open does
// not block, so a FIFO planted at path fails instead of hanging the run.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, st.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a pipeline file", path, limit)
	}
	return data, nil
}
