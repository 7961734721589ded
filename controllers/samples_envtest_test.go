package controllers

import (
	"os"
	"path/filepath"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/test/testenv"
)

// readManifests decodes the objects of the YAML files matching pattern.
func readManifests(t *testing.T, pattern string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := testenv.ReadManifests(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestSamplesBecomeReady applies the commented examples of config/samples
// (the README shows them) as a user would, and checks each kind reaches
// Ready with kstatus Current.
func TestSamplesBecomeReady(t *testing.T) {
	ns := newNamespace(t)
	for _, u := range readManifests(t, "config/samples/*.yaml") {
		u.SetNamespace(ns)
		if err := k8sClient.Apply(suiteCtx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("kubectl")); err != nil {
			t.Fatalf("applying sample %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
	markDispatcherAvailable(t, ns, "team")
	for _, obj := range []client.Object{
		&hooklinev1.WebhookSecret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders-signing"}},
		&hooklinev1.WebhookDispatcher{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "team"}},
	} {
		waitForKstatus(t, obj, status.CurrentStatus)
	}
	// The subscription is Ready once the dispatcher, which the test API
	// server does not run, accepts it.
	whsubAcceptAndWaitForReady(t, &hooklinev1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing"}}, hooklinev1.ReasonSucceeded)
}

// TestConfigRBACIsAccepted applies the RBAC of config/rbac to the API
// server: the manager's generated ClusterRole, its bindings and the
// ClusterRole bound to dispatchers.
func TestConfigRBACIsAccepted(t *testing.T) {
	objs := readManifests(t, "config/rbac/*.yaml")
	applied := map[string]bool{}
	for _, u := range objs {
		if err := k8sClient.Apply(suiteCtx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("kubectl")); err != nil {
			t.Fatalf("applying %s %s: %v", u.GetKind(), u.GetName(), err)
		}
		applied[u.GetKind()+"/"+u.GetName()] = true
	}
	for _, want := range []string{
		"ClusterRole/hookline-manager", "ClusterRoleBinding/hookline-manager", "ServiceAccount/hookline-manager",
		"ClusterRole/hookline-dispatcher", "ClusterRole/hookline-metrics-reader",
	} {
		if !applied[want] {
			t.Errorf("config/rbac lacks %s", want)
		}
	}
}

// TestKustomizationsListEveryManifest keeps `kubectl apply -k` of each
// config folder in step with the files in it.
func TestKustomizationsListEveryManifest(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "*", "kustomization.yaml"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no kustomizations under config/: %v", err)
	}
	for _, k := range dirs {
		dir := filepath.Dir(k)
		data, err := os.ReadFile(k)
		if err != nil {
			t.Fatal(err)
		}
		var kustomization struct {
			Resources []string `json:"resources"`
		}
		if err := yaml.Unmarshal(data, &kustomization); err != nil {
			t.Fatalf("parsing %s: %v", k, err)
		}
		listed := map[string]bool{}
		for _, r := range kustomization.Resources {
			listed[r] = true
			if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
				t.Errorf("%s lists %s, which does not exist", k, r)
			}
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, f := range files {
			if name := filepath.Base(f); name != "kustomization.yaml" && !listed[name] {
				t.Errorf("%s does not list %s", k, name)
			}
		}
	}
}
