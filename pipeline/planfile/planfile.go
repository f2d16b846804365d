// Package planfile is the saved plan of `ds01-pipe plan --out FILE` and
// what `ds01-pipe apply FILE` does with it.
//
// A plan file records which containers a plan decided to remove, each with
// a fingerprint of the facts the decision rested on (state, start and
// finish times, restart count, name, a hash of the labels), and which
// pipeline file, with which variables and on which host, made it.
//
// Apply does not replay the plan. It runs the same pipeline again, in run
// mode and on the wall clock, with a gate after every stage (a runner
// hook, Gate.After) that lets a container keep a remove verdict only when the plan lists it
// and its fingerprint still matches. A plan can therefore only narrow what
// a run would do, never widen it: an edited or forged plan file cannot make
// apply remove anything the pipeline itself would not remove now, and the
// release and remove stages see the whole picture exactly as in a run (the
// NVML cross-check, the re-inspect just before each removal, the events).
package planfile

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ds01/ds01-pipe/internal/safefile"
	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/dockerfacts"
)

// FormatVersion is the version of the plan file format this package writes
// and reads.
const FormatVersion = 1

// FileMode is the plan file's permission: it names containers, owners and
// GPUs, and apply acts on it as root.
const FileMode = 0o600

// Plan is a saved plan.
type Plan struct {
	Format     int               `json:"format"`
	Pipeline   string            `json:"pipeline"`    // the pipeline block's name
	File       string            `json:"file"`        // absolute path of the pipeline file
	FileSHA256 string            `json:"file_sha256"` // of the pipeline file's content
	Vars       map[string]string `json:"vars"`        // --var values the plan was made with
	// VarsSHA256 pins Vars as FileSHA256 pins the file (see VarsHash): the
	// variables reconfigure the pipeline (its paths, its prefix), so they
	// are part of what the plan stands for.
	VarsSHA256 string      `json:"vars_sha256"`
	Created    time.Time   `json:"created"` // wall clock when the plan was written (UTC)
	Now        time.Time   `json:"now"`     // the instant ages were measured against (--now or the wall clock)
	Host       string      `json:"host"`
	Containers []Container `json:"containers"` // the containers with a remove verdict
}

// Container is one container the plan decided to remove.
type Container struct {
	ID          string      `json:"id"`
	Name        string      `json:"name"`
	Fingerprint Fingerprint `json:"fingerprint"`
	Verdict     string      `json:"verdict"`
	Reason      string      `json:"reason"`
	Owner       string      `json:"owner"`
	Type        string      `json:"type"`
	// GPUs are the GPUs and MIG slices the plan would release with the container.
	GPUs []string `json:"gpus_to_release"`
}

// Fingerprint is what must not have changed for apply to act on a
// container: the one fingerprint of Docker's facts (state, start and
// finish times, restart count, a hash of the labels), whose JSON keys are
// this file format's.
type Fingerprint = dockerfacts.Fingerprint

// VarsHash is the sha256 of a plan's variables, computed as the labels'
// hash of a fingerprint (dockerfacts.LabelsHash): independent of map
// order, each key and value quoted.
func VarsHash(vars map[string]string) string { return dockerfacts.LabelsHash(vars) }

// Source is what a plan was made from.
type Source struct {
	File string            // the pipeline file as given on the command line
	Text []byte            // its content, exactly as loaded
	Vars map[string]string // --var values
}

// Hash returns the sha256 of a pipeline file's content, as plans record it.
func Hash(text []byte) string {
	sum := sha256.Sum256(text)
	return hex.EncodeToString(sum[:])
}

// New builds the plan of a finished plan-mode run: every record with a
// remove verdict that a run would act on. created is the wall clock.
func New(env *pipeline.Env, batch *pipeline.Batch, src Source, created time.Time) (*Plan, error) {
	abs, err := filepath.Abs(src.File)
	if err != nil {
		return nil, fmt.Errorf("pipeline file path: %w", err)
	}
	p := &Plan{
		Format:     FormatVersion,
		Pipeline:   env.Pipeline,
		File:       abs,
		FileSHA256: Hash(src.Text),
		Vars:       src.Vars,
		Created:    created.UTC(),
		Now:        env.Now.UTC(),
		Host:       env.Host,
		Containers: []Container{},
	}
	if p.Vars == nil {
		p.Vars = map[string]string{}
	}
	p.VarsSHA256 = VarsHash(p.Vars)
	for _, rec := range batch.Records {
		if !planned(rec) {
			continue
		}
		gpus := append([]string{}, rec.ReleaseGPUs...)
		p.Containers = append(p.Containers, Container{
			ID:          rec.Container.ID,
			Name:        rec.Container.Name,
			Fingerprint: dockerfacts.Of(rec.Container),
			Verdict:     string(rec.Verdict.Action),
			Reason:      string(rec.Verdict.Reason),
			Owner:       rec.Owner.Name,
			Type:        rec.Type,
			GPUs:        gpus,
		})
	}
	return p, nil
}

