package release

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"

	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/dockerfacts"
	"github.com/ds01/ds01-pipe/pipeline/events"
)

// Detail keys of the stage's events.
const (
	detailContainer       = "container"
	detailGPUUUID         = "gpu_uuid"
	detailPID             = "pid"
	detailUsedMemory      = "used_memory_mib"
	detailFormerContainer = "former_container_id"
)

// view is the reconciled picture of one run: a row per device and slice.
type view struct {
	mode  Mode
	rows  []*row
	byKey map[string]*row // lower-case UUID -> row
	pids  map[int]*pidInfo
	log   logrus.FieldLogger
}

// row is one GPU or MIG slice, with what the stage learned about it.
type row struct {
	report       pipeline.GPUReport
	parentIndex  int // sort key: the device index (of the parent, for a slice)
	migIndex     int // sort key: -1 for a whole GPU
	known        bool
	processError string
	claimants    []*pipeline.Record
	procs        []*proc

	unrecorded  bool
	inUse       bool
	released    bool // a container about to be removed releases it
	orphans     int
	unaccounted int
	pending     bool // released once its containers are confirmed gone
	// holderUnknown says why a live container outside the batch could not
	// be read ("" when none): it may claim this GPU, which is then never
	// released.
	holderUnknown string
}

// releasable reports whether the row would be released once its
// containers are confirmed gone, by what the batch says: a container about
// to be removed releases it, and nothing of any other claimant, process
// or unexplained use remains.
func (r *row) releasable() bool {
	return r.released && !r.inUse && !r.unrecorded && r.unaccounted == 0
}

// proc is one compute process on a row.
type proc struct {
	pid  int
	mem  uint64
	info *pidInfo
	rec  *pipeline.Record // the batch record the process belongs to, if any
}

// kind is what the stage made of a PID.
type kind int

const (
	kindGone        kind = iota // exited since NVML listed it: dropped
	kindContainer               // a Docker container of this engine that exists
	kindRuntime                 // some other container: another runtime, engine or PID namespace
	kindOrphan                  // in no live container
	kindUnaccounted             // could not be explained
)

// pidInfo is what the stage knows about one PID, read once per run.
type pidInfo struct {
	kind      kind
	id        nvml.Identity
	container string // Docker container ID it belongs to (kindContainer, or named by its cgroup)
	former    string // the gone container its cgroup names (kindOrphan)
	runtime   string // who holds it (kindRuntime)
	why       string // kindUnaccounted: what could not be read
}

// membership answers "whose process is this?" for the PIDs of one run.
type membership struct {
	ctx    context.Context
	env    *pipeline.Env
	procfs nvml.ProcFS
	byID   map[string]*pipeline.Record
	live   map[int]*pipeline.Record // main PID of each live container
	// liveCgroups are the cgroup paths of each live container's main
	// process, read when first needed.
	liveCgroups map[*pipeline.Record][]string
	inspected   map[string]error // container ID -> the engine's answer (nil: exists)
	log         logrus.FieldLogger
}

func newMembership(ctx context.Context, env *pipeline.Env, procfs nvml.ProcFS, recs []*pipeline.Record, log logrus.FieldLogger) *membership {
	m := &membership{ctx: ctx, env: env, procfs: procfs, byID: map[string]*pipeline.Record{},
		live: map[int]*pipeline.Record{}, inspected: map[string]error{}, log: log}
	for _, rec := range recs {
		m.byID[rec.Container.ID] = rec
		if rec.Container.State.Live() && rec.Container.PID > 0 {
			m.live[rec.Container.PID] = rec
		}
	}
	return m
}

