package exempt

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/ds01/ds01-pipe/pipeline"
	"github.com/ds01/ds01-pipe/pipeline/pipelinetest"
	"github.com/ds01/ds01-pipe/policy"
)

func TestReason(t *testing.T) {
	infra := []string{"ds01-prometheus", "ds01-grafana"}
	configured := &Exempt{
		Labels:       map[string]string{"team.keep": "yes", "b.keep": "1", LabelMonitoring: "true"},
		Names:        []string{"backup", "/slash-given"},
		NamePrefixes: []string{"ds01-", "/infra-"},
	}
	defaults := New()
	tests := []struct {
		name   string
		e      *Exempt
		c      *pipeline.Container
		reason string // "" = not exempt
	}{
		// Reference 11 scenario 4 and 15; 3.8.
		{"monitoring", defaults, pipelinetest.Ctr("c", "ds01.monitoring", "true"), "label ds01.monitoring=true"},
		{"protected", defaults, pipelinetest.Ctr("c", "ds01.protected", "true"), "label ds01.protected=true"},
		{"monitoring first", defaults, pipelinetest.Ctr("c", "ds01.protected", "true", "ds01.monitoring", "true"), "label ds01.monitoring=true"},
		{"True is not true", defaults, pipelinetest.Ctr("c", "ds01.protected", "True", "ds01.monitoring", "1"), ""},
		{"empty is not true", defaults, pipelinetest.Ctr("c", "ds01.protected", ""), ""},
		{"padded is not true", defaults, pipelinetest.Ctr("c", "ds01.protected", " true"), ""},
		{"plain", defaults, pipelinetest.Ctr("epic_ramanujan", "ds01.user", "alice"), ""},
		{"nil labels", defaults, &pipeline.Container{Name: "c"}, ""},
		// The DS01 labels stay when labels is set to something else.
		{"builtin kept", configured, pipelinetest.Ctr("c", "ds01.protected", "true"), "label ds01.protected=true"},
		{"builtin kept, replaced map", &Exempt{Labels: map[string]string{"x": "y"}}, pipelinetest.Ctr("c", "ds01.monitoring", "true"), "label ds01.monitoring=true"},
		{"builtin kept, nil map", &Exempt{}, pipelinetest.Ctr("c", "ds01.monitoring", "true"), "label ds01.monitoring=true"},
		{"configured label", configured, pipelinetest.Ctr("c", "team.keep", "yes"), "label team.keep=yes"},
		{"configured labels by key", configured, pipelinetest.Ctr("c", "team.keep", "yes", "b.keep", "1"), "label b.keep=1"},
		{"configured label other value", configured, pipelinetest.Ctr("c", "team.keep", "no"), ""},
		{"configured label absent", configured, pipelinetest.Ctr("c"), ""},
		// Infrastructure names (the policy's monitoring.infrastructure_containers).
		{"infra name", defaults, pipelinetest.Ctr("ds01-grafana"), "infrastructure container (monitoring.infrastructure_containers)"},
		{"infra names are exact", defaults, pipelinetest.Ctr("ds01-grafana-old"), ""},
		// Names and prefixes.
		{"name", configured, pipelinetest.Ctr("backup"), "name listed in names"},
		{"name exact", configured, pipelinetest.Ctr("backup2"), ""},
		{"name given with slash", configured, pipelinetest.Ctr("slash-given"), "name listed in names"},
		{"infra off", &Exempt{}, pipelinetest.Ctr("ds01-grafana"), ""},
		{"infra before names", &Exempt{Names: []string{"ds01-grafana"}, InfrastructureContainers: true}, pipelinetest.Ctr("ds01-grafana"), "infrastructure container (monitoring.infrastructure_containers)"},
		{"names when infra off", &Exempt{Names: []string{"ds01-grafana"}}, pipelinetest.Ctr("ds01-grafana"), "name listed in names"},
		{"prefix", configured, pipelinetest.Ctr("ds01-whatever"), `name prefix "ds01-"`},
		{"prefix given with slash", configured, pipelinetest.Ctr("infra-db"), `name prefix "infra-"`},
		{"prefix is anchored", configured, pipelinetest.Ctr("my-ds01-x"), ""},
		{"label before name", configured, pipelinetest.Ctr("backup", "ds01.monitoring", "true"), "label ds01.monitoring=true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reason, ok := tt.e.Reason(tt.c, infra)
			if ok != (tt.reason != "") || reason != tt.reason {
				t.Errorf("Reason() = %q, %v; want %q", reason, ok, tt.reason)
			}
		})
	}
}

