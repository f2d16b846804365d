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
		{"cgroupfs driver, --cgroup-parent", "0::/system.slice/" + cid + "\n", cid},
		{"cgroupfs driver, DS01 per-user parent", "4:memory:/ds01.slice/ds01-student.slice/ds01-student-alice.slice/" + cid + "\n", cid},
		{"cgroupfs parent, nested docker", "0::/ds01/" + cid + "/docker/" + cid2 + "\n", cid},
		{"bare id under LXC", "0::/lxc/" + cid + "\n", ""},
		{"scope without prefix", "0::/system.slice/docker" + cid + ".scope\n", ""},
		{"no path field", "0:" + "/docker/" + cid + "\n", ""},
		{"empty", "", ""},
		// A user's own systemd subtree: any name can be made there.
		{"user-made docker scope", "0::/user.slice/user-1000.slice/user@1000.service/app.slice/docker-" + cid + ".scope\n", ""},
		{"user-made bare id", "0::/user.slice/user-1000.slice/user@1000.service/" + cid + "\n", ""},
		{"user-made, v1 lines of docker still count", "12:memory:/docker/" + cid + "\n1:name=systemd:/user.slice/user-1000.slice/user@1000.service/docker-" + cid2 + ".scope\n", cid},
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
	self, err := p.Identify(os.Getpid())
	if err != nil {
		t.Fatalf("Identify(own pid): %v", err)
	}
	if self.ContainerID != id || self.Start == 0 || len(self.Cgroups) == 0 {
		t.Errorf("Identify(own pid) = %+v, want container %q, a start time and cgroups", self, id)
	}
	if again, err := p.Identify(os.Getpid()); err != nil || !again.Same(self) {
		t.Errorf("Identify(own pid) twice: %+v, then %+v, %v", self, again, err)
	}
	t.Logf("own identity: %+v", self)

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

// fakeTree is a /proc with cgroup, stat and status for each process; ns is
// hostNS for a process in the /proc's own PID namespace.
type fakeTree struct {
	t    *testing.T
	root string
}

const hostNS = "pid:[4026531836]"

func newFakeTree(t *testing.T) *fakeTree {
	f := &fakeTree{t: t, root: t.TempDir()}
	f.add(1, 0, "systemd", "0::/init.scope\n", hostNS)
	return f
}

