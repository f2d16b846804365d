package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ds01-pipe runs as root and removes other people's containers, and the
// files it reads decide which. A file that a non-root user could have
// written hands that decision to that user, so as root it refuses such
// files, as sudo refuses a sudoers file and sshd (StrictModes) an
// authorized_keys file that others can write.
//
// The rule, for the file and for every folder and symbolic link on its
// path, from "/" down:
//   - owned by root (uid 0);
//   - not writable by others;
//   - writable by its group only when the group is root's (gid 0) or a
//     trusted group (the pipeline's trusted_groups, DS01's ds-admin);
//   - a folder above the file that others may write is accepted only with
//     the sticky bit (/tmp): there only the owner of an entry, root here,
//     can rename or remove it.
// A symbolic link's own mode means nothing on Linux; its owner must be
// root, and the path goes on from its target. POSIX ACLs are not read.

// Trust says whose files a run accepts.
type Trust struct {
	// Enforce turns the check on. Off (not root, or --allow-insecure-files)
	// every owner and mode is accepted; the file type and size are still
	// checked.
	Enforce bool
	// Groups are trusted besides gid 0: their members may write
	// configuration.
	Groups []Group
}

// Group is a trusted group.
type Group struct {
	Name string
	GID  uint32
}

// ResolveGroups looks up group names in the host's group database. A name
// the host does not know is returned in unknown: it is simply not trusted
// (a pipeline shared between hosts may name DS01's ds-admin on a host
// without it), never an error.
func ResolveGroups(names []string) (groups []Group, unknown []string) {
	for _, name := range names {
		g, err := user.LookupGroup(name)
		if err != nil {
			unknown = append(unknown, name)
			continue
		}
		gid, err := strconv.ParseUint(g.Gid, 10, 32)
		if err != nil {
			unknown = append(unknown, name)
			continue
		}
		groups = append(groups, Group{Name: name, GID: uint32(gid)})
	}
	return groups, unknown
}

// trustsGroup reports whether members of gid may write configuration.
func (t Trust) trustsGroup(gid uint32) bool {
	if gid == 0 {
		return true
	}
	for _, g := range t.Groups {
		if g.GID == gid {
			return true
		}
	}
	return false
}

func (t Trust) groupNames() string {
	names := []string{"root (gid 0)"}
	for _, g := range t.Groups {
		names = append(names, fmt.Sprintf("%s (gid %d)", g.Name, g.GID))
	}
	return strings.Join(names, ", ")
}

// InsecureError says a file could have been written by an untrusted user.
type InsecureError struct {
	Path   string // the path as configured
	At     string // the folder, link or file that failed the check, when not Path itself
	Reason string // "is owned by uid 1000, not root", ...
}

func (e *InsecureError) Error() string {
	what, fix := e.Path, e.Path
	if e.At != "" && e.At != e.Path {
		what = fmt.Sprintf("%s (via %s)", e.Path, e.At)
		fix = e.At
	}
	return fmt.Sprintf("%s %s, so a non-root user could have written it; ds01-pipe runs as root, "+
		"and this file decides what gets removed. Make it root's and not writable by group or others "+
		"(chown root: %s; chmod go-w %s), name its group in the pipeline's trusted_groups, or pass %s to accept it",
		what, e.Reason, fix, fix, OverrideFlag)
}

// maxLinkHops bounds a chain of symbolic links, as the kernel's own limit (40).
const maxLinkHops = 40

// walked is the end of a checked path.
type walked struct {
	real string      // the path with every link resolved
	info fs.FileInfo // Lstat of real
}

// Check checks path (file or folder) and everything above it against t
// and returns what it names, without opening it. A missing path gives an
// error that errors.Is(err, fs.ErrNotExist), after the folders above it
// passed. Without t.Enforce it only stats path.
func Check(path string, t Trust) (fs.FileInfo, error) {
	if !t.Enforce {
		return os.Stat(path)
	}
	w, err := walk(path, t, false)
	if err != nil {
		return nil, err
	}
	return w.info, nil
}

// CheckDir is Check for a folder that untrusted users must not be able to
// add entries to at all (the lock's folder): the sticky bit does not make
// a folder that others can write acceptable here, since anyone could
// create the entry first.
func CheckDir(path string, t Trust) (fs.FileInfo, error) {
	if !t.Enforce {
		return os.Stat(path)
	}
	w, err := walk(path, t, true)
	if err != nil {
		return nil, err
	}
	return w.info, nil
}

