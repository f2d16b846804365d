package pipeline

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/ds01/ds01-pipe/internal/printable"
	"github.com/ds01/ds01-pipe/internal/safefile"
	"github.com/ds01/ds01-pipe/policy"
)

// Defaults of the pipeline block.
const (
	DefaultTimeout = 10 * time.Minute
)

// Config is a loaded and validated pipeline file. Loading touches nothing
// outside the file system: no Docker, no NVML.
type Config struct {
	File        string
	Name        string
	Description string
	Timeout     time.Duration
	LockFile    string // "" = no lock
	// TrustedGroups are the groups whose members may write the files the
	// pipeline names (trusted_groups); Trust is the rule they make, with
	// the groups this host knows (see FileTrust).
	TrustedGroups []string
	Trust         safefile.Trust

	Policy      *policy.Model
	PolicyFiles policy.Files
	GPU         GPUConfig
	Stages      []StageInstance
}

// GPUConfig is the pipeline's gpu block.
type GPUConfig struct {
	Backend  string // auto | nvml | sim | none
	SimFile  string
	Required bool
	// StrictFiles makes OpenGPU refuse a simulation file that a non-root
	// user could have written (see CheckFilePermissions); the loader sets
	// it from LoadOptions.StrictFiles.
	StrictFiles bool
	// Trust is the pipeline's trust rule for the simulation file.
	Trust safefile.Trust
}

// LoadOptions are the inputs of a load besides the file.
type LoadOptions struct {
	Registry *Registry         // nil: DefaultRegistry
	Vars     map[string]string // --var NAME=VALUE
	// StrictFiles refuses a pipeline, policy or simulation file (or groups
	// directory) that a non-root user could have written, before reading
	// it (CheckFilePermissions). The command line sets it when it runs as
	// root, unless --allow-insecure-files is given.
	StrictFiles bool
}

// MaxPipelineFileSize bounds what LoadFile reads: a pipeline is a page of
// HCL, so anything larger is a wrong path (a log, a device), not a pipeline.
const MaxPipelineFileSize = 1 << 20

// ConfigError is a configuration problem: the run exits 78 and touches nothing.
type ConfigError struct {
	Diags hcl.Diagnostics
	Files map[string]*hcl.File
}

// Error renders every diagnostic with a "file:line:col: summary" first
// line (what editors and grep understand), then the offending source lines
// and the detail.
func (e *ConfigError) Error() string {
	var out []string
	for i, d := range e.Diags {
		if i >= maxDetailedDiags {
			out = append(out, briefDiags(e.Diags[i:]))
			break
		}
		var b strings.Builder
		w := hcl.NewDiagnosticTextWriter(&b, e.Files, 0, false)
		_ = w.WriteDiagnostic(d) // a strings.Builder never fails
		text := strings.TrimSpace(b.String())
		if d.Subject != nil {
			// Replace the writer's "Error: summary" line with a located one.
			_, rest, _ := strings.Cut(text, "\n")
			text = fmt.Sprintf("%s:%d:%d: %s\n%s", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, d.Summary, rest)
		}
		out = append(out, strings.TrimRight(text, "\n"))
	}
	// File names, and values quoted from the file, may hold control
	// characters: escaped, they cannot move an admin's cursor.
	return printable.Text(strings.Join(out, "\n\n"))
}

// Rendering one diagnostic with its source lines costs time that grows with
// the file (HCL scans it from the start for each one), so a file with
// thousands of errors (10,000 unknown attributes took over 10 minutes) gets
// the first few in full, then one line each, then a count.
const (
	maxDetailedDiags = 5
	maxListedDiags   = 100
)

