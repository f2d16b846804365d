// Package faultproxy is a test-only Docker Engine API proxy that injects
// faults. It listens on a unix socket of its own and forwards every request
// to a real engine (the socket dockertest.New(t).Host() names), except the
// requests that match a rule, which it answers with a fault instead:
//
//   - Hang: the request is never forwarded and never answered; the handler
//     waits until the client gives up (its deadline) or the proxy closes.
//   - Fail500: the request is not forwarded; the answer is HTTP 500 with a
//     Docker-style {"message": "..."} body.
//   - Drop: the request is forwarded, so the engine acts on it, and the
//     connection is closed half-way through the answer. The client cannot
//     tell whether the action happened.
//   - Malformed: the request is forwarded and the engine's answer replaced
//     by a body that is not valid JSON (with status 200 when the engine
//     succeeded).
//   - Stall: the request waits, as in the socket of an engine that is
//     stalled (stopped, overloaded), until Resume; then it is forwarded
//     whether or not its client is still there, so the engine acts on it,
//     and the answer goes to the client if it still waits.
//   - Pass: forwarded unchanged.
//
// Rules are set per Route (a method and a path pattern, the API version
// prefix stripped) and can be switched at run time; a test points the code
// under test at Host() through DOCKER_HOST. Import it only from _test.go
// files.
package faultproxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Mode is what the proxy does with a request that matches a rule.
type Mode int

// Modes.
const (
	Pass Mode = iota
	Hang
	Fail500
	Drop
	Malformed
	Stall
)

func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Hang:
		return "hang"
	case Fail500:
		return "500"
	case Drop:
		return "drop"
	case Malformed:
		return "malformed"
	case Stall:
		return "stall"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Forwards reports whether the engine sees a request answered in mode m,
// that is, whether whatever the request asks for may have happened.
func (m Mode) Forwards() bool { return m == Pass || m == Drop || m == Malformed || m == Stall }

// Route selects requests: a method and a pattern matched against the path
// without its API version prefix ("/v1.41").
type Route struct {
	Name   string
	Method string // "" matches any method
	Path   *regexp.Regexp
}

func (r Route) String() string { return r.Name }

func (r Route) matches(method, path string) bool {
	return (r.Method == "" || r.Method == method) && r.Path.MatchString(path)
}

// The routes of the calls ds01-pipe makes.
var (
	Ping    = Route{Name: "ping", Path: regexp.MustCompile(`^/_ping$`)}
	List    = Route{Name: "list", Method: http.MethodGet, Path: regexp.MustCompile(`^/containers/json$`)}
	Inspect = Route{Name: "inspect", Method: http.MethodGet, Path: regexp.MustCompile(`^/containers/[^/]+/json$`)}
	Remove  = Route{Name: "remove", Method: http.MethodDelete, Path: regexp.MustCompile(`^/containers/[^/]+$`)}
)

// FaultMessage is the message of every Fail500 answer.
const FaultMessage = "faultproxy: injected engine failure"

// malformedBody is what Malformed answers: the start of a JSON object that
// never ends.
const malformedBody = `{"Id": "faultproxy", "State": {"Status": "exi`

var versionPrefix = regexp.MustCompile(`^/v[0-9]+(\.[0-9]+)*`)

type rule struct {
	route Route
	mode  Mode
	pass  int // matching requests still to let through before the fault
}

// Counts is what the proxy did with the requests of one route.
type Counts struct {
	Seen      int // requests that matched the route
	Forwarded int // of those, requests the engine saw
	Faulted   int // of those, requests answered with a fault
}

// Proxy is a running fault-injecting proxy.
type Proxy struct {
	sock     string
	upstream *url.URL
	ln       net.Listener
	srv      *http.Server
	rp       *httputil.ReverseProxy
	tr       *http.Transport

	mu     sync.Mutex
	rules  []*rule
	counts map[string]*Counts
	// resume is closed by Resume, releasing the stalled requests.
	resume chan struct{}
	// stalled counts the requests waiting per route; stallSeen is
	// closed and replaced whenever one more waits.
	stalled   map[string]int
	stallSeen chan struct{}

	closing   chan struct{}
	closeOnce sync.Once
	served    chan struct{}
}

