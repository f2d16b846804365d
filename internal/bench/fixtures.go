package main

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/sourcegraph/conc/pool"
)

// Labels and names of every fixture. Nothing without labelBench=1 and a
// name starting with namePrefix is ever listed for removal.
const (
	labelBench = "ds01-pipe.bench"      // "1" on every fixture
	labelSet   = "ds01-pipe.bench.set"  // which set: setPlan, or a removal set (removalSets)
	labelKind  = "ds01-pipe.bench.kind" // the fixture's kind, checked on reuse
	labelMix   = "ds01-pipe.bench.mix"  // mixVersion, checked on reuse
	mixVersion = "1"                    // bump when the mix below changes

	namePrefix = "ds01bench-"
	planBase   = namePrefix + "plan-"

	setPlan = "plan"
	// removalSetPrefix starts the name of every removal set.
	removalSetPrefix = "rm-"
)

// removalSets names the two removal sets of one benchmark run: the one
// ds01-pipe run removes and the one docker container prune removes. Each
// run has its own, so that a container a wedged engine cannot remove does
// not block the next run.
func removalSets(runID string) (run, prune string) {
	return removalSetPrefix + "run-" + runID, removalSetPrefix + "prune-" + runID
}

// removalPrefix is the name prefix of a removal set.
func removalPrefix(set string) string {
	return namePrefix + strings.ReplaceAll(set, "-", "") + "-"
}

// kind is what a fixture container is and the state it must be in.
type kind string

const (
	kindCreated    kind = "created"     // created, never started, no GPU
	kindExited     kind = "exited"      // started, exited, no GPU
	kindCreatedGPU kind = "created-gpu" // a GPU device request: a stock daemon cannot start it
	kindExitedGPU  kind = "exited-gpu"  // exited, ds01.gpu.uuid(s) labels and NVIDIA_VISIBLE_DEVICES
	kindRunning    kind = "running"     // probe forever
)

// state is the Docker state a fixture of this kind is in once ready.
func (k kind) state() string {
	switch k {
	case kindExited, kindExitedGPU:
		return "exited"
	case kindRunning:
		return "running"
	}
	return "created"
}

// fixture is one container to create.
type fixture struct {
	name   string
	kind   kind
	labels map[string]string
	env    []string
	args   []string
	gpus   []string // device IDs of an nvidia device request
}

// Simulated GPUs: three whole GPUs and one in MIG mode with three slices.
// The GPU fixtures claim these by UUID, by index and by MIG index.
var (
	simGPUs = []string{
		"GPU-b0000000-0000-4000-8000-000000000000",
		"GPU-b0000000-0000-4000-8000-000000000001",
		"GPU-b0000000-0000-4000-8000-000000000002",
		"GPU-b0000000-0000-4000-8000-000000000003",
	}
	simMIGs = []string{ // slices of simGPUs[3]
		"MIG-b0000003-0000-4000-8000-000000000000",
		"MIG-b0000003-0000-4000-8000-000000000001",
		"MIG-b0000003-0000-4000-8000-000000000002",
	}
)

// Owners of the DS01 test policy (stages/decide/testdata/ds01): students,
// a researcher, an admin, users with overrides, and a sanitized address.
var (
	planUsers    = []string{"alice", "bob", "carol", "datasciencelab", "keeper", "frank", "h.baker@hertie-school.lan"}
	removalUsers = []string{"alice", "bob", "carol", "frank"} // every one with a finite hold
	// uids for <name>._.<uid>: root, nobody, the first user, and one no
	// passwd entry has (owner unknown).
	uids = []string{"0", "65534", "1000", "4242"}
)

// mixHash spreads an index over the mix's choices without correlating them.
func mixHash(i int) uint32 {
	x := uint32(i)*2654435761 + 0x9e3779b9
	x ^= x >> 15
	x *= 0x2c1b3c6d
	x ^= x >> 12
	return x
}