// briefDiags lists diagnostics one line each, up to maxListedDiags.
func briefDiags(diags hcl.Diagnostics) string {
	var b strings.Builder
	for i, d := range diags {
		if i >= maxListedDiags {
			fmt.Fprintf(&b, "... and %d more", len(diags)-i)
			break
		}
		if d.Subject != nil {
			fmt.Fprintf(&b, "%s:%d:%d: ", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
		}
		b.WriteString(d.Summary)
		b.WriteByte('\n')
	}
	return strings.TrimRight(b.String(), "\n")
}

// tidy drops the follow-on diagnostics HCL adds after a real error in the
// same expression ("value must be known"), which only confuse a reader.
func tidy(diags hcl.Diagnostics) hcl.Diagnostics {
	if !diags.HasErrors() {
		return diags
	}
	out := diags[:0:0]
	for _, d := range diags {
		if strings.Contains(d.Detail, "value must be known") && len(diags) > 1 {
			continue
		}
		out = append(out, d)
	}
	return out
}

// IsConfigError reports whether err is (or wraps) a configuration error.
func IsConfigError(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce)
}

// rootBlock is the first decoding pass: variables are evaluated before
// any pipeline attribute can refer to them.
type rootBlock struct {
	Variables []*variableBlock `hcl:"variable,block"`
	Pipelines []*pipelineHead  `hcl:"pipeline,block"`
}

type pipelineHead struct {
	Name      string    `hcl:"name,label"`
	Body      hcl.Body  `hcl:",remain"`
	DeclRange hcl.Range `hcl:",def_range"`
}

type variableBlock struct {
	Name        string    `hcl:"name,label"`
	Default     cty.Value `hcl:"default,optional"`
	Description string    `hcl:"description,optional"`
	DeclRange   hcl.Range `hcl:",def_range"`
}

type pipelineBlock struct {
	Description string         `hcl:"description,optional"`
	Timeout     hcl.Expression `hcl:"timeout,optional"`
	LockFile    *string        `hcl:"lock_file,optional"`
	// TrustedGroups: groups besides root's that may write the files this
	// pipeline names (DS01's ds-admin owns /opt/ds01-infra).
	TrustedGroups []string      `hcl:"trusted_groups,optional"`
	Policy        *policyBlock  `hcl:"policy,block"`
	GPU           *gpuBlock     `hcl:"gpu,block"`
	Stages        []*stageBlock `hcl:"stage,block"`
}

type policyBlock struct {
	LimitsFile     hcl.Expression `hcl:"limits_file,optional"`
	GroupsDir      *string        `hcl:"groups_dir,optional"`
	OverridesFile  *string        `hcl:"overrides_file,optional"`
	ExemptionsFile *string        `hcl:"exemptions_file,optional"`
	DeclRange      hcl.Range      `hcl:",def_range"`
}

type gpuBlock struct {
	Backend  hcl.Expression `hcl:"backend,optional"`
	SimFile  *string        `hcl:"sim_file,optional"`
	Required *bool          `hcl:"required,optional"`
}

type stageBlock struct {
	Kind      string         `hcl:"kind,label"`
	Name      *string        `hcl:"name,optional"`
	Timeout   hcl.Expression `hcl:"timeout,optional"`
	Rest      hcl.Body       `hcl:",remain"`
	DeclRange hcl.Range      `hcl:",def_range"`
}

// LoadFile reads, decodes and validates a pipeline file and the policy
// files it names. Every problem comes back as one *ConfigError with the
// file, line and column of each diagnostic.
func LoadFile(path string, opts LoadOptions) (*Config, error) {
	src, err := ReadFile(path, opts)
	if err != nil {
		return nil, err
	}
	return Load(path, src, opts)
}

// ReadFile reads a pipeline file for Load: with opts.StrictFiles it first
// checks who could have written it, and it reads only a regular file of at
// most MaxPipelineFileSize bytes, without blocking on a FIFO. Every error
// is a *ConfigError.
func ReadFile(path string, opts LoadOptions) ([]byte, error) {
	if err := checkPipelineFile(path, opts); err != nil {
		return nil, err
	}
	src, err := readLimited(path, MaxPipelineFileSize)
	if err != nil {
		return nil, &ConfigError{Diags: hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read pipeline file",
			Detail:   err.Error(),
		}}}
	}
	return src, nil
}

