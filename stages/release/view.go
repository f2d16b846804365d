package release

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ds01/ds01-pipe/nvml"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/events"
)

// Detail keys and values of the stage's events.
const (
	detailContainer       = "container"
	detailGPUUUID         = "gpu_uuid"
	detailPID             = "pid"
	detailUsedMemory      = "used_memory_mib"
	detailStatus          = "status"
	detailKilledProcesses = "killed_processes"

	// StatusCleaned is DS01's gpu.health_check status once every orphan on
	// a GPU is gone.
	StatusCleaned = "cleaned"
	// StatusKillFailed is the gpu.health_check status when an orphan
	// survived (or could not safely be signalled).
	StatusKillFailed = "kill_failed"
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

	unrecorded bool
	inUse      bool
	released   bool
	orphans    int
	base       pipeline.GPUStatus // the status orphans aside
}

// proc is one compute process on a row.
type proc struct {
	pid  int
	mem  uint64
	info *pidInfo
	rec  *pipeline.Record // the batch record the process belongs to, if any
	// index of the process in the row's report
	at int
}

// pidInfo is what /proc says about one PID, read once per run.
type pidInfo struct {
	gone      bool   // the process exited since NVML listed it
	container string // Docker container ID, "" for none
	foreign   string // a non-Docker container runtime seen in its cgroup
	err       error  // the mapping failed: the owner is unknown
	start     uint64 // start time in clock ticks since boot (/proc/<pid>/stat)
	hasStart  bool
}

// orphan reports whether the process is known to belong to no container.
func (p *pidInfo) orphan() bool {
	return p.err == nil && !p.gone && p.container == "" && p.foreign == ""
}

