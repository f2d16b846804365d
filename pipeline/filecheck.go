package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/hashicorp/hcl/v2"

	"github.com/ds01/ds01-pipe/internal/safefile"
	"github.com/ds01/ds01-pipe/policy"
)

// Every file the run reads goes through internal/safefile: regular files
// only, opened without blocking, bounded in size, and, as root, trusted
// (owned by root, writable only by root, root's group or a group named in
// the pipeline's trusted_groups, and so is every folder and link on the
// way). This file holds the engine's side: which trust each file gets, and
// how stages that read files at run time learn it.
//
// The pipeline file is the root of trust: it is checked with root's group
// alone (its trusted_groups cannot vouch for the file that names them).
// Everything it names (policy files, groups, the simulation file, the
// events file decide reads) gets the pipeline's trust.

// InsecureFilesFlag is the command-line flag that turns the check off.
const InsecureFilesFlag = safefile.OverrideFlag

// InsecureFileError says a configuration file could have been written by a
// user other than root.
type InsecureFileError = safefile.InsecureError

// CheckFilePermissions checks that only root (or root's group) could have
// written path: every folder and symbolic link on the way to it and the
// file itself are owned by uid 0 and not writable by others, nor by a
// group other than gid 0. A path that does not exist gives an error that
// errors.Is(err, fs.ErrNotExist), so callers can treat a missing optional
// file as they always do.
//
// The path must name a regular file or a folder: a FIFO or a device would
// hang or flood a read.
func CheckFilePermissions(path string) error {
	fi, err := safefile.Check(path, safefile.Trust{Enforce: true})
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() && !fi.IsDir() {
		return &InsecureFileError{Path: path, Reason: fmt.Sprintf("is not a regular file (%s)", fi.Mode().Type())}
	}
	return nil
}

// FileTrust returns the trust rule of a pipeline: enforced when strict,
// with the groups named in trusted_groups that this host knows. A group
// the host does not know is simply not trusted: a pipeline shared between
// hosts may name DS01's ds-admin where there is none.
func FileTrust(strict bool, trustedGroups []string) safefile.Trust {
	if !strict {
		return safefile.Trust{}
	}
	groups, _ := safefile.ResolveGroups(trustedGroups)
	return safefile.Trust{Enforce: true, Groups: groups}
}

// FileSettings are the facts about files that a stage reading files during
// a run needs from the rest of its pipeline.
type FileSettings struct {
	// Trust is who may have written a file the run reads.
	Trust safefile.Trust
	// EventsFile is the events file of the pipeline's first events writer
	// (the log stage), "" when it writes none; HasEventsWriter says
	// whether there is one at all.
	EventsFile      string
	HasEventsWriter bool
}

// FileUser is implemented by a stage that reads files during a run (decide
// reads idle kills). The loader calls UseFiles once every stage is decoded.
type FileUser interface {
	UseFiles(FileSettings)
}

// wireFiles hands every FileUser the pipeline's trust and events file.
func wireFiles(stages []StageInstance, trust safefile.Trust) {
	fs := FileSettings{Trust: trust}
	for _, st := range stages {
		// The events writer (log) names its file with EventsPath, "" for none.
		if w, ok := st.Stage.(interface{ EventsPath() string }); ok {
			fs.EventsFile, fs.HasEventsWriter = w.EventsPath(), true
			break
		}
	}
	for _, st := range stages {
		if u, ok := st.Stage.(FileUser); ok {
			u.UseFiles(fs)
		}
	}
}

// checkOptional checks path (root's group only) when it exists.
func checkOptional(path string) error {
	if path == "" {
		return nil
	}
	err := CheckFilePermissions(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // the loader that reads it says what a missing file means
	}
	return err
}

// loadPolicy reads the policy files with the pipeline's trust and turns a
// failure into a diagnostic at the policy block.
func loadPolicy(files policy.Files, trust safefile.Trust, at hcl.Range) (*policy.Model, hcl.Diagnostics) {
	model, err := policy.LoadTrusted(files, trust)
	if err == nil {
		return model, nil
	}
	summary := "Invalid policy file"
	var ie *safefile.InsecureError
	if errors.As(err, &ie) {
		summary = "Insecure policy file"
	}
	return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: summary, Detail: err.Error(), Subject: at.Ptr()}}
}

// readLimited reads a regular file of at most limit bytes, without
// blocking on a FIFO and without a trust check (the caller made it).
func readLimited(path string, limit int64) ([]byte, error) {
	return safefile.Read(context.Background(), path, safefile.Options{MaxSize: limit})
}

// simTrust is the trust of the GPU simulation file: the pipeline's.
func simTrust(cfg GPUConfig) safefile.Trust {
	t := cfg.Trust
	if cfg.StrictFiles {
		t.Enforce = true
	}
	return t
}

// gpuConfigError turns an error opening the GPU back end into a
// configuration error that says whether the file was untrusted or bad.
func gpuConfigError(err error) error {
	var ie *safefile.InsecureError
	if errors.As(err, &ie) {
		return &ConfigError{Diags: hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Insecure GPU simulation file", Detail: err.Error()}}}
	}
	return &ConfigError{Diags: simDiag(err)}
}