// walk resolves path one component at a time, as the kernel does, and
// checks each folder, link and the final entry. With ownDir the final
// entry must be a folder only trusted users can add entries to.
func walk(path string, t Trust, ownDir bool) (walked, error) {
	abs := path
	if !filepath.IsAbs(abs) {
		wd, err := os.Getwd()
		if err != nil {
			return walked{}, fmt.Errorf("%s: %w", path, err)
		}
		abs = wd + "/" + path // not Join: ".." must be resolved after links, not lexically
	}
	todo := split(abs)
	cur := "/"
	info, err := os.Lstat(cur)
	if err != nil {
		return walked{}, err
	}
	if reason := t.dirReason(info, len(todo) == 0 && ownDir); reason != "" {
		return walked{}, &InsecureError{Path: path, At: cur, Reason: reason}
	}
	hops := 0
	for len(todo) > 0 {
		comp := todo[0]
		todo = todo[1:]
		if comp == ".." {
			cur = filepath.Dir(cur) // cur has no links left, so this is exact
			if info, err = os.Lstat(cur); err != nil {
				return walked{}, err
			}
			continue
		}
		next := filepath.Join(cur, comp)
		fi, err := os.Lstat(next)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				pe.Path = path // name the path as configured; the cause stays
			}
			return walked{}, err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return walked{}, fmt.Errorf("%s: cannot read the owner of %s", path, next)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if st.Uid != 0 {
				return walked{}, &InsecureError{Path: path, At: next, Reason: fmt.Sprintf("is a symbolic link owned by uid %d, not root", st.Uid)}
			}
			if hops++; hops > maxLinkHops {
				return walked{}, &InsecureError{Path: path, At: next, Reason: fmt.Sprintf("goes through more than %d symbolic links", maxLinkHops)}
			}
			dest, err := os.Readlink(next)
			if err != nil {
				return walked{}, err
			}
			if filepath.IsAbs(dest) {
				cur = "/"
			}
			todo = append(split(dest), todo...)
			continue
		}
		last := len(todo) == 0
		switch {
		case !last && !fi.IsDir():
			return walked{}, &fs.PathError{Op: "open", Path: path, Err: syscall.ENOTDIR}
		case fi.IsDir():
			if reason := t.dirReason(fi, last && ownDir); reason != "" {
				return walked{}, &InsecureError{Path: path, At: next, Reason: reason}
			}
		default:
			if reason := t.fileReason(fi); reason != "" {
				return walked{}, &InsecureError{Path: path, At: next, Reason: reason}
			}
		}
		cur, info = next, fi
	}
	return walked{real: cur, info: info}, nil
}

// split lists a path's components, without empty ones and ".".
func split(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// fileReason says why a file (or the final entry) is not trusted, or "".
func (t Trust) fileReason(fi fs.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "has no owner that can be read"
	}
	perm := fi.Mode().Perm()
	switch {
	case st.Uid != 0:
		return fmt.Sprintf("is owned by uid %d, not root", st.Uid)
	case perm&0o002 != 0:
		return fmt.Sprintf("has mode %04o (every user can write it)", perm)
	case perm&0o020 != 0 && !t.trustsGroup(st.Gid):
		return fmt.Sprintf("has mode %04o and group %s, so that group can write it, and it is not trusted (trusted: %s)", perm, groupName(st.Gid), t.groupNames())
	}
	return ""
}

// dirReason is fileReason for a folder: one others may write is accepted
// with the sticky bit unless strict (the folder the caller creates in).
func (t Trust) dirReason(fi fs.FileInfo, strict bool) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "has no owner that can be read"
	}
	perm := fi.Mode().Perm()
	sticky := fi.Mode()&fs.ModeSticky != 0 && !strict
	switch {
	case st.Uid != 0:
		return fmt.Sprintf("is a folder owned by uid %d, not root", st.Uid)
	case perm&0o002 != 0 && !sticky:
		return fmt.Sprintf("is a folder with mode %04o (every user can add or replace files in it)", perm)
	case perm&0o020 != 0 && !sticky && !t.trustsGroup(st.Gid):
		return fmt.Sprintf("is a folder with mode %04o and group %s, so that group can add or replace files in it, and it is not trusted (trusted: %s)", perm, groupName(st.Gid), t.groupNames())
	}
	return ""
}

// groupName renders a gid with its name when the host knows it.
func groupName(gid uint32) string {
	id := strconv.FormatUint(uint64(gid), 10)
	if g, err := user.LookupGroupId(id); err == nil {
		return fmt.Sprintf("%s (gid %s)", g.Name, id)
	}
	return "gid " + id
}
