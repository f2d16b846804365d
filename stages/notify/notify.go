// Package notify implements the "notify" stage: it sends the lifecycle's
// notices (idle and runtime warnings, stop notices, the exempt owner's FYI)
// to each container's owner, as DS01 did: to the owner's terminals (found
// in utmp) and, when the owner has none (or always, if configured), to a
// file inside the container written through the Docker archive API; and
// optionally to a webhook. Delivery is best effort: a failure is a warning
// on the record and never changes a decision. No process is ever started,
// in the container or on the host.
package notify

import (
	"archive/tar"
	"bytes"
	"context"
	_ "embed" // the sample stage block
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/pipeline"
)

// Kind is the stage kind as written in pipeline files.
const Kind = "notify"

//go:embed sample.hcl
var sample string

// Defaults.
const (
	DefaultUtmpFile      = "/var/run/utmp"
	DefaultDevDir        = "/dev"
	DefaultContainerFile = "/workspace/.ds01-alerts"
	DefaultWebhookTimout = 5 * time.Second
	// maxAlertsFile bounds the alerts file ds01-pipe rewrites: about a
	// thousand notices.
	maxAlertsFile = 1 << 20
)

// errNoFolder: the container has no folder for the alerts file.
var errNoFolder = errors.New("the container has no folder for the alerts file")

// Archiver is the part of the Docker API the container file needs.
type Archiver interface {
	CopyFromContainer(ctx context.Context, id string, opts client.CopyFromContainerOptions) (client.CopyFromContainerResult, error)
	CopyToContainer(ctx context.Context, id string, opts client.CopyToContainerOptions) (client.CopyToContainerResult, error)
	ContainerStatPath(ctx context.Context, id string, opts client.ContainerStatPathOptions) (client.ContainerStatPathResult, error)
}

// Stage is the notify stage.
type Stage struct {
	Terminals           bool   `hcl:"terminals,optional" doc:"Write each notice to every terminal where the owner is logged in (from utmp_file), as DS01 did."`
	UtmpFile            string `hcl:"utmp_file,optional" doc:"The utmp file listing logged-in users."`
	DevDir              string `hcl:"dev_dir,optional" doc:"Where terminal devices live (utmp names them relative to it)."`
	ContainerFile       string `hcl:"container_file,optional" doc:"File inside the container that notices are appended to, through the Docker archive API, when the owner has no terminal. Its folder must exist in the container. \"\" turns it off."`
	ContainerFileAlways bool   `hcl:"container_file_always,optional" doc:"Append to container_file even when a terminal got the notice."`
	WebhookURL          string `hcl:"webhook_url,optional" doc:"POST each notice as JSON to this http(s) URL (\"\" = none)."`
	WebhookTimeout      string `hcl:"webhook_timeout,optional" doc:"Deadline of one webhook call (a Go duration)."`

	webhookTimeout time.Duration
	client         *http.Client
	host           string
}

// New returns a notify stage with its defaults.
func New() *Stage {
	return &Stage{
		Terminals: true, UtmpFile: DefaultUtmpFile, DevDir: DefaultDevDir,
		ContainerFile: DefaultContainerFile, WebhookTimeout: DefaultWebhookTimout.String(),
		webhookTimeout: DefaultWebhookTimout,
	}
}

func init() {
	pipeline.Register(pipeline.Spec{
		Kind: Kind,
		Summary: "Sends the lifecycle's notices to each container's owner, with DS01's titles and severities: to the " +
			"owner's terminals (utmp), else to a file inside the container written through the Docker archive API, and " +
			"optionally to a webhook. Best effort: a failed delivery is a warning, never a changed decision; nothing is " +
			"ever run in the container or on the host. Plan mode sends nothing (the report lists the notices).",
		Sample: sample,
		Contract: pipeline.Contract{
			Needs: []pipeline.Field{pipeline.FieldFacts, pipeline.FieldLifecycle},
			Reads: []pipeline.Field{pipeline.FieldOwner},
		},
		New: func() pipeline.Stage { return New() },
	})
}

// Init checks the configuration.
func (s *Stage) Init() error {
	d, err := pipeline.ParseDuration(s.WebhookTimeout)
	if err != nil || d <= 0 || d > time.Minute {
		return &pipeline.AttrError{Attr: "webhook_timeout", Err: fmt.Errorf("want a Go duration between 0s and 1m, got %q", s.WebhookTimeout)}
	}
	s.webhookTimeout = d
	if s.WebhookURL != "" {
		u, err := url.Parse(s.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return &pipeline.AttrError{Attr: "webhook_url", Err: fmt.Errorf("want an http or https URL, got %q", s.WebhookURL)}
		}
	}
	if s.ContainerFile != "" && (!path.IsAbs(s.ContainerFile) || path.Clean(s.ContainerFile) != s.ContainerFile || s.ContainerFile == "/") {
		return &pipeline.AttrError{Attr: "container_file", Err: fmt.Errorf("want a clean absolute file path inside the container, got %q", s.ContainerFile)}
	}
	return nil
}

// Process delivers every record's notices.
func (s *Stage) Process(ctx context.Context, env *pipeline.Env, batch *pipeline.Batch) error {
	if env.Planning() {
		return nil
	}
	if s.client == nil {
		s.client = &http.Client{Timeout: s.webhookTimeout}
	}
	s.host = env.Host
	for _, rec := range batch.Records {
		if rec.Lifecycle == nil || len(rec.Lifecycle.Notices) == 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil // notices are best effort: the run goes on to act
		}
		for _, n := range rec.Lifecycle.Notices {
			s.deliver(ctx, env, rec, n)
		}
	}
	return nil
}

