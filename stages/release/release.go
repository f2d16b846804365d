// Package release implements the "release" stage: it reconciles three views
// of every GPU and MIG slice (what Docker records say is allocated, what
// NVML says is running, and what this run decided) into one report row per
// device, clears the GPUs of containers about to be removed for release once
// NVML confirms nothing of theirs still runs there, reports orphaned and
// unrecorded GPU use, and, only when a pipeline opts in, kills orphaned
// processes on the GPUs this run released, once their containers are gone.
//
// The stage never releases or signals anything itself: it lists the UUIDs
// on Record.ReleaseGPUs and leaves a plan on Batch.Release, and
// pipeline.SettleReleases (called by the remove stage after its removals)
// releases the GPUs of containers confirmed gone and only then signals the
// orphans on them.
package release

import (
	"context"
	_ "embed" // the sample stage block
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
)

// Kind is the stage kind as written in pipeline files.
const Kind = "release"

//go:embed sample.hcl
var sample string

// Mode says whether the stage may act.
type Mode string

// Modes of the stage.
const (
	// ModeRelease reconciles, clears GPUs for release and may kill orphans.
	ModeRelease Mode = "release"
	// ModeAudit reconciles and reports only: nothing is released or killed.
	ModeAudit Mode = "audit"
)

// Defaults.
const (
	DefaultKillGrace = 10 * time.Second
	DefaultProcRoot  = nvml.DefaultProcRoot
	// MaxKillGrace bounds kill_grace: a run has a deadline of a few minutes.
	MaxKillGrace = 5 * time.Minute
)

// Attribute names, for error messages.
const (
	attrMode        = "mode"
	attrKillOrphans = "kill_orphans"
	attrKillGrace   = "kill_grace"
	attrProcRoot    = "proc_root"
)

// Stage is the release stage.
type Stage struct {
	Mode        string `hcl:"mode,optional" doc:"\"release\": clear the GPUs of containers about to be removed for release once NVML shows nothing of theirs still running on them. \"audit\": report only; nothing is released or killed."`
	KillOrphans bool   `hcl:"kill_orphans,optional" doc:"Kill orphaned GPU processes (in no live container of any runtime, or left behind by a container the engine confirms gone) once every GPU they run on was released this run: after the removal that released it is confirmed, and only where every released claim is engine-enforced (a DeviceRequest, or NVIDIA_VISIBLE_DEVICES under the nvidia runtime; never a label). SIGTERM, then SIGKILL after kill_grace. Needs a later remove stage. Never in plan mode, never in audit mode. Elsewhere orphans are only reported."`
	KillGrace   string `hcl:"kill_grace,optional" doc:"How long an orphan may take to exit after SIGTERM before it gets SIGKILL (a Go duration, 0s to 5m)."`
	ProcRoot    string `hcl:"proc_root,optional" doc:"Where /proc is mounted (an absolute path). PIDs from NVML are mapped to containers through <proc_root>/<pid>/cgroup. Change it only for tests or a containerised ds01-pipe with the host's /proc mounted elsewhere."`

	grace time.Duration
}

// New returns a release stage with its defaults.
func New() *Stage {
	return &Stage{
		Mode:      string(ModeRelease),
		KillGrace: DefaultKillGrace.String(),
		ProcRoot:  DefaultProcRoot,
		grace:     DefaultKillGrace,
	}
}