// add writes one process: its parent, command name, cgroup text and PID namespace.
func (f *fakeTree) add(pid, ppid int, comm, cgroup, ns string) {
	f.t.Helper()
	dir := filepath.Join(f.root, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	fields := []string{strconv.Itoa(pid), "(" + comm + ")", "S", strconv.Itoa(ppid)}
	for i := 5; i <= 52; i++ {
		v := "0"
		if i == 22 {
			v = strconv.Itoa(1000 + pid)
		}
		fields = append(fields, v)
	}
	for name, data := range map[string]string{"cgroup": cgroup, "stat": strings.Join(fields, " ") + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	nspid := strconv.Itoa(pid)
	if ns != hostNS {
		nspid += "\t1"
	}
	status := "Name:\t" + comm + "\nNSpid:\t" + nspid + "\n"
	if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func TestIdentify(t *testing.T) {
	f := newFakeTree(t)
	const shimNS = "pid:[4026532000]"
	f.add(10, 1, "sshd", "0::/system.slice/ssh.service\n", hostNS)
	f.add(11, 10, "python3 (train)", "0::/user.slice/user-1000.slice/session-3.scope\n", hostNS)
	f.add(20, 1, "containerd-shim", "0::/system.slice/containerd.service\n", hostNS)
	f.add(21, 20, "python3", "0::/docker/"+cid+"\n", shimNS)                   // a container's process
	f.add(22, 20, "python3", "0::/ds01/"+cid2+"\n", hostNS)                    // --pid=host, cgroup parent
	f.add(23, 20, "worker", "0::/some/unknown/place\n", hostNS)                // below a shim, no known cgroup
	f.add(30, 1, "worker", "12:memory:/ds01.slice/"+cid+"\n0::/\n", hostNS)    // leaked: cgroup only
	f.add(31, 1, "worker", "0::/user.slice/x.scope\n", "pid:[4026532111]")     // another PID namespace
	f.add(32, 1, "worker", "0::/machine.slice/libpod-"+cid+".scope\n", hostNS) // podman
	f.add(40, 1, "bad", "garbage\n", hostNS)                                   // cgroup unreadable as such
	f.add(41, 99, "lost", "0::/user.slice\n", hostNS)                          // parent 99 does not exist
	f.add(50, 1, "crunch", "0::/user.slice/user-1000.slice/session-3.scope\n", hostNS)
	f.add(51, 50, "python3", "0::/user.slice/user-1000.slice/session-3.scope\n", hostNS) // below a user's "crunch": no supervisor
	f.add(52, 1, "runc:[2:INIT]", "0::/system.slice/docker.service\n", hostNS)
	f.add(53, 52, "python3", "0::/system.slice/docker.service\n", hostNS)
	p := ProcFS{Root: f.root}

	tests := []struct {
		pid        int
		container  string
		runtime    string
		namespaced bool
		supervisor string
		inside     bool
	}{
		{11, "", "", false, "", false},
		{21, cid, "", true, "containerd-shim", true},
		{22, cid2, "", false, "containerd-shim", true},
		{23, "", "", false, "containerd-shim", true},
		{30, cid, "", false, "", false},
		{31, "", "", true, "", true},
		{32, "", "podman", false, "", true},
		{51, "", "", false, "", false},
		{53, "", "", false, "runc:[2:INIT]", true},
	}
	for _, tt := range tests {
		id, err := p.Identify(tt.pid)
		if err != nil {
			t.Errorf("Identify(%d): %v", tt.pid, err)
			continue
		}
		if id.ContainerID != tt.container || id.Runtime != tt.runtime || id.Namespaced != tt.namespaced ||
			id.Supervisor != tt.supervisor || id.InContainer() != tt.inside || id.Start != uint64(1000+tt.pid) {
			t.Errorf("Identify(%d) = %+v (in container %v), want container %.12q runtime %q namespaced %v supervisor %q in container %v",
				tt.pid, id, id.InContainer(), tt.container, tt.runtime, tt.namespaced, tt.supervisor, tt.inside)
		}
	}
	if _, err := p.Identify(500); !errors.Is(err, ErrNoProcess) {
		t.Errorf("Identify(missing) = %v, want ErrNoProcess", err)
	}
	for _, pid := range []int{40, 41, 0} {
		if _, err := p.Identify(pid); err == nil || errors.Is(err, ErrNoProcess) {
			t.Errorf("Identify(%d) = %v, want an error that is not ErrNoProcess", pid, err)
		}
	}
	a, _ := p.Identify(11)
	b := a
	b.Cgroups = []string{"/docker/" + cid}
	if !a.Same(a) || a.Same(b) {
		t.Error("Same does not compare cgroups")
	}
}

func TestParseStartTime(t *testing.T) {
	for text, want := range map[string]uint64{
		"42 (sleep) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 5000 100":   987654,
		"42 (a) b) (c) R 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 12345 5000 100": 12345,
	} {
		if got, ok := ParseStartTime(text); !ok || got != want {
			t.Errorf("ParseStartTime(%q) = %d, %v; want %d", text, got, ok, want)
		}
	}
	for _, bad := range []string{"", "42 sleep S 1", "42 (x) S 1 2 3", "42 (x) S -1 42 42 0 -1 4 1 0 0 0 0 0 0 0 20 0 1 0 5 5 1"} {
		if _, ok := ParseStartTime(bad); ok {
			t.Errorf("ParseStartTime(%q) accepted", bad)
		}
	}
}

func TestForeignRuntime(t *testing.T) {
	for text, want := range map[string]string{
		"0::/user.slice/user-1000.slice/session-2.scope\n":                                "",
		"0::/system.slice/docker-" + cid + ".scope\n":                                     "",
		"0::/machine.slice/libpod-" + cid + ".scope/container\n":                          "podman",
		"0::/kubepods.slice/kubepods-besteffort.slice/cri-containerd-" + cid + ".scope\n": "containerd (CRI)",
		"12:memory:/kubepods/besteffort/pod1/" + cid + "\n0::/\n":                         "Kubernetes",
		"0::/system.slice/crio-" + cid + ".scope\n":                                       "CRI-O",
		"0::/lxc.payload.web/init.scope\n":                                                "LXC",
		// In a user's own subtree a name proves nothing (the user may make
		// any cgroup there): rootless podman is known by its PID namespace.
		"0::/user.slice/user-1000.slice/user@1000.service/user.slice/podman-1234.scope/x\n":      "",
		"0::/user.slice/user-1000.slice/user@1000.service/app.slice/libpod-" + cid + ".scope\n":  "",
		"1:name=systemd:/docker/" + cid + "\n0::/system.slice/cri-containerd-" + cid2 + ".scope": "containerd (CRI)",
	} {
		if got := ForeignRuntime(text); got != want {
			t.Errorf("ForeignRuntime(%q) = %q, want %q", text, got, want)
		}
	}
}
