package dockertest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// ImageRepo is the repository of the probe image; its tag is a hash of the
// image content, so an unchanged probe is imported once per engine and then
// reused by every later test run.
const ImageRepo = "ds01-pipe-probe"

const (
	probePackage  = "github.com/ds01/ds01-pipe/internal/dockertest/probe"
	probeChange   = `ENTRYPOINT ["/probe"]`
	buildTimeout  = 3 * time.Minute
	importTimeout = 2 * time.Minute
	// importLockName is the file in os.TempDir() whose flock(2) serialises
	// probe imports between the test binaries of one machine.
	importLockName = "ds01-pipe-probe-import.lock"
)

// probeArchive is the probe binary as a one-file tar archive, and its tag.
type probeArchive struct {
	tar []byte
	tag string
}

// probeBuild memoises the probe build for the whole test binary: building
// it takes a second or two, and every test needs it. This is the package's
// only global state.
var probeBuild struct {
	mu   sync.Mutex
	done bool
	arch probeArchive
	err  error
}

// Image returns the reference of the probe image ("ds01-pipe-probe:<hash>")
// in this engine, importing it first if the engine does not have it.
//
// The probe (./probe) is built once per test binary with
// `CGO_ENABLED=0 go build`, put in a tar archive as /probe (mode 0755) and
// imported with ImageImport and the change `ENTRYPOINT ["/probe"]`: the
// `docker import` way, which needs no registry, no base image and no network.
// An import is guarded by a flock(2) on a file in the temporary directory, so
// test binaries that run at the same time import it once between them.
func (e *Engine) Image(t testing.TB) string {
	t.Helper()
	e.imageMu.Lock()
	defer e.imageMu.Unlock()
	if e.image != "" {
		return e.image
	}
	arch, err := buildProbe()
	if err != nil {
		t.Fatalf("dockertest: build the probe image: %v", err)
	}
	ref := ImageRepo + ":" + arch.tag
	ctx, cancel := context.WithTimeout(t.Context(), importTimeout)
	defer cancel()
	if err := ensureImage(ctx, e.cli, ref, arch.tar); err != nil {
		t.Fatalf("dockertest: import the probe image %s into %s: %v", ref, e.host, err)
	}
	e.image = ref
	return ref
}

// buildProbe builds the probe archive, once per process.
func buildProbe() (probeArchive, error) {
	probeBuild.mu.Lock()
	defer probeBuild.mu.Unlock()
	if !probeBuild.done {
		probeBuild.arch, probeBuild.err = buildProbeArchive()
		probeBuild.done = true
	}
	return probeBuild.arch, probeBuild.err
}

func buildProbeArchive() (probeArchive, error) {
	tmp, err := os.MkdirTemp("", "dstest-probe-")
	if err != nil {
		return probeArchive{}, err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "probe")

	// go test puts its own GOROOT/bin first on the test binary's PATH.
	gobin, err := exec.LookPath("go")
	if err != nil {
		return probeArchive{}, fmt.Errorf("the go command is needed to build the probe: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	// -trimpath and -buildvcs=false make the binary, and so the tag, depend
	// only on the probe's source and the Go version.
	cmd := exec.CommandContext(ctx, gobin, "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w", "-o", out, probeTarget())
	if dir := sourceDir(); dir != "" {
		cmd.Dir = dir
	}
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOFLAGS=")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return probeArchive{}, fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, msg)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		return probeArchive{}, err
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     "probe",
		Mode:     0o755,
		Size:     int64(len(bin)),
		ModTime:  time.Unix(0, 0),
		Format:   tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return probeArchive{}, err
	}
	if _, err := tw.Write(bin); err != nil {
		return probeArchive{}, err
	}
	if err := tw.Close(); err != nil {
		return probeArchive{}, err
	}

	h := sha256.New()
	h.Write(buf.Bytes())
	h.Write([]byte(probeChange))
	return probeArchive{tar: buf.Bytes(), tag: hex.EncodeToString(h.Sum(nil))[:12]}, nil
}

// sourceDir returns this package's source directory when it is known (it is
// not in a -trimpath build), so the probe builds whatever the working
// directory of the test.
func sourceDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return ""
	}
	dir := filepath.Dir(file)
	if _, err := os.Stat(filepath.Join(dir, "probe", "main.go")); err != nil {
		return ""
	}
	return dir
}

func probeTarget() string {
	if sourceDir() != "" {
		return "./probe"
	}
	return probePackage
}

// ensureImage imports the archive as ref unless the engine already has ref.
func ensureImage(ctx context.Context, cli *client.Client, ref string, archive []byte) error {
	if ok, err := hasImage(ctx, cli, ref); err != nil || ok {
		return err
	}
	unlock, err := lockFile(filepath.Join(os.TempDir(), importLockName))
	if err != nil {
		return err
	}
	defer unlock()
	// Another test binary may have imported it while we waited for the lock.
	if ok, err := hasImage(ctx, cli, ref); err != nil || ok {
		return err
	}
	res, err := cli.ImageImport(ctx,
		client.ImageImportSource{Source: bytes.NewReader(archive), SourceName: "-"},
		ref,
		client.ImageImportOptions{Changes: []string{probeChange}})
	if err != nil {
		return err
	}
	defer res.Close()
	if err := readProgress(res); err != nil {
		return err
	}
	if ok, err := hasImage(ctx, cli, ref); err != nil || !ok {
		return errors.Join(errors.New("the engine reported no error, but the image is not there"), err)
	}
	return nil
}

func hasImage(ctx context.Context, cli *client.Client, ref string) (bool, error) {
	_, err := cli.ImageInspect(ctx, ref)
	switch {
	case err == nil:
		return true, nil
	case cerrdefs.IsNotFound(err):
		return false, nil
	default:
		return false, err
	}
}

// readProgress drains an import's JSON message stream and returns the error
// the engine reported in it, if any.
func readProgress(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var msg struct {
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read the engine's import progress: %w", err)
		}
		if msg.ErrorDetail != nil && msg.ErrorDetail.Message != "" {
			return errors.New(msg.ErrorDetail.Message)
		}
		if msg.Error != "" {
			return errors.New(msg.Error)
		}
	}
}

// lockFile takes an exclusive flock(2) on path and returns its release.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
