package slurm

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// requireTool finds a program on PATH or in the sbin folders (where the
// Slurm and munge daemons live, often not on a test's PATH). Without it the
// test skips, except under CI=true (.ci/run installs it), where its
// absence is a failure.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found, and CI=true: .ci/run installs it (apt-get install %s)", name, pkg)
	}
	t.Skipf("%s not found: install the %s package to run this test (.ci/run does); skipping", name, pkg)
	return ""
}

// requireRoot: slurmd runs jobs as their users and the health check
// drains nodes as root, as on a real node.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (slurmd), and CI=true: .ci/run runs as root")
	}
	t.Skip("this test needs root (slurmd); skipping")
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root %s has no go.mod: %v", root, err)
	}
	return root
}

// buildDS01Pipe builds the binary the health check runs, linked as the
// Makefile links it.
func buildDS01Pipe(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not on PATH, to build ds01-pipe: %v", err)
	}
	out := filepath.Join(dir, "ds01-pipe")
	cmd := exec.Command(goBin, "build", "-o", out, "-ldflags", "-extldflags=-Wl,-z,lazy", "./cmd/ds01-pipe")
	cmd.Dir = repoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

// freePorts returns n TCP ports free on 127.0.0.1 right now.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// cluster is munge, slurmctld and slurmd nodes n1 and n2 on this machine,
// each with its own folders under dir.
type cluster struct {
	dir   string
	conf  string
	tools map[string]string
}

// clusterNodes are the nodes of the test cluster.
var clusterNodes = []string{"n1", "n2"}

// startCluster starts munged, slurmctld and one slurmd per node, and waits
// until both nodes are idle. slurm.conf is dir/slurm.conf; healthCheck is
// its HealthCheckProgram, run every interval seconds.
func startCluster(t *testing.T, dir, healthCheck string, interval int) *cluster {
	t.Helper()
	c := &cluster{dir: dir, conf: filepath.Join(dir, "slurm.conf"), tools: map[string]string{}}
	for _, tool := range []struct{ name, pkg string }{
		{"munged", "munge"}, {"slurmctld", "slurmctld"}, {"slurmd", "slurmd"},
		{"scontrol", "slurm-client"}, {"sinfo", "slurm-client"}, {"srun", "slurm-client"}, {"scancel", "slurm-client"},
	} {
		c.tools[tool.name] = requireTool(t, tool.name, tool.pkg)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"state", "log", "spool-n1", "spool-n2"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	// munge: its own key and socket, so nothing of the host's is used.
	key := make([]byte, 1024)
	f, err := os.Open("/dev/urandom")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Read(key)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "munge.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "munge.sock")
	c.daemon(t, "munged", c.tools["munged"], "-F", "-f",
		"--key-file="+filepath.Join(dir, "munge.key"), "--socket="+socket,
		"--log-file="+filepath.Join(dir, "log", "munged.log"),
		"--pid-file="+filepath.Join(dir, "munged.pid"), "--seed-file="+filepath.Join(dir, "munged.seed"))
	waitFor(t, 10*time.Second, "munge socket", func() (bool, string) {
		_, err := os.Stat(socket)
		return err == nil, fmt.Sprint(err)
	})

	ports := freePorts(t, 3)
	conf := fmt.Sprintf(`ClusterName=ds01pipetest
SlurmctldHost=%[1]s(127.0.0.1)
SlurmctldPort=%[3]d
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=%[2]s/munge.sock
CredType=cred/munge
StateSaveLocation=%[2]s/state
SlurmdSpoolDir=%[2]s/spool-%%n
SlurmctldPidFile=%[2]s/slurmctld.pid
SlurmdPidFile=%[2]s/slurmd-%%n.pid
SlurmctldLogFile=%[2]s/log/slurmctld.log
SlurmdLogFile=%[2]s/log/slurmd-%%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/builtin
SelectType=select/linear
ReturnToService=2
SlurmdTimeout=300
HealthCheckProgram=%[6]s
HealthCheckInterval=%[7]d
HealthCheckNodeState=ANY
NodeName=n1 NodeHostname=%[1]s NodeAddr=127.0.0.1 Port=%[4]d CPUs=1 State=UNKNOWN
NodeName=n2 NodeHostname=%[1]s NodeAddr=127.0.0.1 Port=%[5]d CPUs=1 State=UNKNOWN
PartitionName=test Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
`, host, dir, ports[0], ports[1], ports[2], healthCheck, interval)
	if err := os.WriteFile(c.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}

	c.daemon(t, "slurmctld", c.tools["slurmctld"], "-D", "-i", "-f", c.conf)
	for _, n := range clusterNodes {
		c.daemon(t, "slurmd-"+n, c.tools["slurmd"], "-D", "-f", c.conf, "-N", n)
	}
	waitFor(t, 40*time.Second, "both nodes idle", func() (bool, string) {
		out, err := c.try("sinfo", "-h", "-N", "-o", "%N %T")
		if err != nil {
			return false, out
		}
		return strings.Count(out, " idle\n") == len(clusterNodes), out
	})
	return c
}

// daemon starts a daemon in the foreground as a child of the test; the
// cleanup ends it (SIGTERM, then SIGKILL after 10 s) and, if the test
// failed, logs the tail of its log.
func (c *cluster) daemon(t *testing.T, name, path string, args ...string) {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
			log := filepath.Join(c.dir, "log", name+".log")
			if b, err := os.ReadFile(log); err == nil {
				t.Logf("%s log (tail):\n%s", name, tail(b, 3000))
			}
		}
	})
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// try runs a Slurm client command against this cluster.
func (c *cluster) try(name string, args ...string) (string, error) {
	cmd := exec.Command(c.tools[name], args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "SLURM_CONF=" + c.conf}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// run runs a Slurm client command and fails the test if it fails.
func (c *cluster) run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := c.try(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// node is what sinfo says of one node: its state ("idle", "drained",
// "draining", with "*" when not responding) and drain reason.
func (c *cluster) node(t *testing.T, name string) (state, reason string) {
	t.Helper()
	out := c.run(t, "sinfo", "-h", "-N", "-n", name, "-o", "%T|%E")
	line, _, _ := strings.Cut(out, "\n")
	state, reason, _ = strings.Cut(line, "|")
	state = strings.TrimSuffix(state, "*")
	if reason == "none" {
		reason = ""
	}
	return state, reason
}

func drained(state string) bool { return strings.HasPrefix(state, "drain") }

// waitFor polls cond every 200 ms until it holds or d has passed; then the
// test fails with what cond last said.
func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, d, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// errExit is the exit status of a finished command, or -1.
func errExit(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err == nil {
		return 0
	}
	return -1
}
