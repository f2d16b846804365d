package nvml

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// SimFileError is a simulation file that cannot be used, with the place of
// the fault when it is known (Line and Column are 1-based; 0 when unknown).
type SimFileError struct {
	Path         string
	Line, Column int
	Msg          string
	Err          error // the underlying error, if any (for example fs.ErrNotExist)
}

func (e *SimFileError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.Path, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.Path, e.Line, e.Column, e.Msg)
}

func (e *SimFileError) Unwrap() error { return e.Err }

// pidMaxLimit is Linux's PID_MAX_LIMIT on 64-bit hosts: no host PID is larger.
const pidMaxLimit = 1 << 22

// The file as written (docs/gpu-simulation.md). Pointers tell "missing" from 0.
type simFile struct {
	DriverVersion string      `json:"driver_version"`
	Devices       []simDevice `json:"devices"`
	InitError     *string     `json:"init_error"`
}

type simDevice struct {
	Index     *int         `json:"index"`
	UUID      string       `json:"uuid"`
	Name      string       `json:"name"`
	MemoryMiB uint64       `json:"memory_mib"`
	Processes []simProcess `json:"processes"`
	MIG       []simMIG     `json:"mig"`
	// UtilizationGPU is optional: absent means "not reported".
	UtilizationGPU *float64 `json:"utilization_gpu"`
}

type simMIG struct {
	Index     *int         `json:"index"`
	UUID      string       `json:"uuid"`
	Profile   string       `json:"profile"`
	Processes []simProcess `json:"processes"`
	// UtilizationGPU is optional: absent means "not reported".
	UtilizationGPU *float64 `json:"utilization_gpu"`
}

type simProcess struct {
	PID           *int   `json:"pid"`
	UsedMemoryMiB uint64 `json:"used_memory_mib"`
	// SMUtil is optional: absent means "not reported".
	SMUtil *float64 `json:"sm_util"`
}

// ParseSim parses a simulation file (docs/gpu-simulation.md). path only names
// the file in errors, which are *SimFileError.
//
// It runs in three steps: a walk over the JSON tokens that records where
// every value starts and rejects unknown or repeated keys at their place
// (encoding/json reports neither with a position), a strict decode into Go
// types, and validate, which holds every semantic rule.
func ParseSim(path string, data []byte) (*Snapshot, error) {
	p := &simParser{path: path, data: data, at: make(map[string]int64)}
	if err := p.index(); err != nil {
		return nil, err
	}
	var f simFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, p.decodeError(err)
	}
	if err := p.validate(&f); err != nil {
		return nil, err
	}
	return f.snapshot(), nil
}

type simParser struct {
	path string
	data []byte
	at   map[string]int64 // JSON path ("devices[0].uuid") -> offset of its value
}

// errAt builds an error placed at the value of path, or at the closest
// enclosing value that exists (a missing key is reported at its object).
func (p *simParser) errAt(path string, format string, args ...any) *SimFileError {
	off := int64(0)
	for q := path; ; {
		if o, ok := p.at[q]; ok {
			off = o
			break
		}
		i := strings.LastIndexAny(q, ".[")
		if i < 0 {
			break
		}
		q = q[:i]
	}
	return p.errOffset(off, format, args...)
}

func (p *simParser) errOffset(off int64, format string, args ...any) *SimFileError {
	line, col := lineCol(p.data, off)
	return &SimFileError{Path: p.path, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}
}

// lineCol turns a byte offset into a 1-based line and column (in bytes).
func lineCol(data []byte, off int64) (line, col int) {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = len(before) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// shape is the schema the token walk checks: an object's keys and the shape
// of each value, or an array's element shape. A nil *shape is a plain value
// (string, number, bool or null) whose type the decoder checks.
type shape struct {
	what   string
	fields map[string]*shape
	elem   *shape
}

func simShape() *shape {
	processes := &shape{what: "a list of processes", elem: &shape{what: "a process", fields: map[string]*shape{
		"pid": nil, "used_memory_mib": nil, "sm_util": nil,
	}}}
	migs := &shape{what: "a list of MIG slices", elem: &shape{what: "a MIG slice", fields: map[string]*shape{
		"index": nil, "uuid": nil, "profile": nil, "processes": processes, "utilization_gpu": nil,
	}}}
	devices := &shape{what: "a list of devices", elem: &shape{what: "a device", fields: map[string]*shape{
		"index": nil, "uuid": nil, "name": nil, "memory_mib": nil, "processes": processes, "mig": migs, "utilization_gpu": nil,
	}}}
	return &shape{what: "an object", fields: map[string]*shape{
		"driver_version": nil, "devices": devices, "init_error": nil,
	}}
}

// index walks the document once, recording the offset of every value and
// checking the shape; see ParseSim.
func (p *simParser) index() error {
	dec := json.NewDecoder(bytes.NewReader(p.data))
	dec.UseNumber()
	if err := p.walk(dec, "", simShape()); err != nil {
		return err
	}
	off := p.valueStart(dec.InputOffset())
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return p.errOffset(off, "unexpected data after the top-level object")
	}
	return nil
}