func checkPipelineFile(path string, opts LoadOptions) error {
	if !opts.StrictFiles {
		return nil
	}
	if err := checkOptional(path); err != nil {
		return &ConfigError{Diags: hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Insecure pipeline file",
			Detail:   err.Error(),
		}}}
	}
	return nil
}

// Load is LoadFile for a file already in memory. With opts.StrictFiles it
// checks path, the file src was read from, when that exists (ReadFile
// checked it already; a caller that read the file itself gets the check
// here).
func Load(path string, src []byte, opts LoadOptions) (*Config, error) {
	if err := checkPipelineFile(path, opts); err != nil {
		return nil, err
	}
	reg := opts.Registry
	if reg == nil {
		reg = DefaultRegistry
	}
	if d := checkNesting(src, path); d.HasErrors() {
		return nil, &ConfigError{Diags: d, Files: map[string]*hcl.File{path: {Bytes: src}}}
	}
	parser := hclparse.NewParser()
	file, diags := parser.ParseHCL(src, path)
	fail := func(d hcl.Diagnostics) error { return &ConfigError{Diags: tidy(d), Files: parser.Files()} }
	if diags.HasErrors() {
		return nil, fail(diags)
	}

	var root rootBlock
	if d := gohcl.DecodeBody(file.Body, functionContext(), &root); d.HasErrors() {
		return nil, fail(d)
	}
	vars, d := decodeVariables(root.Variables, opts.Vars)
	if d.HasErrors() {
		return nil, fail(d)
	}
	switch len(root.Pipelines) {
	case 0:
		return nil, fail(hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "No pipeline block",
			Detail:   `A pipeline file needs exactly one pipeline "NAME" { ... } block.`,
			Subject:  file.Body.MissingItemRange().Ptr(),
		}})
	case 1:
	default:
		return nil, fail(hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "More than one pipeline block",
			Detail:   fmt.Sprintf("The first pipeline block is at %s; a file holds exactly one.", root.Pipelines[0].DeclRange),
			Subject:  root.Pipelines[1].DeclRange.Ptr(),
		}})
	}

	ctx := evalContext(vars)
	dir := filepath.Dir(path)
	head := root.Pipelines[0]
	var pb pipelineBlock
	if d := gohcl.DecodeBody(head.Body, ctx, &pb); d.HasErrors() {
		return nil, fail(d)
	}
	cfg, d := decodePipeline(head, &pb, ctx, reg, dir, opts.StrictFiles)
	if d.HasErrors() {
		return nil, fail(d)
	}
	cfg.File = path
	return cfg, nil
}

func decodeVariables(blocks []*variableBlock, given map[string]string) (map[string]cty.Value, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	vars := make(map[string]cty.Value, len(blocks))
	declared := make(map[string]*variableBlock, len(blocks))
	for _, vb := range blocks {
		if prev, dup := declared[vb.Name]; dup {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Duplicate variable",
				Detail:   fmt.Sprintf("Variable %q was already declared at %s.", vb.Name, prev.DeclRange),
				Subject:  vb.DeclRange.Ptr(),
			})
			continue
		}
		declared[vb.Name] = vb
		val := vb.Default
		if val == cty.NilVal {
			val = cty.NullVal(cty.String)
		}
		if raw, ok := given[vb.Name]; ok {
			v, err := varValue(raw, val.Type())
			if err != nil {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid value for --var " + vb.Name,
					Detail:   err.Error(),
					Subject:  vb.DeclRange.Ptr(),
				})
				continue
			}
			val = v
		}
		vars[vb.Name] = val
	}
	names := make([]string, 0, len(given))
	for name := range given {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, ok := declared[name]; ok {
			continue
		}
		detail := fmt.Sprintf("The pipeline declares no variable %q.", name)
		if s := suggest(name, keys(declared)); s != "" {
			detail += fmt.Sprintf(" Did you mean %q?", s)
		}
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unknown variable in --var", Detail: detail})
	}
	return vars, diags
}

