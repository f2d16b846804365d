package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/moby/moby/client"
)

// binaries are the programs the benchmark runs.
type binaries struct {
	pipe    string // ds01-pipe
	floor   string // ./floor
	maxrss  string // ./maxrss
	version string // `ds01-pipe version`
}

// moduleRoot returns the directory of the ds01-pipe module.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("run the benchmark inside the ds01-pipe module (go run ./internal/bench)")
	}
	return filepath.Dir(gomod), nil
}

// build compiles ds01-pipe (with ldflags, as `make build` does), the
// floor program and maxrss into dir.
func build(ctx context.Context, root, dir, ldflags string) (binaries, error) {
	b := binaries{pipe: filepath.Join(dir, "ds01-pipe"), floor: filepath.Join(dir, "floor"), maxrss: filepath.Join(dir, "maxrss")}
	for _, c := range [][]string{
		{"go", "build", "-o", b.pipe, "-ldflags", ldflags, "./cmd/ds01-pipe"},
		{"go", "build", "-o", b.floor, "./internal/bench/floor"},
		{"go", "build", "-o", b.maxrss, "./internal/bench/maxrss"},
	} {
		cmd := exec.CommandContext(ctx, c[0], c[1:]...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("%s: %w\n%s", strings.Join(c, " "), err, out)
		}
	}
	out, err := exec.CommandContext(ctx, b.pipe, "version").CombinedOutput()
	if err != nil {
		return b, fmt.Errorf("ds01-pipe version: %w\n%s", err, out)
	}
	b.version = strings.TrimSpace(string(out))
	return b, nil
}

// stageKinds returns the stage kinds the built ds01-pipe registers.
func stageKinds(ctx context.Context, pipe string) ([]string, error) {
	out, err := exec.CommandContext(ctx, pipe, "stages", "--format", "json").Output()
	if err != nil {
		return nil, fmt.Errorf("ds01-pipe stages --format json: %w", err)
	}
	var specs []struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(out, &specs); err != nil {
		return nil, fmt.Errorf("ds01-pipe stages --format json: %w", err)
	}
	kinds := make([]string, 0, len(specs))
	for _, s := range specs {
		kinds = append(kinds, s.Kind)
	}
	return kinds, nil
}

// machine describes where the numbers come from.
type machine struct {
	cpus          int
	cpuModel      string
	memMiB        int64
	kernel        string
	goVersion     string
	dockerVersion string
	dockerAPI     string
	storage       string
	cgroup        string
	containers    int    // on the engine when the benchmark started
	loadStart     string // 1-minute load average when the benchmark started
}

// loadAvg returns the 1-minute load average, or "unknown".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

func (m machine) oneLine() string {
	return fmt.Sprintf("%d CPUs (%s), %d MiB, Docker Engine %s (API %s, %s), %d containers on the engine",
		m.cpus, m.cpuModel, m.memMiB, m.dockerVersion, m.dockerAPI, m.storage, m.containers)
}

func describeMachine(ctx context.Context, cli *client.Client) machine {
	m := machine{cpus: runtime.NumCPU(), goVersion: runtime.Version(), cpuModel: "unknown", loadStart: loadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpuModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kib int64
		for line := range strings.SplitSeq(string(b), "\n") {
			if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kib); err == nil {
				m.memMiB = kib / 1024
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	// A wedged engine can block /info (it locks every container): the
	// description is not worth waiting for.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if v, err := cli.ServerVersion(ctx, client.ServerVersionOptions{}); err == nil {
		m.dockerVersion, m.dockerAPI = v.Version, v.APIVersion
	}
	if info, err := cli.Info(ctx, client.InfoOptions{}); err == nil {
		m.storage = info.Info.Driver
		m.cgroup = info.Info.CgroupDriver + " cgroup v" + info.Info.CgroupVersion
		m.containers = info.Info.Containers
	} else {
		m.storage, m.cgroup, m.containers = "unknown", "/info did not answer", -1
	}
	return m
}