// Write writes the plan to path atomically (a temporary file in the same
// directory, synced, then renamed over path) with mode 0600, so a reader
// never sees half a plan and nobody but root reads it.
func (p *Plan) Write(path string) error {
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("plan file: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	// CreateTemp makes the file 0600 already; Chmod says so explicitly and
	// is not subject to the umask.
	if err := tmp.Chmod(FileMode); err != nil {
		return fmt.Errorf("plan file: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("plan file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("plan file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("plan file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("plan file: %w", err)
	}
	done = true
	return nil
}

// InvalidError says a plan file cannot be used: it does not parse, is too
// old, was made elsewhere or by another pipeline, or its pipeline file
// changed. Apply exits 78 on it and touches nothing.
type InvalidError struct {
	Path   string
	Reason string
}

func (e *InvalidError) Error() string { return fmt.Sprintf("plan %s: %s", e.Path, e.Reason) }

func invalid(path, format string, args ...any) error {
	return &InvalidError{Path: path, Reason: fmt.Sprintf(format, args...)}
}

// MaxFileSize bounds a plan file: 10,000 planned containers take about
// 6 MB.
const MaxFileSize = 64 << 20

// Read reads and checks the syntax of a plan file, without a trust check:
// see ReadTrusted.
func Read(path string) (*Plan, error) {
	return ReadTrusted(path, safefile.Trust{})
}

// ReadTrusted reads a plan file through the one hardened reader (a regular
// file only, opened without blocking, at most MaxFileSize bytes) and checks
// its syntax. With trust.Enforce (apply as root), a plan that an untrusted
// user could have written, or that sits where one could replace it, is
// refused: the plan names the pipeline file and the variables apply runs
// with, as root.
func ReadTrusted(path string, trust safefile.Trust) (*Plan, error) {
	data, err := safefile.Read(context.Background(), path, safefile.Options{MaxSize: MaxFileSize, Trust: trust})
	if err != nil {
		return nil, invalid(path, "%v", err)
	}
	var p Plan
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&p); err != nil {
		return nil, invalid(path, "not a ds01-pipe plan file: %v", err)
	}
	switch {
	case p.Format != FormatVersion:
		return nil, invalid(path, "plan format %d; this ds01-pipe reads format %d", p.Format, FormatVersion)
	case p.Pipeline == "" || p.File == "" || p.FileSHA256 == "" || p.VarsSHA256 == "" || p.Created.IsZero():
		return nil, invalid(path, "not a ds01-pipe plan file: pipeline, file, file_sha256, vars_sha256 and created are required")
	case VarsHash(p.Vars) != p.VarsSHA256:
		return nil, invalid(path, "its vars changed since the plan was made (sha256 %s, plan has %s); make a new plan",
			short(VarsHash(p.Vars)), short(p.VarsSHA256))
	}
	for i, c := range p.Containers {
		if c.ID == "" {
			return nil, invalid(path, "container %d has no id", i)
		}
	}
	return &p, nil
}

// CheckAge refuses a plan older than maxAge at now, or one made in the
// future (a clock that jumped).
func (p *Plan) CheckAge(path string, now time.Time, maxAge time.Duration) error {
	age := now.Sub(p.Created)
	const skew = time.Minute
	switch {
	case age < -skew:
		return invalid(path, "made at %s, in the future of this host's clock (%s)", p.Created.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case maxAge > 0 && age > maxAge:
		return invalid(path, "made %s ago, at %s: older than --max-age %s; make a new plan",
			age.Round(time.Second), p.Created.Format(time.RFC3339), maxAge)
	}
	return nil
}

// CheckSource refuses a plan made on another host, by another pipeline, or
// from a pipeline file whose content changed since. name is the pipeline
// name in the file now; sum its content's sha256 now.
func (p *Plan) CheckSource(path, host, name, sum string) error {
	switch {
	case p.Host != "" && host != "" && p.Host != host:
		return invalid(path, "made on host %q, not on this host (%q): container IDs are per host", p.Host, host)
	case name != p.Pipeline:
		return invalid(path, "made by another pipeline: the plan is pipeline %q's, but %s now holds pipeline %q", p.Pipeline, p.File, name)
	case sum != p.FileSHA256:
		return invalid(path, "the pipeline file %s changed since the plan was made (sha256 %s, plan has %s); make a new plan",
			p.File, short(sum), short(p.FileSHA256))
	}
	return nil
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}

// IsInvalid reports whether err says a plan file cannot be used.
func IsInvalid(err error) bool {
	var ie *InvalidError
	return errors.As(err, &ie)
}