func TestProcess(t *testing.T) {
	env := &pipeline.Env{Policy: policy.Default()} // DS01's five infrastructure names
	b := pipelinetest.Batch(
		pipelinetest.Ctr("prom", "ds01.monitoring", "true"),
		pipelinetest.Ctr("adm", "ds01.protected", "true"),
		pipelinetest.Ctr("ds01-prometheus"),
		pipelinetest.Ctr("backup"),
		pipelinetest.Ctr("thesis._.1001", "ds01.user", "alice"),
		pipelinetest.Ctr("pre-exempt"),
	)
	b.Records[5].Exempt = true
	b.Records[5].ExemptReason = "set earlier"

	st := New()
	st.Names = []string{"backup"}
	if err := st.Init(); err != nil {
		t.Fatal(err)
	}
	if err := st.Process(context.Background(), env, b); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		exempt bool
		reason string
	}{
		{true, "label ds01.monitoring=true"},
		{true, "label ds01.protected=true"},
		{true, "infrastructure container (monitoring.infrastructure_containers)"},
		{true, "name listed in names"},
		{false, ""},
		{true, "set earlier"}, // one-way, and the first reason stays
	}
	for i, rec := range b.Records {
		if rec.Exempt != want[i].exempt || rec.ExemptReason != want[i].reason {
			t.Errorf("%s: exempt %v %q, want %v %q", rec.Container.Name, rec.Exempt, rec.ExemptReason, want[i].exempt, want[i].reason)
		}
	}

	// A second exempt stage that matches nothing clears nothing.
	if err := (&Exempt{}).Process(context.Background(), &pipeline.Env{}, b); err != nil {
		t.Fatal(err)
	}
	for i, rec := range b.Records {
		if rec.Exempt != want[i].exempt {
			t.Errorf("%s: a later stage changed exempt to %v", rec.Container.Name, rec.Exempt)
		}
	}
}

func TestProcessInfrastructureOff(t *testing.T) {
	env := &pipeline.Env{Policy: policy.Default()}
	st := New()
	st.InfrastructureContainers = false
	b := pipelinetest.Batch(pipelinetest.Ctr("ds01-prometheus"), pipelinetest.Ctr("p", "ds01.monitoring", "true"))
	if err := st.Process(context.Background(), env, b); err != nil {
		t.Fatal(err)
	}
	if b.Records[0].Exempt {
		t.Errorf("infrastructure name exempt with infrastructure_containers = false: %q", b.Records[0].ExemptReason)
	}
	if !b.Records[1].Exempt {
		t.Error("ds01.monitoring=true not exempt")
	}
}

func TestProcessNoPolicy(t *testing.T) {
	for _, env := range []*pipeline.Env{nil, {}} {
		b := pipelinetest.Batch(pipelinetest.Ctr("ds01-prometheus"), pipelinetest.Ctr("p", "ds01.protected", "true"))
		if err := New().Process(context.Background(), env, b); err != nil {
			t.Fatal(err)
		}
		if b.Records[0].Exempt || !b.Records[1].Exempt {
			t.Errorf("without a policy: exempt = %v, %v; want false, true", b.Records[0].Exempt, b.Records[1].Exempt)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := New().Process(ctx, nil, pipelinetest.Batch(pipelinetest.Ctr("a"))); !errors.Is(err, context.Canceled) {
		t.Errorf("Process() with a cancelled context = %v", err)
	}
}

func TestInitFail(t *testing.T) {
	tests := []struct {
		name string
		e    *Exempt
		attr string
		text string
	}{
		{"empty key", &Exempt{Labels: map[string]string{"": "x"}}, "labels", "key is empty"},
		{"empty value", &Exempt{Labels: map[string]string{"keep": ""}}, "labels", `"keep" has an empty value`},
		{"empty name", &Exempt{Names: []string{"a", ""}}, "names", "empty"},
		{"slash name", &Exempt{Names: []string{"/"}}, "names", "empty"},
		{"empty prefix", &Exempt{NamePrefixes: []string{""}}, "name_prefixes", "every container"},
		{"slash prefix", &Exempt{NamePrefixes: []string{"/"}}, "name_prefixes", "every container"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.e.Init()
			var ae *pipeline.AttrError
			if !errors.As(err, &ae) || ae.Attr != tt.attr || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("Init() = %v, want an AttrError on %s containing %q", err, tt.attr, tt.text)
			}
		})
	}
	if err := New().Init(); err != nil {
		t.Errorf("defaults: Init() = %v", err)
	}
}

