package controllers

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

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
		&hooklinev1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing"}},
	} {
		waitForKstatus(t, obj, status.CurrentStatus)
	}
}

// TestConfigRBACIsAccepted applies the RBAC of config/rbac to the API
// server: the manager's generated ClusterRole, its bindings and the
// ClusterRole bound to dispatchers.
func TestConfigRBACIsAccepted(t *testing.T) {
	objs := readManifests(t, "config/rbac/*.yaml")
	kinds := map[string]int{}
	for _, u := range objs {
		if err := k8sClient.Apply(suiteCtx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("kubectl")); err != nil {
			t.Fatalf("applying %s %s: %v", u.GetKind(), u.GetName(), err)
		}
		kinds[u.GetKind()]++
	}
	if kinds["ClusterRole"] != 2 || kinds["ServiceAccount"] != 1 || kinds["ClusterRoleBinding"] != 1 {
		t.Errorf("config/rbac holds %v; want the manager and dispatcher ClusterRoles, the manager's ServiceAccount and binding", kinds)
	}
}
