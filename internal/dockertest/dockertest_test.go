package dockertest_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/ds01/ds01-pipe/internal/dockertest"
)

func TestCreateStartExitCode(t *testing.T) {
	t.Parallel()
	e := dockertest.New(t)
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"no-args", nil, 0},
		{"exit-3", []string{"exit", "3"}, 3},
		{"exit-0", []string{"exit", "0"}, 0},
		{"sleep", []string{"sleep", "100ms"}, 0},
		{"bad-args", []string{"nonsense"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.Create(t, dockertest.Spec{Name: tt.name, Args: tt.args, Start: true, Wait: true})
			got := e.Inspect(t, c.ID)
			if got.State.Status != container.StateExited {
				t.Errorf("state = %q, want %q", got.State.Status, container.StateExited)
			}
			if got.State.ExitCode != tt.want {
				t.Errorf("exit code = %d, want %d", got.State.ExitCode, tt.want)
			}
			if code := e.Wait(t, c.ID); code != tt.want {
				t.Errorf("Wait = %d, want %d", code, tt.want)
			}
		})
	}
}

func TestCreateAppliesNameLabelsEnv(t *testing.T) {
	t.Parallel()
	e := dockertest.New(t)
	key, value := e.Label()
	if key != dockertest.LabelKey || len(value) != 8 {
		t.Fatalf("Label() = %q, %q; want %q and 8 hex digits", key, value, dockertest.LabelKey)
	}
	if want := "dstest-" + value + "-"; e.Prefix() != want {
		t.Fatalf("Prefix() = %q, want %q", e.Prefix(), want)
	}

	c := e.Create(t, dockertest.Spec{
		Name:   "labelled",
		Labels: map[string]string{"ds01.user": "alice", "ds01.container_type": "atomic"},
		Env:    []string{"NVIDIA_VISIBLE_DEVICES=GPU-1"},
	})
	if c.Name != e.Prefix()+"labelled" {
		t.Errorf("Container.Name = %q, want %q", c.Name, e.Prefix()+"labelled")
	}
	got := e.Inspect(t, c.ID)
	if got.Name != "/"+c.Name {
		t.Errorf("engine name = %q, want %q", got.Name, "/"+c.Name)
	}
	wantLabels := map[string]string{"ds01.user": "alice", "ds01.container_type": "atomic", key: value}
	for k, v := range wantLabels {
		if got.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q (all: %v)", k, got.Config.Labels[k], v, got.Config.Labels)
		}
	}
	if !slices.Contains(got.Config.Env, "NVIDIA_VISIBLE_DEVICES=GPU-1") {
		t.Errorf("env %v lacks NVIDIA_VISIBLE_DEVICES=GPU-1", got.Config.Env)
	}
	if got.State.Status != container.StateCreated {
		t.Errorf("state = %q, want %q (Start was false)", got.State.Status, container.StateCreated)
	}
	if !strings.HasPrefix(got.Config.Image, dockertest.ImageRepo+":") {
		t.Errorf("image = %q, want %s:<hash>", got.Config.Image, dockertest.ImageRepo)
	}

	anon := e.Create(t, dockertest.Spec{})
	if !strings.HasPrefix(anon.Name, e.Prefix()) {
		t.Errorf("unnamed container %q lacks the prefix %q", anon.Name, e.Prefix())
	}
}

func TestForeverPIDAndStop(t *testing.T) {
	t.Parallel()
	e := dockertest.New(t)
	c := e.Create(t, dockertest.Spec{Name: "forever", Args: []string{"forever"}, Start: true})
	pid := e.PID(t, c.ID)
	// The release stage maps GPU processes to containers through
	// /proc/<pid>/cgroup: the harness's containers must allow that.
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatalf("read the cgroup of PID %d: %v", pid, err)
	}
	if !strings.Contains(string(cg), c.ID) {
		t.Errorf("/proc/%d/cgroup does not name container %s:\n%s", pid, c.ID, cg)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	timeout := 10
	if _, err := e.Client().ContainerStop(ctx, c.ID, client.ContainerStopOptions{Timeout: &timeout}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	// SIGTERM ends the probe at once with 0; a SIGKILL after the timeout would give 137.
	if code := e.Wait(t, c.ID); code != 0 {
		t.Errorf("exit code after docker stop = %d, want 0", code)
	}
}

// TestCleanupRemovesOnlyLabelled runs an Engine inside a subtest, so its
// cleanup runs when the subtest ends, and checks what survived.
func TestCleanupRemovesOnlyLabelled(t *testing.T) {
	t.Parallel()
	var labelled []dockertest.Container
	var bystander string
	var cli *client.Client

	outer := dockertest.New(t) // a second engine: its client outlives the subtest
	cli = outer.Client()

	t.Run("scope", func(t *testing.T) {
		e := dockertest.New(t)
		labelled = append(labelled,
			e.Create(t, dockertest.Spec{Name: "created"}),
			e.Create(t, dockertest.Spec{Name: "exited", Args: []string{"exit", "1"}, Start: true, Wait: true}),
			e.Create(t, dockertest.Spec{Name: "running", Args: []string{"forever"}, Start: true}),
		)
		// The bystander has the prefix but not the label: the cleanup must spare it.
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
			Name:       e.Prefix() + "bystander",
			Image:      e.Image(t),
			HostConfig: &container.HostConfig{NetworkMode: "none"},
		})
		if err != nil {
			t.Fatalf("create the bystander: %v", err)
		}
		bystander = res.ID
	})
	if bystander == "" {
		t.Fatal("the subtest did not create the bystander")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := cli.ContainerRemove(ctx, bystander, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Errorf("remove the bystander %s: %v", bystander, err)
		}
	})

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, c := range labelled {
		_, err := cli.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
		if !cerrdefs.IsNotFound(err) {
			t.Errorf("labelled container %s survived the cleanup (inspect error: %v)", c.Name, err)
		}
	}
	if _, err := cli.ContainerInspect(ctx, bystander, client.ContainerInspectOptions{}); err != nil {
		t.Errorf("the bystander did not survive the cleanup: %v", err)
	}
}

