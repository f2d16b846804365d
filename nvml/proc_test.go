package nvml

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const (
	cid  = "3f4b6c8d0e1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4"
	cid2 = "9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9"
)

func TestParseCgroup(t *testing.T) {
	tests := []struct {
		name string
		text string
		want string // "" = no Docker container
	}{
		{"v1 cgroupfs", "12:memory:/docker/" + cid + "\n11:cpuset:/docker/" + cid + "\n1:name=systemd:/docker/" + cid + "\n", cid},
		{"v1 systemd driver", "11:devices:/system.slice/docker-" + cid + ".scope\n0::/system.slice/docker-" + cid + ".scope\n", cid},
		{"v1 child of the container cgroup", "4:pids:/docker/" + cid + "/init.scope\n", cid},
		{"v1 kubepods via dockershim", "9:memory:/kubepods/burstable/pod1a2b3c4d-5e6f/docker-" + cid + ".scope\n", cid},
		{"v1 kubepods cgroupfs, systemd slices", "5:cpu,cpuacct:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/docker-" + cid + ".scope\n", cid},
		{"v2 systemd driver", "0::/system.slice/docker-" + cid + ".scope\n", cid},
		{"v2 cgroupfs driver", "0::/docker/" + cid + "\n", cid},
		{"v2 DS01 per-user slice", "0::/ds01.slice/ds01-student.slice/ds01-student-alice.slice/docker-" + cid + ".scope\n", cid},
		{"v2 nested unit inside the scope", "0::/system.slice/docker-" + cid + ".scope/init.scope\n", cid},
		{"hybrid, docker only in the v1 lines", "12:memory:/docker/" + cid + "\n0::/\n", cid},
		{"docker in docker: the outer one", "0::/docker/" + cid + "/docker/" + cid2 + "\n", cid},
		{"no trailing newline", "0::/docker/" + cid, cid},
		{"CRLF", "0::/docker/" + cid + "\r\n", cid},

		{"host process v2", "0::/user.slice/user-1000.slice/session-3.scope\n", ""},
		{"host process v1", "12:memory:/user.slice\n1:name=systemd:/init.scope\n", ""},
		{"system service", "0::/system.slice/docker.service\n", ""},
		{"root cgroup", "0::/\n", ""},
		{"containerd", "0::/system.slice/cri-containerd-" + cid + ".scope\n", ""},
		{"containerd under kubepods", "0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-" + cid + ".scope\n", ""},
		{"podman", "0::/machine.slice/libpod-" + cid + ".scope\n", ""},
		{"bare id under kubepods", "0::/kubepods/besteffort/pod1/" + cid + "\n", ""},
		{"short id", "0::/docker/" + cid[:12] + "\n", ""},
		{"upper-case id", "0::/docker/" + strings.ToUpper(cid) + "\n", ""},
		{"65 hex digits", "0::/system.slice/docker-" + cid + "0.scope\n", ""},
		{"non-hex", "0::/docker/" + strings.Repeat("g", 64) + "\n", ""},
		{"id as a plain name", "0::/system.slice/" + cid + "\n", ""},
		{"scope without prefix", "0::/system.slice/docker" + cid + ".scope\n", ""},
		{"no path field", "0:" + "/docker/" + cid + "\n", ""},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseCgroup(tt.text)
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("ParseCgroup(%q) = %q, %v; want %q, %v", tt.text, got, ok, tt.want, tt.want != "")
			}
		})
	}
}

// fakeProc writes a /proc tree with one cgroup file per PID.
func fakeProc(t *testing.T, cgroups map[int]string) ProcFS {
	t.Helper()
	root := t.TempDir()
	for pid, text := range cgroups {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return ProcFS{Root: root}
}

func TestProcFSContainerID(t *testing.T) {
	p := fakeProc(t, map[int]string{
		100: "0::/system.slice/docker-" + cid + ".scope\n",
		200: "0::/user.slice/user-1000.slice/session-3.scope\n",
	})
	tests := []struct {
		pid     int
		want    string
		wantErr error
	}{
		{100, cid, nil},
		{200, "", nil},
		{300, "", ErrNoProcess},
	}
	for _, tt := range tests {
		got, err := p.ContainerID(tt.pid)
		if got != tt.want || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
			t.Errorf("ContainerID(%d) = %q, %v; want %q, %v", tt.pid, got, err, tt.want, tt.wantErr)
		}
	}
	for _, pid := range []int{0, -1} {
		if _, err := p.ContainerID(pid); err == nil || errors.Is(err, ErrNoProcess) {
			t.Errorf("ContainerID(%d) = %v, want an invalid-pid error", pid, err)
		}
	}
}

func TestProcFSVerify(t *testing.T) {
	p := fakeProc(t, map[int]string{
		100: "0::/docker/" + cid + "\n",
		200: "0::/init.scope\n",
	})
	tests := []struct {
		pid  int
		want string
		ok   bool
	}{
		{100, cid, true},
		{100, cid2, false}, // the PID now belongs to another container
		{100, "", false},
		{200, "", true},
		{200, cid, false},
		{300, "", false}, // gone
	}
	for _, tt := range tests {
		ok, err := p.Verify(tt.pid, tt.want)
		if err != nil || ok != tt.ok {
			t.Errorf("Verify(%d, %.12q) = %v, %v; want %v, nil", tt.pid, tt.want, ok, err, tt.ok)
		}
	}
	if _, err := p.Verify(-5, ""); err == nil {
		t.Error("Verify(-5) should fail")
	}
}

// TestProcFSReal reads the real /proc.
func TestProcFSReal(t *testing.T) {
	var p ProcFS
	id, err := p.ContainerID(os.Getpid())
	if err != nil {
		t.Fatalf("own pid: %v", err)
	}
	if id != "" && !isContainerID(id) {
		t.Errorf("own pid maps to %q, want \"\" or a container ID", id)
	}
	t.Logf("this test runs in container %q", id)
	if ok, err := p.Verify(os.Getpid(), id); !ok || err != nil {
		t.Errorf("Verify(own pid) = %v, %v; want true, nil", ok, err)
	}

	data, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	pidMax, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.ContainerID(pidMax + 1); !errors.Is(err, ErrNoProcess) {
		t.Errorf("ContainerID(pid_max+1) = %v, want ErrNoProcess", err)
	}
}

// FuzzParseCgroup checks that no input panics ParseCgroup and that every ID
// it finds is a full Docker ID taken from the text. Seeds live under
// testdata/fuzz/FuzzParseCgroup.
func FuzzParseCgroup(f *testing.F) {
	f.Fuzz(func(t *testing.T, text string) {
		id, ok := ParseCgroup(text)
		if ok != (id != "") {
			t.Fatalf("ParseCgroup(%q) = %q, %v", text, id, ok)
		}
		if ok && (!isContainerID(id) || !strings.Contains(text, id)) {
			t.Fatalf("ParseCgroup(%q) = %q, not a container ID from the text", text, id)
		}
	})
}