// load decodes a pipeline text with a registry holding only this stage.
func load(t *testing.T, src string) (*pipeline.Config, error) {
	t.Helper()
	return pipelinetest.Load(t, pipelinetest.Only(t, Kind), src)
}

func stageBlock(body string) string {
	return "pipeline \"p\" {\n  stage \"exempt\" {\n" + body + "\n  }\n}\n"
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		body string
		want *Exempt
	}{
		{"defaults", ``, New()},
		{"names", `names = ["x"]`, &Exempt{Labels: New().Labels, Names: []string{"x"}, InfrastructureContainers: true}},
		{"all", `
    labels = { "team.keep" = "yes", keep = true }
    names = ["a", "b"]
    name_prefixes = ["ds01-"]
    infrastructure_containers = false`, &Exempt{
			Labels:       map[string]string{"team.keep": "yes", "keep": "true"},
			Names:        []string{"a", "b"},
			NamePrefixes: []string{"ds01-"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := load(t, stageBlock(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.Stages[0].Stage.(*Exempt)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("decoded %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeLabelsAdd(t *testing.T) {
	// labels replaces the attribute's value, but the DS01 labels still
	// exempt: they are not part of what a user can remove.
	cfg, err := load(t, stageBlock(`labels = { "team.keep" = "yes" }`))
	if err != nil {
		t.Fatal(err)
	}
	b := pipelinetest.Batch(pipelinetest.Ctr("a", "ds01.protected", "true"), pipelinetest.Ctr("b", "team.keep", "yes"))
	if err := cfg.Stages[0].Stage.Process(context.Background(), &pipeline.Env{}, b); err != nil {
		t.Fatal(err)
	}
	for _, rec := range b.Records {
		if !rec.Exempt {
			t.Errorf("%s not exempt", rec.Container.Name)
		}
	}
}

func TestDecodeSample(t *testing.T) {
	if _, err := load(t, "pipeline \"p\" {\n"+sample+"}\n"); err != nil {
		t.Fatalf("sample.hcl does not load: %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, body, summary string
		line                int
	}{
		{"unknown attribute", `    prefixes = ["x"]`, "Unsupported argument", 3},
		{"wrong type", `    names = "x"`, "Unsuitable value type", 3},
		{"empty prefix", `    name_prefixes = [""]`, "Invalid exempt stage", 3},
		{"empty label value", "\n    labels = { keep = \"\" }", "Invalid exempt stage", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, stageBlock(tt.body))
			var ce *pipeline.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("Load() = %v, want a *pipeline.ConfigError", err)
			}
			if !pipelinetest.HasDiag(ce.Diags, tt.summary, tt.line) {
				t.Errorf("diagnostics %v, want %q on line %d", ce.Diags, tt.summary, tt.line)
			}
		})
	}
}

func TestSpec(t *testing.T) {
	spec, _ := pipeline.DefaultRegistry.Lookup(Kind)
	got := map[string]pipeline.AttrDoc{}
	for _, a := range spec.Attributes() {
		if a.Doc == "" || a.Required {
			t.Errorf("attribute %s: doc %q, required %v", a.Name, a.Doc, a.Required)
		}
		got[a.Name] = a
	}
	for name, typ := range map[string]string{"labels": "map(string)", "names": "list(string)", "name_prefixes": "list(string)", "infrastructure_containers": "bool"} {
		if got[name].Type != typ {
			t.Errorf("attribute %s: type %q, want %q", name, got[name].Type, typ)
		}
	}
}
