package deploy

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	serviceFile = "ds01-pipe@.service"
	timerFile   = "ds01-pipe@.timer"

	// The command line the timer runs, as the install puts it (PREFIX=/usr/local).
	wantExecStart = "/usr/local/bin/ds01-pipe run /etc/ds01-pipe/pipelines/%i.hcl"
	// The timer's period; a run must end well before the next tick.
	timerPeriod = 15 * time.Minute
)

// requireTool finds a tool on PATH. Without it the test skips with a
// message, except under CI=true (.ci/run), where the tool is installed and
// its absence is a failure.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found, and CI=true: .ci/run installs it (apt-get install %s)", name, pkg)
	}
	t.Skipf("%s not found: install the %s package to run this test (.ci/run does); skipping", name, pkg)
	return ""
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "Makefile")); err != nil {
		t.Fatalf("repository root %s has no Makefile: %v", root, err)
	}
	return root
}

// unit is a parsed systemd unit file: section -> key -> values in order.
type unit map[string]map[string][]string

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "", strings.HasPrefix(line, "#"), strings.HasPrefix(line, ";"):
			continue
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			t.Fatalf("%s:%d: not a key=value line in a section: %q", path, n, line)
		}
		if strings.HasSuffix(value, `\`) {
			t.Fatalf("%s:%d: continuation lines are not used in these units", path, n)
		}
		key = strings.TrimSpace(key)
		u[section][key] = append(u[section][key], strings.TrimSpace(value))
	}
	return u
}

// one returns the single value of a key, failing if it is absent or repeated.
func (u unit) one(t *testing.T, section, key string) string {
	t.Helper()
	vs := u[section][key]
	if len(vs) != 1 {
		t.Fatalf("[%s] %s: want exactly one value, have %q", section, key, vs)
	}
	return vs[0]
}

// words returns every space-separated word of every value of a key.
func (u unit) words(section, key string) []string {
	var out []string
	for _, v := range u[section][key] {
		out = append(out, strings.Fields(v)...)
	}
	return out
}

// makeVar asks the Makefile for the value of a variable, with overrides.
func makeVar(t *testing.T, root, name string, overrides ...string) string {
	t.Helper()
	args := append([]string{"-s", "--no-print-directory", "-C", root, "--eval", "deploy-test-print-%: ; @echo $($*)"}, overrides...)
	args = append(args, "deploy-test-print-"+name)
	out, err := exec.Command("make", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// shippedTimeouts returns the timeout of every pipeline in pipelines/.
func shippedTimeouts(t *testing.T, root string) map[string]time.Duration {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "pipelines", "*.hcl"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no pipelines/*.hcl (%v)", err)
	}
	re := regexp.MustCompile(`(?m)^\s*timeout\s*=\s*"([^"]+)"`)
	out := map[string]time.Duration{}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		longest := 10 * time.Minute // the engine's default when a pipeline sets none
		if m := re.FindAllStringSubmatch(string(src), -1); len(m) > 0 {
			longest = 0
			for _, sub := range m {
				d, err := time.ParseDuration(sub[1])
				if err != nil {
					t.Fatalf("%s: timeout %q: %v", f, sub[1], err)
				}
				longest = max(longest, d)
			}
		}
		out[filepath.Base(f)] = longest
	}
	return out
}