// Start starts a proxy in front of upstream, an engine address as
// DOCKER_HOST writes it ("unix:///var/run/docker.sock" or "tcp://host:port").
// Everything passes until a rule is set. The proxy is closed when the test
// ends; Start fails the test if it cannot listen.
func Start(t testing.TB, upstream string) *Proxy {
	t.Helper()
	p, err := New(upstream)
	if err != nil {
		t.Fatalf("faultproxy: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// New is Start without a test: the caller closes the proxy.
func New(upstream string) (*Proxy, error) {
	network, addr, err := parseHost(upstream)
	if err != nil {
		return nil, err
	}
	// A unix socket path holds at most 107 bytes, and t.TempDir() paths
	// carry the test's name: use a short directory of our own.
	dir, err := os.MkdirTemp("", "fp-")
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		},
		DisableCompression: true,
	}
	target := &url.URL{Scheme: "http", Host: "docker"}
	p := &Proxy{
		sock:      sock,
		upstream:  target,
		ln:        ln,
		tr:        tr,
		counts:    make(map[string]*Counts),
		resume:    make(chan struct{}),
		stalled:   make(map[string]int),
		stallSeen: make(chan struct{}),
		closing:   make(chan struct{}),
		served:    make(chan struct{}),
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		},
		Transport: tr,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeMessage(w, http.StatusBadGateway, "faultproxy: upstream: "+err.Error())
		},
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(p.served)
		_ = p.srv.Serve(ln)
	}()
	return p, nil
}

func parseHost(host string) (network, addr string, err error) {
	switch {
	case strings.HasPrefix(host, "unix://"):
		return "unix", strings.TrimPrefix(host, "unix://"), nil
	case strings.HasPrefix(host, "tcp://"):
		return "tcp", strings.TrimPrefix(host, "tcp://"), nil
	}
	return "", "", fmt.Errorf("upstream %q: want unix:// or tcp://", host)
}

// Host is the proxy's address in DOCKER_HOST form.
func (p *Proxy) Host() string { return "unix://" + p.sock }

// Set makes every request of route r get mode m from now on, replacing an
// earlier rule for the same route. Pass removes the fault.
func (p *Proxy) Set(r Route, m Mode) { p.SetAfter(r, m, 0) }

// SetAfter is Set, but lets the next pass requests of the route through
// first: with pass = n, the fault hits the (n+1)th request on.
func (p *Proxy) SetAfter(r Route, m Mode, pass int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := p.rules[:0]
	for _, old := range p.rules {
		if old.route.Name != r.Name {
			kept = append(kept, old)
		}
	}
	p.rules = kept
	if m != Pass {
		p.rules = append(p.rules, &rule{route: r, mode: m, pass: pass})
	}
}

// Reset removes every rule: from now on everything passes. Requests hanging
// already keep hanging until their client gives up.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = nil
}

// Counts returns what the proxy did with the requests of route r so far.
func (p *Proxy) Counts(r Route) Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.counts[r.Name]; c != nil {
		return *c
	}
	return Counts{}
}

// Close stops the proxy: it stops listening, releases hanging requests and
// waits for the handlers to return.
func (p *Proxy) Close() error {
	var err error
	p.closeOnce.Do(func() {
		close(p.closing)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = p.srv.Shutdown(ctx)
		<-p.served
		p.tr.CloseIdleConnections()
		_ = os.RemoveAll(filepath.Dir(p.sock))
	})
	return err
}

// Resume forwards every stalled request, as a stalled engine that runs
// again reads the requests waiting in its socket. Requests that stall
// later wait for the next Resume.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.resume)
	p.resume = make(chan struct{})
	p.stalled = make(map[string]int)
}

// WaitStalled waits until at least n requests of route r are stalled, or
// ctx ends.
func (p *Proxy) WaitStalled(ctx context.Context, r Route, n int) error {
	for {
		p.mu.Lock()
		got, seen := p.stalled[r.Name], p.stallSeen
		p.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-seen:
		case <-ctx.Done():
			return fmt.Errorf("faultproxy: %d of %d %s requests stalled: %w", got, n, r.Name, ctx.Err())
		}
	}
}