// Render is a notice as DS01 boxed it.
func Render(n pipeline.Notice) string {
	border := strings.Repeat("━", 60)
	return "\r\n" + border + "\r\n[" + n.Severity + "] " + n.Title + "\r\n\r\n" + strings.ReplaceAll(n.Body, "\n", "\r\n") + "\r\n" + border + "\r\n"
}

func (s *Stage) deliver(ctx context.Context, env *pipeline.Env, rec *pipeline.Record, n pipeline.Notice) {
	owner := rec.Owner.Name
	reached := false
	if s.Terminals && rec.Owner.Known() {
		lines, err := terminals(s.UtmpFile, owner)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			// No utmp file: no one is logged in (containers, minimal hosts).
			s.warn(env, rec, "terminals: %v", err)
		}
		msg := []byte(Render(n))
		for _, l := range lines {
			if err := writeTerminal(s.DevDir, l, msg); err != nil {
				s.warn(env, rec, "terminal %s: %v", l, err)
				continue
			}
			reached = true
		}
	}
	if s.ContainerFile != "" && (!reached || s.ContainerFileAlways) {
		switch err := s.appendFile(ctx, env, rec, n); {
		case errors.Is(err, errNoFolder):
			// DS01's alerts file needs /workspace; a container without
			// one has nowhere to show it.
			if env.Log != nil {
				env.Log.WithField("container", rec.Container.Name).Debugf("notify: %v", err)
			}
		case err != nil:
			s.warn(env, rec, "container file %s: %v", s.ContainerFile, err)
		}
	}
	if s.WebhookURL != "" {
		if err := s.webhook(ctx, rec, n); err != nil {
			s.warn(env, rec, "webhook: %v", err)
		}
	}
}

func (s *Stage) warn(env *pipeline.Env, rec *pipeline.Record, format string, args ...any) {
	msg := "notify: " + fmt.Sprintf(format, args...)
	rec.Warn(msg)
	if env.Log != nil {
		env.Log.WithField("container", rec.Container.Name).Warn(msg)
	}
}

// appendFile appends the notice to the file in the container: read the
// file (if any) and write it back with the notice added, both through the
// archive API. The file's folder must exist: nothing else in the
// container is created.
func (s *Stage) appendFile(ctx context.Context, env *pipeline.Env, rec *pipeline.Record, n pipeline.Notice) error {
	arch, ok := env.Docker.(Archiver)
	if !ok {
		return fmt.Errorf("the Docker client has no archive API")
	}
	dir, base := path.Split(s.ContainerFile)
	callCtx, cancel := env.Call(ctx)
	defer cancel()
	st, err := arch.ContainerStatPath(callCtx, rec.Container.ID, client.ContainerStatPathOptions{Path: dir})
	if cerrdefs.IsNotFound(err) {
		return fmt.Errorf("%w: %s", errNoFolder, dir)
	}
	if err != nil {
		return fmt.Errorf("folder %s: %w", dir, err)
	}
	if !st.Stat.Mode.IsDir() {
		return fmt.Errorf("%s is not a folder", dir)
	}
	old, err := readFile(callCtx, arch, rec.Container.ID, s.ContainerFile)
	if err != nil {
		return err
	}
	entry := fmt.Sprintf("--- Alert: %s ---\n%s\n", time.Now().UTC().Format("2006-01-02 15:04:05 UTC"),
		strings.ReplaceAll(strings.TrimPrefix(Render(n), "\r\n"), "\r\n", "\n"))
	content := append(old, entry...)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: base, Mode: 0o644, Size: int64(len(content)), ModTime: time.Now(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(content); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	_, err = arch.CopyToContainer(callCtx, rec.Container.ID, client.CopyToContainerOptions{
		DestinationPath: dir, Content: &buf, CopyUIDGID: true,
	})
	return err
}

// readFile returns a regular file's content from the container, or
// nothing when it does not exist; a file over maxAlertsFile is an error.
func readFile(ctx context.Context, arch Archiver, id, p string) ([]byte, error) {
	res, err := arch.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: p})
	if cerrdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	h, err := tr.Next()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	if h.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	if h.Size > maxAlertsFile {
		// The owner's file, grown past what notices write: left alone
		// rather than read and rewritten whole at every notice.
		return nil, fmt.Errorf("%s is %d bytes, over %d: not appended to", p, h.Size, maxAlertsFile)
	}
	data, err := io.ReadAll(io.LimitReader(tr, maxAlertsFile))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	return data, nil
}

// webhookBody is what the webhook receives.
type webhookBody struct {
	Host      string `json:"host"`
	User      string `json:"user"`
	Container string `json:"container"`
	Kind      string `json:"kind"`
	Severity  string `json:"severity"`
	Title     string `json:"title"`
	Body      string `json:"body"`
}

func (s *Stage) webhook(ctx context.Context, rec *pipeline.Record, n pipeline.Notice) error {
	body, err := json.Marshal(webhookBody{Host: s.host, User: rec.Owner.Name, Container: rec.Container.Name,
		Kind: string(n.Kind), Severity: n.Severity, Title: n.Title, Body: n.Body})
	if err != nil {
		return err
	}
	callCtx, cancel := context.WithTimeout(ctx, s.webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(callCtx, http.MethodPost, s.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s", s.WebhookURL, resp.Status)
	}
	return nil
}
