package slurm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ds01/ds01-pipe/internal/dockertest"
)

// One simulated GPU per node.
var nodeGPU = map[string]string{
	"n1": "GPU-d5010000-0000-4000-8000-000000000001",
	"n2": "GPU-d5010000-0000-4000-8000-000000000002",
}

// healthCheck is everything one run of slurm-healthcheck needs.
type healthCheck struct {
	c        *cluster
	dir      string
	script   string // deploy/slurm/slurm-healthcheck
	bin      string // ds01-pipe
	pipeline string // a copy of pipelines/audit-gpu.hcl
	docker   string // DOCKER_HOST
}

func (h *healthCheck) sim(node string) string {
	return filepath.Join(h.dir, "sim-"+node+".json")
}

// writeSim writes a node's GPU simulation file: its one GPU with these
// host PIDs on it. The file is replaced by a rename, so a check that reads
// it meanwhile sees the old or the new file, never half of one.
func (h *healthCheck) writeSim(t *testing.T, node string, pids ...int) {
	t.Helper()
	procs := []map[string]any{}
	for _, p := range pids {
		procs = append(procs, map[string]any{"pid": p, "used_memory_mib": 1024})
	}
	doc := map[string]any{
		"driver_version": "550.54.15",
		"devices": []map[string]any{{
			"index": 0, "uuid": nodeGPU[node], "name": "NVIDIA A100-SXM4-80GB", "memory_mib": 81920,
			"processes": procs,
		}},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	tmp := h.sim(node) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, h.sim(node)); err != nil {
		t.Fatal(err)
	}
}

// env is the environment slurmd gives a health check (SLURMD_NODENAME and
// nothing else: no PATH) plus this test's settings. SLURM_CONF is given
// because the test cluster's slurm.conf is not in /etc/slurm. Later
// entries of extra override earlier ones.
func (h *healthCheck) env(node string, extra ...string) []string {
	env := []string{
		"SLURMD_NODENAME=" + node,
		"SLURM_CONF=" + h.c.conf,
		"DS01_PIPE=" + h.bin,
		"DS01_PIPE_PIPELINE=" + h.pipeline,
		"DS01_PIPE_NVML_SIM=" + h.sim(node),
		"DS01_PIPE_HEALTHCHECK_LOCK=" + filepath.Join(h.dir, "direct-"+node+".lock"),
		"DOCKER_HOST=" + h.docker,
	}
	return append(env, extra...)
}

// check runs the health check for node as slurmd would, and returns its
// exit status and output.
func (h *healthCheck) check(t *testing.T, node string, extra ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(h.script)
	cmd.Env = h.env(node, extra...)
	cmd.Dir = h.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	code := errExit(err)
	if code < 0 {
		t.Fatalf("health check for %s: %v\n%s", node, err, out.String())
	}
	// slurmd kills a check after 60 s: every check here must end well before.
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("health check for %s took %s", node, d)
	}
	return code, out.String()
}

