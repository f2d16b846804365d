package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errhttp"
	"github.com/moby/moby/client"
)

// Engine is the Docker client of a run, with the two answers that grow
// with the host also handed over undecoded (ContainerListJSON,
// ContainerInspectJSON): the client decodes every field of Docker's
// answer, and on a host with 10,000 containers the list alone decodes to
// tens of MiB that the record never keeps. pipeline/dockerfacts reads
// these answers field by field. Every other call, and every stage's
// narrower interface (stop, stats, archive), is the client's own.
type Engine struct {
	*client.Client
	http   *http.Client
	prefix string // scheme, a placeholder host and the daemon's base path
}

// RawAnswers is an engine that also hands over its list and inspect
// answers undecoded (Engine): pipeline/dockerfacts then decodes only the
// fields the record keeps.
type RawAnswers interface {
	ContainerListJSON(ctx context.Context, opts client.ContainerListOptions) (io.ReadCloser, error)
	ContainerInspectJSON(ctx context.Context, id string) (io.ReadCloser, error)
}

// RawAnswersOf returns d's undecoded answers, or nil when it has none.
// The runner's guard around the engine is looked through: it restricts
// the calls that change containers, and these two only read.
func RawAnswersOf(d Docker) RawAnswers {
	if g, ok := d.(*guardedDocker); ok {
		d = g.Docker
	}
	r, _ := d.(RawAnswers)
	return r
}

// NewEngine wraps a client whose API version is settled (negotiated by a
// ping, or fixed): the undecoded calls use that version.
func NewEngine(c *client.Client) *Engine {
	dial := c.Dialer()
	tr := &http.Transport{
		// The client's own dialer: the same socket, TCP address or TLS
		// connection as its other calls.
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	prefix := "http://docker"
	if u, err := client.ParseHostURL(c.DaemonHost()); err == nil && u.Path != "" {
		prefix += strings.TrimSuffix(u.Path, "/")
	}
	return &Engine{Client: c, http: &http.Client{Transport: tr}, prefix: prefix}
}

// CloseIdleConnections closes the undecoded calls' idle connections (the
// client's own are closed by its Close).
func (e *Engine) CloseIdleConnections() { e.http.CloseIdleConnections() }

// ContainerListJSON is ContainerList's answer undecoded: a JSON array of
// container summaries. The caller closes it.
func (e *Engine) ContainerListJSON(ctx context.Context, opts client.ContainerListOptions) (io.ReadCloser, error) {
	q := url.Values{}
	if opts.All {
		q.Set("all", "1")
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.Size {
		q.Set("size", "1")
	}
	if len(opts.Filters) > 0 {
		f, err := json.Marshal(opts.Filters)
		if err != nil {
			return nil, fmt.Errorf("list filters: %w", err)
		}
		q.Set("filters", string(f))
	}
	return e.get(ctx, "/containers/json", q)
}

// ContainerInspectJSON is ContainerInspect's answer undecoded: one JSON
// object. The caller closes it.
func (e *Engine) ContainerInspectJSON(ctx context.Context, id string) (io.ReadCloser, error) {
	if strings.TrimSpace(id) == "" {
		return nil, cerrdefs.ErrInvalidArgument.WithMessage("invalid container name or ID: value is empty")
	}
	return e.get(ctx, "/containers/"+url.PathEscape(id)+"/json", nil)
}

// get sends one GET and returns the body of a 2xx answer. Any other
// answer is an error of the class the client gives it (cerrdefs), with the
// engine's message.
func (e *Engine) get(ctx context.Context, p string, q url.Values) (io.ReadCloser, error) {
	u := e.prefix + p
	if v := strings.TrimPrefix(e.ClientVersion(), "v"); v != "" {
		u = e.prefix + path.Join("/v"+v, p)
	}
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := e.http.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			err = fmt.Errorf("%w: %w", ctxErr, err)
		}
		return nil, fmt.Errorf("error during connect: %w", err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.Body, nil
	}
	defer resp.Body.Close()
	return nil, answerError(resp)
}

// engineError is the engine's answer to a request it refused or failed.
type engineError struct {
	msg   string
	class error // a cerrdefs error: Is reports it
}

func (e *engineError) Error() string        { return e.msg }
func (e *engineError) Is(target error) bool { return errors.Is(e.class, target) }

// answerError reads the engine's message from a failed answer and classes
// it by status as the client does.
func answerError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	msg := strings.TrimSpace(string(body))
	var answer struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &answer) == nil && answer.Message != "" {
		msg = answer.Message
	}
	if msg == "" {
		msg = "request returned " + resp.Status
	}
	// As the client: a status with no errdefs class of its own (a
	// proxy's 502 or 504) is an unexpected status, not an engine's answer.
	class := errhttp.ToNative(resp.StatusCode)
	return &engineError{msg: msg, class: class}
}