// tierInfix names the tier of a fixture so that the plan set of every size
// is one anchored name prefix, and the sets nest: with sorted sizes
// s1 < ... < sk, the containers of tier j (indices s(j-1) to sj-1) are named
// planBase + "1" x (k-j) + "0-" + index, and the set of size sj is every name
// starting with planBase + "1" x (k-j). One fixture set of the largest size
// serves every size.
func tierInfix(tier, tiers int) string {
	return strings.Repeat("1", tiers-1-tier) + "0-"
}

// planPrefix is the name prefix that selects the first sizes[tier] fixtures.
func planPrefix(sizes []int, size int) string {
	for t, s := range sizes {
		if s == size {
			return planBase + strings.Repeat("1", len(sizes)-1-t)
		}
	}
	panic(fmt.Sprintf("size %d is not among %v", size, sizes))
}

// planFixtures returns the plan set for sorted sizes: sizes[len-1]
// containers in a realistic mix.
//
//   - kinds: 25% created, 40% exited (half with exit code 1), 15% created
//     with a GPU device request (by UUID, index or MIG index; a stock daemon
//     cannot start them), 20% exited with ds01.gpu.uuid(s) labels and
//     NVIDIA_VISIBLE_DEVICES; and a few running (index 3, 253, 503, ...);
//   - owners, one rule each in turn: ds01.user, aime.mlc.USER,
//     devcontainer.local_folder, a <name>._.<uid> name, none;
//   - types: ds01.container_type on some DS01 ones, compose labels on some
//     unlabelled ones;
//   - 2% ds01.protected=true and 2% ds01.monitoring=true (exempt).
func planFixtures(sizes []int) []fixture {
	n := sizes[len(sizes)-1]
	out := make([]fixture, 0, n)
	tier := 0
	for i := range n {
		for i >= sizes[tier] {
			tier++
		}
		h := mixHash(i)
		f := fixture{labels: map[string]string{}}
		switch k := (h >> 20) % 20; {
		case i%250 == 3:
			f.kind = kindRunning
		case k < 5:
			f.kind = kindCreated
		case k < 13:
			f.kind = kindExited
		case k < 16:
			f.kind = kindCreatedGPU
		default:
			f.kind = kindExitedGPU
		}
		base := planBase + tierInfix(tier, len(sizes)) + fmt.Sprintf("%05d", i)
		f.name = withOwner(&f, base, h, planUsers)
		switch (h >> 16) % 50 {
		case 0:
			f.labels["ds01.protected"] = "true"
		case 1:
			f.labels["ds01.monitoring"] = "true"
		}
		withKind(&f, h)
		out = append(out, f)
	}
	return out
}

// removalFixtures returns a removal set: n exited containers that every
// policy rule lets go once their hold has passed (no exempt label, no owner
// with an indefinite hold), with the plan set's mix of owners and GPU records.
func removalFixtures(set string, n int) []fixture {
	out := make([]fixture, 0, n)
	for i := range n {
		h := mixHash(i)
		f := fixture{kind: kindExited, labels: map[string]string{}}
		if (h>>20)%5 == 0 {
			f.kind = kindExitedGPU
		}
		f.name = withOwner(&f, removalPrefix(set)+fmt.Sprintf("%05d", i), h, removalUsers)
		withKind(&f, h)
		out = append(out, f)
	}
	return out
}

// withOwner gives f its owner by one of DS01's rules and returns its name.
func withOwner(f *fixture, name string, h uint32, users []string) string {
	user := users[(h>>8)%uint32(len(users))]
	switch (h >> 4) % 5 {
	case 0:
		f.labels["ds01.user"] = user
		f.labels["ds01.managed"] = "true"
		if (h>>12)%2 == 0 {
			f.labels["ds01.container_type"] = "atomic"
		}
	case 1:
		f.labels["aime.mlc.USER"] = user
		f.labels["aime.mlc.NAME"] = "mlc-" + user
	case 2:
		f.labels["devcontainer.local_folder"] = "/home/" + user + "/thesis"
		f.labels["devcontainer.config_file"] = "/home/" + user + "/thesis/.devcontainer/devcontainer.json"
	case 3:
		name += "._." + uids[(h>>8)%uint32(len(uids))]
	default:
		if (h>>12)%3 == 0 {
			f.labels["com.docker.compose.project"] = "proj" + strconv.Itoa(int((h>>14)%7))
			f.labels["com.docker.compose.service"] = "worker"
		}
	}
	return name
}