func TestImageIsReusedAcrossEngines(t *testing.T) {
	t.Parallel()
	refs := make([]string, 4)
	var wg sync.WaitGroup
	for i := range refs {
		e := dockertest.New(t)
		wg.Go(func() { refs[i] = e.Image(t) })
	}
	wg.Wait()
	for _, r := range refs[1:] {
		if r != refs[0] {
			t.Fatalf("engines got different probe images: %v", refs)
		}
	}
}

// fatalTB records Fatalf instead of failing the real test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestNewFailsClearlyWhenUnreachable(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/dstest/docker.sock")
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		dockertest.New(f)
	}()
	<-done
	for _, want := range []string{"unreachable", "/nonexistent/dstest/docker.sock", ".ci/run"} {
		if !strings.Contains(f.msg, want) {
			t.Errorf("New's failure %q does not mention %q", f.msg, want)
		}
	}
}

// TestGPUContainerOnStockDaemon pins the stock daemon's behaviour the
// private daemon exists to work around.
func TestGPUContainerOnStockDaemon(t *testing.T) {
	t.Parallel()
	e := dockertest.New(t)
	c := e.Create(t, dockertest.Spec{Name: "gpu", GPUs: []string{"GPU-8c1f0000-0000-0000-0000-000000000001"}})
	err := e.TryStart(t, c.ID)
	if err == nil {
		t.Skip("the stock daemon has an nvidia device driver (a GPU host?): nothing to pin here")
	}
	if !strings.Contains(err.Error(), "could not select device driver") {
		t.Fatalf("start error = %v, want \"could not select device driver\"", err)
	}
	if st := e.Inspect(t, c.ID).State; st.Status != container.StateCreated {
		t.Errorf("state = %q, want %q", st.Status, container.StateCreated)
	}
}

func TestPrivateDaemonRunsGPUContainers(t *testing.T) {
	t.Parallel()
	e := dockertest.PrivateDaemon(t)
	if !strings.HasPrefix(e.Host(), "unix:///") || strings.Contains(e.Host(), "/var/run/docker.sock") {
		t.Fatalf("private daemon host = %q", e.Host())
	}
	const uuid = "GPU-8c1f0000-0000-0000-0000-000000000001"
	tests := []struct {
		name string
		spec dockertest.Spec
		want container.DeviceRequest
	}{
		{"device", dockertest.Spec{GPUs: []string{uuid}},
			container.DeviceRequest{Driver: "nvidia", DeviceIDs: []string{uuid}, Capabilities: [][]string{{"gpu"}}}},
		{"all", dockertest.Spec{GPUsAll: true, Args: []string{"exit", "4"}},
			container.DeviceRequest{Driver: "nvidia", Count: -1, Capabilities: [][]string{{"gpu"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			spec.Name, spec.Start, spec.Wait = tt.name, true, true
			c := e.Create(t, spec)
			got := e.Inspect(t, c.ID)
			wantCode := 0
			if len(spec.Args) == 2 {
				wantCode = 4
			}
			if got.State.Status != container.StateExited || got.State.ExitCode != wantCode {
				t.Errorf("state = %q exit %d (error %q), want exited %d", got.State.Status, got.State.ExitCode, got.State.Error, wantCode)
			}
			if len(got.HostConfig.DeviceRequests) != 1 {
				t.Fatalf("device requests = %+v, want one", got.HostConfig.DeviceRequests)
			}
			dr := got.HostConfig.DeviceRequests[0]
			if dr.Driver != tt.want.Driver || dr.Count != tt.want.Count ||
				strings.Join(dr.DeviceIDs, ",") != strings.Join(tt.want.DeviceIDs, ",") ||
				fmt.Sprint(dr.Capabilities) != fmt.Sprint(tt.want.Capabilities) {
				t.Errorf("device request = %+v, want %+v", dr, tt.want)
			}
		})
	}

	t.Run("runtime-nvidia", func(t *testing.T) {
		c := e.Create(t, dockertest.Spec{Name: "rt", Runtime: "nvidia", Start: true, Wait: true})
		got := e.Inspect(t, c.ID)
		if got.HostConfig.Runtime != "nvidia" || got.State.Status != container.StateExited || got.State.ExitCode != 0 {
			t.Errorf("runtime %q state %q exit %d, want nvidia exited 0", got.HostConfig.Runtime, got.State.Status, got.State.ExitCode)
		}
	})

	t.Run("running-gpu-container-has-pid", func(t *testing.T) {
		c := e.Create(t, dockertest.Spec{Name: "gpu-forever", GPUs: []string{uuid}, Args: []string{"forever"}, Start: true})
		if pid := e.PID(t, c.ID); pid <= 0 {
			t.Errorf("PID = %d", pid)
		}
	})
}
