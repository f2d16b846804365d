package dockertest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// NvidiaHook is the executable whose presence on dockerd's PATH makes the
// daemon register its "nvidia" device driver (moby daemon/nvidia_linux.go:
// the driver registers itself in init() only if exec.LookPath finds it, and
// adds it as an OCI prestart hook to every container with a GPU request).
const NvidiaHook = "nvidia-container-runtime-hook"

const (
	daemonStartTimeout = 60 * time.Second
	daemonStopTimeout  = 10 * time.Second
	// unix sockets take at most 107 bytes of path; the daemon puts its
	// containerd sockets under exec-root, so the base must stay short.
	maxBaseDirLen = 40
)

// PrivateDaemon starts a second dockerd, private to the test, in which
// containers with GPU device requests start and exit normally on machines
// without GPUs, and returns an Engine connected to it
// with the probe image already imported.
//
// The daemon gets its own --data-root, --exec-root, --pidfile, --config-file
// (an empty one: the host's /etc/docker/daemon.json is not read) and
// --host unix://<tmp>/d.sock, runs with --bridge=none --iptables=false
// --ip6tables=false, knows a runtime named "nvidia" (plain runc), and finds a
// no-op NvidiaHook first on its PATH, which registers the nvidia device
// driver. It starts in its own network namespace: a dockerd with
// --bridge=none deletes the host's docker0 interface at start-up (moby
// daemon_unix.go, removeDefaultBridgeInterface), which would break the stock
// daemon's default bridge network.
//
// The test fails if the daemon cannot start; it needs root. Its cleanup
// removes the containers the Engine created, stops the daemon (SIGTERM, then
// SIGKILL after 10 s) and removes its directories; problems there are
// logged, not fatal.
func PrivateDaemon(t testing.TB) *Engine {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("dockertest: PrivateDaemon needs root to run dockerd (euid %d)", os.Geteuid())
	}
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		t.Fatalf("dockertest: PrivateDaemon needs dockerd (apt-get install docker.io; .ci/run does it): %v", err)
	}

	base := os.TempDir()
	if len(base) > maxBaseDirLen {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "dsd-")
	if err != nil {
		t.Fatalf("dockertest: PrivateDaemon: %v", err)
	}
	binDir := filepath.Join(dir, "bin")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		t.Fatalf("dockertest: PrivateDaemon: %v", err)
	}
	if err := os.WriteFile(filepath.Join(binDir, NvidiaHook), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatalf("dockertest: PrivateDaemon: %v", err)
	}
	configFile := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(configFile, []byte("{}\n"), 0o644); err != nil {
		t.Fatalf("dockertest: PrivateDaemon: %v", err)
	}
	logPath := filepath.Join(dir, "dockerd.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("dockertest: PrivateDaemon: %v", err)
	}
	defer logFile.Close() // the child has its own descriptor
	host := "unix://" + filepath.Join(dir, "d.sock")

	cmd := exec.Command(dockerd,
		"--config-file", configFile,
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"),
		"--host", host,
		"--bridge=none", "--iptables=false", "--ip6tables=false",
		"--add-runtime", "nvidia=runc",
	)
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "PATH=") || strings.HasPrefix(kv, "DOCKER_")
	}), "PATH="+binDir+":"+daemonPath())
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET, // see the doc comment: keeps docker0
		Setpgid:    true,                 // a ^C to the test is not a ^C to the daemon
		Pdeathsig:  syscall.SIGTERM,      // the test binary died: shut down cleanly
	}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		t.Fatalf("dockertest: PrivateDaemon: start %s: %v", dockerd, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		t.Helper()
		stopDaemon(t, cmd, exited, logPath)
		removeDaemonDir(t, dir)
	})

	cli, err := client.New(client.WithHost(host))
	if err != nil {
		t.Fatalf("dockertest: PrivateDaemon: client for %s: %v", host, err)
	}
	if err := waitForDaemon(cli, exited); err != nil {
		_ = cli.Close()
		t.Fatalf("dockertest: PrivateDaemon: dockerd at %s: %v\n--- %s (tail) ---\n%s", host, err, logPath, tail(logPath, 8<<10))
	}
	e := connect(t, cli)
	e.Image(t)
	t.Logf("dockertest: private dockerd (pid %d) ready at %s in %v", cmd.Process.Pid, host, time.Since(started).Round(time.Millisecond))
	return e
}

// daemonPath is the PATH the private dockerd gets after the hook's
// directory: the test's own PATH plus the standard system directories
// (containerd, runc and docker-init live there).
func daemonPath() string {
	dirs := filepath.SplitList(os.Getenv("PATH"))
	for _, d := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		if !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return strings.Join(dirs, string(filepath.ListSeparator))
}

// waitForDaemon pings the daemon until it answers, it exits, or the start
// timeout passes.
func waitForDaemon(cli *client.Client, exited <-chan struct{}) error {
	deadline := time.Now().Add(daemonStartTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("dockerd exited during start-up")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
		cancel()
		if err == nil {
			return nil
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("no answer within %v: %w", daemonStartTimeout, last)
}

// stopDaemon sends SIGTERM to dockerd, waits up to 10 s, then kills its
// process group (dockerd and the containerd it started).
func stopDaemon(t testing.TB, cmd *exec.Cmd, exited <-chan struct{}, logPath string) {
	t.Helper()
	if t.Failed() {
		t.Logf("dockertest: private dockerd log %s (tail):\n%s", logPath, tail(logPath, 8<<10))
	}
	select {
	case <-exited:
		return
	default:
	}
	stopping := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		t.Logf("dockertest: private dockerd stopped in %v", time.Since(stopping).Round(time.Millisecond))
	case <-time.After(daemonStopTimeout):
		t.Logf("dockertest: private dockerd (pid %d) ignored SIGTERM for %v; killing its process group", cmd.Process.Pid, daemonStopTimeout)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	// Whatever the daemon left in its process group (a containerd that
	// outlived it) goes too; an empty group answers ESRCH.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

// removeDaemonDir unmounts what the daemon left mounted under dir, deepest
// first, and removes dir. Failures are logged: they must not fail a test that
// passed.
func removeDaemonDir(t testing.TB, dir string) {
	t.Helper()
	mounts, err := mountsUnder(dir)
	if err != nil {
		t.Logf("dockertest: read mounts: %v", err)
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mounts[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			t.Logf("dockertest: unmount %s: %v", mounts[i], err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Logf("dockertest: remove the private daemon's directory: %v", err)
	}
}

// mountsUnder lists the mount points at or below dir, in mount order.
func mountsUnder(dir string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw": field 5 is the mount point.
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + (c - '0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// tail returns at most the last n bytes of the file at path.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, 0)
	}
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(f)
	return buf.String()
}