// withKind sets the arguments and GPU records of f's kind.
func withKind(f *fixture, h uint32) {
	switch f.kind {
	case kindExited:
		f.args = []string{"exit", strconv.Itoa(int((h >> 24) % 2))}
	case kindExitedGPU:
		f.args = []string{"exit", "0"}
		var ids []string
		switch (h >> 24) % 4 {
		case 0:
			ids = []string{simGPUs[(h>>26)%3]}
		case 1:
			ids = []string{simGPUs[0], simGPUs[1]}
		default:
			ids = []string{simMIGs[(h>>26)%3]}
		}
		if len(ids) == 1 && (h>>28)%2 == 0 {
			f.labels["ds01.gpu.uuid"] = ids[0]
		} else {
			f.labels["ds01.gpu.uuids"] = strings.Join(ids, ",")
		}
		f.env = []string{"NVIDIA_VISIBLE_DEVICES=" + strings.Join(ids, ",")}
	case kindCreatedGPU:
		switch (h >> 24) % 3 {
		case 0:
			f.gpus = []string{simGPUs[(h>>26)%4]}
		case 1:
			f.gpus = []string{strconv.Itoa(int((h >> 26) % 3))} // an index, mapped through the snapshot
		default:
			f.gpus = []string{"3:" + strconv.Itoa(int((h>>26)%3))} // a MIG slice by index
		}
	case kindRunning:
		f.args = []string{"forever"}
	}
}

// fixtures creates and removes fixture containers.
type fixtures struct {
	cli     *client.Client
	image   string
	workers int
}

// setStats says what ensure did.
type setStats struct {
	want, reused, removed, created, started int
	took                                    time.Duration
}

func (s setStats) String() string {
	rate := ""
	if s.created > 0 {
		rate = fmt.Sprintf(" (%.1f containers/s, %d of them started)", float64(s.created)/s.took.Seconds(), s.started)
	}
	return fmt.Sprintf("%d wanted: %d reused, %d removed as stale, %d created in %s%s",
		s.want, s.reused, s.removed, s.created, s.took.Round(time.Millisecond), rate)
}