func init() {
	pipeline.Register(pipeline.Spec{
		Kind: Kind,
		Summary: "Reconciles every GPU and MIG slice: Docker's allocation records (DeviceRequests, ds01.gpu.uuid(s) and slot labels, " +
			"NVIDIA_VISIBLE_DEVICES), the compute processes NVML lists (mapped to containers through /proc/<pid>/cgroup) and " +
			"this run's verdicts. A GPU held by a container about to be removed is cleared for release only when NVML shows " +
			"nothing of that container still running on it; otherwise the container is kept (reason gpu_busy). Processes in " +
			"no container are reported orphaned (gpu.orphan), GPU use with no allocation record is attributed to its " +
			"container and reported unrecorded (gpu.unrecorded). With kill_orphans, orphans on the GPUs this run released " +
			"are killed (SIGTERM, then SIGKILL) through a pidfd after re-checking /proc, by the engine once the removal " +
			"that released them is confirmed. A process that cannot be explained is unaccounted: its GPU is never free " +
			"or released. A GPU also claimed by a live container outside the batch (another discover scope) stays in use: " +
			"when a GPU would be released, the live containers are listed once and those outside the batch inspected; one " +
			"that cannot be read leaves the GPU unchecked, never released. Without NVML it releases by Docker records alone " +
			"and marks every GPU unchecked, never free.",
		Sample: sample,
		New:    func() pipeline.Stage { return New() },
		Contract: pipeline.Contract{
			Needs:  []pipeline.Field{pipeline.FieldFacts},
			Reads:  []pipeline.Field{pipeline.FieldOwner, pipeline.FieldExemption, pipeline.FieldVerdict, pipeline.FieldGPUClaims},
			Writes: []pipeline.Field{pipeline.FieldGPUView, pipeline.FieldRelease, pipeline.FieldEvents},
			// A container whose GPU is still busy is kept; GPU use with no
			// allocation record is attributed to its container.
			Amends: []pipeline.Field{pipeline.FieldVerdict, pipeline.FieldGPUClaims},
		},
		// Orphans are signalled only once the container whose GPU was
		// released is confirmed removed: that needs a removal after it.
		Configure: func(st pipeline.Stage, c pipeline.Contract) pipeline.Contract {
			if s, ok := st.(*Stage); ok && s.KillOrphans {
				c.NeedsLater = []pipeline.Field{pipeline.FieldRemoval}
				c.LaterBecause = "kill_orphans = true"
			}
			return c
		},
	})
}

// Init checks the configuration.
func (s *Stage) Init() error {
	switch Mode(s.Mode) {
	case ModeRelease, ModeAudit:
	default:
		return &pipeline.AttrError{Attr: attrMode, Err: fmt.Errorf("must be %q or %q, not %q", ModeRelease, ModeAudit, s.Mode)}
	}
	if s.KillOrphans && Mode(s.Mode) == ModeAudit {
		return &pipeline.AttrError{Attr: attrKillOrphans, Err: errors.New(`an audit never kills: drop kill_orphans or set mode = "release"`)}
	}
	d, err := pipeline.ParseDuration(s.KillGrace)
	if err != nil {
		return &pipeline.AttrError{Attr: attrKillGrace, Err: err}
	}
	if d < 0 || d > MaxKillGrace {
		return &pipeline.AttrError{Attr: attrKillGrace, Err: fmt.Errorf("must be between 0s and %v, got %v", MaxKillGrace, d)}
	}
	s.grace = d
	if s.ProcRoot == "" || !filepath.IsAbs(s.ProcRoot) {
		return &pipeline.AttrError{Attr: attrProcRoot, Err: fmt.Errorf("must be an absolute path such as %q, got %q", DefaultProcRoot, s.ProcRoot)}
	}
	return nil
}

// Process reconciles the batch's GPUs once, over the whole batch.
func (s *Stage) Process(ctx context.Context, env *pipeline.Env, batch *pipeline.Batch) error {
	log := logger(env)
	snap, err := snapshot(ctx, env, batch)
	if err != nil {
		return err
	}
	for _, w := range snap.Warnings {
		log.WithField("gpu_backend", snap.Backend).Warn("NVML: " + w)
	}
	if !snap.Available {
		reason := snap.Unavailable
		if reason == "" {
			reason = "no GPU view"
		}
		if env.GPURequired {
			return fmt.Errorf("GPU view required but unavailable: %s", reason)
		}
		log.Warnf("NVML cross-check not done: %s", reason)
		s.recordsOnly(ctx, env, batch, log)
		return ctx.Err()
	}

	v := s.reconcile(ctx, env, batch, snap)
	batch.GPUChecked = true
	if !env.Planning() {
		v.emitReports(env, batch)
	}
	// Nothing is released and nothing signalled here: the engine settles
	// the plan once the removals are done, for containers confirmed gone.
	if Mode(s.Mode) == ModeRelease {
		batch.Release = v.plan(s)
	}
	batch.GPUs = v.reports()
	v.logSummary(log)
	return ctx.Err()
}