// TestUnitsStructure pins the settings the timer's runs depend on. It
// needs no systemd.
func TestUnitsStructure(t *testing.T) {
	root := repoRoot(t)
	svc := readUnit(t, filepath.Join(root, "deploy", "systemd", serviceFile))
	tmr := readUnit(t, filepath.Join(root, "deploy", "systemd", timerFile))

	// ExecStart names the binary where `make install` (default PREFIX) puts
	// it, and the pipeline where the install puts the pipelines.
	line := svc.one(t, "Service", "ExecStart")
	if line != wantExecStart {
		t.Errorf("ExecStart=%s\nwant      %s", line, wantExecStart)
	}
	bin := strings.Fields(line)[0]
	if got := makeVar(t, root, "BINDIR") + "/ds01-pipe"; bin != got {
		t.Errorf("ExecStart runs %s, but make install puts the binary at %s", bin, got)
	}
	if got := makeVar(t, root, "UNIT_BIN"); bin != got {
		t.Errorf("ExecStart runs %s, but the Makefile rewrites %s (UNIT_BIN)", bin, got)
	}
	if got := makeVar(t, root, "SYSCONFDIR") + "/ds01-pipe/pipelines/%i.hcl"; !strings.HasSuffix(line, " "+got) {
		t.Errorf("ExecStart does not end in the installed pipeline path %s: %s", got, line)
	}
	if _, err := os.Stat(filepath.Join(root, "pipelines", "cleanup.hcl")); err != nil {
		t.Errorf("ds01-pipe@cleanup.timer needs pipelines/cleanup.hcl: %v", err)
	}

	checks := []struct{ section, key, want string }{
		{"Service", "Type", "oneshot"},
		{"Service", "RuntimeDirectory", "ds01-pipe"},
		{"Service", "RuntimeDirectoryPreserve", "yes"},
		{"Service", "ProtectSystem", "strict"},
		{"Service", "ProtectHome", "read-only"},
		{"Service", "NoNewPrivileges", "yes"},
		{"Service", "PrivateTmp", "yes"},
		{"Service", "ProtectKernelTunables", "yes"},
		{"Service", "ProtectKernelModules", "yes"},
		{"Service", "ProtectKernelLogs", "yes"},
		{"Service", "RestrictNamespaces", "yes"},
		{"Service", "LockPersonality", "yes"},
		{"Service", "MemoryDenyWriteExecute", "yes"},
		{"Service", "SystemCallArchitectures", "native"},
		{"Timer", "OnCalendar", "*:0/15"},
		{"Timer", "RandomizedDelaySec", "60"},
		{"Timer", "Persistent", "true"},
		{"Timer", "AccuracySec", "1s"},
		{"Timer", "Unit", "ds01-pipe@%i.service"},
		{"Install", "WantedBy", "timers.target"},
	}
	for _, c := range checks {
		u := svc
		if c.section == "Timer" || c.section == "Install" {
			u = tmr
		}
		if got := u[c.section][c.key]; len(got) != 1 || got[0] != c.want {
			t.Errorf("[%s] %s = %q, want %q", c.section, c.key, got, c.want)
		}
	}

	// Exit 3 (another run holds the lock) is a skip, not a failure.
	if !slices.Contains(svc.words("Service", "SuccessExitStatus"), "3") {
		t.Errorf("SuccessExitStatus does not list 3: %q", svc["Service"]["SuccessExitStatus"])
	}
	// The orphan kill needs CAP_KILL.
	if caps := svc.words("Service", "CapabilityBoundingSet"); len(caps) > 0 && !slices.Contains(caps, "CAP_KILL") {
		t.Errorf("CapabilityBoundingSet %q drops CAP_KILL", caps)
	}
	// Writable: DS01's event log and the node_exporter textfile directory
	// ("-": a missing directory does not stop the run).
	rw := svc.words("Service", "ReadWritePaths")
	for _, p := range []string{"/var/log/ds01", "/var/lib/prometheus/node-exporter"} {
		if !slices.Contains(rw, p) && !slices.Contains(rw, "-"+p) {
			t.Errorf("ReadWritePaths %q lacks %s", rw, p)
		}
	}
	// Settings that would break the run: a hidden /proc (cgroup of every
	// PID), private or allow-listed devices (/dev/nvidia*).
	forbidden := map[string][]string{
		"ProtectProc":    {"invisible", "noaccess", "ptraceable"},
		"ProcSubset":     {"pid"},
		"PrivateDevices": {"yes", "true"},
		"DevicePolicy":   {"closed", "strict"},
		"ProtectClock":   {"yes", "true"}, // implies a device allow-list
		"PrivateNetwork": {"yes", "true"}, // DOCKER_HOST may be tcp://
		"DynamicUser":    {"yes", "true"},
	}
	for key, bad := range forbidden {
		for _, v := range svc["Service"][key] {
			if slices.Contains(bad, v) {
				t.Errorf("%s=%s would stop the run (see the comments in %s)", key, v, serviceFile)
			}
		}
	}
	if len(svc["Service"]["DeviceAllow"]) > 0 {
		t.Errorf("DeviceAllow=%q turns a device allow-list on; NVML needs every /dev/nvidia* node", svc["Service"]["DeviceAllow"])
	}

	// The unit's start timeout is above every shipped pipeline's own
	// deadline (which ends the run first) and below the timer's period.
	startTimeout, err := time.ParseDuration(strings.ReplaceAll(svc.one(t, "Service", "TimeoutStartSec"), "min", "m"))
	if err != nil {
		t.Fatalf("TimeoutStartSec: %v", err)
	}
	for file, d := range shippedTimeouts(t, root) {
		if startTimeout <= d {
			t.Errorf("TimeoutStartSec=%v is not above pipelines/%s's timeout %v", startTimeout, file, d)
		}
	}
	if startTimeout >= timerPeriod {
		t.Errorf("TimeoutStartSec=%v is not below the timer's period %v", startTimeout, timerPeriod)
	}
	// The shipped cleanup pipeline keeps its lock in the runtime directory.
	src, err := os.ReadFile(filepath.Join(root, "pipelines", "cleanup.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), `"/run/ds01-pipe/`) {
		t.Error("pipelines/cleanup.hcl's lock file is not under /run/ds01-pipe/ (RuntimeDirectory=ds01-pipe)")
	}
}

// verifyRoot builds a file system root for `systemd-analyze verify
// --root`: the host's own system units (for sysinit.target and friends),
// an executable at the path ExecStart names, and the units under test in
// /usr/local/lib/systemd/system, where `make install` puts them.
func verifyRoot(t *testing.T, units map[string][]byte) string {
	t.Helper()
	vroot := t.TempDir()
	var hostUnits string
	for _, d := range []string{"/usr/lib/systemd/system", "/lib/systemd/system"} {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			hostUnits = d
			break
		}
	}
	if hostUnits == "" {
		t.Fatal("systemd-analyze is installed but there is no /usr/lib/systemd/system")
	}
	dst := filepath.Join(vroot, "usr", "lib", "systemd", "system")
	if err := os.CopyFS(dst, os.DirFS(hostUnits)); err != nil {
		t.Fatalf("copying %s: %v", hostUnits, err)
	}
	binDir := filepath.Join(vroot, "usr", "local", "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(binDir, "ds01-pipe"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unitDir := filepath.Join(vroot, "usr", "local", "lib", "systemd", "system")
	if err := os.MkdirAll(unitDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range units {
		if err := os.WriteFile(filepath.Join(unitDir, name), text, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return vroot
}

func systemdVerify(t *testing.T, analyze, vroot string) (string, error) {
	t.Helper()
	cmd := exec.Command(analyze, "verify", "--man=no", "--root="+vroot, "ds01-pipe@cleanup.service", "ds01-pipe@cleanup.timer")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestUnitsVerify runs `systemd-analyze verify` on copies of the units, for
// the instance the README tells admins to enable (cleanup). Any message at
// all fails the test: verify reports unknown keys and bad values as
// warnings with exit status 0.
func TestUnitsVerify(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze", "systemd")
	root := repoRoot(t)
	units := map[string][]byte{}
	for _, name := range []string{serviceFile, timerFile} {
		text, err := os.ReadFile(filepath.Join(root, "deploy", "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		units[name] = text
	}

	out, err := systemdVerify(t, analyze, verifyRoot(t, units))
	if err != nil || out != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}

	// The check itself must be able to fail: a misspelt key is reported.
	broken := map[string][]byte{
		serviceFile: bytes.Replace(units[serviceFile], []byte("SuccessExitStatus=3"), []byte("SuccessExitStatu=3"), 1),
		timerFile:   units[timerFile],
	}
	if bytes.Equal(broken[serviceFile], units[serviceFile]) {
		t.Fatal("the service has no SuccessExitStatus=3 line to break")
	}
	out, _ = systemdVerify(t, analyze, verifyRoot(t, broken))
	if !strings.Contains(out, "SuccessExitStatu") {
		t.Errorf("systemd-analyze verify did not report a misspelt key; its output:\n%s", out)
	}
}

// runMake runs make in the repository with the build outputs redirected to
// a temporary directory, so the test leaves the working tree alone.
func runMake(t *testing.T, root, work string, args ...string) string {
	t.Helper()
	requireTool(t, "make", "make")
	all := append([]string{"--no-print-directory", "-C", root,
		"BIN=" + filepath.Join(work, "bin", "ds01-pipe"),
		"BUILDDIR=" + filepath.Join(work, "build"),
	}, args...)
	cmd := exec.Command("make", all...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func wantFile(t *testing.T, path string, mode fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Errorf("missing: %v", err)
		return
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != mode {
		t.Errorf("%s: mode %v, want a regular file with %v", path, fi.Mode(), mode)
	}
}

func wantGone(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); err == nil {
		t.Errorf("%s is still there", path)
	}
}

func execStart(t *testing.T, unitPath string) string {
	t.Helper()
	return readUnit(t, unitPath).one(t, "Service", "ExecStart")
}

// TestMakeInstall installs into a DESTDIR and checks the tree, an
// admin-edited pipeline surviving a second install, another PREFIX, and
// uninstall.
func TestMakeInstall(t *testing.T) {
	root := repoRoot(t)
	work := t.TempDir()
	dest := filepath.Join(work, "dest")
	out := runMake(t, root, work, "install", "DESTDIR="+dest)

	bin := filepath.Join(dest, "usr/local/bin/ds01-pipe")
	wantFile(t, bin, 0o755)
	unitDir := filepath.Join(dest, "usr/local/lib/systemd/system")
	wantFile(t, filepath.Join(unitDir, serviceFile), 0o644)
	wantFile(t, filepath.Join(unitDir, timerFile), 0o644)
	if got := execStart(t, filepath.Join(unitDir, serviceFile)); got != wantExecStart {
		t.Errorf("installed ExecStart=%s, want %s", got, wantExecStart)
	}
	for _, p := range []string{"cleanup.hcl", "audit-gpu.hcl"} {
		installed := filepath.Join(dest, "etc/ds01-pipe/pipelines", p)
		wantFile(t, installed, 0o644)
		if !strings.Contains(out, "installed "+installed) {
			t.Errorf("make install does not report installing %s:\n%s", installed, out)
		}
	}
	if strings.Contains(out, ".hcl.new") {
		t.Errorf("a first install made a .hcl.new:\n%s", out)
	}
	for _, p := range []string{"ds01-pipe.1", "ds01-pipe-run.1", "ds01-pipe-plan.1", "ds01-pipe-apply.1"} {
		wantFile(t, filepath.Join(dest, "usr/local/share/man/man1", p), 0o644)
	}
	wantFile(t, filepath.Join(dest, "usr/local/share/bash-completion/completions/ds01-pipe"), 0o644)
	wantFile(t, filepath.Join(dest, "usr/local/share/zsh/site-functions/_ds01-pipe"), 0o644)
	wantFile(t, filepath.Join(dest, "usr/local/share/fish/vendor_completions.d/ds01-pipe.fish"), 0o644)
	limits := filepath.Join(dest, "usr/local/share/ds01-pipe/ds01/resource-limits.yaml")
	wantFile(t, limits, 0o644)
	// The Slurm health check: the same path on every node (slurm.conf is
	// shared), its default binary the installed one.
	healthCheck := filepath.Join(dest, "usr/lib/ds01-pipe/slurm-healthcheck")
	wantFile(t, healthCheck, 0o755)
	if b, err := os.ReadFile(healthCheck); err != nil || !bytes.Contains(b, []byte("${DS01_PIPE:-/usr/local/bin/ds01-pipe}")) {
		t.Errorf("%s does not default to the installed binary (%v)", healthCheck, err)
	}
	if fi, err := os.Stat(filepath.Join(dest, "var/log/ds01")); err != nil || !fi.IsDir() {
		t.Errorf("var/log/ds01 was not created: %v", err)
	}

	// The installed binary runs, and the shipped cleanup pipeline loads
	// against the installed reference config (no DS01 on this host).
	if v, err := exec.Command(bin, "version").CombinedOutput(); err != nil || !strings.HasPrefix(string(v), "ds01-pipe ") {
		t.Errorf("%s version: %v %s", bin, err, v)
	}
	cleanup := filepath.Join(dest, "etc/ds01-pipe/pipelines/cleanup.hcl")
	v, err := exec.Command(bin, "validate", "--var", "ds01_config="+filepath.Dir(limits), cleanup).CombinedOutput()
	if err != nil {
		t.Errorf("validate the installed cleanup.hcl with the installed reference config: %v\n%s", err, v)
	}

	// A second install never clobbers an edited pipeline.
	edited := []byte("# edited by the admin\n")
	orig, err := os.ReadFile(cleanup)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cleanup, append(edited, orig...), 0o644); err != nil {
		t.Fatal(err)
	}
	out = runMake(t, root, work, "install", "DESTDIR="+dest)
	now, err := os.ReadFile(cleanup)
	if err != nil || !bytes.HasPrefix(now, edited) {
		t.Errorf("the edited cleanup.hcl was overwritten (%v)", err)
	}
	if shipped, err := os.ReadFile(cleanup + ".new"); err != nil || !bytes.Equal(shipped, orig) {
		t.Errorf("the shipped cleanup.hcl was not installed as cleanup.hcl.new (%v)", err)
	}
	if !strings.Contains(out, "cleanup.hcl.new") || !strings.Contains(out, "unchanged "+filepath.Join(dest, "etc/ds01-pipe/pipelines/audit-gpu.hcl")) {
		t.Errorf("the second install does not say what it did with the pipelines:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dest, "etc/ds01-pipe/pipelines/audit-gpu.hcl.new")); err == nil {
		t.Error("an unchanged pipeline got a .new copy")
	}

	// Another PREFIX: ExecStart follows the binary.
	opt := filepath.Join(work, "opt")
	runMake(t, root, work, "install", "DESTDIR="+opt, "PREFIX=/opt/ds01-pipe")
	wantFile(t, filepath.Join(opt, "opt/ds01-pipe/bin/ds01-pipe"), 0o755)
	if got, want := execStart(t, filepath.Join(opt, "opt/ds01-pipe/lib/systemd/system", serviceFile)),
		"/opt/ds01-pipe/bin/ds01-pipe run /etc/ds01-pipe/pipelines/%i.hcl"; got != want {
		t.Errorf("PREFIX=/opt/ds01-pipe: ExecStart=%s, want %s", got, want)
	}

	// Uninstall removes what install put there, except the admin's pipelines.
	runMake(t, root, work, "uninstall", "DESTDIR="+dest)
	for _, p := range []string{
		"usr/local/bin/ds01-pipe",
		"usr/local/lib/systemd/system/" + serviceFile,
		"usr/local/lib/systemd/system/" + timerFile,
		"usr/local/share/man/man1/ds01-pipe.1",
		"usr/local/share/man/man1/ds01-pipe-run.1",
		"usr/local/share/bash-completion/completions/ds01-pipe",
		"usr/local/share/zsh/site-functions/_ds01-pipe",
		"usr/local/share/fish/vendor_completions.d/ds01-pipe.fish",
		"usr/local/share/ds01-pipe",
		"usr/lib/ds01-pipe",
	} {
		wantGone(t, filepath.Join(dest, p))
	}
	if _, err := os.Stat(cleanup); err != nil {
		t.Errorf("uninstall removed the admin's pipeline: %v", err)
	}
}

// maintainerAction matches a maintainer-script line that would start or
// enable a unit.
var maintainerAction = regexp.MustCompile(`\b(start|restart|try-restart|reload-or-restart|try-reload-or-restart|enable|reenable|isolate)\b`)

// TestMakeDeb builds the Debian package with nfpm (a `go run` tool, fetched
// from the module proxy on first use) and inspects it with dpkg-deb.
func TestMakeDeb(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: building the Debian package takes a while (go run nfpm); .ci/run runs it")
	}
	dpkgDeb := requireTool(t, "dpkg-deb", "dpkg")
	root := repoRoot(t)
	work := t.TempDir()
	dist := filepath.Join(work, "dist")
	// Computed once and passed on, so a commit made meanwhile (git describe
	// changes) cannot make the check below compare two versions.
	wantVersion := makeVar(t, root, "DEB_VERSION")
	if wantVersion == "" || wantVersion[0] < '0' || wantVersion[0] > '9' {
		t.Errorf("Debian version %q does not start with a digit", wantVersion)
	}
	runMake(t, root, work, "deb", "DISTDIR="+dist, "DEB_VERSION="+wantVersion)

	debs, _ := filepath.Glob(filepath.Join(dist, "ds01-pipe_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("want one ds01-pipe_*.deb in %s, have %q", dist, debs)
	}
	deb := debs[0]
	dpkg := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(dpkgDeb, append(args, deb)...).CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg-deb %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	// Files.
	listing := dpkg("-c")
	var paths []string
	for _, line := range strings.Split(strings.TrimSpace(listing), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 {
			paths = append(paths, strings.TrimPrefix(f[5], "."))
		}
	}
	for _, p := range []string{
		"/usr/bin/ds01-pipe",
		"/lib/systemd/system/" + serviceFile,
		"/lib/systemd/system/" + timerFile,
		"/usr/share/ds01-pipe/pipelines/cleanup.hcl",
		"/usr/share/ds01-pipe/pipelines/audit-gpu.hcl",
		"/usr/share/ds01-pipe/pipelines/lifecycle.hcl",
		"/usr/share/doc/ds01-pipe/copyright",
		"/usr/share/doc/ds01-pipe/changelog.gz",
		"/usr/share/man/man1/ds01-pipe.1.gz",
		"/usr/share/man/man1/ds01-pipe-run.1.gz",
		"/usr/share/bash-completion/completions/ds01-pipe",
		"/usr/share/zsh/vendor-completions/_ds01-pipe",
		"/usr/share/fish/vendor_completions.d/ds01-pipe.fish",
		"/usr/share/ds01-pipe/ds01/resource-limits.yaml",
		"/usr/lib/ds01-pipe/slurm-healthcheck",
	} {
		if !slices.Contains(paths, p) {
			t.Errorf("the package lacks %s; it has:\n%s", p, listing)
		}
	}

	// Control fields.
	info := dpkg("-I")
	for _, want := range []string{"Package: ds01-pipe", "Architecture: amd64", "Version: " + wantVersion} {
		if !strings.Contains(info, want) {
			t.Errorf("control lacks %q:\n%s", want, info)
		}
	}

	control := filepath.Join(work, "control")
	out, err := exec.Command(dpkgDeb, "-e", deb, control).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb -e: %v\n%s", err, out)
	}
	// No conffiles: dpkg deletes them on purge, also a pipeline the admin
	// had before the package (postinst copies the pipelines to /etc).
	if conffiles, err := os.ReadFile(filepath.Join(control, "conffiles")); err == nil && strings.TrimSpace(string(conffiles)) != "" {
		t.Errorf("the package has conffiles:\n%s", conffiles)
	}
	for _, name := range []string{"preinst", "postinst", "prerm", "postrm"} {
		if _, err := os.Stat(filepath.Join(control, name)); err != nil {
			t.Errorf("no %s: %v", name, err)
		}
	}

	// lintian: no error (copyright, changelog, stripped PIE binary,
	// maintainer scripts through deb-systemd-invoke/-helper).
	if lintian := requireTool(t, "lintian", "lintian"); lintian != "" {
		out, err := exec.Command(lintian, "--fail-on", "error", "--tag-display-limit", "0", deb).CombinedOutput()
		if err != nil {
			t.Errorf("lintian: %v\n%s", err, out)
		}
		t.Logf("lintian:\n%s", out)
	}

	// Maintainer scripts start and enable nothing.
	for _, name := range []string{"preinst", "postinst", "prerm", "postrm"} {
		text, err := os.ReadFile(filepath.Join(control, name))
		if err != nil {
			continue
		}
		for n, line := range strings.Split(string(text), "\n") {
			code := strings.TrimSpace(line)
			if strings.HasPrefix(code, "#") {
				continue
			}
			if m := maintainerAction.FindString(code); m != "" {
				t.Errorf("%s:%d %q: a maintainer script must not %s anything", name, n+1, line, m)
			}
		}
	}

	// The packaged unit runs the packaged binary.
	x := filepath.Join(work, "x")
	out, err = exec.Command(dpkgDeb, "-x", deb, x).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	got := execStart(t, filepath.Join(x, "lib/systemd/system", serviceFile))
	if want := "/usr/bin/ds01-pipe run /etc/ds01-pipe/pipelines/%i.hcl"; got != want {
		t.Errorf("packaged ExecStart=%s, want %s", got, want)
	}
	wantFile(t, filepath.Join(x, "usr/bin/ds01-pipe"), 0o755)
}
