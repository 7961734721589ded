package install

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/hookline/hookline/test/testenv"
)

// kustomizeFolding ignores the blank lines kustomize's YAML encoder adds to
// folded scalars (">-") with more-indented lines, such as the admission
// policy's CEL expressions: it writes them back with one newline too many,
// which CEL, ignoring whitespace, does not mind.
var kustomizeFolding = cmp.Transformer("collapseNewlines", func(s string) string {
	return repeatedNewlines.ReplaceAllString(s, "\n")
})

var repeatedNewlines = regexp.MustCompile(`\n+`)

// kustomizeBuild runs `kustomize build` on a folder.
func kustomizeBuild(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("building %s: %v", dir, err)
	}
	data, err := resources.AsYaml()
	if err != nil {
		t.Fatalf("writing %s as YAML: %v", dir, err)
	}
	objs, err := decodeYAML(data)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// overlay writes a kustomization that installs base into namespace, as a
// user installing elsewhere than hookline-system would, and returns its
// folder.
func overlay(t *testing.T, base, namespace string) string {
	t.Helper()
	dir := t.TempDir()
	rel, err := filepath.Rel(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: " + namespace + "\nresources:\n- " + filepath.ToSlash(rel) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func configDir(name string) string {
	return filepath.Join(testenv.RepoRoot(), "config", filepath.FromSlash(name))
}

// TestConfigDefault checks what `kubectl apply -k config/default` installs:
// the same operator as the chart's defaults.
func TestConfigDefault(t *testing.T) {
	objs := kustomizeBuild(t, configDir("default"))
	chart := mustRender(t, nil)

	for _, want := range []struct{ kind, name string }{
		{"Namespace", "hookline-system"},
		{"CustomResourceDefinition", "webhookdispatchers.hookline.dev"},
		{"CustomResourceDefinition", "webhooksecrets.hookline.dev"},
		{"CustomResourceDefinition", "webhooksubscriptions.hookline.dev"},
		{"ServiceAccount", "hookline-manager"},
		{"ClusterRoleBinding", "hookline-manager"},
		{"RoleBinding", "hookline-leader-election"},
		{"ValidatingAdmissionPolicyBinding", "hookline-subscription-references"},
		{"Deployment", "hookline-manager"},
	} {
		find(t, objs, want.kind, want.name)
	}
	// The objects both install are the same but for their metadata.
	for _, c := range chart.objects {
		if c.GetKind() == "ClusterRoleBinding" || c.GetKind() == "RoleBinding" || c.GetKind() == "Deployment" {
			continue // compared below: subjects and pod labels differ
		}
		if !has(objs, c.GetKind(), c.GetName()) {
			t.Errorf("config/default lacks the chart's %s %s", c.GetKind(), c.GetName())
			continue
		}
		if diff := cmp.Diff(withoutMetadata(t, c), withoutMetadata(t, find(t, objs, c.GetKind(), c.GetName())), kustomizeFolding); diff != "" {
			t.Errorf("%s %s differs between the chart and config/default (-chart +config):\n%s", c.GetKind(), c.GetName(), diff)
		}
	}
	for _, u := range objs {
		if u.GetLabels()["app.kubernetes.io/part-of"] != "hookline" {
			t.Errorf("%s %s lacks the label app.kubernetes.io/part-of=hookline", u.GetKind(), u.GetName())
		}
		if ns := u.GetNamespace(); ns != "" && ns != "hookline-system" {
			t.Errorf("%s %s is in the namespace %s", u.GetKind(), u.GetName(), ns)
		}
	}
	if n := find(t, objs, "Namespace", "hookline-system"); n.GetLabels()["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("the namespace does not enforce the restricted Pod Security level: %v", n.GetLabels())
	}

	// The manager runs as the chart's does.
	got := convert[appsv1.Deployment](t, find(t, objs, "Deployment", "hookline-manager")).Spec.Template.Spec
	want := convert[appsv1.Deployment](t, find(t, chart.objects, "Deployment", "hookline-manager")).Spec.Template.Spec
	if diff := cmp.Diff(want.SecurityContext, got.SecurityContext); diff != "" {
		t.Errorf("pod security context (-chart +config):\n%s", diff)
	}
	gc, wc := got.Containers[0], want.Containers[0]
	if diff := cmp.Diff(wc.SecurityContext, gc.SecurityContext); diff != "" {
		t.Errorf("container security context (-chart +config):\n%s", diff)
	}
	if gc.Image != wc.Image {
		t.Errorf("config/default runs %s, the chart %s: keep the image tag and the chart's appVersion in step", gc.Image, wc.Image)
	}
	// The chart passes the image to dispatchers explicitly; config/default
	// relies on the binary's default, the same repository at its version.
	wantArgs := slices.DeleteFunc(slices.Clone(wc.Args), func(a string) bool {
		return strings.HasPrefix(a, "--dispatcher-image=") || strings.HasPrefix(a, "--zap-log-level=")
	})
	if diff := cmp.Diff(wantArgs, gc.Args); diff != "" {
		t.Errorf("manager arguments (-chart +config):\n%s", diff)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"env", gc.Env, wc.Env},
		{"ports", gc.Ports, wc.Ports},
		{"liveness probe", gc.LivenessProbe, wc.LivenessProbe},
		{"readiness probe", gc.ReadinessProbe, wc.ReadinessProbe},
		{"resources", gc.Resources, wc.Resources},
		{"volume mounts", gc.VolumeMounts, wc.VolumeMounts},
		{"volumes", got.Volumes, want.Volumes},
		{"service account", got.ServiceAccountName, want.ServiceAccountName},
	} {
		if diff := cmp.Diff(c.want, c.got); diff != "" {
			t.Errorf("manager %s (-chart +config):\n%s", c.name, diff)
		}
	}

	dispatcher := kustomizeBuild(t, configDir("default/dispatcher"))
	wd := find(t, dispatcher, "WebhookDispatcher", "default")
	if wd.GetNamespace() != "hookline-system" {
		t.Errorf("the default dispatcher is in %q, not the manager's namespace", wd.GetNamespace())
	}
	if diff := cmp.Diff(find(t, chart.hooks, "WebhookDispatcher", "default").Object["spec"], wd.Object["spec"]); diff != "" {
		t.Errorf("default dispatcher spec (-chart +config):\n%s", diff)
	}
}