// varValue converts a --var string to the type of the variable's default.
func varValue(raw string, ty cty.Type) (cty.Value, error) {
	v := cty.StringVal(raw)
	if ty == cty.DynamicPseudoType || ty == cty.String || !ty.IsPrimitiveType() {
		return v, nil
	}
	out, err := convert.Convert(v, ty)
	if err != nil {
		return cty.NilVal, fmt.Errorf("%q is not a valid %s", raw, ty.FriendlyName())
	}
	return out, nil
}

func decodePipeline(head *pipelineHead, pb *pipelineBlock, ctx *hcl.EvalContext, reg *Registry, dir string, strict bool) (*Config, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	cfg := &Config{Name: head.Name, Description: pb.Description, Timeout: DefaultTimeout}
	if head.Name == "" {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Empty pipeline name", Subject: head.DeclRange.Ptr()})
	}
	if d, ok, dd := durationAttr(pb.Timeout, ctx, "timeout"); ok {
		if d <= 0 {
			dd = append(dd, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid timeout", Detail: "The run's timeout must be positive.", Subject: pb.Timeout.Range().Ptr()})
		}
		cfg.Timeout = d
		diags = append(diags, dd...)
	} else {
		diags = append(diags, dd...)
	}
	if pb.LockFile != nil && *pb.LockFile != "" {
		cfg.LockFile = resolvePath(dir, *pb.LockFile)
	}

	cfg.TrustedGroups = pb.TrustedGroups
	cfg.Trust = FileTrust(strict, pb.TrustedGroups)
	pd := decodePolicy(pb.Policy, ctx, dir, cfg, strict)
	diags = append(diags, pd...)

	cfg.GPU = GPUConfig{Backend: "auto", StrictFiles: strict, Trust: cfg.Trust}
	if g := pb.GPU; g != nil {
		if s, ok, d := stringAttr(g.Backend, ctx); ok {
			switch s {
			case "auto", "nvml", "sim", "none":
				cfg.GPU.Backend = s
			default:
				detail := `The gpu backend is one of "auto", "nvml", "sim" or "none".`
				if sug := suggest(s, []string{"auto", "nvml", "sim", "none"}); sug != "" {
					detail += fmt.Sprintf(" Did you mean %q?", sug)
				}
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unknown GPU backend", Detail: detail, Subject: g.Backend.Range().Ptr()})
			}
		} else {
			diags = append(diags, d...)
		}
		if g.SimFile != nil && *g.SimFile != "" {
			cfg.GPU.SimFile = resolvePath(dir, *g.SimFile)
		}
		if g.Required != nil {
			cfg.GPU.Required = *g.Required
		}
		if cfg.GPU.Backend == "sim" && cfg.GPU.SimFile == "" {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing sim_file", Detail: `backend = "sim" needs sim_file.`, Subject: g.Backend.Range().Ptr()})
		}
	}

	if len(pb.Stages) == 0 {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Pipeline has no stages", Detail: `Add stage "KIND" { } blocks; ds01-pipe stages lists the kinds.`, Subject: head.DeclRange.Ptr()})
	}
	seen := map[string]hcl.Range{}
	var ordered []orderedStage
	for _, sb := range pb.Stages {
		inst, d := decodeStage(sb, ctx, reg)
		diags = append(diags, d...)
		if inst == nil {
			continue
		}
		key := inst.Ref.String()
		if prev, dup := seen[key]; dup {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Duplicate stage",
				Detail:   fmt.Sprintf("Stage %s is already declared at %s; give one of them a distinct name = \"...\".", key, prev),
				Subject:  sb.DeclRange.Ptr(),
			})
			continue
		}
		seen[key] = sb.DeclRange
		cfg.Stages = append(cfg.Stages, *inst)
		ordered = append(ordered, orderedStage{ref: inst.Ref, contract: inst.Contract, rng: sb.DeclRange})
	}
	if !diags.HasErrors() {
		// Only a pipeline whose every stage decoded can be judged: a
		// missing stage would show up as a wrong "missing stage".
		diags = append(diags, checkOrder(ordered, reg.Writers(), reg.Readers())...)
	}
	wireFiles(cfg.Stages, cfg.Trust)
	return cfg, diags
}