// classify maps one PID. Only a process with no sign of any live container
// is an orphan; one that cannot be read is unaccounted, never free.
func (m *membership) classify(pid int) *pidInfo {
	info := &pidInfo{}
	id, err := m.procfs.Identify(pid)
	info.id = id
	if errors.Is(err, nvml.ErrNoProcess) {
		info.kind = kindGone
		return info
	}
	// The container's own record comes first: its recorded PID, then its
	// cgroup, whatever the driver, version, parent or nesting.
	if rec := m.live[pid]; rec != nil {
		return m.inContainer(info, rec.Container.ID)
	}
	if rec := m.underLive(id.Cgroups); rec != nil {
		return m.inContainer(info, rec.Container.ID)
	}
	if id.ContainerID != "" {
		if _, ok := m.byID[id.ContainerID]; ok {
			return m.inContainer(info, id.ContainerID)
		}
	}
	if err != nil {
		info.kind, info.why = kindUnaccounted, err.Error()
		return info
	}
	if id.Runtime != "" {
		info.kind, info.runtime = kindRuntime, id.Runtime
		return info
	}
	if id.ContainerID != "" && m.env.Docker == nil {
		return m.inContainer(info, id.ContainerID) // nobody to confirm it gone
	}
	if id.ContainerID != "" {
		switch err := m.inspect(id.ContainerID); {
		case err == nil:
			return m.inContainer(info, id.ContainerID)
		case !cerrdefs.IsNotFound(err):
			info.kind, info.why = kindUnaccounted, fmt.Sprintf("its cgroup names container %.12s, which the engine could not confirm: %v", id.ContainerID, err)
			return info
		}
		// Gone from this engine; another engine or runtime may still run
		// it, which the checks below see.
	}
	switch {
	case id.Namespaced:
		info.kind, info.runtime = kindRuntime, "a container in another PID namespace"
	case id.Supervisor != "":
		info.kind, info.runtime = kindRuntime, "a container run by "+id.Supervisor
	default:
		info.kind, info.former = kindOrphan, id.ContainerID
		return info
	}
	info.container = id.ContainerID
	if id.ContainerID != "" {
		info.runtime += " (not this engine's)"
	}
	return info
}

func (m *membership) inContainer(info *pidInfo, id string) *pidInfo {
	info.kind, info.container = kindContainer, id
	return info
}

// underLive returns the live container of the batch whose cgroup holds one
// of paths (the same path, or below it in the same hierarchy).
func (m *membership) underLive(paths []string) *pipeline.Record {
	if len(paths) == 0 || len(m.live) == 0 {
		return nil
	}
	if m.liveCgroups == nil {
		m.liveCgroups = map[*pipeline.Record][]string{}
		for pid, rec := range m.live {
			paths, err := m.procfs.Cgroups(pid)
			if err != nil {
				m.log.WithField("container", rec.Container.Name).WithError(err).Debug("cannot read the cgroup of a live container")
				continue
			}
			m.liveCgroups[rec] = paths
		}
	}
	for rec, own := range m.liveCgroups {
		for _, c := range own {
			if c == "/" || strings.Contains(c, "..") {
				continue // no container owns the root (or a path outside this /proc's view)
			}
			for _, p := range paths {
				if p == c || strings.HasPrefix(p, c+"/") {
					return rec
				}
			}
		}
	}
	return nil
}

// inspect asks the engine about a container outside the batch, once per run.
func (m *membership) inspect(id string) error {
	if err, ok := m.inspected[id]; ok {
		return err
	}
	_, _, err := dockerfacts.Inspect(m.ctx, m.env, id)
	m.inspected[id] = err
	return err
}