// ensure makes set hold exactly want: it keeps the fixtures that already
// exist with the right name, kind, mix version and state, removes the rest
// of the set, and creates what is missing on a pool. A pass that fails (a
// call that timed out on a busy engine) is followed by another, which
// reconciles what the failed one left.
func (fx *fixtures) ensure(ctx context.Context, set string, want []fixture) (setStats, error) {
	start := time.Now()
	var total setStats
	var err error
	for pass := range ensurePasses {
		var st setStats
		st, err = fx.reconcile(ctx, set, want)
		if pass == 0 {
			total.reused = st.reused
		}
		total.removed += st.removed
		total.created += st.created
		total.started += st.started
		if err == nil || ctx.Err() != nil || pass == ensurePasses-1 {
			break
		}
		// Give a struggling engine time (a containerd restart takes seconds).
		wait := time.Duration(pass+1) * 20 * time.Second
		progress("fixtures of set %s: pass %d failed, reconciling again in %s: %v", set, pass+1, wait, oneLine(err))
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	total.want = len(want)
	total.took = time.Since(start)
	return total, err
}

// reconcile is one pass of ensure.
func (fx *fixtures) reconcile(ctx context.Context, set string, want []fixture) (setStats, error) {
	st := setStats{want: len(want)}
	list, err := fx.list(ctx, set)
	if err != nil {
		return st, err
	}
	byName := make(map[string]*fixture, len(want))
	for i := range want {
		byName[want[i].name] = &want[i]
	}
	have := make(map[string]bool, len(list))
	var stale []string
	for _, c := range list {
		name := containerName(c)
		f := byName[name]
		if f == nil || c.Labels[labelKind] != string(f.kind) || c.Labels[labelMix] != mixVersion || string(c.State) != f.kind.state() {
			stale = append(stale, c.ID)
			continue
		}
		have[name] = true
	}
	st.reused = len(have)
	if err := fx.removeIDs(ctx, stale); err != nil {
		return st, err
	}
	st.removed = len(stale)

	// After a failure no new creation starts, but those under way finish:
	// a start cancelled half-way can leave Engine 20.10 with a container
	// it neither runs nor releases (see RESULTS.md).
	var created, started atomic.Int64
	var mu sync.Mutex
	var first error
	failed := func() bool { mu.Lock(); defer mu.Unlock(); return first != nil }
	p := pool.New().WithMaxGoroutines(fx.workers)
	for i := range want {
		if have[want[i].name] {
			continue
		}
		if ctx.Err() != nil || failed() {
			break
		}
		f := &want[i]
		p.Go(func() {
			s, err := fx.create(ctx, set, f)
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
				return
			}
			created.Add(1)
			if s {
				started.Add(1)
			}
		})
	}
	p.Wait()
	st.created, st.started = int(created.Load()), int(started.Load())
	if first == nil {
		first = ctx.Err()
	}
	return st, first
}

// Deadlines of fixture calls: generous, because a loaded 2-core engine
// can take tens of seconds to start a container.
const (
	fixtureCallTimeout  = 3 * time.Minute
	fixtureStartTimeout = 10 * time.Minute
	fixtureWaitTimeout  = 5 * time.Minute
	// ensurePasses bounds how often ensure reconciles a set after a failed
	// creation (a timeout on a busy engine) before it gives up.
	ensurePasses = 3
)

// create creates one fixture and brings it to its state; it reports whether
// it started the container.
func (fx *fixtures) create(ctx context.Context, set string, f *fixture) (bool, error) {
	labels := maps.Clone(f.labels)
	labels[labelBench] = "1"
	labels[labelSet] = set
	labels[labelKind] = string(f.kind)
	labels[labelMix] = mixVersion
	hc := &container.HostConfig{NetworkMode: "none"}
	if len(f.gpus) > 0 {
		hc.DeviceRequests = []container.DeviceRequest{{Driver: "nvidia", DeviceIDs: f.gpus, Capabilities: [][]string{{"gpu"}}}}
	}
	callCtx, cancel := context.WithTimeout(ctx, fixtureCallTimeout)
	res, err := fx.cli.ContainerCreate(callCtx, client.ContainerCreateOptions{
		Name:       f.name,
		Config:     &container.Config{Image: fx.image, Cmd: f.args, Env: f.env, Labels: labels},
		HostConfig: hc,
	})
	cancel()
	if err != nil {
		return false, fmt.Errorf("create %s: %w", f.name, err)
	}
	if f.kind.state() == "created" {
		return false, nil
	}
	// Not cancelled with ctx (see reconcile); bounded all the same.
	callCtx, cancel = context.WithTimeout(context.WithoutCancel(ctx), fixtureStartTimeout)
	_, err = fx.cli.ContainerStart(callCtx, res.ID, client.ContainerStartOptions{})
	cancel()
	if err != nil {
		return false, fmt.Errorf("start %s: %w", f.name, err)
	}
	if f.kind == kindRunning {
		return true, nil
	}
	waitCtx, cancel := context.WithTimeout(ctx, fixtureWaitTimeout)
	defer cancel()
	w := fx.cli.ContainerWait(waitCtx, res.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case <-w.Result:
		return true, nil
	case err := <-w.Error:
		return true, fmt.Errorf("wait for %s: %w", f.name, err)
	}
}

