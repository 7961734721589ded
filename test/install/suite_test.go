// Package install checks the two ways of installing Hookline, the Helm
// chart charts/hookline and the kustomization config/default: what they
// render, and that a real API server, started bare (no CRDs), accepts all
// of it.
package install

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/rand"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/hookline/hookline/test/testenv"
)

// The API server every test of the package installs into.
var (
	suiteCtx context.Context
	dyn      dynamic.Interface
	kube     kubernetes.Interface
	mapper   *restmapper.DeferredDiscoveryRESTMapper
	warnings = &warningRecorder{}
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

// runSuite starts an API server without the CRDs (installing them is part
// of what is tested) and runs the tests against it.
func runSuite(m *testing.M) int {
	assets, err := testenv.AssetsDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the test API server:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	cfg.QPS, cfg.Burst = 500, 1000
	// Pod Security admission answers a workload that the namespace's
	// level would refuse with a warning; the tests fail on any.
	cfg.WarningHandler = warnings

	var cancel context.CancelFunc
	suiteCtx, cancel = context.WithCancel(context.Background())
	defer cancel()
	if dyn, err = dynamic.NewForConfig(cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if kube, err = kubernetes.NewForConfig(cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))
	return m.Run()
}

var _ rest.WarningHandler = warnings

// warningRecorder keeps the warnings the API server answers with.
type warningRecorder struct {
	mu   sync.Mutex
	msgs []string
}

// HandleWarningHeader records one warning.
func (w *warningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

// take returns the warnings recorded since the last call.
func (w *warningRecorder) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	msgs := w.msgs
	w.msgs = nil
	return msgs
}

// newNamespace creates a namespace that enforces the restricted Pod
// Security level, as the operator's namespace should, and deletes it after
// the test.
func newNamespace(t *testing.T) string {
	t.Helper()
	name := "install-" + rand.String(6)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
		"pod-security.kubernetes.io/warn":    "restricted",
	}}}
	if _, err := kube.CoreV1().Namespaces().Create(suiteCtx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the namespace %s: %v", name, err)
	}
	t.Cleanup(func() { _ = kube.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	return name
}

// decodeYAML reads every object of a multi-document YAML stream, with
// integers as int64 as the API machinery decodes them.
func decodeYAML(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		var doc json.RawMessage
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			return objs, nil
		} else if err != nil {
			return nil, fmt.Errorf("decoding manifests: %w", err)
		}
		if len(doc) == 0 || string(doc) == "null" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(doc); err != nil {
			return nil, fmt.Errorf("decoding a manifest: %w", err)
		}
		objs = append(objs, u)
	}
}

// isCRD tells CustomResourceDefinitions apart.
func isCRD(u *unstructured.Unstructured) bool {
	return u.GetKind() == "CustomResourceDefinition"
}

// applyOrder sorts objects as an install applies them: Namespaces, then
// CRDs, then the rest in their order.
func applyOrder(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	rank := func(u *unstructured.Unstructured) int {
		switch {
		case u.GetKind() == "Namespace":
			return 0
		case isCRD(u):
			return 1
		}
		return 2
	}
	sorted := slices.Clone(objs)
	slices.SortStableFunc(sorted, func(a, b *unstructured.Unstructured) int { return rank(a) - rank(b) })
	return sorted
}

// install applies objects with server-side apply as a user's `kubectl
// apply --server-side` would: the Namespaces and CRDs first, then, once
// every CRD is established, the rest. Each object must be accepted, and
// no request may draw a warning (Pod Security among them).
func install(t *testing.T, objs []*unstructured.Unstructured, fieldManager string) {
	t.Helper()
	warnings.take()
	var crds []string
	established := false
	for _, u := range applyOrder(objs) {
		if !isCRD(u) && u.GetKind() != "Namespace" && !established {
			for _, name := range crds {
				waitEstablished(t, name)
			}
			// The kinds of the new CRDs are now served.
			mapper.Reset()
			established = true
		}
		apply(t, u, fieldManager, false)
		if isCRD(u) {
			crds = append(crds, u.GetName())
		}
	}
	if w := warnings.take(); len(w) > 0 {
		t.Errorf("the API server warned while installing:\n%s", strings.Join(w, "\n"))
	}
}

