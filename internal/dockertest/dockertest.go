// Package dockertest is the integration-test harness for ds01-pipe: it runs
// tests against a real Docker engine. Import it only
// from _test.go files.
//
// The engine is a requirement, not an option: New fails the test (it never
// skips) when the engine named by the environment (DOCKER_HOST, default
// unix:///var/run/docker.sock) does not answer. `.ci/run` installs and starts
// one on a fresh machine.
//
// Every Engine value has its own run ID. Everything it creates gets a name
// that starts with Prefix() ("dstest-<8 hex>-") and the label
// Label() ("ds01-pipe.test" = run ID), and the cleanup it registers
// force-removes the containers carrying that label and nothing else, so tests
// never touch containers they did not create.
//
// The containers run the probe image (see Engine.Image and ./probe): a tiny
// static Go program imported from a tar archive, so no registry and no
// network access are needed. Containers are created with network mode
// "none": the probe needs no network, and it keeps the tests independent of
// the host's docker0 bridge.
//
// PrivateDaemon starts a second dockerd that accepts GPU device requests on
// machines without GPUs, so that tests can have GPU containers that really
// started and exited.
package dockertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// LabelKey is the label every container created through an Engine carries;
// its value is the Engine's run ID.
const LabelKey = "ds01-pipe.test"

// NamePrefix starts the name of every container created through an Engine,
// followed by the run ID and a dash: "dstest-0a1b2c3d-".
const NamePrefix = "dstest-"

const (
	pingTimeout    = 5 * time.Second
	callTimeout    = 30 * time.Second
	waitTimeout    = 60 * time.Second
	cleanupTimeout = 60 * time.Second
)

// Engine is a Docker engine seen by one test (or one group of subtests),
// with the run ID that scopes what it creates.
type Engine struct {
	cli    *client.Client
	host   string
	runID  string
	prefix string

	anon atomic.Int64 // counter for containers created without a name

	imageMu sync.Mutex
	image   string // probe image reference, once imported into this engine
}

// New connects to the engine named by the environment (client.FromEnv:
// DOCKER_HOST, DOCKER_API_VERSION, DOCKER_CERT_PATH, DOCKER_TLS_VERIFY),
// pings it with a 5 s deadline and fails the test if it does not answer.
// The cleanup it registers force-removes every container that carries this
// Engine's label, then closes the client.
func New(t testing.TB) *Engine {
	t.Helper()
	// API version negotiation is the default in moby/moby/client v0.6
	// (WithAPIVersionNegotiation is a deprecated no-op there), so Engine 20.10
	// (API 1.41) and newer work without options.
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatalf("dockertest: cannot build a Docker client from the environment: %v", err)
	}
	return connect(t, cli)
}

// connect pings cli and wraps it in an Engine with a fresh run ID.
func connect(t testing.TB, cli *client.Client) *Engine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		_ = cli.Close()
		t.Fatalf("dockertest: the Docker engine at %s is unreachable: %v\n"+
			"The integration tests need a running Docker engine (as root): "+
			"run `bash .ci/run`, which installs and starts one, or start dockerd yourself.",
			cli.DaemonHost(), err)
	}
	runID := randomHex(4)
	e := &Engine{
		cli:    cli,
		host:   cli.DaemonHost(),
		runID:  runID,
		prefix: NamePrefix + runID + "-",
	}
	t.Cleanup(func() {
		e.removeLabelled(t)
		_ = cli.Close()
	})
	return e
}

// Client returns the engine's API client.
func (e *Engine) Client() *client.Client { return e.cli }

// Host returns the engine's address, for example "unix:///var/run/docker.sock",
// in the form DOCKER_HOST takes.
func (e *Engine) Host() string { return e.host }

// Prefix returns the name prefix of this Engine's containers,
// "dstest-<run ID>-".
func (e *Engine) Prefix() string { return e.prefix }

// Label returns the label this Engine puts on everything it creates:
// LabelKey and the run ID.
func (e *Engine) Label() (key, value string) { return LabelKey, e.runID }

// Spec describes a probe container for Engine.Create.
type Spec struct {
	// Name is appended to the Engine's prefix. Empty: "anon-<n>".
	Name string
	// Labels are added to the container; the Engine's own label is always added.
	Labels map[string]string
	// Env is a list of "KEY=value".
	Env []string
	// Args are the probe's arguments: nil (exit 0), {"exit", "3"},
	// {"sleep", "2s"}, {"forever"}.
	Args []string
	// GPUs are device IDs (UUIDs or indices) for a device request with
	// driver "nvidia" and capability "gpu", as `docker run --gpus device=...`.
	GPUs []string
	// GPUsAll requests every GPU (Count -1), as `docker run --gpus all`.
	GPUsAll bool
	// Runtime is the OCI runtime, for example "nvidia" (only the private
	// daemon knows that one). Empty: the daemon's default.
	Runtime string
	// Start starts the container after creating it.
	Start bool
	// Wait waits for the started container to exit; it needs Start.
	Wait bool
}

// Container is a container created by Engine.Create.
type Container struct {
	ID   string
	Name string // full name, prefix included, without a leading "/"
}

