package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// debSandbox runs a shell script as root in a private mount namespace in
// which the folders the maintainer scripts touch are empty tmpfs mounts,
// so the host's own /etc/ds01-pipe, /var/lib/ds01-pipe and /usr/local are
// never seen or changed. shipped is put in /usr/share/ds01-pipe/pipelines.
func debSandbox(t *testing.T, shipped map[string]string, script string) (string, error) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the maintainer scripts' test needs root (a private mount namespace), and CI=true")
		}
		t.Skip("needs root: runs the maintainer scripts in a private mount namespace")
	}
	unshare := requireTool(t, "unshare", "util-linux")
	root := repoRoot(t)
	stage := t.TempDir()
	for name, text := range shipped {
		if err := os.WriteFile(filepath.Join(stage, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var prelude strings.Builder
	prelude.WriteString("set -e\nmount --make-rprivate /\n")
	for _, dir := range []string{"/etc/ds01-pipe", "/var/lib/ds01-pipe", "/usr/share/ds01-pipe", "/usr/local/bin", "/usr/local/lib", "/run/systemd"} {
		prelude.WriteString("mkdir -p " + dir + " && mount -t tmpfs none " + dir + "\n")
	}
	prelude.WriteString("rmdir /etc/ds01-pipe /var/lib/ds01-pipe 2>/dev/null || true\n") // busy mount points stay
	prelude.WriteString("mkdir -p /usr/share/ds01-pipe/pipelines && cp " + stage + "/* /usr/share/ds01-pipe/pipelines/\n")
	prelude.WriteString("D=" + filepath.Join(root, "deploy", "deb") + "\nset +e\n")
	out, err := exec.Command(unshare, "--mount", "sh", "-c", prelude.String()+script).CombinedOutput()
	return string(out), err
}

// TestDebMaintainerScripts pins what the package's scripts do with the
// admin's files: a fresh install puts the shipped pipelines in /etc and a
// purge removes them; a pipeline the admin had before stays through the
// install and the purge (the shipped one goes beside it, and only that is
// purged); an unchanged copy follows an upgrade, a changed one is kept;
// and an install over a `make install` is refused with a message.
func TestDebMaintainerScripts(t *testing.T) {
	shipped := map[string]string{"cleanup.hcl": "# shipped v1\n", "audit-gpu.hcl": "# audit v1\n"}
	out, err := debSandbox(t, shipped, `
E=/etc/ds01-pipe/pipelines
check() { if eval "$2"; then echo "ok $1"; else echo "FAIL $1"; fi; }

# fresh install, then purge
sh $D/preinst install; check preinst-clean '[ $? = 0 ]'
sh $D/postinst configure
check fresh-cleanup 'grep -q "shipped v1" $E/cleanup.hcl'
check fresh-audit '[ -f $E/audit-gpu.hcl ]'
sh $D/postrm purge
check purge-removes 'test ! -e $E/cleanup.hcl && test ! -e $E/audit-gpu.hcl'

# the admin's own pipeline before the package
mkdir -p $E && echo "# the admin's" > $E/cleanup.hcl
sh $D/postinst configure 2>/run/systemd/note
check admin-kept 'grep -q "the admin" $E/cleanup.hcl'
check shipped-beside 'grep -q "shipped v1" $E/cleanup.hcl.dpkg-dist'
check said-so 'grep -q "dpkg-dist" /run/systemd/note'

# upgrade: the package's unchanged copy follows, an edited one stays
echo "# audit v2" > /usr/share/ds01-pipe/pipelines/audit-gpu.hcl
sh $D/postinst configure 2>/dev/null
check unchanged-follows 'grep -q "audit v2" $E/audit-gpu.hcl'
echo "# edited" >> $E/audit-gpu.hcl
echo "# audit v3" > /usr/share/ds01-pipe/pipelines/audit-gpu.hcl
sh $D/postinst configure 2>/dev/null
check edited-stays 'grep -q "edited" $E/audit-gpu.hcl && grep -q "audit v3" $E/audit-gpu.hcl.dpkg-dist'

sh $D/postrm purge
check purge-keeps-admin 'grep -q "the admin" $E/cleanup.hcl && grep -q "edited" $E/audit-gpu.hcl'
check purge-removes-dist 'test ! -e $E/cleanup.hcl.dpkg-dist && test ! -e $E/audit-gpu.hcl.dpkg-dist'

# over a make install
touch /usr/local/bin/ds01-pipe
sh $D/preinst install 2>/run/systemd/refused; rc=$?
check make-install-refused '[ $rc != 0 ] && grep -q "make uninstall" /run/systemd/refused'
`)
	if err != nil {
		t.Fatalf("sandbox: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(line, "FAIL") {
			t.Error(line)
		}
	}
	if !strings.Contains(out, "ok make-install-refused") {
		t.Errorf("the script did not run to its end:\n%s", out)
	}
	t.Logf("\n%s", out)
}