// apply server-side applies one object, or only checks that the API server
// would accept it with dryRun, and returns the object as stored.
func apply(t *testing.T, u *unstructured.Unstructured, fieldManager string, dryRun bool) *unstructured.Unstructured {
	t.Helper()
	gvk := u.GroupVersionKind()
	mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		t.Fatalf("mapping %s %s to a resource: %v", gvk.Kind, u.GetName(), err)
	}
	var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		if u.GetNamespace() == "" {
			t.Fatalf("%s %s is namespaced but names no namespace: it would land in whatever namespace kubectl defaults to", gvk.Kind, u.GetName())
		}
		ri = dyn.Resource(mapping.Resource).Namespace(u.GetNamespace())
	} else if u.GetNamespace() != "" {
		t.Errorf("%s %s is cluster-scoped but names the namespace %s", gvk.Kind, u.GetName(), u.GetNamespace())
	}
	opts := metav1.ApplyOptions{FieldManager: fieldManager, Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	out, err := ri.Apply(suiteCtx, u.GetName(), u, opts)
	if err != nil {
		t.Fatalf("applying %s %s: %v", gvk.Kind, u.GetName(), err)
	}
	return out
}

// waitEstablished waits until the API server serves a CRD's kind.
func waitEstablished(t *testing.T, name string) {
	t.Helper()
	crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	waitFor(t, 30*time.Second, func() error {
		u, err := crds.Get(suiteCtx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			if m, _ := c.(map[string]any); m["type"] == "Established" && m["status"] == "True" {
				return nil
			}
		}
		return fmt.Errorf("the CRD %s is not established", name)
	})
}

// waitFor polls check until it succeeds. A slow machine only makes it wait
// longer: past expected it logs the last error, and it fails only when the
// test binary's -timeout is about to end the run.
func waitFor(t *testing.T, expected time.Duration, check func() error) {
	t.Helper()
	ctx, cancel := context.WithDeadline(suiteCtx, testenv.GiveUpAt(t))
	defer cancel()
	start := time.Now()
	logged := false
	var err error
	for {
		if err = check(); err == nil {
			return
		}
		if !logged && time.Since(start) > expected {
			t.Logf("still waiting after %s: %v", expected, err)
			logged = true
		}
		select {
		case <-ctx.Done():
			t.Fatalf("still failing after %s: %v", time.Since(start).Round(time.Second), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// getBack reads an applied object from the API server.
func getBack(t *testing.T, u *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	gvk := u.GroupVersionKind()
	mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		t.Fatalf("mapping %s: %v", gvk.Kind, err)
	}
	var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = dyn.Resource(mapping.Resource).Namespace(u.GetNamespace())
	}
	out, err := ri.Get(suiteCtx, u.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		t.Fatalf("%s %s was applied but is not on the API server", gvk.Kind, u.GetName())
	} else if err != nil {
		t.Fatalf("reading %s %s back: %v", gvk.Kind, u.GetName(), err)
	}
	return out
}

// find returns the object of a kind and name, failing the test without it.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() == kind && u.GetName() == name {
			return u
		}
	}
	t.Fatalf("no %s %s among %s", kind, name, describe(objs))
	return nil
}

// has says whether objs hold an object of a kind and name.
func has(objs []*unstructured.Unstructured, kind, name string) bool {
	for _, u := range objs {
		if u.GetKind() == kind && u.GetName() == name {
			return true
		}
	}
	return false
}

// ofKind returns the objects of a kind.
func ofKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, u := range objs {
		if u.GetKind() == kind {
			out = append(out, u)
		}
	}
	return out
}

// describe lists objects as Kind/name, for failure messages.
func describe(objs []*unstructured.Unstructured) string {
	names := make([]string, 0, len(objs))
	for _, u := range objs {
		names = append(names, u.GetKind()+"/"+u.GetName())
	}
	return strings.Join(names, ", ")
}

// convert turns an unstructured object into a typed one.
func convert[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, out, true); err != nil {
		t.Fatalf("converting %s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return out
}
