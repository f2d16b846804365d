package pipeline

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// engineAt is an Engine on a fake daemon at a TCP address, API 1.41.
func engineAt(t *testing.T, h http.HandlerFunc) *Engine {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := client.New(client.WithHost("tcp://"+strings.TrimPrefix(srv.URL, "http://")), client.WithAPIVersion("1.41"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	e := NewEngine(c)
	t.Cleanup(e.CloseIdleConnections)
	return e
}

func TestEngineRequests(t *testing.T) {
	var got []string
	e := engineAt(t, func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.RequestURI())
		_, _ = io.WriteString(w, `[]`)
	})
	ctx := context.Background()
	for _, call := range []func() (io.ReadCloser, error){
		func() (io.ReadCloser, error) {
			return e.ContainerListJSON(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", "a=b")})
		},
		func() (io.ReadCloser, error) { return e.ContainerInspectJSON(ctx, "abc") },
	} {
		body, err := call()
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := io.ReadAll(body); string(b) != "[]" {
			t.Errorf("body %q", b)
		}
		_ = body.Close()
	}
	want := []string{
		"GET /v1.41/containers/json?all=1&filters=%7B%22label%22%3A%7B%22a%3Db%22%3Atrue%7D%7D",
		"GET /v1.41/containers/abc/json",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := e.ContainerInspectJSON(ctx, " "); !cerrdefs.IsInvalidArgument(err) {
		t.Errorf("an empty ID: %v, want invalid argument", err)
	}
}

// A refused or failed request is an error of the class the client gives
// it, with the engine's message, so callers tell "gone" from "failed" as
// they do with the client's own calls.
func TestEngineErrors(t *testing.T) {
	cases := []struct {
		status int
		ctype  string
		body   string
		is     func(error) bool
		msg    string
	}{
		{404, "application/json", `{"message":"No such container: abc"}`, cerrdefs.IsNotFound, "No such container: abc"},
		{409, "application/json", `{"message":"busy"}`, cerrdefs.IsConflict, "busy"},
		{500, "application/json", `{"message":"engine trouble"}`, cerrdefs.IsInternal, "engine trouble"},
		{503, "text/plain", "down for maintenance\n", cerrdefs.IsUnavailable, "down for maintenance"},
		{502, "text/plain", "", func(err error) bool { return !cerrdefs.IsInternal(err) && !cerrdefs.IsUnavailable(err) }, "502 Bad Gateway"},
	}
	for _, c := range cases {
		e := engineAt(t, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", c.ctype)
			w.WriteHeader(c.status)
			_, _ = io.WriteString(w, c.body)
		})
		_, err := e.ContainerInspectJSON(context.Background(), "abc")
		if err == nil || !c.is(err) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("status %d: error %v, want class and message %q", c.status, err, c.msg)
		}
	}
}

func TestEngineDeadline(t *testing.T) {
	release := make(chan struct{})
	e := engineAt(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := e.ContainerListJSON(ctx, client.ContainerListOptions{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a hung engine: %v, want the deadline", err)
	}
}

// The runner hands stages its guard around the engine; the raw answers
// are reached through it, and an engine without them has none.
func TestRawAnswersOf(t *testing.T) {
	e := engineAt(t, func(http.ResponseWriter, *http.Request) {})
	if RawAnswersOf(e) == nil || RawAnswersOf(&guardedDocker{Docker: e}) == nil {
		t.Error("the engine's raw answers are not found (directly or through the guard)")
	}
	type plain struct{ Docker }
	if RawAnswersOf(plain{}) != nil || RawAnswersOf(&guardedDocker{Docker: plain{}}) != nil {
		t.Error("an engine without raw answers has some")
	}
	if RawAnswersOf(e.Client) != nil {
		t.Error("the bare client has raw answers")
	}
}
