// Package report renders the result of a run: the JSON document of the
// command-line contract and the table an admin reads.
package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"time"

	"github.com/ds01/ds01-pipe/pipeline"
)

// SchemaVersion is the version of the JSON document (docs/report.md). It
// changes only when a field is removed or changes meaning; new fields are
// added under the same version.
const SchemaVersion = 1

// Document is the JSON printed by `plan --format json` and `run --format json`.
// Field names are a public contract: extend, never rename.
type Document struct {
	SchemaVersion int         `json:"schema_version"`
	Pipeline      string      `json:"pipeline"`
	Mode          string      `json:"mode"`
	Now           string      `json:"now"`
	Containers    []Container `json:"containers"`
	GPUs          []GPU       `json:"gpus"`
	Summary       Summary     `json:"summary"`
}

// Container is one container's line of the report.
type Container struct {
	ID           string   `json:"id"`
	Name         string   `json:"name"`
	State        string   `json:"state"`
	Image        string   `json:"image,omitempty"`
	Created      *string  `json:"created"`
	StartedAt    *string  `json:"started_at"`
	FinishedAt   *string  `json:"finished_at"`
	Owner        string   `json:"owner"`
	OwnerSource  string   `json:"owner_source"`
	Type         string   `json:"type"`
	Exempt       bool     `json:"exempt"`
	ExemptReason string   `json:"exempt_reason"`
	GPUs         []string `json:"gpus"`
	GPUAll       bool     `json:"gpu_all,omitempty"`
	Verdict      string   `json:"verdict"`
	Reason       string   `json:"reason"`
	Rule         string   `json:"rule,omitempty"`
	Clock        string   `json:"clock,omitempty"`
	AgeS         *int64   `json:"age_s"`
	LimitS       *int64   `json:"limit_s"`
	LeftS        *int64   `json:"left_s"`
	Detail       string   `json:"detail,omitempty"`
	Outcome      string   `json:"outcome"`
	Error        string   `json:"error"`
	Warnings     []string `json:"warnings,omitempty"`

	// Lifecycle (docs/lifecycle.md): set where measured (lifecycle.go).
	IdleS      *int64   `json:"idle_s,omitempty"`
	RuntimeS   *int64   `json:"runtime_s,omitempty"`
	IdleStreak *int     `json:"idle_streak,omitempty"`
	Signals    []Signal `json:"signals,omitempty"`
	Notices    []string `json:"notices,omitempty"`
}

// GPU is one GPU or MIG slice of the reconciled view.
type GPU struct {
	UUID      string    `json:"uuid"`
	Index     int       `json:"index"`
	Name      string    `json:"name,omitempty"`
	MIGParent *string   `json:"mig_parent"`
	ClaimedBy []string  `json:"claimed_by"`
	Processes []Process `json:"processes"`
	Status    string    `json:"status"`
}

// Process is one compute process on a GPU.
type Process struct {
	PID           int     `json:"pid"`
	ContainerID   *string `json:"container_id"`
	UsedMemoryMiB uint64  `json:"used_memory_mib"`
	Killed        bool    `json:"killed,omitempty"`
	// FormerContainerID: an orphan that outlived its container, which the
	// engine confirmed gone.
	FormerContainerID string `json:"former_container_id,omitempty"`
	// Runtime: who holds a process that is no container of this engine.
	Runtime string `json:"runtime,omitempty"`
	// Unaccounted: why the process could not be explained.
	Unaccounted string `json:"unaccounted,omitempty"`
}

// Summary counts what the run decided and did.
type Summary struct {
	Containers  int            `json:"containers"`
	Verdicts    map[string]int `json:"verdicts"`
	Outcomes    map[string]int `json:"outcomes"`
	Remove      int            `json:"remove"`
	Removed     int            `json:"removed"`
	Failed      int            `json:"failed"`
	GPUStatuses map[string]int `json:"gpu_statuses"`
	NVMLChecked bool           `json:"nvml_checked"`
	NVML        string         `json:"nvml"`
	Stages      []StageTiming  `json:"stages"`
	DurationS   float64        `json:"duration_s"`
	Error       string         `json:"error,omitempty"`
}

// StageTiming is one stage's duration.
type StageTiming struct {
	Stage     string  `json:"stage"`
	DurationS float64 `json:"duration_s"`
	Error     string  `json:"error,omitempty"`
}