// reconcile builds the view from the snapshot and the records, sets the
// records' NVML claims, gpu_busy verdicts and ReleaseGPUs, and the rows'
// statuses. It emits nothing and signals nothing.
func (s *Stage) reconcile(ctx context.Context, env *pipeline.Env, batch *pipeline.Batch, snap *nvml.Snapshot) *view {
	v := &view{mode: Mode(s.Mode), byKey: map[string]*row{}, pids: map[int]*pidInfo{}, log: logger(env)}
	for _, d := range snap.Devices {
		v.add(&row{
			report:       pipeline.GPUReport{UUID: d.UUID, Index: d.Index, Name: d.Name},
			parentIndex:  d.Index,
			migIndex:     -1,
			known:        true,
			processError: d.ProcessError,
		}, d.Processes)
		for _, m := range d.MIG {
			name := "MIG"
			if m.Profile != "" {
				name += " " + m.Profile
			}
			v.add(&row{
				report:       pipeline.GPUReport{UUID: m.UUID, Index: m.Index, MIGParent: d.UUID, Name: name},
				parentIndex:  d.Index,
				migIndex:     m.Index,
				known:        true,
				processError: m.ProcessError,
			}, m.Processes)
		}
	}
	// A device NVML could not read at all is missing from the snapshot
	// with a warning: a claim on a UUID it does not list may then be that
	// device, so it is unknown rather than absent.
	incomplete := len(snap.Warnings) > 0

	// Claims from Docker's records.
	for _, rec := range batch.Records {
		for _, uuid := range rec.GPUUUIDs() {
			r := v.byKey[strings.ToLower(uuid)]
			if r == nil {
				if !incomplete {
					rec.Warn(fmt.Sprintf("claims GPU %s which this host does not have", uuid))
					v.log.WithField("container", rec.Container.Name).WithField("gpu_uuid", uuid).Warn("container claims a GPU this host does not have")
					continue
				}
				r = &row{report: pipeline.GPUReport{UUID: uuid, Index: -1}, parentIndex: -1, migIndex: -1}
				v.add(r, nil)
			}
			if !slices.Contains(r.claimants, rec) {
				r.claimants = append(r.claimants, rec)
				r.report.ClaimedBy = append(r.report.ClaimedBy, rec.Container.ID)
			}
		}
	}

	// Processes: map each PID once, attribute it.
	m := newMembership(ctx, env, nvml.ProcFS{Root: s.ProcRoot}, batch.Records, v.log)
	busy := map[*pipeline.Record]*proc{}
	busyRow := map[*pipeline.Record]*row{}
	for _, r := range v.rows {
		for _, p := range r.procs {
			p.info = v.lookup(m, p.pid)
		}
		// Only a process whose exit is confirmed is dropped.
		r.procs = slices.DeleteFunc(r.procs, func(p *proc) bool { return p.info.kind == kindGone })
		for _, p := range r.procs {
			gp := pipeline.GPUProcess{PID: p.pid, UsedMemoryMiB: p.mem, ContainerID: p.info.container}
			switch p.info.kind {
			case kindOrphan:
				r.orphans++
				gp.FormerContainerID = p.info.former
			case kindUnaccounted:
				r.unaccounted++
				gp.Unaccounted = p.info.why
			case kindRuntime:
				r.inUse = true
				gp.Runtime = p.info.runtime
			case kindContainer:
				r.inUse = true
				p.rec = m.byID[p.info.container]
				if p.rec == nil {
					break // a container outside this pipeline's scope
				}
				if _, seen := busy[p.rec]; !seen {
					busy[p.rec], busyRow[p.rec] = p, r
				}
				if !v.covers(p.rec, r) {
					r.unrecorded = true
					if !hasClaim(p.rec, r.report.UUID) {
						p.rec.GPUs = append(p.rec.GPUs, pipeline.GPUClaim{UUID: r.report.UUID, Source: pipeline.ClaimNVML})
					}
				}
			}
			r.report.Processes = append(r.report.Processes, gp)
		}
	}

	// A container about to be removed whose processes still run on a GPU
	// is kept: removing it would leave them behind, or the container is
	// not as stopped as Docker said when discover looked.
	for _, rec := range batch.Records {
		p := busy[rec]
		if p == nil || !removable(rec) {
			continue
		}
		old := rec.Verdict
		rec.Verdict = pipeline.Verdict{
			Action: pipeline.ActionKeep, Reason: pipeline.ReasonGPUBusy,
			Rule: old.Rule, Clock: old.Clock, Age: old.Age, Limit: old.Limit, HasLimit: old.HasLimit,
			Detail: fmt.Sprintf("NVML shows PID %d still running on %s", p.pid, busyRow[rec].report.UUID),
		}
		v.log.WithField("container", rec.Container.Name).WithField("pid", p.pid).WithField("gpu_uuid", busyRow[rec].report.UUID).
			Warn("container kept: its process still runs on a GPU")
	}

	// Releases, and what the claims make of each row.
	for _, rec := range batch.Records {
		releasing := v.mode == ModeRelease && removable(rec)
		for _, uuid := range rec.GPUUUIDs() {
			r := v.byKey[strings.ToLower(uuid)]
			if hasSource(rec, uuid, pipeline.ClaimNVML) && !recorded(rec, uuid) {
				continue // seen by NVML, not allocated: nothing to release
			}
			if !releasing {
				if r != nil {
					r.inUse = true
				}
				continue
			}
			switch {
			case r == nil:
				// Claimed on a GPU this host does not have (warned above):
				// the allocation record goes with the container all the same.
				rec.ReleaseGPUs = append(rec.ReleaseGPUs, uuid)
			case !r.known:
				rec.ReleaseGPUs = append(rec.ReleaseGPUs, r.report.UUID)
				r.released = true
				rec.Warn(fmt.Sprintf("GPU %s released on Docker's records alone: NVML did not list it", uuid))
			default:
				rec.ReleaseGPUs = append(rec.ReleaseGPUs, r.report.UUID)
				r.released = true
				if r.processError != "" {
					rec.Warn(fmt.Sprintf("GPU %s released on Docker's records alone: NVML could not list its processes (%s)", r.report.UUID, r.processError))
				}
			}
		}
	}

	// Containers a filter left out still hold what they claim.
	for _, rec := range batch.Held {
		for _, uuid := range rec.GPUUUIDs() {
			if r := v.byKey[strings.ToLower(uuid)]; r != nil && recorded(rec, uuid) {
				r.inUse = true
			}
		}
	}

	// Live containers outside the batch (another discover scope) still
	// hold what they claim.
	v.holdOutside(ctx, env, batch, snap)

	for _, r := range v.rows {
		// A GPU is released only when nothing of a live container and
		// nothing unexplained remains on it; until its containers are
		// confirmed gone (SettleReleases) they still hold it.
		r.pending = r.releasable() && r.holderUnknown == ""
		switch {
		case r.orphans > 0:
			r.report.Status = pipeline.GPUOrphaned
		case r.unaccounted > 0:
			r.report.Status = pipeline.GPUUnaccounted
		case r.holderUnknown != "":
			r.report.Status = pipeline.GPUUnchecked // a live container outside the batch may claim it
		case !r.known:
			r.report.Status = pipeline.GPUUnchecked // Docker's word only, as without NVML
		case r.unrecorded:
			r.report.Status = pipeline.GPUUnrecorded
		case r.inUse, r.pending:
			r.report.Status = pipeline.GPUInUse
		case r.processError != "":
			r.report.Status = pipeline.GPUUnchecked // unknown is never free
		default:
			r.report.Status = pipeline.GPUFree
		}
	}
	return v
}