// wrapper is slurm.conf's HealthCheckProgram in the test: slurmd gives it
// only SLURMD_NODENAME, and it hands the real check this node's settings
// (its own simulation file and lock) in an otherwise empty environment.
func (h *healthCheck) wrapper(t *testing.T, conf string) string {
	t.Helper()
	script := fmt.Sprintf(`#!/bin/sh
echo "$SLURMD_NODENAME" >>%[1]s/slurmd-checks
exec /usr/bin/env -i SLURMD_NODENAME="$SLURMD_NODENAME" SLURM_CONF=%[2]s DS01_PIPE=%[3]s \
	DS01_PIPE_PIPELINE=%[4]s DS01_PIPE_NVML_SIM=%[1]s/sim-"$SLURMD_NODENAME".json \
	DS01_PIPE_HEALTHCHECK_LOCK=%[1]s/slurmd-"$SLURMD_NODENAME".lock DOCKER_HOST=%[5]s %[6]s
`, shellQuote(h.dir), shellQuote(conf), shellQuote(h.bin), shellQuote(h.pipeline), shellQuote(h.docker), shellQuote(h.script))
	path := filepath.Join(h.dir, "healthcheck-wrapper")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// hold takes the lock file path (flock, exclusive, waiting for a check that
// holds it) and keeps it until the test ends.
func hold(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// hostProcess starts a process of no container (a leaked GPU process, once
// a simulation file lists its PID). stop ends it.
func hostProcess(t *testing.T) (pid int, stop func()) {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := false
	stop = func() {
		if done {
			return
		}
		done = true
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	t.Cleanup(stop)
	return cmd.Process.Pid, stop
}

// gone reports whether pid has ended (a zombie counts as ended: whoever
// reaps it is not this test's business).
func gone(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	_, rest, _ := bytes.Cut(b, []byte(") "))
	return len(rest) > 0 && rest[0] == 'Z'
}

// The health check drains only the node whose GPU leaked, with a reason
// naming the GPU and the PIDs, resumes it when the leak ends, and treats
// hung and failed audits, live containers, admins' drains and overlapping
// checks as docs/fleet.md says. The first part runs through slurmd
// itself (HealthCheckProgram, HealthCheckInterval); the rest calls the
// check directly, with the environment slurmd gives it, for speed.
func TestHealthCheckOnCluster(t *testing.T) {
	requireRoot(t)
	for _, tool := range []struct{ name, pkg string }{
		{"jq", "jq"}, {"flock", "util-linux"}, {"timeout", "coreutils"},
	} {
		requireTool(t, tool.name, tool.pkg)
	}
	eng := dockertest.New(t)
	dir := t.TempDir()
	// ds01-pipe refuses configuration that others could write: the test's
	// folder is root's and not group/other-writable, like /etc/ds01-pipe.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	h := &healthCheck{dir: dir, docker: eng.Host()}
	root := repoRoot(t)
	h.script = filepath.Join(root, "deploy", "slurm", "slurm-healthcheck")
	h.bin = buildDS01Pipe(t, dir)
	src, err := os.ReadFile(filepath.Join(root, "pipelines", "audit-gpu.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	h.pipeline = filepath.Join(dir, "audit-gpu.hcl")
	if err := os.WriteFile(h.pipeline, src, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, n := range clusterNodes {
		h.writeSim(t, n)
	}

	start := time.Now()
	h.c = startCluster(t, dir, h.wrapper(t, filepath.Join(dir, "slurm.conf")), 5)
	t.Logf("cluster up in %s", time.Since(start).Round(time.Millisecond))
	c := h.c

	expectIdle := func(t *testing.T, node string) {
		t.Helper()
		if st, reason := c.node(t, node); drained(st) {
			t.Errorf("%s is %s (%s), want it in service", node, st, reason)
		}
	}

	// --- through slurmd -----------------------------------------------
	leak, stopLeak := hostProcess(t)
	h.writeSim(t, "n2", leak)
	waitFor(t, 45*time.Second, "slurmd's health check drains n2", func() (bool, string) {
		st, reason := c.node(t, "n2")
		return drained(st) && strings.HasPrefix(reason, "ds01-pipe:"), st + " " + reason
	})
	_, reason := c.node(t, "n2")
	if !strings.Contains(reason, nodeGPU["n2"]) || !strings.Contains(reason, "pids "+strconv.Itoa(leak)) {
		t.Errorf("n2 drain reason %q does not name GPU %s and PID %d", reason, nodeGPU["n2"], leak)
	}
	expectIdle(t, "n1")

	// Jobs submitted meanwhile run on the healthy node.
	for i := range 2 {
		out := c.run(t, "srun", "-N1", "-n1", "-t", "1", "--immediate=30", "/bin/sh", "-c", "echo node=$SLURMD_NODENAME")
		if strings.TrimSpace(out) != "node=n1" {
			t.Errorf("job %d: %q, want it on n1", i, out)
		}
	}

	stopLeak()
	h.writeSim(t, "n2")
	waitFor(t, 45*time.Second, "slurmd's health check resumes n2", func() (bool, string) {
		st, reason := c.node(t, "n2")
		return !drained(st), st + " " + reason
	})
	if b, err := os.ReadFile(filepath.Join(dir, "slurmd-checks")); err != nil || !bytes.Contains(b, []byte("n1\n")) || !bytes.Contains(b, []byte("n2\n")) {
		t.Errorf("slurmd ran the health check for: %q (%v)", b, err)
	}
	t.Logf("slurmd part done after %s", time.Since(start).Round(time.Millisecond))

	// --- direct calls -------------------------------------------------
	// From here on slurmd's own checks find their node's lock taken and do
	// nothing, so they cannot race the calls below.
	for _, n := range clusterNodes {
		hold(t, filepath.Join(dir, "slurmd-"+n+".lock"))
	}

	t.Run("hung audit drains by timeout", func(t *testing.T) {
		pidFile := filepath.Join(dir, "hung.pid")
		stub := filepath.Join(dir, "hung-ds01-pipe")
		// Not exec: the sleep is a grandchild, and must still be ended.
		script := fmt.Sprintf("#!/bin/sh\necho $$ >%s\nsleep 300\n", shellQuote(pidFile))
		if err := os.WriteFile(stub, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		code, out := h.check(t, "n2", "DS01_PIPE="+stub, "DS01_PIPE_HEALTHCHECK_TIMEOUT=2")
		if code != 1 {
			t.Errorf("exit %d, want 1\n%s", code, out)
		}
		if d := time.Since(begin); d > 15*time.Second {
			t.Errorf("a 2 s audit timeout took %s", d)
		}
		st, reason := c.node(t, "n2")
		if !drained(st) || reason != "ds01-pipe: GPU audit timed out after 2s" {
			t.Errorf("n2: %s %q", st, reason)
		}
		expectIdle(t, "n1")
		if b, err := os.ReadFile(pidFile); err == nil {
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			waitFor(t, 5*time.Second, "the hung audit ends", func() (bool, string) { return gone(pid), "pid " + strconv.Itoa(pid) })
		} else {
			t.Errorf("the stub never ran: %v", err)
		}

		code, out = h.check(t, "n2")
		if code != 0 {
			t.Errorf("healthy again: exit %d\n%s", code, out)
		}
		expectIdle(t, "n2")
	})

	t.Run("failed audit drains", func(t *testing.T) {
		code, out := h.check(t, "n2", "DS01_PIPE_PIPELINE="+filepath.Join(dir, "missing.hcl"))
		st, reason := c.node(t, "n2")
		if code != 1 || !drained(st) || !strings.HasPrefix(reason, "ds01-pipe: GPU audit failed (exit 78)") {
			t.Errorf("exit %d, n2 %s %q\n%s", code, st, reason, out)
		}
		if code, out := h.check(t, "n2"); code != 0 {
			t.Errorf("healthy again: exit %d\n%s", code, out)
		}
		expectIdle(t, "n2")
	})

	t.Run("a drained node's reason follows the leak", func(t *testing.T) {
		first, stopFirst := hostProcess(t)
		second, _ := hostProcess(t)
		h.writeSim(t, "n2", first)
		if code, out := h.check(t, "n2"); code != 1 {
			t.Errorf("exit %d, want 1\n%s", code, out)
		}
		stopFirst()
		h.writeSim(t, "n2", second)
		code, out := h.check(t, "n2")
		st, reason := c.node(t, "n2")
		want := fmt.Sprintf("ds01-pipe: GPU leak: %s orphaned pids %d", nodeGPU["n2"], second)
		if code != 1 || !drained(st) || reason != want {
			t.Errorf("exit %d, n2 %s %q, want drained with %q\n%s", code, st, reason, want, out)
		}
		h.writeSim(t, "n2")
		if code, out := h.check(t, "n2"); code != 0 {
			t.Errorf("healthy again: exit %d\n%s", code, out)
		}
		expectIdle(t, "n2")
	})

	t.Run("a live container's process drains nothing", func(t *testing.T) {
		ctr := eng.Create(t, dockertest.Spec{Name: "gpu-job", Args: []string{"forever"}, Start: true})
		h.writeSim(t, "n1", eng.PID(t, ctr.ID))
		code, out := h.check(t, "n1")
		if code != 0 {
			t.Errorf("exit %d, want 0\n%s", code, out)
		}
		expectIdle(t, "n1")
		h.writeSim(t, "n1")
	})

	t.Run("a Slurm job's process is no leak", func(t *testing.T) {
		// Jobs run as bare processes, in no container. slurmd tracks them;
		// `scontrol listpids` on a host with several slurmd (this test)
		// sees the first node's, n1.
		job := exec.Command(c.tools["srun"], "-N1", "-w", "n1", "-J", "ds01-gpu-job", "-t", "2", "sleep", "120")
		job.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "SLURM_CONF=" + c.conf}
		if err := job.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = c.try("scancel", "--name=ds01-gpu-job")
			_ = job.Process.Kill()
			_ = job.Wait()
		})
		var pid int
		waitFor(t, 20*time.Second, "the job's process", func() (bool, string) {
			out, _ := c.try("scontrol", "listpids")
			for _, line := range strings.Split(out, "\n")[1:] {
				if f := strings.Fields(line); len(f) >= 2 {
					pid, _ = strconv.Atoi(f[0])
				}
			}
			return pid > 0, out
		})
		h.writeSim(t, "n1", pid)
		code, out := h.check(t, "n1")
		if code != 0 {
			t.Errorf("exit %d, want 0\n%s", code, out)
		}
		expectIdle(t, "n1")

		// A leak beside the job's process is still one, named alone.
		leak, _ := hostProcess(t)
		h.writeSim(t, "n1", pid, leak)
		code, out = h.check(t, "n1")
		st, reason := c.node(t, "n1")
		want := fmt.Sprintf("ds01-pipe: GPU leak: %s orphaned pids %d", nodeGPU["n1"], leak)
		if code != 1 || !drained(st) || reason != want {
			t.Errorf("exit %d, n1 %s %q, want drained with %q\n%s", code, st, reason, want, out)
		}
		h.writeSim(t, "n1")
		if code, out := h.check(t, "n1"); code != 0 {
			t.Errorf("healthy again: exit %d\n%s", code, out)
		}
		expectIdle(t, "n1")
	})

	t.Run("an admin's drain is never resumed", func(t *testing.T) {
		const admin = "maintenance: fan replacement"
		c.run(t, "scontrol", "update", "NodeName=n1", "State=DRAIN", "Reason="+admin)
		t.Cleanup(func() { _, _ = c.try("scontrol", "update", "NodeName=n1", "State=RESUME") })

		code, out := h.check(t, "n1")
		st, reason := c.node(t, "n1")
		if code != 0 || !drained(st) || reason != admin {
			t.Errorf("healthy audit: exit %d, n1 %s %q; want exit 0 and the admin's drain kept\n%s", code, st, reason, out)
		}

		leak, _ := hostProcess(t)
		h.writeSim(t, "n1", leak)
		code, out = h.check(t, "n1")
		st, reason = c.node(t, "n1")
		if code != 1 || !drained(st) || reason != admin {
			t.Errorf("leak: exit %d, n1 %s %q; want exit 1 and the admin's reason kept\n%s", code, st, reason, out)
		}
		h.writeSim(t, "n1")
		expectIdle(t, "n2")
	})

	t.Run("overlapping checks", func(t *testing.T) {
		leak, _ := hostProcess(t)
		h.writeSim(t, "n2", leak)
		lock := hold(t, filepath.Join(dir, "direct-n2.lock"))
		code, out := h.check(t, "n2")
		if code != 0 || !strings.Contains(out, "another check is running") {
			t.Errorf("exit %d, want 0 and nothing done\n%s", code, out)
		}
		expectIdle(t, "n2")
		lock.Close()
		h.writeSim(t, "n2")
	})
	t.Logf("all done after %s", time.Since(start).Round(time.Millisecond))
}