// valueStart skips what lies between the decoder's offset (the end of the
// last token) and the start of the next value: blanks and the ',' or ':'
// delimiters, which json.Decoder.Token consumes silently.
func (p *simParser) valueStart(off int64) int64 {
	for off < int64(len(p.data)) && strings.IndexByte(" \t\r\n,:", p.data[off]) >= 0 {
		off++
	}
	return off
}

func (p *simParser) walk(dec *json.Decoder, path string, s *shape) error {
	start := p.valueStart(dec.InputOffset())
	tok, err := dec.Token()
	if err != nil {
		return p.syntaxError(err, start)
	}
	p.at[path] = start
	name := path
	if name == "" {
		name = "the top level"
	}
	switch tok {
	case json.Delim('{'):
		if s == nil || s.fields == nil {
			return p.errOffset(start, "%s: want %s, got an object", name, want(s))
		}
		seen := make(map[string]bool)
		for dec.More() {
			keyOff := p.valueStart(dec.InputOffset())
			kt, err := dec.Token()
			if err != nil {
				return p.syntaxError(err, keyOff)
			}
			key, _ := kt.(string) // json.Decoder only yields strings as keys
			child := joinKey(path, key)
			if seen[key] {
				return p.errOffset(keyOff, "%s: key %q given twice", name, key)
			}
			seen[key] = true
			sub, known := s.fields[key]
			if !known {
				return p.errOffset(keyOff, "%s: unknown field %q (known: %s)%s",
					name, key, strings.Join(slices.Sorted(maps.Keys(s.fields)), ", "), unknownHint(path, key))
			}
			if err := p.walk(dec, child, sub); err != nil {
				return err
			}
		}
	case json.Delim('['):
		if s == nil || s.elem == nil {
			return p.errOffset(start, "%s: want %s, got a list", name, want(s))
		}
		for i := 0; dec.More(); i++ {
			if err := p.walk(dec, path+"["+strconv.Itoa(i)+"]", s.elem); err != nil {
				return err
			}
		}
	default:
		// A plain value. null stands for an empty list or object; any other
		// plain value where a list or object belongs is a type error.
		if tok != nil && s != nil {
			return p.errOffset(start, "%s: want %s, got %s", name, s.what, describe(tok))
		}
		if path == "" {
			return p.errOffset(start, "the top level must be an object, got %s", describe(tok))
		}
		return nil
	}
	closeOff := p.valueStart(dec.InputOffset())
	if _, err := dec.Token(); err != nil {
		return p.syntaxError(err, closeOff)
	}
	return nil
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func want(s *shape) string {
	if s == nil {
		return "a plain value"
	}
	return s.what
}

func describe(tok json.Token) string {
	switch tok.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%v", tok)
}

// unknownHint explains the one mistake the format invites: MIG slices listed
// apart from the GPU they belong to.
func unknownHint(path, key string) string {
	if path == "" && strings.HasPrefix(strings.ToLower(key), "mig") {
		return `; MIG slices belong in the "mig" list of their parent device`
	}
	return ""
}

// syntaxError places a JSON syntax error; Offset counts the bytes read up to
// and including the offending one.
func (p *simParser) syntaxError(err error, fallback int64) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		e := p.errOffset(se.Offset-1, "invalid JSON: %s", strings.TrimPrefix(se.Error(), "json: "))
		e.Err = err
		return e
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		e := p.errOffset(int64(len(p.data)), "invalid JSON: unexpected end of input")
		e.Err = err
		return e
	}
	e := p.errOffset(fallback, "invalid JSON: %s", err)
	e.Err = err
	return e
}

