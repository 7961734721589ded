package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// repoRoot is the repository root, seen from this package's folder, where
// `go test` runs.
const repoRoot = "../.."

// TestChartIsGenerated fails when the chart's generated templates differ
// from what config/ gives, so `go test ./...` catches a CRD or RBAC change
// without `make chart`.
func TestChartIsGenerated(t *testing.T) {
	stale, err := run(repoRoot, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) > 0 {
		t.Errorf("stale chart templates; run 'make chart':\n%s", strings.Join(stale, "\n"))
	}
}

// TestRunWritesAndRemoves generates into a copy of the sources and checks
// that a second run finds nothing stale, and that an edited or a stray
// file in the generated folders is reported, then rewritten or removed.
func TestRunWritesAndRemoves(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{
		"config/crd/bases/hookline.dev_webhookdispatchers.yaml",
		"config/rbac/role.yaml",
		"config/rbac/leader_election_role.yaml",
		"config/rbac/dispatcher_clusterrole.yaml",
		"config/rbac/dispatcher_local_clusterrole.yaml",
		"config/rbac/metrics_reader_role.yaml",
		"config/admission/subscription-references.yaml",
	} {
		data, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(root, f), string(data))
	}
	written, err := run(root, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 1+len(sources) {
		t.Errorf("the first run wrote %q, want %d files", written, 1+len(sources))
	}
	if stale, err := run(root, true); err != nil || len(stale) > 0 {
		t.Fatalf("right after generating: stale %q, error %v", stale, err)
	}

	edited := filepath.Join(root, crdOutDir, "hookline.dev_webhookdispatchers.yaml")
	write(t, edited, "edited by hand\n")
	stray := filepath.Join(root, generatedOutDir, "stray.yaml")
	write(t, stray, "kind: ConfigMap\n")
	want := []string{crdOutDir + "/hookline.dev_webhookdispatchers.yaml", generatedOutDir + "/stray.yaml"}
	stale, err := run(root, true)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, stale); diff != "" {
		t.Errorf("stale files (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(stray); err != nil {
		t.Errorf("-check removed the stray file: %v", err)
	}
	if _, err := run(root, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stray); !os.IsNotExist(err) {
		t.Errorf("the stray file is still there: %v", err)
	}
	if data, _ := os.ReadFile(edited); strings.Contains(string(data), "edited by hand") {
		t.Errorf("the edited file was not rewritten")
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestEscapeTemplate(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain text", "plain text"},
		{"a {{ .Values }} b", `a {{ "{{" }} .Values {{ "}}" }} b`},
		{"}}{{", `{{ "}}" }}{{ "{{" }}`},
		{"{{{", `{{ "{{" }}{`},
		{"{ } {x}", "{ } {x}"},
	}
	for _, tt := range tests {
		if got := escapeTemplate(tt.in); got != tt.want {
			t.Errorf("escapeTemplate(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDocuments(t *testing.T) {
	in := strings.Join([]string{
		"# A header comment",
		"---",
		"# About the role",
		"apiVersion: v1",
		"kind: Role",
		"metadata:",
		"  name: a",
		"",
		"---   ",
		"# comments only",
		"---",
		"kind: RoleBinding",
		"metadata:",
		"  name: b",
	}, "\n")
	got := documents(in)
	want := []document{
		{lines: []string{"# About the role", "apiVersion: v1", "kind: Role", "metadata:", "  name: a"}, kind: "Role", name: "a"},
		{lines: []string{"kind: RoleBinding", "metadata:", "  name: b"}, kind: "RoleBinding", name: "b"},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(document{})); diff != "" {
		t.Errorf("documents (-want +got):\n%s", diff)
	}
}

func TestRewriteMetadata(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		edits   metadataEdits
		want    string
		wantErr string
	}{{
		name: "labels added, name kept",
		doc:  "kind: ClusterRole\nmetadata:\n  name: hookline-dispatcher\nrules: []",
		want: "kind: ClusterRole\nmetadata:\n  name: hookline-dispatcher\n  labels:\n" + chartLabels + "\nrules: []",
	}, {
		name: "own labels kept but for the chart's",
		doc:  "metadata:\n  name: x\n  labels:\n    app.kubernetes.io/name: hookline\n    app.kubernetes.io/component: dispatcher\nrules: []",
		want: "metadata:\n  name: x\n  labels:\n" + chartLabels + "\n    app.kubernetes.io/component: dispatcher\nrules: []",
	}, {
		name:  "name templated, namespace set",
		doc:   "metadata:\n  name: hookline-leader-election\n  namespace: hookline-system\nrules: []",
		edits: metadataEdits{name: "{{ .N }}", namespaced: true},
		want:  "metadata:\n  name: {{ .N }}\n  namespace: {{ .Release.Namespace }}\n  labels:\n" + chartLabels + "\nrules: []",
	}, {
		name:  "namespace added",
		doc:   "metadata:\n  name: x\nspec: {}",
		edits: metadataEdits{namespaced: true},
		want:  "metadata:\n  name: x\n  namespace: {{ .Release.Namespace }}\n  labels:\n" + chartLabels + "\nspec: {}",
	}, {
		name:  "annotations extended",
		doc:   "metadata:\n  annotations:\n    a: b\n  name: x\nspec: {}",
		edits: metadataEdits{annotations: []string{"    keep: me"}},
		want:  "metadata:\n  annotations:\n    keep: me\n    a: b\n  name: x\n  labels:\n" + chartLabels + "\nspec: {}",
	}, {
		name:  "annotations created",
		doc:   "metadata:\n  name: x\nspec: {}",
		edits: metadataEdits{annotations: []string{"    keep: me"}},
		want:  "metadata:\n  name: x\n  labels:\n" + chartLabels + "\n  annotations:\n    keep: me\nspec: {}",
	}, {
		name: "comments kept in place",
		doc:  "metadata:\n  # the name users bind\n  name: x\n  # why labelled\n  labels:\n    a: b\nspec: {}",
		want: "metadata:\n  # the name users bind\n  name: x\n  # why labelled\n  labels:\n" + chartLabels + "\n    a: b\nspec: {}",
	}, {
		name:    "cluster-scoped object with a namespace",
		doc:     "metadata:\n  name: x\n  namespace: y\nrules: []",
		wantErr: "metadata.namespace is set",
	}, {
		name:    "unknown metadata",
		doc:     "metadata:\n  name: x\n  finalizers: [a]\nrules: []",
		wantErr: "metadata.finalizers",
	}, {
		name:    "inline labels",
		doc:     "metadata:\n  name: x\n  labels: {a: b}\nrules: []",
		wantErr: "written inline",
	}, {
		name:    "no metadata",
		doc:     "kind: X\nspec: {}",
		wantErr: "no top-level metadata",
	}, {
		name:    "no name",
		doc:     "metadata:\n  labels:\n    a: b\nspec: {}",
		wantErr: "no metadata.name",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := rewriteMetadata(strings.Split(tt.doc, "\n"), tt.edits)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, strings.Join(got, "\n")); diff != "" {
				t.Errorf("rewritten (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCRDTemplate(t *testing.T) {
	in := "---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  annotations:\n    controller-gen.kubebuilder.io/version: v0.23.0\n  name: things.example.com\nspec:\n  description: uses {{ braces }}\n"
	got, err := crdTemplate("config/crd/bases/things.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := header("config/crd/bases/things.yaml", `edit the API types and run "make manifests chart"`) +
		"{{- if .Values.crds.enabled }}\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  annotations:\n" +
		"    {{- if .Values.crds.keep }}\n    helm.sh/resource-policy: keep\n    {{- end }}\n" +
		"    controller-gen.kubebuilder.io/version: v0.23.0\n  name: things.example.com\n  labels:\n" + chartLabels + "\n" +
		"spec:\n  description: uses {{ \"{{\" }} braces {{ \"}}\" }}\n{{- end }}\n"
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("CRD template (-want +got):\n%s", diff)
	}

	if _, err := crdTemplate("two.yaml", []byte(in+"---\n"+in)); err == nil || !strings.Contains(err.Error(), "2 objects") {
		t.Errorf("two CRDs in a file: %v, want an error", err)
	}
}