func decodePolicy(pb *policyBlock, ctx *hcl.EvalContext, dir string, cfg *Config, strict bool) hcl.Diagnostics {
	if pb == nil {
		cfg.Policy = policy.Default()
		return nil
	}
	var diags hcl.Diagnostics
	limits, ok, d := stringAttr(pb.LimitsFile, ctx)
	diags = append(diags, d...)
	if !ok || limits == "" {
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing limits_file", Detail: "A policy block names the DS01 resource-limits.yaml in limits_file.", Subject: pb.DeclRange.Ptr()})
		return diags
	}
	opt := func(p *string) string {
		if p == nil || *p == "" {
			return ""
		}
		return resolvePath(dir, *p)
	}
	cfg.PolicyFiles = policy.Files{
		LimitsFile:     resolvePath(dir, limits),
		GroupsDir:      opt(pb.GroupsDir),
		OverridesFile:  opt(pb.OverridesFile),
		ExemptionsFile: opt(pb.ExemptionsFile),
	}
	model, d := loadPolicy(cfg.PolicyFiles, cfg.Trust, pb.DeclRange)
	if d.HasErrors() {
		return append(diags, d...)
	}
	cfg.Policy = model
	return diags
}

func decodeStage(sb *stageBlock, ctx *hcl.EvalContext, reg *Registry) (*StageInstance, hcl.Diagnostics) {
	spec, ok := reg.Lookup(sb.Kind)
	if !ok {
		detail := fmt.Sprintf("There is no stage kind %q.", sb.Kind)
		if s := suggest(sb.Kind, reg.Kinds()); s != "" {
			detail += fmt.Sprintf(" Did you mean %q?", s)
		} else {
			detail += " Known kinds: " + strings.Join(reg.Kinds(), ", ") + "."
		}
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Unknown stage kind", Detail: detail, Subject: sb.DeclRange.Ptr()}}
	}
	inst := &StageInstance{Ref: StageRef{Kind: sb.Kind}}
	if sb.Name != nil {
		inst.Ref.Name = *sb.Name
	}
	var diags hcl.Diagnostics
	if d, ok, dd := durationAttr(sb.Timeout, ctx, "timeout"); ok {
		if d <= 0 {
			// The runner reads 0 as "no timeout of its own": a negative or
			// zero value written here would silently mean the same.
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid timeout", Detail: "A stage's timeout must be positive; leave it out to bound the stage by the run's timeout only.", Subject: sb.Timeout.Range().Ptr()})
		}
		inst.Timeout = d
	} else {
		diags = append(diags, dd...)
	}
	stage := spec.New()
	if d := gohcl.DecodeBody(sb.Rest, ctx, stage); d.HasErrors() {
		return nil, append(diags, d...)
	}
	if in, ok := stage.(Initializer); ok {
		if err := in.Init(); err != nil {
			subject := sb.DeclRange
			var ae *AttrError
			if errors.As(err, &ae) {
				if r, ok := attrRange(sb.Rest, ae.Attr); ok {
					subject = r
				}
			}
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("Invalid %s stage", sb.Kind),
				Detail:   err.Error(),
				Subject:  subject.Ptr(),
			})
			return nil, diags
		}
	}
	if ec, ok := stage.(ExprChecker); ok {
		if d := ec.CheckExprs(ctx); d.HasErrors() {
			return nil, append(diags, d...)
		}
	}
	inst.Stage = stage
	inst.Contract = spec.ContractOf(stage)
	return inst, diags
}

// ExprChecker is implemented by stages that keep an attribute as an
// unevaluated expression (an hcl.Expression field, evaluated per record at
// run time, as filter's when). After decoding and Init, the loader hands
// them the pipeline's variables and functions, so they can check the
// expression and keep the context; their diagnostics keep the
// expression's own file:line:col.
type ExprChecker interface {
	CheckExprs(ctx *hcl.EvalContext) hcl.Diagnostics
}