// holdOutside keeps in use every row about to be released that a live
// container outside the batch claims (see outsideHolders), naming it among
// the claimants, and leaves unchecked, never released, each such row when
// some live container's claims could not be read. Nothing is asked of the
// engine when no row is about to be released.
func (v *view) holdOutside(ctx context.Context, env *pipeline.Env, batch *pipeline.Batch, snap *nvml.Snapshot) {
	want := map[string]bool{}
	for _, r := range v.rows {
		if r.releasable() {
			want[strings.ToLower(r.report.UUID)] = true
		}
	}
	if len(want) == 0 {
		return
	}
	o := outsideHolders(ctx, env, batch, snap, want, v.log)
	var unknown []string
	for _, r := range v.rows {
		key := strings.ToLower(r.report.UUID)
		if !want[key] {
			continue
		}
		if hs := o.holders[key]; len(hs) > 0 {
			r.inUse = true
			for _, c := range hs {
				r.report.ClaimedBy = appendOnce(r.report.ClaimedBy, c.ID)
				v.log.WithField("container", c.Name).WithField("gpu_uuid", r.report.UUID).
					Info("GPU stays in use: a live container outside this pipeline's scope claims it")
			}
			continue
		}
		if o.unknown != "" {
			r.holderUnknown = o.unknown
			unknown = append(unknown, r.report.UUID)
		}
	}
	if len(unknown) > 0 {
		v.log.WithField("gpu_uuid", strings.Join(unknown, ",")).WithField("detail", o.unknown).
			Warn("GPU not reported released: a live container outside this pipeline's scope may claim it")
	}
}