// list returns the containers of a set, running or not.
func (fx *fixtures) list(ctx context.Context, set string) ([]container.Summary, error) {
	callCtx, cancel := context.WithTimeout(ctx, fixtureCallTimeout)
	defer cancel()
	res, err := fx.cli.ContainerList(callCtx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", labelBench+"=1").Add("label", labelSet+"="+set),
	})
	if err != nil {
		return nil, fmt.Errorf("list set %s: %w", set, err)
	}
	var out []container.Summary
	for _, c := range res.Items {
		// Belt and braces: only what this program made.
		if c.Labels[labelBench] == "1" && c.Labels[labelSet] == set && strings.HasPrefix(containerName(c), namePrefix) {
			out = append(out, c)
		}
	}
	return out, nil
}

// removeOldRemovalSets removes what earlier runs left of their removal
// sets, as far as the engine lets it within a minute: a container that a
// wedged engine cannot remove is reported and left.
func (fx *fixtures) removeOldRemovalSets(ctx context.Context) {
	callCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	res, err := fx.cli.ContainerList(callCtx, client.ContainerListOptions{
		All: true, Filters: make(client.Filters).Add("label", labelBench+"=1"),
	})
	if err != nil {
		progress("listing old removal sets: %v", err)
		return
	}
	var ids []string
	for _, c := range res.Items {
		if c.Labels[labelBench] == "1" && strings.HasPrefix(c.Labels[labelSet], removalSetPrefix) && strings.HasPrefix(containerName(c), namePrefix) {
			ids = append(ids, c.ID)
		}
	}
	if len(ids) == 0 {
		return
	}
	if err := fx.removeIDs(callCtx, ids); err != nil {
		progress("removing %d containers left by earlier runs: %v", len(ids), err)
	} else {
		progress("removed %d containers left by earlier runs", len(ids))
	}
}

// count returns how many containers of a set exist.
func (fx *fixtures) count(ctx context.Context, set string) (int, error) {
	l, err := fx.list(ctx, set)
	return len(l), err
}

// removeSet force-removes every container of a set and says how many.
func (fx *fixtures) removeSet(ctx context.Context, set string) (int, error) {
	list, err := fx.list(ctx, set)
	if err != nil {
		return 0, err
	}
	ids := make([]string, 0, len(list))
	for _, c := range list {
		ids = append(ids, c.ID)
	}
	return len(ids), fx.removeIDs(ctx, ids)
}

func (fx *fixtures) removeIDs(ctx context.Context, ids []string) error {
	var mu sync.Mutex
	var errs []error
	p := pool.New().WithMaxGoroutines(8)
	for _, id := range ids {
		p.Go(func() {
			callCtx, cancel := context.WithTimeout(ctx, fixtureCallTimeout)
			defer cancel()
			_, err := fx.cli.ContainerRemove(callCtx, id, client.ContainerRemoveOptions{Force: true})
			if err != nil && !cerrdefs.IsNotFound(err) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	p.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d removals failed, first: %w", len(errs), len(ids), errs[0])
	}
	return nil
}

// runningPIDs returns the host PIDs of the set's running containers.
func (fx *fixtures) runningPIDs(ctx context.Context, set string) ([]int, error) {
	list, err := fx.list(ctx, set)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, c := range list {
		if c.State != "running" {
			continue
		}
		res, err := fx.cli.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
		if err != nil {
			return nil, fmt.Errorf("inspect %s: %w", containerName(c), err)
		}
		if res.Container.State != nil && res.Container.State.Pid > 0 {
			pids = append(pids, res.Container.State.Pid)
		}
	}
	return pids, nil
}

// containerName is a listed container's own name, without the "/".
func containerName(c container.Summary) string {
	for _, n := range c.Names {
		if strings.Count(n, "/") == 1 {
			return strings.TrimPrefix(n, "/")
		}
	}
	if len(c.Names) > 0 {
		return strings.TrimPrefix(c.Names[0], "/")
	}
	return ""
}
