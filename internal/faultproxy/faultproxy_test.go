package faultproxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain checks that a closed proxy leaves no goroutine behind, hanging
// handlers included.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// upstream is a fake engine on a unix socket that records what reached it.
type upstream struct {
	host string
	mu   sync.Mutex
	seen []string
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	dir, err := os.MkdirTemp("", "fpu-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "up.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{host: "unix://" + sock}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Method+" "+r.URL.Path)
		u.mu.Unlock()
		w.Header().Set("Api-Version", "1.41")
		if r.Method == http.MethodDelete {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `[{"Id":"0123456789abcdef","Names":["/a"],"State":"exited"}]`)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return u
}

func (u *upstream) requests() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.seen...)
}

// httpClient talks HTTP over the proxy's socket.
func httpClient(p *Proxy) *http.Client {
	sock := strings.TrimPrefix(p.Host(), "unix://")
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
}

func do(t *testing.T, c *http.Client, ctx context.Context, method, path string) (int, string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, "http://docker"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func TestModes(t *testing.T) {
	up := startUpstream(t)
	p := Start(t, up.host)
	c := httpClient(p)
	defer c.CloseIdleConnections()
	ctx := context.Background()

	// Pass: forwarded unchanged.
	code, body, err := do(t, c, ctx, http.MethodGet, "/v1.41/containers/json")
	if err != nil || code != 200 || !json.Valid([]byte(body)) {
		t.Fatalf("pass: %d %q %v", code, body, err)
	}

	// Fail500: a Docker-style message, nothing forwarded.
	p.Set(Remove, Fail500)
	code, body, err = do(t, c, ctx, http.MethodDelete, "/v1.41/containers/abc")
	var msg struct{ Message string }
	if err != nil || code != 500 || json.Unmarshal([]byte(body), &msg) != nil || msg.Message != FaultMessage {
		t.Errorf("500: %d %q %v", code, body, err)
	}

	// Drop on a body-less answer: forwarded, then cut inside the headers.
	p.Set(Remove, Drop)
	if _, _, err := do(t, c, ctx, http.MethodDelete, "/v1.41/containers/abc"); err == nil {
		t.Error("drop on DELETE: want a client error")
	}
	// Drop on an answer with a body: cut half-way through it.
	p.Set(List, Drop)
	if _, _, err := do(t, c, ctx, http.MethodGet, "/containers/json"); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("drop on list: err %v, want unexpected EOF", err)
	}

	// Malformed: forwarded, 200, a body that is not JSON.
	p.Set(List, Malformed)
	code, body, err = do(t, c, ctx, http.MethodGet, "/v1.41/containers/json")
	if err != nil || code != 200 || json.Valid([]byte(body)) {
		t.Errorf("malformed: %d %q %v", code, body, err)
	}

	// Hang: never forwarded, never answered; the client's deadline ends it.
	p.Set(Inspect, Hang)
	hctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	start := time.Now()
	_, _, err = do(t, c, hctx, http.MethodGet, "/v1.41/containers/abc/json")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second {
		t.Errorf("hang: err %v after %v", err, time.Since(start))
	}

	want := []string{
		"GET /v1.41/containers/json",
		"DELETE /v1.41/containers/abc", // drop forwards
		"GET /containers/json",         // drop forwards
		"GET /v1.41/containers/json",   // malformed forwards
	}
	if got := up.requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("upstream saw\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := p.Counts(Remove); got != (Counts{Seen: 2, Forwarded: 1, Faulted: 2}) {
		t.Errorf("remove counts %+v", got)
	}
	if got := p.Counts(Inspect); got != (Counts{Seen: 1, Forwarded: 0, Faulted: 1}) {
		t.Errorf("inspect counts %+v", got)
	}

	// Reset: everything passes again.
	p.Reset()
	if code, _, err := do(t, c, ctx, http.MethodGet, "/v1.41/containers/abc/json"); err != nil || code != 200 {
		t.Errorf("after reset: %d %v", code, err)
	}
}

func TestSetAfterLetsTheFirstRequestsThrough(t *testing.T) {
	up := startUpstream(t)
	p := Start(t, up.host)
	c := httpClient(p)
	defer c.CloseIdleConnections()
	p.SetAfter(Inspect, Fail500, 2)
	var codes []int
	for range 4 {
		code, _, err := do(t, c, context.Background(), http.MethodGet, "/v1.41/containers/x/json")
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, code)
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 500 || codes[3] != 500 {
		t.Errorf("codes %v, want 200 200 500 500", codes)
	}
	// A rule for another route changes nothing here.
	p.Set(Remove, Hang)
	if code, _, _ := do(t, c, context.Background(), http.MethodGet, "/v1.41/containers/json"); code != 200 {
		t.Errorf("list with a remove rule: %d", code)
	}
}

// Close must release a request that hangs, or a test's cleanup would hang.
func TestCloseReleasesHangingRequests(t *testing.T) {
	up := startUpstream(t)
	p, err := New(up.host)
	if err != nil {
		t.Fatal(err)
	}
	p.Set(List, Hang)
	c := httpClient(p)
	defer c.CloseIdleConnections()
	done := make(chan error, 1)
	go func() {
		_, _, err := do(t, c, context.Background(), http.MethodGet, "/containers/json")
		done <- err
	}()
	for p.Counts(List).Seen == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("a hanging request outlived Close")
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestBadUpstream(t *testing.T) {
	if _, err := New("npipe:////./pipe/docker_engine"); err == nil {
		t.Error("want an error for an unsupported upstream")
	}
}

// Stall: the request waits until Resume, then reaches the engine even
// though its client gave up, as one waiting in a stopped daemon's socket.
func TestStallForwardsAfterResumeWithoutTheClient(t *testing.T) {
	up := startUpstream(t)
	p := Start(t, up.host)
	c := httpClient(p)
	defer c.CloseIdleConnections()
	p.Set(Remove, Stall)

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, _, err := do(t, c, ctx, http.MethodDelete, "/v1.41/containers/abc")
		errc <- err
	}()
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := p.WaitStalled(wctx, Remove, 1); err != nil {
		t.Fatal(err)
	}
	if got := up.requests(); len(got) != 0 {
		t.Fatalf("a stalled request reached the engine before Resume: %q", got)
	}
	cancel() // the client is gone
	if err := <-errc; err == nil {
		t.Fatal("the client's request ended without error")
	}
	p.Set(Remove, Pass)
	p.Resume()
	// The handler forwards on its own goroutine: Close waits for it.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if got := up.requests(); len(got) != 1 || got[0] != "DELETE /v1.41/containers/abc" {
		t.Errorf("the engine saw %q, want the stalled DELETE", got)
	}
}