// snapshot returns the run's GPU snapshot, taking it once if discover did not.
func snapshot(ctx context.Context, env *pipeline.Env, batch *pipeline.Batch) (*nvml.Snapshot, error) {
	if batch.GPU != nil {
		return batch.GPU, nil
	}
	if env.GPU == nil {
		batch.GPU = &nvml.Snapshot{Backend: nvml.BackendNone, Unavailable: "no GPU backend"}
		return batch.GPU, nil
	}
	callCtx, cancel := env.Call(ctx)
	defer cancel()
	snap, err := env.GPU.Snapshot(callCtx)
	if err != nil {
		return nil, fmt.Errorf("GPU snapshot: %w", err)
	}
	batch.GPU = snap
	return snap, nil
}

// removable reports whether the record is about to be removed: the only
// records whose GPUs this stage may clear for release.
func removable(rec *pipeline.Record) bool {
	return rec.Verdict.Action == pipeline.ActionRemove && rec.Candidate()
}

// recordsOnly is the view without NVML: one row per claimed UUID, status
// unchecked (never free: nothing says the device is idle), and the GPUs of
// containers about to be removed released on Docker's word alone, once
// they are confirmed gone. Nothing is ever signalled without NVML.
func (s *Stage) recordsOnly(ctx context.Context, env *pipeline.Env, batch *pipeline.Batch, log logrus.FieldLogger) {
	batch.GPUChecked = false
	release := Mode(s.Mode) == ModeRelease
	type state struct {
		report   pipeline.GPUReport
		waiting  []*pipeline.Record
		holdings bool
	}
	rows := map[string]*state{}
	for _, rec := range batch.Records {
		releasing := release && removable(rec)
		for _, uuid := range rec.GPUUUIDs() {
			key := strings.ToLower(uuid)
			r := rows[key]
			if r == nil {
				r = &state{report: pipeline.GPUReport{UUID: uuid, Index: -1}}
				rows[key] = r
			}
			r.report.ClaimedBy = appendOnce(r.report.ClaimedBy, rec.Container.ID)
			if releasing {
				rec.ReleaseGPUs = append(rec.ReleaseGPUs, uuid)
				r.waiting = append(r.waiting, rec)
			} else {
				r.holdings = true
			}
		}
		if releasing && len(rec.GPUs) > 0 {
			rec.Warn("GPUs released on Docker's records alone: NVML cross-check not done")
		}
	}
	// Containers a filter left out still hold what they claim.
	for _, rec := range batch.Held {
		for _, uuid := range rec.GPUUUIDs() {
			if r := rows[strings.ToLower(uuid)]; r != nil {
				r.holdings = true
			}
		}
	}
	// Live containers outside the batch (another discover scope) still
	// hold what they claim; when one could not be read, nothing waits to
	// be released.
	want := map[string]bool{}
	for key, r := range rows {
		if len(r.waiting) > 0 && !r.holdings {
			want[key] = true
		}
	}
	unknown := ""
	if len(want) > 0 {
		o := outsideHolders(ctx, env, batch, batch.GPU, want, log)
		for key := range want {
			r := rows[key]
			for _, c := range o.holders[key] {
				r.holdings = true
				r.report.ClaimedBy = appendOnce(r.report.ClaimedBy, c.ID)
				log.WithField("container", c.Name).WithField("gpu_uuid", r.report.UUID).
					Info("GPU stays in use: a live container outside this pipeline's scope claims it")
			}
		}
		if o.unknown != "" {
			unknown = o.unknown
			log.WithField("detail", unknown).Warn("no GPU reported released: a live container outside this pipeline's scope may claim it")
		}
	}

	plan := &pipeline.ReleasePlan{}
	batch.GPUs = make([]pipeline.GPUReport, 0, len(rows))
	for _, key := range slices.Sorted(maps.Keys(rows)) {
		r := rows[key]
		r.report.Status = pipeline.GPUUnchecked
		if len(r.waiting) > 0 && !r.holdings && unknown == "" {
			plan.Pending = append(plan.Pending, &pipeline.PendingGPU{UUID: r.report.UUID, Waiting: r.waiting})
		}
		batch.GPUs = append(batch.GPUs, r.report)
	}
	if release {
		batch.Release = plan
	}
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func logger(env *pipeline.Env) logrus.FieldLogger {
	if env.Log != nil {
		return env.Log.WithField("stage", Kind)
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}