// Build turns a run's result into the report document.
func Build(env *pipeline.Env, res *pipeline.Result, runErr error) *Document {
	doc := &Document{
		SchemaVersion: SchemaVersion,
		Pipeline:      env.Pipeline,
		Mode:          string(env.Mode),
		Now:           env.Now.UTC().Format(time.RFC3339Nano),
		Containers:    []Container{},
		GPUs:          []GPU{},
		Summary: Summary{
			Verdicts:    map[string]int{},
			Outcomes:    map[string]int{},
			GPUStatuses: map[string]int{},
			Stages:      []StageTiming{},
		},
	}
	if res == nil || res.Batch == nil {
		if runErr != nil {
			doc.Summary.Error = runErr.Error()
		}
		return doc
	}
	b := res.Batch
	doc.Containers = make([]Container, 0, len(b.Records)) // one allocation: a large host has 10,000
	for _, rec := range b.Records {
		doc.Containers = append(doc.Containers, container(rec))
	}
	for _, g := range b.GPUs {
		doc.GPUs = append(doc.GPUs, gpu(g))
	}
	s := &doc.Summary
	// The run's one tally: the log's summary and the exit code count the same.
	t := res.Tally()
	s.Containers = t.Containers
	for a, n := range t.Verdicts {
		s.Verdicts[string(a)] = n
	}
	for o, n := range t.Outcomes {
		s.Outcomes[string(o)] = n
	}
	s.Remove, s.Removed, s.Failed = t.Remove, t.Removed, t.Failed
	for st, n := range t.GPUs {
		s.GPUStatuses[string(st)] = n
	}
	s.NVMLChecked = b.GPUChecked
	switch {
	case b.GPU == nil:
		s.NVML = "not queried"
	case b.GPU.Available:
		s.NVML = b.GPU.Backend
	default:
		s.NVML = "unavailable: " + b.GPU.Unavailable
	}
	for _, t := range res.Timings {
		st := StageTiming{Stage: t.Ref.String(), DurationS: seconds(t.Duration)}
		if t.Err != nil {
			st.Error = t.Err.Error()
		}
		s.Stages = append(s.Stages, st)
	}
	s.DurationS = seconds(res.Elapsed)
	if runErr != nil {
		s.Error = runErr.Error()
	}
	return doc
}

// WriteJSON writes the document as one indented JSON value, followed by a
// newline. The containers are encoded and written one at a time: the bytes
// are those of one json.Encoder with the same indent, but a host with
// 10,000 containers never holds its whole report (about 10 MiB, twice
// over while it is indented) in memory.
func (d *Document) WriteJSON(w io.Writer) error {
	rest := *d
	rest.Containers = nil
	head, err := json.MarshalIndent(&rest, "", "  ")
	if err != nil {
		return err
	}
	// The containers' place: a top-level key, and JSON strings hold no
	// raw newline, so it is found exactly once.
	const slot = "\n  \"containers\": null"
	i := bytes.Index(head, []byte(slot))
	if i < 0 {
		return errors.New("report: no containers key in the document")
	}
	i += len(slot) - len("null")
	bw := bufio.NewWriter(w)
	bw.Write(head[:i])
	switch {
	case d.Containers == nil:
		bw.WriteString("null")
	case len(d.Containers) == 0:
		bw.WriteString("[]")
	default:
		bw.WriteByte('[')
		for k := range d.Containers {
			if k > 0 {
				bw.WriteByte(',')
			}
			c, err := json.MarshalIndent(&d.Containers[k], "    ", "  ")
			if err != nil {
				return err
			}
			bw.WriteString("\n    ")
			bw.Write(c)
		}
		bw.WriteString("\n  ]")
	}
	bw.Write(head[i+len("null"):])
	bw.WriteByte('\n')
	// A bufio.Writer keeps its first write error and returns it here.
	return bw.Flush()
}

// ContainerOf is one record's line of the report, for stages that write
// reports of their own (report) or select records (filter) by the same keys.
func ContainerOf(rec *pipeline.Record) Container { return container(rec) }

func container(rec *pipeline.Record) Container {
	c := rec.Container
	v := rec.Verdict
	out := Container{
		ID:           c.ID,
		Name:         c.Name,
		State:        string(c.State),
		Image:        c.Image,
		Created:      timestamp(c.Created),
		StartedAt:    timestamp(c.StartedAt),
		FinishedAt:   timestamp(c.FinishedAt),
		Owner:        rec.Owner.Name,
		OwnerSource:  string(rec.Owner.Source),
		Type:         rec.Type,
		Exempt:       rec.Exempt,
		ExemptReason: rec.ExemptReason,
		GPUs:         rec.GPUUUIDs(),
		GPUAll:       rec.GPUAll,
		Verdict:      string(v.Action),
		Reason:       string(v.Reason),
		Rule:         v.Rule,
		Clock:        string(v.Clock),
		Detail:       v.Detail,
		Outcome:      string(rec.Outcome.Status),
		Error:        rec.Outcome.Error,
		Warnings:     rec.Warnings,
	}
	if v.Clock != "" {
		out.AgeS = secondsPtr(v.Age)
	}
	if v.HasLimit {
		out.LimitS = secondsPtr(v.Limit)
		left, _ := v.Left()
		out.LeftS = secondsPtr(left)
	}
	lifecycleFields(rec, &out)
	return out
}

func gpu(g pipeline.GPUReport) GPU {
	out := GPU{
		UUID:      g.UUID,
		Index:     g.Index,
		Name:      g.Name,
		ClaimedBy: append([]string{}, g.ClaimedBy...),
		Processes: []Process{},
		Status:    string(g.Status),
	}
	if g.MIGParent != "" {
		p := g.MIGParent
		out.MIGParent = &p
	}
	for _, p := range g.Processes {
		proc := Process{PID: p.PID, UsedMemoryMiB: p.UsedMemoryMiB, Killed: p.Killed,
			FormerContainerID: p.FormerContainerID, Runtime: p.Runtime, Unaccounted: p.Unaccounted}
		if p.ContainerID != "" {
			id := p.ContainerID
			proc.ContainerID = &id
		}
		out.Processes = append(out.Processes, proc)
	}
	return out
}

func timestamp(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339Nano)
	return &s
}

func secondsPtr(d time.Duration) *int64 {
	s := int64(math.Floor(d.Seconds()))
	return &s
}

func seconds(d time.Duration) float64 {
	return math.Round(d.Seconds()*1000) / 1000
}