// TestConfigDefaultInstalls applies config/default, moved into a fresh
// namespace by an overlay, to the API server: CRDs first, then the rest,
// then config/default/dispatcher. Every object must be accepted, with no
// Pod Security warning.
func TestConfigDefaultInstalls(t *testing.T) {
	ns := "hookline-" + rand.String(6)
	objs := kustomizeBuild(t, overlay(t, configDir("default"), ns))
	n := find(t, objs, "Namespace", ns)
	if n.GetLabels()["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("the overlay's namespace lost its labels: %v", n.GetLabels())
	}
	t.Cleanup(func() { _ = kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	// The manager's bindings follow its ServiceAccount into the namespace.
	for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
		for _, b := range ofKind(objs, kind) {
			for _, s := range convert[rbacv1.ClusterRoleBinding](t, b).Subjects {
				if s.Namespace != ns {
					t.Errorf("%s %s binds %s in %q, not %q", kind, b.GetName(), s.Name, s.Namespace, ns)
				}
			}
		}
	}

	install(t, objs, "kubectl")
	for _, u := range objs {
		getBack(t, u)
	}
	dispatcher := kustomizeBuild(t, overlay(t, configDir("default/dispatcher"), ns))
	install(t, dispatcher, "kubectl")
	stored := getBack(t, find(t, dispatcher, "WebhookDispatcher", "default"))
	if stored.GetNamespace() != ns {
		t.Errorf("the dispatcher is in %q, want %q", stored.GetNamespace(), ns)
	}
	sa := convert[corev1.ServiceAccount](t, getBack(t, find(t, objs, "ServiceAccount", "hookline-manager")))
	if sa.Namespace != ns {
		t.Errorf("the manager's ServiceAccount is in %q", sa.Namespace)
	}
	d := convert[appsv1.Deployment](t, getBack(t, find(t, objs, "Deployment", "hookline-manager")))
	if ptr.Deref(d.Spec.Replicas, 0) != 1 {
		t.Errorf("stored manager replicas %v", d.Spec.Replicas)
	}
}
