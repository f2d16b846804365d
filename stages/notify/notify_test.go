package notify

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
)

// utmpRecord is one glibc utmp entry.
func utmpRecord(typ int16, line, user string) []byte {
	b := make([]byte, utmpSize)
	binary.LittleEndian.PutUint16(b[0:2], uint16(typ))
	copy(b[utLineOffset:utLineOffset+utLineSize], line)
	copy(b[utUserOffset:utUserOffset+utUserSize], user)
	return b
}

func TestTerminals(t *testing.T) {
	path := filepath.Join(t.TempDir(), "utmp")
	var data []byte
	for _, r := range [][]byte{
		utmpRecord(utUserProcess, "pts/3", "sam"),
		utmpRecord(8, "pts/4", "sam"), // DEAD_PROCESS
		utmpRecord(utUserProcess, "pts/5", "rita"),
		utmpRecord(utUserProcess, "pts/3", "sam"), // twice
		utmpRecord(utUserProcess, "../etc/passwd", "sam"),
		utmpRecord(utUserProcess, "tty1", "sam"),
	} {
		data = append(data, r...)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := terminals(path, "sam")
	if err != nil || strings.Join(got, ",") != "pts/3,tty1" {
		t.Errorf("terminals = %v, %v", got, err)
	}
}

// openPTY opens a pseudo-terminal pair and returns the master and the
// slave's name under /dev ("pts/N").
func openPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no pseudo-terminals: %v", err)
		}
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	return m, "pts/" + strconv.Itoa(n)
}

// archive is an in-memory container filesystem for the archive API.
type archive struct {
	*pipelinetest.Docker
	dirs  map[string]bool
	files map[string][]byte
	puts  int
}

func (a *archive) ContainerStatPath(_ context.Context, _ string, o client.ContainerStatPathOptions) (client.ContainerStatPathResult, error) {
	if a.dirs[strings.TrimSuffix(o.Path, "/")] {
		return client.ContainerStatPathResult{Stat: container.PathStat{Mode: os.ModeDir | 0o755}}, nil
	}
	return client.ContainerStatPathResult{}, cerrdefs.ErrNotFound
}

func (a *archive) CopyFromContainer(_ context.Context, _ string, o client.CopyFromContainerOptions) (client.CopyFromContainerResult, error) {
	data, ok := a.files[o.SourcePath]
	if !ok {
		return client.CopyFromContainerResult{}, cerrdefs.ErrNotFound
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: filepath.Base(o.SourcePath), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))})
	_, _ = tw.Write(data)
	_ = tw.Close()
	return client.CopyFromContainerResult{Content: io.NopCloser(&buf)}, nil
}

func (a *archive) CopyToContainer(_ context.Context, _ string, o client.CopyToContainerOptions) (client.CopyToContainerResult, error) {
	a.puts++
	tr := tar.NewReader(o.Content)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return client.CopyToContainerResult{}, nil
		}
		if err != nil {
			return client.CopyToContainerResult{}, err
		}
		data, _ := io.ReadAll(tr)
		a.files[filepath.Join(o.DestinationPath, h.Name)] = data
	}
}

func noticeRecord() *pipeline.Record {
	r := pipelinetest.Running("job")
	r.Owner = pipeline.Owner{Name: "sam", Source: pipeline.OwnerFromUser}
	r.Verdict = pipeline.Verdict{Action: pipeline.ActionKeep, Reason: pipeline.ReasonIdleWarning}
	r.Lifecycle = &pipeline.Lifecycle{Notices: []pipeline.Notice{{Kind: pipeline.NoticeIdleWarning, Severity: "WARNING", Title: "IDLE CONTAINER WARNING", Body: "Your container job has been idle."}}}
	return r
}