// decodeError turns an encoding/json error into a placed SimFileError. The
// walk has already rejected syntax errors and unknown keys, so what remains
// is a plain value of the wrong type.
func (p *simParser) decodeError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		// te.Offset is the end of the offending value: find the value that
		// starts last before it.
		path, best := "", int64(-1)
		for q, off := range p.at {
			if off < te.Offset && (off > best || off == best && len(q) > len(path)) {
				path, best = q, off
			}
		}
		e := p.errAt(path, "%s: want %s, got a JSON %s", path, goTypeName(te.Type.String()), te.Value)
		e.Err = err
		return e
	}
	return &SimFileError{Path: p.path, Msg: err.Error(), Err: err}
}

func goTypeName(t string) string {
	switch {
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "uint"):
		return "a whole number >= 0"
	case strings.HasPrefix(t, "int"):
		return "a whole number"
	}
	return t
}

// validate holds every rule on the meaning of the file.
func (p *simParser) validate(f *simFile) error {
	if f.InitError != nil {
		if !isNVMLErrorName(*f.InitError) {
			return p.errAt("init_error", "init_error %q is not an NVML error name such as \"ERROR_LIBRARY_NOT_FOUND\" (use null for a working driver)", *f.InitError)
		}
	}
	uuids := make(map[string]string) // lower-case UUID -> path of its first use
	indices := make(map[int]string)  // device index -> path of its first use
	for i, d := range f.Devices {
		dp := "devices[" + strconv.Itoa(i) + "]"
		if err := p.checkIndex(dp, d.Index, indices, "device index"); err != nil {
			return err
		}
		if err := p.checkUUID(dp, d.UUID, "GPU-", "MIG-", uuids); err != nil {
			return err
		}
		if err := p.checkPercent(dp+".utilization_gpu", d.UtilizationGPU); err != nil {
			return err
		}
		pids := make(map[int]string) // PIDs on this GPU and its slices
		if err := p.checkProcesses(dp, d.Processes, pids); err != nil {
			return err
		}
		migIndices := make(map[int]string)
		for j, m := range d.MIG {
			mp := dp + ".mig[" + strconv.Itoa(j) + "]"
			if err := p.checkIndex(mp, m.Index, migIndices, "MIG index on this device"); err != nil {
				return err
			}
			if err := p.checkUUID(mp, m.UUID, "MIG-", "GPU-", uuids); err != nil {
				return err
			}
			if err := p.checkPercent(mp+".utilization_gpu", m.UtilizationGPU); err != nil {
				return err
			}
			if err := p.checkProcesses(mp, m.Processes, pids); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *simParser) checkIndex(path string, index *int, seen map[int]string, what string) error {
	ip := path + ".index"
	switch {
	case index == nil:
		return p.errAt(ip, "%s: missing \"index\"", path)
	case *index < 0:
		return p.errAt(ip, "%s: index %d is negative", path, *index)
	}
	if first, dup := seen[*index]; dup {
		return p.errAt(ip, "%s: duplicate %s %d (first at %s)", path, what, *index, p.place(first))
	}
	seen[*index] = ip
	return nil
}

// checkUUID checks one device's or slice's UUID: prefix is the one it needs,
// other the one of the other kind, which gets a pointed message.
func (p *simParser) checkUUID(path, uuid, prefix, other string, seen map[string]string) error {
	up := path + ".uuid"
	switch {
	case uuid == "":
		return p.errAt(up, "%s: empty or missing \"uuid\"", path)
	case strings.HasPrefix(uuid, other) && prefix == "GPU-":
		return p.errAt(up, "%s: UUID %q is a MIG slice's: list it in the \"mig\" list of its parent device", path, uuid)
	case strings.HasPrefix(uuid, other):
		return p.errAt(up, "%s: UUID %q is a GPU's: a MIG slice's UUID starts with %q", path, uuid, prefix)
	case !strings.HasPrefix(uuid, prefix) || len(uuid) == len(prefix):
		return p.errAt(up, "%s: UUID %q must start with %q and go on after it", path, uuid, prefix)
	case strings.ContainsFunc(uuid, isSpace):
		return p.errAt(up, "%s: UUID %q contains white space", path, uuid)
	}
	key := strings.ToLower(uuid)
	if first, dup := seen[key]; dup {
		return p.errAt(up, "%s: duplicate UUID %q (first at %s)", path, uuid, p.place(first))
	}
	seen[key] = up
	return nil
}

func (p *simParser) checkProcesses(path string, procs []simProcess, seen map[int]string) error {
	for k, pr := range procs {
		pp := path + ".processes[" + strconv.Itoa(k) + "].pid"
		switch {
		case pr.PID == nil:
			return p.errAt(pp, "%s.processes[%d]: missing \"pid\"", path, k)
		case *pr.PID <= 0:
			return p.errAt(pp, "%s: pid %d is not a process ID (must be > 0)", pp, *pr.PID)
		case *pr.PID > pidMaxLimit:
			return p.errAt(pp, "%s: pid %d is above Linux's limit of %d", pp, *pr.PID, pidMaxLimit)
		}
		if err := p.checkPercent(path+".processes["+strconv.Itoa(k)+"].sm_util", pr.SMUtil); err != nil {
			return err
		}
		if first, dup := seen[*pr.PID]; dup {
			return p.errAt(pp, "%s: pid %d listed twice on the same device (first at %s)", pp, *pr.PID, p.place(first))
		}
		seen[*pr.PID] = pp
	}
	return nil
}

// checkPercent checks an optional utilisation: absent is "not reported";
// a value must be a percentage.
func (p *simParser) checkPercent(path string, v *float64) error {
	if v != nil && (*v < 0 || *v > 100 || *v != float64(uint32(*v))) {
		return p.errAt(path, "%s: %v is not a whole percentage between 0 and 100", path, *v)
	}
	return nil
}

// simPercent converts an optional utilisation; nil is "not reported".
func simPercent(v *float64) Percent {
	if v == nil {
		return Percent{}
	}
	return Pct(uint32(*v))
}

// place names a path together with its line, for "first at ..." notes.
func (p *simParser) place(path string) string {
	line, _ := lineCol(p.data, p.at[path])
	return fmt.Sprintf("%s, line %d", path, line)
}

func isSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' }

// isNVMLErrorName accepts the spelling of NVML's return codes
// ("ERROR_LIBRARY_NOT_FOUND"), so that a typo is not silently simulated.
func isNVMLErrorName(s string) bool {
	rest, ok := strings.CutPrefix(s, "ERROR_")
	if !ok || rest == "" {
		return false
	}
	for _, r := range rest {
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return true
}

// snapshot converts a validated file; devices and slices are sorted by index
// as NVML enumerates them.
func (f *simFile) snapshot() *Snapshot {
	s := &Snapshot{Backend: BackendSim, Available: true, DriverVersion: f.DriverVersion}
	if f.InitError != nil {
		s.Available = false
		s.Unavailable = "NVML: " + *f.InitError
		if n := len(f.Devices); n > 0 {
			// A driver that fails to load on a host with GPUs looks like
			// this: the file may keep the host's devices for later. NVML
			// lists none, so neither does the snapshot.
			s.Warnings = append(s.Warnings, fmt.Sprintf("simulation file: init_error %s is set, so its %d device(s) are ignored", *f.InitError, n))
		}
		return s
	}
	for _, d := range f.Devices {
		dev := Device{
			Index:     *d.Index,
			UUID:      d.UUID,
			Name:      d.Name,
			MemoryMiB: d.MemoryMiB,
			Processes: simProcesses(d.Processes),

			UtilizationGPU: simPercent(d.UtilizationGPU),
		}
		for _, m := range d.MIG {
			dev.MIG = append(dev.MIG, MIGDevice{
				Index:     *m.Index,
				UUID:      m.UUID,
				Profile:   m.Profile,
				Processes: simProcesses(m.Processes),

				UtilizationGPU: simPercent(m.UtilizationGPU),
			})
		}
		slices.SortFunc(dev.MIG, func(a, b MIGDevice) int { return cmp.Compare(a.Index, b.Index) })
		s.Devices = append(s.Devices, dev)
		n := 1 + len(dev.MIG)
		s.Queries.DeviceQueries += n
		s.Queries.ProcessQueries += n
	}
	slices.SortFunc(s.Devices, func(a, b Device) int { return cmp.Compare(a.Index, b.Index) })
	return s
}

func simProcesses(in []simProcess) []Process {
	var out []Process
	for _, p := range in {
		out = append(out, Process{PID: *p.PID, UsedMemoryMiB: p.UsedMemoryMiB, SMUtil: simPercent(p.SMUtil)})
	}
	return out
}
