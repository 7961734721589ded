package playground

import (
	"context"
	"fmt"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/test/testenv"
)

// The tests that need the Kubernetes API use a real kube-apiserver and etcd
// with the real CRDs; each works in a namespace of its own.
var (
	kube kubernetes.Interface
	dyn  dynamic.Interface
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	env, cfg, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the test API server:", err)
		}
	}()
	if kube, err = kubernetes.NewForConfig(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "creating the test clientset:", err)
		return 1
	}
	if dyn, err = dynamic.NewForConfig(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "creating the test client:", err)
		return 1
	}
	return m.Run()
}

// newNamespace creates a namespace with a generated name.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns, err := kube.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "playground-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// createHookline creates a Hookline object, as its typed form, through the
// dynamic client (the package has no typed client for its kinds), and
// returns what the API server stored.
func createHookline(t *testing.T, resource string, obj runtime.Object) *unstructured.Unstructured {
	t.Helper()
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: raw}
	kind := map[string]string{"webhookdispatchers": "WebhookDispatcher", "webhooksecrets": "WebhookSecret", "webhooksubscriptions": "WebhookSubscription"}[resource]
	u.SetGroupVersionKind(hooklinev1.GroupVersion.WithKind(kind))
	created, err := dyn.Resource(schema.GroupVersionResource{Group: hooklinev1.GroupVersion.Group, Version: hooklinev1.GroupVersion.Version, Resource: resource}).
		Namespace(u.GetNamespace()).Create(context.Background(), u, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating %s %s: %v", kind, u.GetName(), err)
	}
	return created
}