// attrRange finds where an attribute of a stage body was written.
func attrRange(body hcl.Body, name string) (hcl.Range, bool) {
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return hcl.Range{}, false
	}
	a, ok := sb.Attributes[name]
	if !ok {
		return hcl.Range{}, false
	}
	return a.SrcRange, true
}

// exprAbsent reports whether an optional expression attribute was left out.
func exprAbsent(expr hcl.Expression) bool {
	if expr == nil {
		return true
	}
	r := expr.Range()
	if r.Filename == "" {
		return true
	}
	v, d := expr.Value(nil)
	return !d.HasErrors() && v.IsNull()
}

func stringAttr(expr hcl.Expression, ctx *hcl.EvalContext) (string, bool, hcl.Diagnostics) {
	if exprAbsent(expr) {
		return "", false, nil
	}
	v, diags := expr.Value(ctx)
	if diags.HasErrors() {
		return "", false, diags
	}
	if v.IsNull() {
		return "", false, nil
	}
	sv, err := convert.Convert(v, cty.String)
	if err != nil || !sv.IsKnown() {
		return "", false, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Incorrect attribute value type", Detail: "A string is required here.", Subject: expr.Range().Ptr()}}
	}
	return sv.AsString(), true, nil
}

// durationAttr decodes an optional Go-style duration string ("30m", "1h30m").
func durationAttr(expr hcl.Expression, ctx *hcl.EvalContext, name string) (time.Duration, bool, hcl.Diagnostics) {
	s, ok, diags := stringAttr(expr, ctx)
	if !ok {
		return 0, false, diags
	}
	d, err := ParseDuration(s)
	if err != nil {
		return 0, false, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid duration for " + name,
			Detail:   err.Error(),
			Subject:  expr.Range().Ptr(),
		}}
	}
	return d, true, nil
}

// ParseDuration parses a pipeline duration: a Go duration string such as
// "30m" or "1h30m".
func ParseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; write it like \"30s\", \"15m\" or \"1h30m\"", s)
	}
	return d, nil
}

func resolvePath(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// suggest returns the candidate closest to name, if it is close enough to
// be a likely typo.
func suggest(name string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := levenshtein.Distance(name, c, nil); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// AttrDoc documents one attribute of a stage kind.
type AttrDoc struct {
	Name     string
	Type     string
	Default  string
	Doc      string
	Required bool
}

// Attributes lists a stage kind's attributes from its struct tags, with the
// defaults its constructor sets.
func (s Spec) Attributes() []AttrDoc {
	v := reflect.ValueOf(s.New())
	for v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	var out []AttrDoc
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("hcl")
		if tag == "" {
			continue
		}
		name, kind, _ := strings.Cut(tag, ",")
		if name == "" || kind == "block" || kind == "remain" || kind == "label" {
			continue
		}
		def := v.Field(i)
		out = append(out, AttrDoc{
			Name:     name,
			Type:     typeName(f.Type),
			Default:  defaultText(def),
			Doc:      f.Tag.Get("doc"),
			Required: kind == "",
		})
	}
	return out
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return typeName(t.Elem())
	case reflect.Interface:
		// An hcl.Expression kept for per-record evaluation (filter's when).
		return "expression"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Float64:
		return "number"
	case reflect.Slice:
		return "list(" + typeName(t.Elem()) + ")"
	case reflect.Map:
		return "map(" + typeName(t.Elem()) + ")"
	}
	return t.String()
}

func defaultText(v reflect.Value) string {
	if v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return ""
		}
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.String:
		return fmt.Sprintf("%q", v.String())
	case reflect.Slice, reflect.Map:
		if v.Len() == 0 {
			return ""
		}
	}
	return fmt.Sprint(v.Interface())
}

// simDiag wraps a GPU back-end error as a configuration diagnostic.
func simDiag(err error) hcl.Diagnostics {
	return hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid GPU configuration", Detail: err.Error()}}
}
