package flux

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

const (
	kustomizationPath = "kustomization.yaml"
	helmReleasePath   = "helmrelease.yaml"
	fixturesDir       = "../argocd/testdata"
	docPath           = "../../docs/gitops.md"
	chartDir          = "../../charts/hookline"
)

// documents splits a multi-document YAML file and decodes each document.
func documents(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]any
	for _, part := range bytes.Split(b, []byte("\n---\n")) {
		var doc map[string]any
		if err := yaml.Unmarshal(part, &doc); err != nil {
			t.Fatalf("parsing %s: %v", path, err)
		}
		docs = append(docs, doc)
	}
	return docs
}

// healthCheckExprs are one entry of a Kustomization's
// spec.healthCheckExprs.
type healthCheckExprs struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	InProgress string `json:"inProgress"`
	Failed     string `json:"failed"`
	Current    string `json:"current"`
}

// fluxStatus is how Flux judges an object with healthCheckExprs.
type fluxStatus string

const (
	current    fluxStatus = "Current"
	inProgress fluxStatus = "InProgress"
	failed     fluxStatus = "Failed"
	// unknown is an expression that could not be evaluated: Flux reports
	// the object's status as Unknown and keeps polling until the timeout.
	unknown fluxStatus = "Unknown"
)

// evaluate judges obj as kustomize-controller does with healthCheckExprs
// (Flux RFC 0009): an observedGeneration behind metadata.generation is
// InProgress; then inProgress, failed and current are tried in that order,
// the first true one wins; none true is InProgress. Expressions are parsed,
// not type-checked, in Flux's CEL environment, with the object's top-level
// fields as variables.
func evaluate(t *testing.T, e healthCheckExprs, obj *unstructured.Unstructured) fluxStatus {
	t.Helper()
	observed, hasObserved, _ := unstructured.NestedInt64(obj.Object, "status", "observedGeneration")
	if hasObserved && observed != obj.GetGeneration() {
		return inProgress
	}
	env, err := cel.NewEnv(
		cel.HomogeneousAggregateLiterals(),
		cel.EagerlyValidateDeclarations(true),
		cel.DefaultUTCTimeZone(true),
		cel.CrossTypeNumericComparisons(true),
		cel.OptionalTypes(),
		ext.Strings(),
		ext.Sets(),
		ext.Encoders(),
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		expr   string
		result fluxStatus
	}{{e.InProgress, inProgress}, {e.Failed, failed}, {e.Current, current}} {
		if step.expr == "" {
			continue
		}
		ast, iss := env.Parse(step.expr)
		if iss.Err() != nil {
			t.Fatalf("parsing %q: %v", step.expr, iss.Err())
		}
		prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
		if err != nil {
			t.Fatalf("planning %q: %v", step.expr, err)
		}
		val, _, err := prg.ContextEval(context.Background(), obj.Object)
		if err != nil {
			return unknown
		}
		b, ok := val.(types.Bool)
		if !ok {
			t.Fatalf("%q evaluates to %v, not a boolean", step.expr, val)
		}
		if b {
			return step.result
		}
	}
	return inProgress
}