// reconcile builds the view from the snapshot and the records, sets the
// records' NVML claims, gpu_busy verdicts and ReleaseGPUs, and the rows'
// statuses. It emits nothing and kills nothing.
func (s *Stage) reconcile(env *pipeline.Env, batch *pipeline.Batch, snap *nvml.Snapshot) *view {
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
	procfs := nvml.ProcFS{Root: s.ProcRoot}
	byID := make(map[string]*pipeline.Record, len(batch.Records))
	for _, rec := range batch.Records {
		byID[rec.Container.ID] = rec
	}
	busy := map[*pipeline.Record]*proc{}
	busyRow := map[*pipeline.Record]*row{}
	for _, r := range v.rows {
		for _, p := range r.procs {
			p.info = v.lookup(procfs, s.ProcRoot, p.pid)
		}
		r.procs = slices.DeleteFunc(r.procs, func(p *proc) bool { return p.info.gone })
		for i, p := range r.procs {
			p.at = i
			r.report.Processes = append(r.report.Processes, pipeline.GPUProcess{PID: p.pid, ContainerID: p.info.container, UsedMemoryMiB: p.mem})
			switch {
			case p.info.orphan():
				r.orphans++
			case p.info.container != "":
				p.rec = byID[p.info.container]
				r.inUse = true
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
			default:
				// A foreign runtime's container, or a PID whose owner could
				// not be read: in use by someone, never an orphan.
				r.inUse = true
			}
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

	for _, r := range v.rows {
		r.base = pipeline.GPUFree
		switch {
		case !r.known:
			// Claimed, but NVML could not list it: Docker's word only, as
			// without NVML.
			r.base = pipeline.GPUUnchecked
			if r.released && !r.inUse {
				r.base = pipeline.GPUReleased
			}
		case r.unrecorded:
			r.base = pipeline.GPUUnrecorded
		case r.inUse:
			r.base = pipeline.GPUInUse
		case r.released:
			r.base = pipeline.GPUReleased
		}
		if r.base == pipeline.GPUFree && r.processError != "" {
			r.base = pipeline.GPUUnchecked // unknown is never free
		}
		r.report.Status = r.base
		if r.orphans > 0 {
			r.report.Status = pipeline.GPUOrphaned
		}
	}
	return v
}

func (v *view) add(r *row, procs []nvml.Process) {
	for _, p := range procs {
		r.procs = append(r.procs, &proc{pid: p.PID, mem: p.UsedMemoryMiB})
	}
	v.rows = append(v.rows, r)
	v.byKey[strings.ToLower(r.report.UUID)] = r
}

// lookup maps a PID to its container, once per run.
func (v *view) lookup(procfs nvml.ProcFS, root string, pid int) *pidInfo {
	if info, ok := v.pids[pid]; ok {
		return info
	}
	info := &pidInfo{}
	v.pids[pid] = info
	id, err := procfs.ContainerID(pid)
	switch {
	case errors.Is(err, nvml.ErrNoProcess):
		info.gone = true
		v.log.WithField("pid", pid).Debug("GPU process exited since the snapshot")
		return info
	case err != nil:
		info.err = err
		v.log.WithField("pid", pid).WithError(err).Warn("cannot map a GPU process to a container; counted as in use")
		return info
	}
	info.container = id
	if id == "" {
		// Read what a kill would need to re-check, now, close to the
		// snapshot: a runtime other than Docker, and the start time that
		// tells this process from a later one with the same PID.
		if text, err := readCgroup(root, pid); err == nil {
			info.foreign = foreignRuntime(text)
		}
		if info.foreign != "" {
			v.log.WithField("pid", pid).WithField("runtime", info.foreign).Info("GPU process in a non-Docker container: not an orphan")
		}
		info.start, info.hasStart = startTime(root, pid)
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
		if g.Source != pipeline.ClaimNVML && strings.EqualFold(g.UUID, uuid) {
			return true
		}
	}
	return false
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

// emitReports queues a gpu.orphan event per orphaned process and a
// gpu.unrecorded event per process of a container with no allocation
// record for its device.
func (v *view) emitReports(env *pipeline.Env, batch *pipeline.Batch) {
	now := time.Now()
	for _, r := range v.rows {
		for _, p := range r.procs {
			switch {
			case p.info.orphan():
				v.log.WithField("gpu_uuid", r.report.UUID).WithField("pid", p.pid).WithField("used_memory_mib", p.mem).
					Warn("orphaned GPU process: it belongs to no container")
				batch.Emit(events.Event{
					Time: now, Type: events.GPUOrphan, Source: env.Source(),
					Details: []events.Field{
						events.F(detailGPUUUID, r.report.UUID),
						events.F(detailPID, p.pid),
						events.F(detailUsedMemory, p.mem),
					},
				})
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

// killTarget is one orphan the stage may kill.
type killTarget struct {
	row  *row
	proc *proc

	signalled bool // SIGTERM or SIGKILL was delivered
	exited    bool // the process is gone
	reason    string
}

// killTargets lists the orphans on the GPUs this run released (the
// status they would have, orphans aside, is released) and whose processes
// NVML could read. Orphans anywhere else are reported, never killed, and so
// is an orphan that also runs on such another GPU.
func (v *view) killTargets() []*killTarget {
	eligible := func(r *row) bool {
		return r.base == pipeline.GPUReleased && r.known && r.processError == ""
	}
	elsewhere := map[int]string{} // orphan PID -> a GPU where it must not be killed
	for _, r := range v.rows {
		if eligible(r) {
			continue
		}
		for _, p := range r.procs {
			if p.info.orphan() {
				elsewhere[p.pid] = r.report.UUID
			}
		}
	}
	var out []*killTarget
	for _, r := range v.rows {
		if !eligible(r) || r.orphans == 0 {
			continue
		}
		for _, p := range r.procs {
			if !p.info.orphan() {
				continue
			}
			if uuid, ok := elsewhere[p.pid]; ok {
				v.log.WithField("pid", p.pid).WithField("gpu_uuid", r.report.UUID).
					Infof("orphaned GPU process not killed: it also runs on %s, which this run did not release", uuid)
				continue
			}
			out = append(out, &killTarget{row: r, proc: p})
		}
	}
	return out
}

// afterKills marks the killed processes, queues one gpu.health_check per
// GPU, and gives a GPU whose orphans are all gone its status back.
func (v *view) afterKills(env *pipeline.Env, batch *pipeline.Batch, targets []*killTarget) {
	type tally struct{ killed, left int }
	perRow := map[*row]*tally{}
	var order []*row
	for _, t := range targets {
		tl := perRow[t.row]
		if tl == nil {
			tl = &tally{}
			perRow[t.row] = tl
			order = append(order, t.row)
		}
		if t.exited {
			if t.signalled {
				tl.killed++
				t.row.report.Processes[t.proc.at].Killed = true
			}
			continue
		}
		tl.left++
	}
	now := time.Now()
	for _, r := range order {
		tl := perRow[r]
		status := StatusCleaned
		if tl.left > 0 {
			status = StatusKillFailed
		} else {
			r.report.Status = r.base
		}
		batch.Emit(events.Event{
			Time: now, Type: events.GPUHealthCheck, Source: env.Source(),
			Details: []events.Field{
				events.F(detailGPUUUID, r.report.UUID),
				events.F(detailStatus, status),
				events.F(detailKilledProcesses, tl.killed),
			},
		})
	}
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
	for _, r := range v.rows {
		counts[r.report.Status]++
	}
	log.WithField("released", counts[pipeline.GPUReleased]).
		WithField("orphaned", counts[pipeline.GPUOrphaned]).
		WithField("unrecorded", counts[pipeline.GPUUnrecorded]).
		WithField("in_use", counts[pipeline.GPUInUse]).
		WithField("free", counts[pipeline.GPUFree]).
		Debugf("reconciled %d GPUs and MIG slices", len(v.rows))
}