// A notice reaches the owner's terminal; with no terminal it is appended
// to the alerts file through the archive API; the webhook gets it too.
func TestDeliver(t *testing.T) {
	master, line := openPTY(t)
	dir := t.TempDir()
	utmp := filepath.Join(dir, "utmp")
	if err := os.WriteFile(utmp, utmpRecord(utUserProcess, line, "sam"), 0o644); err != nil {
		t.Fatal(err)
	}
	var hook []webhookBody
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b webhookBody
		_ = json.NewDecoder(r.Body).Decode(&b)
		hook = append(hook, b)
	}))
	defer srv.Close()

	s := New()
	s.UtmpFile, s.WebhookURL = utmp, srv.URL
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	a := &archive{Docker: pipelinetest.NewDocker(), dirs: map[string]bool{"/workspace": true},
		files: map[string][]byte{"/workspace/.ds01-alerts": []byte("older alert\n")}}
	env, _ := pipelinetest.Env(pipeline.ModeRun, a)
	r := noticeRecord()
	if err := s.Process(context.Background(), env, &pipeline.Batch{Records: []*pipeline.Record{r}}); err != nil {
		t.Fatal(err)
	}

	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 4096)
		n, _ := master.Read(buf)
		got <- string(buf[:n])
	}()
	select {
	case text := <-got:
		if !strings.Contains(text, "[WARNING] IDLE CONTAINER WARNING") {
			t.Errorf("terminal got %q", text)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing arrived on the terminal")
	}
	if a.puts != 0 {
		t.Error("the alerts file was written although a terminal got the notice")
	}
	if len(hook) != 1 || hook[0].User != "sam" || hook[0].Kind != "idle_warning" || hook[0].Host != "testhost" {
		t.Errorf("webhook got %+v", hook)
	}

	// No terminal: the alerts file, appended.
	if err := os.WriteFile(utmp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Process(context.Background(), env, &pipeline.Batch{Records: []*pipeline.Record{r}}); err != nil {
		t.Fatal(err)
	}
	alerts := string(a.files["/workspace/.ds01-alerts"])
	if !strings.HasPrefix(alerts, "older alert\n--- Alert: ") || !strings.Contains(alerts, "[WARNING] IDLE CONTAINER WARNING") || strings.Contains(alerts, "\r") {
		t.Errorf("alerts file:\n%s", alerts)
	}
	if len(r.Warnings) != 0 {
		t.Errorf("warnings %v", r.Warnings)
	}
}

// A failed delivery is a warning and never changes the decision.
func TestFailuresAreWarnings(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }))
	defer srv.Close()
	s := New()
	s.UtmpFile, s.WebhookURL = filepath.Join(t.TempDir(), "none"), srv.URL
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	a := &archive{Docker: pipelinetest.NewDocker(), dirs: map[string]bool{}, files: map[string][]byte{}}
	env, _ := pipelinetest.Env(pipeline.ModeRun, a)
	r := noticeRecord()
	r.Verdict = pipeline.Verdict{Action: pipeline.ActionStop, Reason: pipeline.ReasonIdleTimeout}
	before := r.Verdict
	if err := s.Process(context.Background(), env, &pipeline.Batch{Records: []*pipeline.Record{r}}); err != nil {
		t.Fatal(err)
	}
	if r.Verdict != before {
		t.Errorf("verdict changed to %+v", r.Verdict)
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "500") {
		t.Errorf("warnings %v, want the webhook's failure only (no /workspace is no failure)", r.Warnings)
	}

	// Plan mode sends nothing.
	r.Warnings = nil
	env.Mode = pipeline.ModePlan
	if err := s.Process(context.Background(), env, &pipeline.Batch{Records: []*pipeline.Record{r}}); err != nil || len(r.Warnings) != 0 {
		t.Errorf("plan: %v, %v", err, r.Warnings)
	}
}

func TestInitRejects(t *testing.T) {
	for _, mod := range []func(*Stage){
		func(s *Stage) { s.WebhookURL = "file:///etc/passwd" },
		func(s *Stage) { s.WebhookTimeout = "forever" },
		func(s *Stage) { s.ContainerFile = "workspace/x" },
		func(s *Stage) { s.ContainerFile = "/workspace/../etc/x" },
	} {
		s := New()
		mod(s)
		if err := s.Init(); err == nil {
			t.Errorf("accepted %+v", s)
		}
	}
}

// A character device that is not a terminal never gets a notice: a
// forged utmp line could name /dev/null's neighbours (/dev/mem,
// /dev/watchdog), where a write by root does harm.
func TestWriteTerminalOnlyToTerminals(t *testing.T) {
	if err := writeTerminal("/dev", "null", []byte("x")); err == nil || !strings.Contains(err.Error(), "not a terminal") {
		t.Errorf("/dev/null: %v, want refused as not a terminal", err)
	}
	m, line := openPTY(t)
	if err := writeTerminal("/dev", line, []byte("hello")); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	buf := make([]byte, 16)
	n, err := m.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Errorf("the terminal read %q, %v", buf[:n], err)
	}
}