func loadFixture(t *testing.T, kind, name string) *unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixturesDir, kind, name))
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(j); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestHealthCheckExprs(t *testing.T) {
	docs := documents(t, kustomizationPath)
	if len(docs) != 1 {
		t.Fatalf("%s holds %d documents, want 1", kustomizationPath, len(docs))
	}
	ks := docs[0]
	if ks["apiVersion"] != "kustomize.toolkit.fluxcd.io/v1" || ks["kind"] != "Kustomization" {
		t.Fatalf("%s is a %v %v, want a kustomize.toolkit.fluxcd.io/v1 Kustomization", kustomizationPath, ks["apiVersion"], ks["kind"])
	}
	if wait, _, _ := unstructured.NestedBool(ks, "spec", "wait"); !wait {
		t.Errorf("spec.wait is not true: without it Flux checks nothing but the objects in spec.healthChecks")
	}
	raw, _, _ := unstructured.NestedSlice(ks, "spec", "healthCheckExprs")
	j, err := yaml.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	var entries []healthCheckExprs
	if err := yaml.UnmarshalStrict(j, &entries); err != nil {
		t.Fatalf("spec.healthCheckExprs: %v", err)
	}
	byKind := map[string]healthCheckExprs{}
	for _, e := range entries {
		if e.APIVersion != "hookline.dev/v1alpha1" {
			t.Errorf("healthCheckExprs for %s: apiVersion %q, want hookline.dev/v1alpha1", e.Kind, e.APIVersion)
		}
		if e.Current == "" {
			t.Errorf("healthCheckExprs for %s: current is required", e.Kind)
		}
		byKind[e.Kind] = e
	}

	tests := []struct {
		kind, fixture string
		want          fluxStatus
	}{
		{"WebhookSubscription", "healthy.yaml", current},
		{"WebhookSubscription", "progressing-awaiting-dispatcher.yaml", inProgress},
		{"WebhookSubscription", "progressing-awaiting-dispatcher-stale-endpoint-condition.yaml", inProgress},
		// Without any status the expressions cannot be evaluated: Flux
		// keeps waiting, where kstatus' generic rules say Current.
		{"WebhookSubscription", "progressing-new.yaml", unknown},
		{"WebhookSubscription", "progressing-stale-generation.yaml", inProgress},
		{"WebhookSubscription", "progressing-secret-not-found.yaml", inProgress},
		{"WebhookSubscription", "progressing-dispatcher-not-ready.yaml", inProgress},
		{"WebhookSubscription", "degraded-namespace-not-allowed.yaml", failed},
		// Reconciled but failing deliveries: not Ready, so a Kustomization
		// waiting on it times out while the endpoint fails.
		{"WebhookSubscription", "degraded-endpoint-failing.yaml", inProgress},
		{"WebhookSubscription", "degraded-endpoint-gone.yaml", failed},
		{"WebhookSubscription", "degraded-gone-before-controller.yaml", current},
		{"WebhookSubscription", "suspended-by-spec.yaml", current},
		{"WebhookDispatcher", "healthy.yaml", current},
		{"WebhookDispatcher", "progressing-new.yaml", unknown},
		{"WebhookDispatcher", "progressing-replicas.yaml", inProgress},
		{"WebhookDispatcher", "degraded-object-conflict.yaml", failed},
		{"WebhookSecret", "healthy.yaml", current},
		{"WebhookSecret", "healthy-rotation-overlap.yaml", current},
		{"WebhookSecret", "progressing-stale-generation.yaml", inProgress},
		{"WebhookSecret", "progressing-secret-deleting.yaml", inProgress},
		{"WebhookSecret", "degraded-secret-conflict.yaml", failed},
	}
	for _, tc := range tests {
		t.Run(tc.kind+"/"+strings.TrimSuffix(tc.fixture, ".yaml"), func(t *testing.T) {
			e, ok := byKind[tc.kind]
			if !ok {
				t.Fatalf("no healthCheckExprs for %s", tc.kind)
			}
			if got := evaluate(t, e, loadFixture(t, tc.kind, tc.fixture)); got != tc.want {
				t.Errorf("Flux status = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestHelmReleaseMatchesChart checks the HelmRelease against the chart it
// installs: the chart path, and values the chart defines.
func TestHelmReleaseMatchesChart(t *testing.T) {
	var release map[string]any
	for _, doc := range documents(t, helmReleasePath) {
		if doc["kind"] == "HelmRelease" {
			release = doc
		}
	}
	if release == nil {
		t.Fatalf("%s has no HelmRelease", helmReleasePath)
	}
	chart, _, _ := unstructured.NestedString(release, "spec", "chart", "spec", "chart")
	if filepath.Clean(chart) != "charts/hookline" {
		t.Errorf("chart %q, want ./charts/hookline", chart)
	}
	meta, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatalf("reading the chart: %v", err)
	}
	var chartMeta struct {
		Name       string `json:"name"`
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(meta, &chartMeta); err != nil {
		t.Fatal(err)
	}
	if chartMeta.Name != "hookline" {
		t.Errorf("the chart is named %q, want hookline", chartMeta.Name)
	}

	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatalf("reading the chart's values: %v", err)
	}
	var defaults map[string]any
	if err := yaml.Unmarshal(b, &defaults); err != nil {
		t.Fatal(err)
	}
	values, _, _ := unstructured.NestedMap(release, "spec", "values")
	if len(values) == 0 {
		t.Fatal("the HelmRelease sets no values")
	}
	for _, path := range leafPaths(values, nil) {
		if _, found, err := unstructured.NestedFieldNoCopy(defaults, path...); !found || err != nil {
			t.Errorf("value %s is not one of the chart's", strings.Join(path, "."))
		}
	}
}

// leafPaths lists the paths to the non-map values of m.
func leafPaths(m map[string]any, prefix []string) [][]string {
	var paths [][]string
	for k, v := range m {
		p := append(slices.Clone(prefix), k)
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
			paths = append(paths, leafPaths(sub, p)...)
			continue
		}
		paths = append(paths, p)
	}
	return paths
}

// TestDocShowsFiles checks that docs/gitops.md shows the example files as
// they are, so the documentation cannot drift from what is tested.
func TestDocShowsFiles(t *testing.T) {
	doc, err := os.ReadFile(docPath)
	if errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s is missing", docPath)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{kustomizationPath, helmReleasePath} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(doc, append([]byte("```yaml\n"), b...)) {
			t.Errorf("%s does not show gitops/flux/%s as it is, in a yaml block", docPath, path)
		}
	}
}