func (v *view) add(r *row, procs []nvml.Process) {
	for _, p := range procs {
		r.procs = append(r.procs, &proc{pid: p.PID, mem: p.UsedMemoryMiB})
	}
	v.rows = append(v.rows, r)
	v.byKey[strings.ToLower(r.report.UUID)] = r
}

// lookup maps a PID, once per run.
func (v *view) lookup(m *membership, pid int) *pidInfo {
	if info, ok := v.pids[pid]; ok {
		return info
	}
	info := m.classify(pid)
	v.pids[pid] = info
	l := v.log.WithField("pid", pid)
	switch info.kind {
	case kindGone:
		l.Debug("GPU process exited since the snapshot")
	case kindUnaccounted:
		l.WithField("detail", info.why).Warn("GPU process not accounted for: the GPU counts as neither free nor released")
	case kindRuntime:
		l.WithField("runtime", info.runtime).Info("GPU process in a container of another runtime: in use, not an orphan")
	}
	return info
}

// covers reports whether rec has an allocation record for row r: a claim on
// its UUID, on the parent GPU of a slice, or a request for every GPU.
func (v *view) covers(rec *pipeline.Record, r *row) bool {
	if recorded(rec, r.report.UUID) {
		return true
	}
	return r.report.MIGParent != "" && recorded(rec, r.report.MIGParent)
}

// recorded reports whether a Docker record (not NVML) claims uuid.
func recorded(rec *pipeline.Record, uuid string) bool {
	for _, g := range rec.GPUs {
		if g.Source != pipeline.ClaimNVML && g.UUID != "" && strings.EqualFold(g.UUID, uuid) {
			return true
		}
	}
	return false
}

// enforced reports whether every Docker record of rec on uuid is enforced
// by the engine (see pipeline.GPUClaim.Enforced).
func enforced(rec *pipeline.Record, uuid string) bool {
	found := false
	for _, g := range rec.GPUs {
		if g.Source == pipeline.ClaimNVML || !strings.EqualFold(g.UUID, uuid) {
			continue
		}
		if !g.Enforced(&rec.Container) {
			return false
		}
		found = true
	}
	return found
}

func hasClaim(rec *pipeline.Record, uuid string) bool {
	for _, g := range rec.GPUs {
		if strings.EqualFold(g.UUID, uuid) {
			return true
		}
	}
	return false
}

func hasSource(rec *pipeline.Record, uuid string, src pipeline.ClaimSource) bool {
	for _, g := range rec.GPUs {
		if g.Source == src && strings.EqualFold(g.UUID, uuid) {
			return true
		}
	}
	return false
}

