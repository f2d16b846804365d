package safefile_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/internal/safefile"
)

// nobody is the uid files are given to play "a user other than root".
const nobody = 65534

// needRoot stops a test that must give files away: only root can chown.
// CI runs the tests as root, so there a missing root is a failure.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root (to chown test files); CI must run the tests as root")
	}
	t.Skip("needs root: only root can give test files to another user")
}

// fixture builds files, folders and links under a root-owned 0755 folder.
type fixture struct {
	t   *testing.T
	dir string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, dir: dir}
}

func (f *fixture) file(name string, mode fs.FileMode, uid, gid int, content string) string {
	f.t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		f.t.Fatal(err)
	}
	f.own(p, mode, uid, gid)
	return p
}

func (f *fixture) mkdir(name string, mode fs.FileMode, uid, gid int) string {
	f.t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.Mkdir(p, 0o700); err != nil {
		f.t.Fatal(err)
	}
	f.own(p, mode, uid, gid)
	return p
}

func (f *fixture) link(name, target string, uid int) string {
	f.t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.Symlink(target, p); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Lchown(p, uid, 0); err != nil {
		f.t.Fatal(err)
	}
	return p
}

func (f *fixture) own(p string, mode fs.FileMode, uid, gid int) {
	f.t.Helper()
	if err := os.Lchown(p, uid, gid); err != nil {
		f.t.Fatal(err)
	}
	// The raw mode bits (0o1777 is sticky), after chown, which clears
	// set-id bits; not subject to the umask.
	if err := syscall.Chmod(p, uint32(mode)); err != nil {
		f.t.Fatal(err)
	}
}

// otherGroup returns a group of the host other than root's, to play
// "a group that is not trusted" and, named, "a trusted group".
func otherGroup(t *testing.T) safefile.Group {
	t.Helper()
	for _, name := range []string{"adm", "users", "staff", "daemon", "nogroup"} {
		if g, err := user.LookupGroup(name); err == nil {
			gid, _ := strconv.Atoi(g.Gid)
			if gid != 0 {
				return safefile.Group{Name: name, GID: uint32(gid)}
			}
		}
	}
	t.Fatal("no group besides root's on this host")
	return safefile.Group{}
}

func read(path string, trust safefile.Trust) ([]byte, error) {
	return safefile.Read(context.Background(), path, safefile.Options{MaxSize: 1 << 10, Trust: trust})
}

// Every kind of path the trust rule must accept or refuse, as root reads it.
func TestReadTrust(t *testing.T) {
	needRoot(t)
	f := newFixture(t)
	g := otherGroup(t)
	strict := safefile.Trust{Enforce: true}
	withGroup := safefile.Trust{Enforce: true, Groups: []safefile.Group{g}}

	good := f.file("good", 0o644, 0, 0, "ok")
	bad := f.file("world-writable", 0o666, 0, 0, "x")
	groupDir := f.mkdir("group-dir", 0o775, 0, int(g.GID))
	inGroupDir := filepath.Join(groupDir, "f")
	if err := os.WriteFile(inGroupDir, []byte("ok"), 0o644); err != nil {
		t.Fatal(err)
	}
	userDir := f.mkdir("user-dir", 0o755, nobody, 0)
	inUserDir := filepath.Join(userDir, "f")
	if err := os.WriteFile(inUserDir, []byte("ok"), 0o644); err != nil {
		t.Fatal(err)
	}
	openDir := f.mkdir("open-dir", 0o777, 0, 0)
	inOpenDir := filepath.Join(openDir, "f")
	if err := os.WriteFile(inOpenDir, []byte("ok"), 0o644); err != nil {
		t.Fatal(err)
	}
	stickyDir := f.mkdir("sticky-dir", 0o1777, 0, 0)
	inStickyDir := filepath.Join(stickyDir, "f")
	if err := os.WriteFile(inStickyDir, []byte("ok"), 0o644); err != nil {
		t.Fatal(err)
	}
	loopA := filepath.Join(f.dir, "loop-a")
	f.link("loop-b", loopA, 0)
	f.link("loop-a", filepath.Join(f.dir, "loop-b"), 0)
	nobodyLink := f.link("link-nobody", good, nobody)

	cases := []struct {
		name  string
		path  string
		trust safefile.Trust
		want  string // "" = accepted
	}{
		{"root 0644", good, strict, ""},
		{"root 0600", f.file("private", 0o600, 0, 0, "ok"), strict, ""},
		{"group-writable by gid 0", f.file("gid0", 0o664, 0, 0, "ok"), strict, ""},
		{"group-writable by an untrusted group", f.file("g-untrusted", 0o664, 0, int(g.GID), "ok"), strict, "so that group can write it, and it is not trusted"},
		{"group-writable by a trusted group", f.file("g-trusted", 0o664, 0, int(g.GID), "ok"), withGroup, ""},
		{"world-writable", bad, withGroup, "has mode 0666 (every user can write it)"},
		{"owned by nobody", f.file("nobodys", 0o600, nobody, 0, "ok"), strict, "is owned by uid 65534, not root"},
		{"in a folder an untrusted group can write", inGroupDir, strict, "(via " + groupDir + ") is a folder with mode 0775"},
		{"in a folder a trusted group can write", inGroupDir, withGroup, ""},
		{"in a folder owned by nobody", inUserDir, strict, "(via " + userDir + ") is a folder owned by uid 65534"},
		{"in a folder everyone can write", inOpenDir, withGroup, "(via " + openDir + ") is a folder with mode 0777"},
		{"in a sticky folder everyone can write", inStickyDir, strict, ""},
		{"root link to a good file", f.link("link-good", good, 0), strict, ""},
		{"relative root link", f.link("link-relative", "good", 0), strict, ""},
		{"link through ..", f.link("link-dotdot", "../root/good", 0), strict, ""},
		{"root link to a bad file", f.link("link-bad", bad, 0), strict, "(via " + bad + ") has mode 0666"},
		{"link owned by nobody", nobodyLink, strict, "is a symbolic link owned by uid 65534, not root"},
		{"chain through a link owned by nobody", f.link("link-chain", nobodyLink, 0), strict, "(via " + nobodyLink + ") is a symbolic link owned by uid 65534"},
		{"link loop", loopA, strict, "goes through more than 40 symbolic links"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data, err := read(c.path, c.trust)
			if c.want == "" {
				if err != nil || string(data) != "ok" {
					t.Errorf("read = %q, %v; want ok", data, err)
				}
				return
			}
			var ie *safefile.InsecureError
			if !errors.As(err, &ie) {
				t.Fatalf("err = %v, want an *InsecureError with %q", err, c.want)
			}
			for _, want := range []string{c.want, c.path, safefile.OverrideFlag, "trusted_groups"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message lacks %q:\n%s", want, err)
				}
			}
			// Without Enforce (--allow-insecure-files), the same file is read.
			if _, err := read(c.path, safefile.Trust{}); err != nil && !strings.Contains(c.name, "loop") {
				t.Errorf("not enforced: %v", err)
			}
		})
	}
}

