package pipeline_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ds01/ds01-pipe/pipeline"
)

// nobody is the uid files are given to play "a user other than root".
const nobody = 65534

// needRoot skips a test that must own files as root and give them away.
// CI runs the tests as root (.ci/run), so there they always run.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the check is about files owned by root versus other users, and only root can chown (CI runs the tests as root)")
	}
}

func TestCheckFilePermissions(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	file := func(name string, mode fs.FileMode, uid int, gid ...int) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // not subject to the umask
			t.Fatal(err)
		}
		if err := os.Lchown(p, uid, append(gid, 0)[0]); err != nil {
			t.Fatal(err)
		}
		return p
	}
	link := func(name, target string, uid int) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, uid, 0); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mkdir := func(name string, mode fs.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := file("good", 0o644, 0)
	inOpenDir := filepath.Join(mkdir("dir-open", 0o777), "f")
	if err := os.WriteFile(inOpenDir, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := file("world-writable", 0o666, 0)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	loopA := filepath.Join(dir, "loop-a")
	link("loop-b", loopA, 0)
	link("loop-a", filepath.Join(dir, "loop-b"), 0)

	cases := []struct {
		name string
		path string
		want string // "" = accepted
	}{
		{"root 0644", good, ""},
		{"root 0600", file("private", 0o600, 0), ""},
		{"root 0444", file("read-only", 0o444, 0), ""},
		{"group-writable by gid 0", file("group-writable", 0o664, 0), ""},
		{"group-writable by another group", file("group-writable-other", 0o664, 0, 1), "has mode 0664 and group"},
		{"world-writable", bad, "has mode 0666 (every user can write it)"},
		{"only others can write", file("other-writable", 0o602, 0), "has mode 0602 (every user can write it)"},
		{"owned by nobody", file("nobodys", 0o644, nobody), "is owned by uid 65534, not root"},
		{"owned by nobody, 0600", file("nobodys-private", 0o600, nobody), "is owned by uid 65534, not root"},
		{"root link to a good file", link("link-good", good, 0), ""},
		{"relative root link", link("link-relative", "good", 0), ""},
		{"root link to a bad file", link("link-bad", bad, 0), "(via " + bad + ") has mode 0666"},
		{"link owned by nobody", link("link-nobody", good, nobody), "is a symbolic link owned by uid 65534, not root"},
		{"chain through a link owned by nobody", link("link-chain", filepath.Join(dir, "link-nobody"), 0), "(via " + filepath.Join(dir, "link-nobody") + ") is a symbolic link owned by uid 65534"},
		{"link loop", loopA, "goes through more than 40 symbolic links"},
		{"root dir 0755", mkdir("dir-ok", 0o755), ""},
		{"world-writable dir", mkdir("dir-777", 0o777), "is a folder with mode 0777"},
		{"file in a world-writable dir", inOpenDir, "(via " + filepath.Join(dir, "dir-open") + ") is a folder with mode 0777"},
		{"FIFO", fifo, "is not a regular file (p---------)"},
		{"world-writable device", "/dev/null", "has mode 0666"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := pipeline.CheckFilePermissions(c.path)
			if c.want == "" {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			var ie *pipeline.InsecureFileError
			if !errors.As(err, &ie) {
				t.Fatalf("err = %v, want an *InsecureFileError with %q", err, c.want)
			}
			msg := err.Error()
			for _, want := range []string{c.want, c.path, pipeline.InsecureFilesFlag} {
				if !strings.Contains(msg, want) {
					t.Errorf("message lacks %q:\n%s", want, msg)
				}
			}
		})
	}

	if err := pipeline.CheckFilePermissions(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
}

// The loader refuses each kind of file only with StrictFiles.
func TestLoadStrictFiles(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	write := func(name, text string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("limits.yaml", "defaults:\n  container_hold_after_stop_h: 24\ngroups:\n  student: {}\n")
	write("groups/student.members", "alice\n")
	write("overrides.yaml", "bob:\n  container_hold_after_stop_h: 48\n")
	write("exemptions.yaml", "exemptions: []\n")
	write("gpus.json", `{"devices": []}`)
	file := write("p.hcl", `
pipeline "p" {
  policy {
    limits_file     = "limits.yaml"
    groups_dir      = "groups"
    overrides_file  = "overrides.yaml"
    exemptions_file = "exemptions.yaml"
  }
  gpu {
    backend  = "sim"
    sim_file = "gpus.json"
  }
  stage "discover" {}
}
`)
	strict := pipeline.LoadOptions{StrictFiles: true}
	load := func() error {
		cfg, err := pipeline.LoadFile(file, strict)
		if err != nil {
			return err
		}
		gpu, err := pipeline.OpenGPU(cfg.GPU, "")
		if err != nil {
			return err
		}
		return gpu.Close()
	}
	if err := load(); err != nil {
		t.Fatalf("secure files refused: %v", err)
	}
	for _, name := range []string{"p.hcl", "limits.yaml", "groups", "groups/student.members", "overrides.yaml", "exemptions.yaml", "gpus.json"} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, fi.Mode().Perm()|0o002); err != nil {
				t.Fatal(err)
			}
			defer os.Chmod(p, fi.Mode().Perm())
			err = load()
			if !pipeline.IsConfigError(err) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), pipeline.InsecureFilesFlag) {
				t.Errorf("want a configuration error naming %s and %s, got %v", p, pipeline.InsecureFilesFlag, err)
			}
			// Without StrictFiles the same file is read.
			cfg, err := pipeline.LoadFile(file, pipeline.LoadOptions{})
			if err != nil {
				t.Fatalf("without StrictFiles: %v", err)
			}
			if _, err := pipeline.OpenGPU(cfg.GPU, ""); err != nil {
				t.Errorf("without StrictFiles: %v", err)
			}
		})
	}
	// Load (bytes already read) checks the path it is given, too.
	if err := os.Chmod(file, 0o666); err != nil {
		t.Fatal(err)
	}
	src, _ := os.ReadFile(file)
	if _, err := pipeline.Load(file, src, strict); !pipeline.IsConfigError(err) {
		t.Errorf("Load of an insecure path: %v, want a configuration error", err)
	}
}

// A FIFO or an oversized file is refused without hanging or reading it all,
// with or without StrictFiles.
func TestReadFileRefusesFIFOAndHugeFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "p.hcl")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pipeline.ReadFile(fifo, pipeline.LoadOptions{}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("FIFO: %v", err)
	}
	big := filepath.Join(dir, "big.hcl")
	if err := os.WriteFile(big, make([]byte, pipeline.MaxPipelineFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pipeline.ReadFile(big, pipeline.LoadOptions{}); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized: %v", err)
	}
}
