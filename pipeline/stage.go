package pipeline

import (
	"context"
	"fmt"
	"sort"
	"sync"
)

// Stage is one step of a pipeline. It runs once per run over the whole
// batch: some stages need the whole picture (release reconciles every GPU),
// and per-container work inside a stage runs on a bounded pool (ForEach).
//
// A stage reports per-container problems on the record (Warn, Outcome) and
// returns an error only when the run as a whole cannot go on.
type Stage interface {
	Process(ctx context.Context, env *Env, batch *Batch) error
}

// Initializer is implemented by stages that check or prepare their
// configuration after it was decoded. An error wrapped in an *AttrError
// points the diagnostic at that attribute.
type Initializer interface {
	Init() error
}

// Spec describes a stage kind for the registry, the loader and `ds01-pipe stages`.
type Spec struct {
	Kind    string
	Summary string // one paragraph, shown by `ds01-pipe stages`
	Sample  string // an example stage block in HCL
	// New returns a stage with its defaults set. Its exported fields with
	// `hcl:"..."` tags are its attributes; an optional `doc:"..."` tag
	// documents each one.
	New func() Stage
	// Contract declares what the kind reads and writes on the record and
	// where it may stand in a pipeline; the loader checks every pipeline's
	// order against it.
	Contract Contract
	// Configure, when set, refines Contract for one configured stage of
	// the kind (release with kill_orphans needs a later remove). It gets
	// a stage New returned, with its attributes decoded.
	Configure func(st Stage, c Contract) Contract
	// Witness, when set, is what the kind's witness process does (see
	// StartWitness): record what a run that died had asked of the engine.
	Witness WitnessBody
}

// Registry maps stage kinds to their specs. The package keeps one default
// registry that stage packages fill from init(); tests make their own.
type Registry struct {
	mu    sync.RWMutex
	specs map[string]Spec
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{specs: make(map[string]Spec)}
}

// Register adds a stage kind. It fails on an empty or duplicate kind.
func (r *Registry) Register(s Spec) error {
	if s.Kind == "" || s.New == nil {
		return fmt.Errorf("stage spec needs a kind and a constructor")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.specs[s.Kind]; dup {
		return fmt.Errorf("stage kind %q registered twice", s.Kind)
	}
	r.specs[s.Kind] = s
	return nil
}

// MustRegister is Register for init functions: a duplicate kind is a
// programming error.
func (r *Registry) MustRegister(s Spec) {
	if err := r.Register(s); err != nil {
		panic(err)
	}
}

// Lookup returns the spec of a kind.
func (r *Registry) Lookup(kind string) (Spec, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, ok := r.specs[kind]
	return s, ok
}

// Kinds returns the registered kinds, sorted.
func (r *Registry) Kinds() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	kinds := make([]string, 0, len(r.specs))
	for k := range r.specs {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return kinds
}

// Specs returns every spec, sorted by kind.
func (r *Registry) Specs() []Spec {
	kinds := r.Kinds()
	out := make([]Spec, 0, len(kinds))
	for _, k := range kinds {
		s, _ := r.Lookup(k)
		out = append(out, s)
	}
	return out
}

// DefaultRegistry holds the stage kinds compiled into the binary.
var DefaultRegistry = NewRegistry()

// Register adds a stage kind to the default registry; stage packages call it from init().
func Register(s Spec) { DefaultRegistry.MustRegister(s) }

// AttrError points a stage configuration error at one attribute.
type AttrError struct {
	Attr string
	Err  error
}

func (e *AttrError) Error() string { return fmt.Sprintf("%s: %v", e.Attr, e.Err) }
func (e *AttrError) Unwrap() error { return e.Err }