// A missing file is fs.ErrNotExist when the folders above it are trusted,
// and refused when an untrusted user could still create it.
func TestMissingFile(t *testing.T) {
	needRoot(t)
	f := newFixture(t)
	strict := safefile.Trust{Enforce: true}
	if _, err := read(filepath.Join(f.dir, "missing"), strict); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing in a trusted folder: %v, want fs.ErrNotExist", err)
	}
	open := f.mkdir("open", 0o777, 0, 0)
	_, err := read(filepath.Join(open, "missing"), strict)
	var ie *safefile.InsecureError
	if !errors.As(err, &ie) {
		t.Errorf("missing in a folder anyone can write: %v, want an *InsecureError", err)
	}
}

// A FIFO, a device or a folder is refused by its type at once, never
// opened for a read that could block; with or without the trust check.
func TestReadRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link-to-zero")
	if err := os.Symlink("/dev/zero", link); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path, want string
	}{
		{"FIFO", fifo, "is a FIFO, not a regular file"},
		{"device", "/dev/zero", "is a character device, not a regular file"},
		{"link to a device", link, "is a character device, not a regular file"},
		{"directory", dir, "is a directory, not a regular file"},
	}
	for _, c := range cases {
		for _, enforce := range []bool{false, true} {
			if enforce && os.Geteuid() != 0 {
				continue // t.TempDir is not root's
			}
			t.Run(c.name+"/enforce="+strconv.FormatBool(enforce), func(t *testing.T) {
				done := make(chan error, 1)
				go func() {
					_, err := read(c.path, safefile.Trust{Enforce: enforce})
					done <- err
				}()
				select {
				case err := <-done:
					var nr *safefile.NotRegularError
					if enforce && strings.Contains(c.name, "device") {
						// /dev/zero is mode 0666: refused by either check.
						if err == nil {
							t.Fatal("accepted /dev/zero")
						}
						return
					}
					if !errors.As(err, &nr) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) {
						t.Errorf("err = %v, want a *NotRegularError %q naming the path", err, c.want)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("the read blocked")
				}
			})
		}
	}
}

func TestReadSizeAndDeadline(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), 2<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := read(big, safefile.Trust{})
	var tl *safefile.TooLargeError
	if !errors.As(err, &tl) || tl.Limit != 1<<10 || !strings.Contains(err.Error(), big) {
		t.Errorf("err = %v, want a *TooLargeError naming %s", err, big)
	}
	exact := filepath.Join(dir, "exact")
	if err := os.WriteFile(exact, bytes.Repeat([]byte("y"), 1<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	if data, err := read(exact, safefile.Trust{}); err != nil || len(data) != 1<<10 {
		t.Errorf("a file of exactly MaxSize: %d bytes, %v", len(data), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := safefile.Read(ctx, exact, safefile.Options{MaxSize: 1 << 20}); !errors.Is(err, context.Canceled) {
		t.Errorf("past the deadline: %v, want context.Canceled", err)
	}
	if _, err := safefile.Read(context.Background(), exact, safefile.Options{}); err == nil {
		t.Error("MaxSize 0 accepted")
	}
}

// The lock's folder may not be one that others can write, sticky or not.
func TestCheckDir(t *testing.T) {
	needRoot(t)
	f := newFixture(t)
	strict := safefile.Trust{Enforce: true}
	if _, err := safefile.CheckDir(f.mkdir("ok", 0o755, 0, 0), strict); err != nil {
		t.Errorf("0755 root folder: %v", err)
	}
	sticky := f.mkdir("sticky", 0o1777, 0, 0)
	if _, err := safefile.Check(sticky, strict); err != nil {
		t.Errorf("Check of a sticky folder: %v", err)
	}
	var ie *safefile.InsecureError
	if _, err := safefile.CheckDir(sticky, strict); !errors.As(err, &ie) {
		t.Errorf("CheckDir of a sticky folder anyone can write: %v, want an *InsecureError", err)
	}
}

func TestResolveGroups(t *testing.T) {
	g := otherGroup(t)
	groups, unknown := safefile.ResolveGroups([]string{g.Name, "ds01-no-such-group"})
	if len(groups) != 1 || groups[0] != g {
		t.Errorf("groups = %v, want [%v]", groups, g)
	}
	if len(unknown) != 1 || unknown[0] != "ds01-no-such-group" {
		t.Errorf("unknown = %v", unknown)
	}
}