// stall holds a request until Resume, then forwards it, with or without
// its client.
func (p *Proxy) stall(w http.ResponseWriter, r *http.Request, route string) {
	body, _ := io.ReadAll(r.Body)
	p.mu.Lock()
	resume := p.resume
	p.stalled[route]++
	close(p.stallSeen)
	p.stallSeen = make(chan struct{})
	p.mu.Unlock()
	select {
	case <-resume: // resumed before the proxy closes: forwarded all the same
	default:
		select {
		case <-resume:
		case <-p.closing:
			return
		}
	}
	out := r.Clone(context.WithoutCancel(r.Context()))
	out.Body = io.NopCloser(bytes.NewReader(body))
	resp, respBody, err := p.forward(out)
	if err != nil {
		writeMessage(w, http.StatusBadGateway, "faultproxy: upstream: "+err.Error())
		return
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(respBody) // the client may be gone
}

// decide picks the mode of one request and counts it; route is the name
// of the route it matched, or "".
func (p *Proxy) decide(method, path string) (mode Mode, route string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	mode = Pass
	for _, r := range p.rules {
		if !r.route.matches(method, path) {
			continue
		}
		route = r.route.Name
		if r.pass > 0 {
			r.pass--
		} else {
			mode = r.mode
		}
		break
	}
	for _, r := range []Route{Ping, List, Inspect, Remove} {
		if route == "" && r.matches(method, path) {
			route = r.Name
		}
	}
	if route != "" {
		c := p.counts[route]
		if c == nil {
			c = &Counts{}
			p.counts[route] = c
		}
		c.Seen++
		if mode.Forwards() {
			c.Forwarded++
		}
		if mode != Pass {
			c.Faulted++
		}
	}
	return mode, route
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	path := versionPrefix.ReplaceAllString(r.URL.Path, "")
	mode, route := p.decide(r.Method, path)
	switch mode {
	case Pass:
		p.rp.ServeHTTP(w, r)
	case Hang:
		// Drain the request so the client is not stuck writing it, then
		// wait for the client to give up.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-p.closing:
		}
	case Fail500:
		_, _ = io.Copy(io.Discard, r.Body)
		writeMessage(w, http.StatusInternalServerError, FaultMessage)
	case Drop:
		p.drop(w, r)
	case Malformed:
		p.malformed(w, r)
	case Stall:
		p.stall(w, r, route)
	}
}

// forward sends r to the engine and returns its whole answer.
func (p *Proxy) forward(r *http.Request) (*http.Response, []byte, error) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = p.upstream.Scheme, p.upstream.Host
	resp, err := p.tr.RoundTrip(out)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// drop forwards the request, then closes the connection part-way through
// the answer: after half the body, or inside the header block when the
// answer has no body (204 of a removal).
func (p *Proxy) drop(w http.ResponseWriter, r *http.Request) {
	resp, body, err := p.forward(r)
	if err != nil {
		writeMessage(w, http.StatusBadGateway, "faultproxy: upstream: "+err.Error())
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("faultproxy: the server's ResponseWriter cannot hijack")
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	var head bytes.Buffer
	fmt.Fprintf(&head, "HTTP/1.1 %d %s\r\n", resp.StatusCode, http.StatusText(resp.StatusCode))
	if len(body) == 0 {
		// No body to cut: cut the headers instead (no blank line follows).
		head.WriteString("Content-Type: application/json\r\n")
		writeAll(buf, head.Bytes())
		return
	}
	fmt.Fprintf(&head, "Content-Type: %s\r\nContent-Length: %d\r\n\r\n", resp.Header.Get("Content-Type"), len(body))
	writeAll(buf, head.Bytes())
	writeAll(buf, body[:len(body)/2])
}

func writeAll(buf *bufio.ReadWriter, b []byte) {
	_, _ = buf.Write(b)
	_ = buf.Flush()
}

// malformed forwards the request and answers with a body that is not JSON.
func (p *Proxy) malformed(w http.ResponseWriter, r *http.Request) {
	resp, _, err := p.forward(r)
	if err != nil {
		writeMessage(w, http.StatusBadGateway, "faultproxy: upstream: "+err.Error())
		return
	}
	status := resp.StatusCode
	if status >= 200 && status < 300 {
		status = http.StatusOK // a 204 cannot carry a body
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Api-Version", resp.Header.Get("Api-Version"))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, malformedBody)
}

// writeMessage answers with the engine's error shape, {"message": "..."}.
func writeMessage(w http.ResponseWriter, status int, msg string) {
	body, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{msg}) // a struct of one string always marshals
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