// emitReports queues a gpu.orphan event per orphaned process (with the
// container it outlived, if any) and a gpu.unrecorded event per process of
// a container with no allocation record for its device.
func (v *view) emitReports(env *pipeline.Env, batch *pipeline.Batch) {
	now := time.Now()
	for _, r := range v.rows {
		for _, p := range r.procs {
			switch {
			case p.info.kind == kindOrphan:
				l := v.log.WithField("gpu_uuid", r.report.UUID).WithField("pid", p.pid).WithField("used_memory_mib", p.mem)
				details := []events.Field{
					events.F(detailGPUUUID, r.report.UUID),
					events.F(detailPID, p.pid),
					events.F(detailUsedMemory, p.mem),
				}
				if p.info.former != "" {
					l = l.WithField(detailFormerContainer, p.info.former)
					details = append(details, events.F(detailFormerContainer, p.info.former))
					l.Warn("orphaned GPU process: it outlived its container, which the engine confirms is gone")
				} else {
					l.Warn("orphaned GPU process: it belongs to no container")
				}
				batch.Emit(events.Event{Time: now, Type: events.GPUOrphan, Source: env.Source(), Details: details})
			case p.rec != nil && !v.covers(p.rec, r):
				user := p.rec.Owner.Name
				if user == "" {
					user = pipeline.UnknownOwner
				}
				v.log.WithField("gpu_uuid", r.report.UUID).WithField("pid", p.pid).WithField("container", p.rec.Container.Name).
					Info("GPU used by a container with no allocation record for it")
				batch.Emit(events.Event{
					Time: now, Type: events.GPUUnrecorded, User: user, Source: env.Source(),
					Details: []events.Field{
						events.F(detailContainer, p.rec.Container.Name),
						events.F(detailGPUUUID, r.report.UUID),
						events.F(detailPID, p.pid),
					},
				})
			}
		}
	}
}

// plan is what the engine settles after the removals: the GPUs waiting on
// them, and the orphans (with the GPUs each runs on).
func (v *view) plan(s *Stage) *pipeline.ReleasePlan {
	plan := &pipeline.ReleasePlan{KillOrphans: s.KillOrphans, KillGrace: s.grace, Proc: nvml.ProcFS{Root: s.ProcRoot}}
	for _, r := range v.rows {
		if !r.pending {
			continue
		}
		p := &pipeline.PendingGPU{UUID: r.report.UUID, Killable: r.known && r.processError == ""}
		for _, rec := range r.claimants {
			if slices.ContainsFunc(rec.ReleaseGPUs, func(u string) bool { return strings.EqualFold(u, r.report.UUID) }) {
				p.Waiting = append(p.Waiting, rec)
				p.Killable = p.Killable && enforced(rec, r.report.UUID)
			}
		}
		plan.Pending = append(plan.Pending, p)
	}
	byPID := map[int]*pipeline.Orphan{}
	for _, r := range v.rows {
		for _, p := range r.procs {
			if p.info.kind != kindOrphan {
				continue
			}
			o := byPID[p.pid]
			if o == nil {
				o = &pipeline.Orphan{PID: p.pid, Identity: p.info.id, FormerContainer: p.info.former}
				byPID[p.pid] = o
				plan.Orphans = append(plan.Orphans, o)
			}
			if !slices.Contains(o.GPUs, r.report.UUID) {
				o.GPUs = append(o.GPUs, r.report.UUID)
			}
		}
	}
	return plan
}

// reports returns the rows sorted by device index, then MIG index; rows
// for UUIDs NVML did not list come last, by UUID.
func (v *view) reports() []pipeline.GPUReport {
	rows := slices.Clone(v.rows)
	slices.SortStableFunc(rows, func(a, b *row) int {
		if a.known != b.known {
			if a.known {
				return -1
			}
			return 1
		}
		if !a.known {
			return strings.Compare(a.report.UUID, b.report.UUID)
		}
		return cmp.Or(cmp.Compare(a.parentIndex, b.parentIndex), cmp.Compare(a.migIndex, b.migIndex))
	})
	out := make([]pipeline.GPUReport, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.report)
	}
	return out
}

func (v *view) logSummary(log logrus.FieldLogger) {
	counts := map[pipeline.GPUStatus]int{}
	pending := 0
	for _, r := range v.rows {
		counts[r.report.Status]++
		if r.pending {
			pending++
		}
	}
	log.WithField("to_release", pending).
		WithField("orphaned", counts[pipeline.GPUOrphaned]).
		WithField("unaccounted", counts[pipeline.GPUUnaccounted]).
		WithField("unrecorded", counts[pipeline.GPUUnrecorded]).
		WithField("in_use", counts[pipeline.GPUInUse]).
		WithField("free", counts[pipeline.GPUFree]).
		Debugf("reconciled %d GPUs and MIG slices", len(v.rows))
}