// Create creates a probe container as spec says, labelled and named for this
// Engine, and optionally starts it and waits for it to exit. Any failure
// fails the test.
func (e *Engine) Create(t testing.TB, spec Spec) Container {
	t.Helper()
	if spec.Wait && !spec.Start {
		t.Fatalf("dockertest: Spec %q has Wait without Start: a created container never exits", spec.Name)
	}
	if spec.GPUsAll && len(spec.GPUs) > 0 {
		t.Fatalf("dockertest: Spec %q has both GPUs and GPUsAll", spec.Name)
	}
	if _, ok := spec.Labels[LabelKey]; ok {
		t.Fatalf("dockertest: Spec %q sets the harness label %s itself", spec.Name, LabelKey)
	}
	name := spec.Name
	if name == "" {
		name = fmt.Sprintf("anon-%d", e.anon.Add(1))
	}
	name = e.prefix + name

	labels := make(map[string]string, len(spec.Labels)+1)
	maps.Copy(labels, spec.Labels)
	labels[LabelKey] = e.runID

	hc := &container.HostConfig{
		NetworkMode: "none",
		Runtime:     spec.Runtime,
	}
	switch {
	case spec.GPUsAll:
		hc.DeviceRequests = []container.DeviceRequest{{
			Driver: "nvidia", Count: -1, Capabilities: [][]string{{"gpu"}},
		}}
	case len(spec.GPUs) > 0:
		hc.DeviceRequests = []container.DeviceRequest{{
			Driver: "nvidia", DeviceIDs: spec.GPUs, Capabilities: [][]string{{"gpu"}},
		}}
	}

	image := e.Image(t)
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	res, err := e.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{
			Image:  image,
			Cmd:    spec.Args,
			Env:    spec.Env,
			Labels: labels,
		},
		HostConfig: hc,
	})
	if err != nil {
		t.Fatalf("dockertest: create container %s on %s: %v", name, e.host, err)
	}
	c := Container{ID: res.ID, Name: name}
	if spec.Start {
		e.Start(t, c.ID)
	}
	if spec.Wait {
		e.Wait(t, c.ID)
	}
	return c
}

// Start starts a container and fails the test if that fails. A probe that
// runs until stopped ("forever", "busy") is waited for until it handles
// SIGTERM, so that a `docker stop` right after Start ends it at once (PID
// 1 ignores a signal it has no handler for).
func (e *Engine) Start(t testing.TB, id string) {
	t.Helper()
	if err := e.TryStart(t, id); err != nil {
		t.Fatalf("dockertest: start container %s on %s: %v", id, e.host, err)
	}
	if cfg := e.Inspect(t, id).Config; cfg != nil && len(cfg.Cmd) > 0 && (cfg.Cmd[0] == "forever" || cfg.Cmd[0] == "busy") {
		e.waitReady(t, id)
	}
}

// ReadyLine is the line a probe that runs until stopped prints on stdout
// once it handles SIGTERM.
const ReadyLine = "ready"

// readyPoll is how often waitReady reads the container's output.
const readyPoll = 20 * time.Millisecond

// waitReady waits up to waitTimeout for the probe in container id to print
// ReadyLine.
func (e *Engine) waitReady(t testing.TB, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	for {
		if e.printed(ctx, id, ReadyLine) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("dockertest: the probe in container %s did not print %q within %v", id, ReadyLine, waitTimeout)
		case <-time.After(readyPoll):
		}
	}
}

// printed reports whether the container's stdout has the line.
func (e *Engine) printed(ctx context.Context, id, line string) bool {
	rc, err := e.cli.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true})
	if err != nil {
		return false
	}
	defer rc.Close()
	out, err := io.ReadAll(io.LimitReader(rc, 1<<16))
	// The stream is multiplexed (8-byte frame headers): the line is found
	// in it as it is.
	return err == nil && bytes.Contains(out, []byte(line+"\n"))
}

// TryStart starts a container and returns the engine's error, for tests in
// which a start is expected to fail (a GPU request on a daemon without the
// nvidia driver: "could not select device driver").
func (e *Engine) TryStart(t testing.TB, id string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	_, err := e.cli.ContainerStart(ctx, id, client.ContainerStartOptions{})
	return err
}

// Wait waits up to 60 s until the container is not running and returns its
// exit code. For a container that never started it returns at once.
func (e *Engine) Wait(t testing.TB, id string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	w := e.cli.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case res := <-w.Result:
		if res.Error != nil && res.Error.Message != "" {
			t.Fatalf("dockertest: wait for container %s: %s", id, res.Error.Message)
		}
		return int(res.StatusCode)
	case err := <-w.Error:
		t.Fatalf("dockertest: wait for container %s on %s: %v", id, e.host, err)
	}
	return 0 // unreachable: Fatalf ends the test goroutine
}

// Inspect returns the engine's full view of a container.
func (e *Engine) Inspect(t testing.TB, id string) container.InspectResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	res, err := e.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatalf("dockertest: inspect container %s on %s: %v", id, e.host, err)
	}
	return res.Container
}

// PID returns the host PID of a running container's main process.
func (e *Engine) PID(t testing.TB, id string) int {
	t.Helper()
	st := e.Inspect(t, id).State
	if st == nil || !st.Running || st.Pid <= 0 {
		t.Fatalf("dockertest: container %s is not running (state %+v), so it has no PID", id, st)
	}
	return st.Pid
}

// removeLabelled force-removes every container that carries this Engine's
// label. Errors are reported but do not stop the removal of the others.
func (e *Engine) removeLabelled(t testing.TB) {
	t.Helper()
	// t.Context() is already cancelled when cleanups run.
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	list, err := e.cli.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", LabelKey+"="+e.runID),
	})
	if err != nil {
		t.Errorf("dockertest: cleanup: list containers labelled %s=%s on %s: %v", LabelKey, e.runID, e.host, err)
		return
	}
	for _, c := range list.Items {
		if c.Labels[LabelKey] != e.runID { // belt and braces: never touch others
			continue
		}
		_, err := e.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("dockertest: cleanup: remove container %s (%v): %v", c.ID, c.Names, err)
		}
	}
}

// randomHex returns 2n random hex digits.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails: it crashes the program instead
	return hex.EncodeToString(b)
}
