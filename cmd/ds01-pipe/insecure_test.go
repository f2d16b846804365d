package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ds01/ds01-pipe/pipeline"
)

// ds01-pipe runs as root: a pipeline, policy or simulation file that a
// non-root user could have written would let that user decide what gets
// removed, so as root such files are refused (exit 78, before Docker is
// contacted) unless --allow-insecure-files is given.

func TestAllowInsecureFilesHelp(t *testing.T) {
	code, out, _ := cli(t, "--help")
	want := "accept pipeline, policy and simulation files that non-root users could have written; " +
		"ds01-pipe runs as root, so such a file lets that user decide what gets removed"
	if code != ExitOK || !strings.Contains(out, "--allow-insecure-files") || !strings.Contains(out, want) {
		t.Errorf("--help lacks --allow-insecure-files with its help %q:\n%s", want, out)
	}
}

func TestInsecureFilesRefusedAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the check applies only when ds01-pipe runs as root, and the test gives files to another uid (CI runs the tests as root)")
	}
	noDocker(t)
	dir := t.TempDir()
	writeFile(t, dir, "resource-limits.yaml", "defaults:\n  container_hold_after_stop_h: 24\n")
	if err := os.Mkdir(filepath.Join(dir, "groups"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "groups"), "student.members", "alice\n")
	writeFile(t, dir, "user-overrides.yaml", "bob:\n  container_hold_after_stop_h: 48\n")
	writeFile(t, dir, "lifecycle-exemptions.yaml", "exemptions: []\n")
	writeFile(t, dir, "gpus.json", `{"driver_version": "550.54.15", "devices": []}`)
	file := writeFile(t, dir, "p.hcl", `
pipeline "p" {
  policy {
    limits_file     = "resource-limits.yaml"
    groups_dir      = "groups"
    overrides_file  = "user-overrides.yaml"
    exemptions_file = "lifecycle-exemptions.yaml"
  }
  gpu {
    backend  = "sim"
    sim_file = "gpus.json"
  }
  stage "discover" {}
}
`)
	if code, _, errOut := cli(t, "validate", file); code != ExitOK {
		t.Fatalf("root-owned files that only root can write: exit %d\n%s", code, errOut)
	}

	// refusedAsRoot checks that validate and plan refuse file with a message
	// naming the insecure path and the flag, and that the flag accepts it.
	refusedAsRoot := func(t *testing.T, file, insecure string) {
		t.Helper()
		for _, args := range [][]string{{"validate", file}, {"plan", "--format", "json", file}} {
			code, _, errOut := cli(t, args...)
			if code != ExitConfigError {
				t.Errorf("%s: exit %d, want 78\n%s", args[0], code, errOut)
			}
			for _, want := range []string{insecure, "--allow-insecure-files", "non-root user could have written it"} {
				if !strings.Contains(errOut, want) {
					t.Errorf("%s: stderr lacks %q:\n%s", args[0], want, errOut)
				}
			}
		}
		if code, _, errOut := cli(t, "--allow-insecure-files", "validate", file); code != ExitOK {
			t.Errorf("--allow-insecure-files validate: exit %d, want 0\n%s", code, errOut)
		}
	}

	for _, name := range []string{"p.hcl", "resource-limits.yaml", "groups", "groups/student.members", "user-overrides.yaml", "lifecycle-exemptions.yaml", "gpus.json"} {
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name+"/writable by others", func(t *testing.T) {
			mode := os.FileMode(0o666)
			if fi.IsDir() {
				mode = 0o777
			}
			if err := os.Chmod(p, mode); err != nil {
				t.Fatal(err)
			}
			defer os.Chmod(p, fi.Mode().Perm())
			refusedAsRoot(t, file, p)
		})
		t.Run(name+"/owned by another user", func(t *testing.T) {
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			defer os.Chown(p, 0, 0)
			refusedAsRoot(t, file, p)
		})
	}

	t.Run("symlink owned by another user", func(t *testing.T) {
		link := filepath.Join(dir, "link.hcl")
		if err := os.Symlink(file, link); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(link, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		refusedAsRoot(t, link, "link.hcl is a symbolic link owned by uid 65534")
	})

	t.Run("simulation file from the environment", func(t *testing.T) {
		sim := writeFile(t, dir, "env-gpus.json", `{"devices": []}`)
		if err := os.Chmod(sim, 0o666); err != nil {
			t.Fatal(err)
		}
		t.Setenv(pipeline.SimEnvVar, sim)
		refusedAsRoot(t, file, sim)
	})
}
