package nvml

import (
	"context"
	"errors"
	"fmt"

	"github.com/ds01/ds01-pipe/internal/safefile"
)

// SimFileEnv names the environment variable that selects the simulator
// whatever the pipeline says (docs/gpu-simulation.md).
const SimFileEnv = "DS01_PIPE_NVML_SIM"

// maxSimFileSize bounds what Open reads: a simulation file describes a few
// GPUs, so anything this large is a wrong path, not a host.
const maxSimFileSize = 8 << 20

// Options selects and configures a backend.
type Options struct {
	Backend string // "auto" | "nvml" | "sim" | "none" ("" = auto)
	SimFile string // for "sim"
	// Trust is who may have written the simulation file (as root: root
	// and the pipeline's trusted groups).
	Trust safefile.Trust
}

// WithEnv applies the DS01_PIPE_NVML_SIM override: when lookup finds it set
// and non-empty, the result selects the simulator on that file. lookup is
// os.LookupEnv in production; taking it as an argument keeps the package free
// of hidden inputs and lets tests pass a map.
func (o Options) WithEnv(lookup func(string) (string, bool)) Options {
	if path, ok := lookup(SimFileEnv); ok && path != "" {
		return Options{Backend: BackendSim, SimFile: path, Trust: o.Trust}
	}
	return o
}

// Open builds the backend. Every error it returns is a configuration error.
//
//   - "sim" reads and validates the file now, so a bad file fails before
//     anything else happens; its errors are *SimFileError.
//   - "auto" (or "") is the real NVML when its library loads and initialises,
//     else backend "none" whose snapshots give the reason.
//   - "nvml" is the real NVML; if it cannot initialise, its snapshots report
//     Available=false with the reason, and the caller decides whether that
//     is fatal.
//   - "none" never has a GPU view.
func Open(opts Options) (Backend, error) {
	switch opts.Backend {
	case BackendAuto, "":
		b, reason := openNVML()
		if reason != "" {
			// Close is a no-op on a backend whose Init failed.
			_ = b.Close()
			return unavailable{name: BackendNone, reason: reason}, nil
		}
		return b, nil
	case BackendNVML:
		b, _ := openNVML()
		return b, nil
	case BackendSim:
		return openSim(opts.SimFile, opts.Trust)
	case BackendNone:
		return unavailable{name: BackendNone, reason: `GPU backend is "none"`}, nil
	default:
		return nil, fmt.Errorf("nvml: unknown GPU backend %q (want auto, nvml, sim or none)", opts.Backend)
	}
}

func openSim(path string, trust safefile.Trust) (Backend, error) {
	if path == "" {
		return nil, errors.New(`nvml: GPU backend "sim" needs a simulation file (sim_file)`)
	}
	// A FIFO or device is refused without blocking (validate must never
	// hang), and as root so is a file an untrusted user could write.
	data, err := safefile.Read(context.Background(), path, safefile.Options{MaxSize: maxSimFileSize, Trust: trust})
	if err != nil {
		var ie *safefile.InsecureError
		if errors.As(err, &ie) {
			return nil, err // says everything, with the path
		}
		return nil, &SimFileError{Path: path, Msg: safefile.Brief(err), Err: err}
	}
	snap, err := ParseSim(path, data)
	if err != nil {
		return nil, err
	}
	return &simBackend{snap: snap}, nil
}

// simBackend serves the snapshot parsed from a simulation file.
type simBackend struct {
	snap *Snapshot
}

func (s *simBackend) Name() string { return BackendSim }

func (s *simBackend) Snapshot(ctx context.Context) (*Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.snap.clone(), nil
}

func (s *simBackend) Close() error { return nil }
