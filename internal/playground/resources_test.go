package playground

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/eventtype"
)

// The sample resources pass the CRDs' validation as they are, and the
// API server stores what the playground relies on.
func TestSampleResourcesPassAdmission(t *testing.T) {
	ns := newNamespace(t)
	d := Dispatcher()
	d.Namespace = ns
	stored := createHookline(t, "webhookdispatchers", d)
	if v, _, _ := unstructured.NestedBool(stored.Object, "spec", "egress", "allowPlainHTTP"); !v {
		t.Errorf("the dispatcher does not allow plain HTTP: %v", stored.Object["spec"])
	}
	if v, _, _ := unstructured.NestedStringSlice(stored.Object, "spec", "egress", "allowedCIDRs"); !slices.Equal(v, []string{"127.0.0.0/8"}) {
		t.Errorf("allowedCIDRs = %v", v)
	}
	if v, _, _ := unstructured.NestedString(stored.Object, "spec", "producerAuthentication"); v != string(hooklinev1.ProducerAuthServiceAccountToken) {
		t.Errorf("producer authentication is %q, want it on", v)
	}

	ws := SigningSecret()
	ws.Namespace = ns
	createHookline(t, "webhooksecrets", ws)

	subs := Subscriptions("http://127.0.0.1:4321")
	if len(subs) != 2 || subs[0].Name != OrdersSubscription || subs[1].Name != FlakySubscription {
		t.Fatalf("subscriptions %v", subs)
	}
	want := map[string]string{
		OrdersSubscription: "http://127.0.0.1:4321/hooks/orders",
		FlakySubscription:  "http://127.0.0.1:4321/fail/flaky",
	}
	for _, s := range subs {
		s.Namespace = ns
		stored := createHookline(t, "webhooksubscriptions", s)
		if url, _, _ := unstructured.NestedString(stored.Object, "spec", "url"); url != want[s.Name] {
			t.Errorf("%s delivers to %q, want %q", s.Name, url, want[s.Name])
		}
		if ref, _, _ := unstructured.NestedString(stored.Object, "spec", "signing", "secretRef", "name"); ref != SigningSecretName {
			t.Errorf("%s signs with %q", s.Name, ref)
		}
	}
	if r := subs[1].Spec.Delivery.Retry; r.MaxAttempts != 3 || r.InitialBackoff == nil || r.MaxBackoff == nil {
		t.Errorf("flaky's retry policy %+v is not the short one", r)
	}
}

// The producer may publish (create webhookevents) in its namespace and
// nowhere else, as the ingest API's SubjectAccessReview will ask.
func TestProducerMayPublishInItsNamespaceOnly(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	sa, role, binding := Producer()
	sa.Namespace, role.Namespace, binding.Namespace = ns, ns, ns
	binding.Subjects[0].Namespace = ns
	if _, err := kube.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		namespace, verb string
		allowed         bool
	}{
		{ns, "create", true},
		{ns, "delete", false},
		{"default", "create", false},
	} {
		review, err := kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{
				User:   "system:serviceaccount:" + ns + ":" + ProducerName,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns},
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Namespace: tc.namespace, Verb: tc.verb, Group: hooklinev1.GroupVersion.Group, Resource: "webhookevents",
				},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if review.Status.Allowed != tc.allowed {
			t.Errorf("%s webhookevents in %s: allowed %v, want %v", tc.verb, tc.namespace, review.Status.Allowed, tc.allowed)
		}
	}
}

// The demo events reach the subscriptions the playground says they do:
// all of them "orders", the order.created ones "flaky" too.
func TestDemoEventsRouting(t *testing.T) {
	got := map[string][]string{}
	for _, s := range Subscriptions("http://127.0.0.1:1") {
		set, err := eventtype.CompileSet(s.Spec.EventTypes)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range DemoEvents() {
			if err := eventtype.ValidateType(e.Type); err != nil {
				t.Errorf("event type %q: %v", e.Type, err)
			}
			if set.Match(e.Type) {
				got[s.Name] = append(got[s.Name], e.ID)
			}
		}
	}
	want := map[string][]string{
		OrdersSubscription: {"order-1001", "order-1002", "order-1001-paid"},
		FlakySubscription:  {"order-1001", "order-1002"},
	}
	for name, ids := range want {
		if !slices.Equal(got[name], ids) {
			t.Errorf("%s gets %v, want %v", name, got[name], ids)
		}
	}
}

func TestPublish(t *testing.T) {
	var gotReq struct {
		method, path, auth, contentType string
		body                            map[string]any
	}
	answer := func(w http.ResponseWriter) {}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		gotReq.method, gotReq.path = r.Method, r.URL.Path
		gotReq.auth, gotReq.contentType = r.Header.Get("Authorization"), r.Header.Get("Content-Type")
		gotReq.body = nil
		_ = json.Unmarshal(raw, &gotReq.body)
		answer(w)
	}))
	defer srv.Close()
	event := Event{ID: "order-1", Type: "order.created", Data: map[string]any{"total": 42}}

	for _, tc := range []struct {
		name    string
		answer  func(w http.ResponseWriter)
		wantID  string
		wantErr string
	}{
		{
			name: "accepted",
			answer: func(w http.ResponseWriter) {
				w.WriteHeader(http.StatusAccepted)
				_, _ = io.WriteString(w, `{"id":"order-1"}`)
			},
			wantID: "order-1",
		},
		{
			name: "refused, with the API's message",
			answer: func(w http.ResponseWriter) {
				w.WriteHeader(http.StatusForbidden)
				_, _ = io.WriteString(w, `{"message":"may not publish in namespace demo"}`)
			},
			wantErr: "publishing order.created: 403 Forbidden: may not publish in namespace demo",
		},
		{
			name: "refused, without JSON",
			answer: func(w http.ResponseWriter) {
				http.Error(w, "queue full", http.StatusServiceUnavailable)
			},
			wantErr: "publishing order.created: 503 Service Unavailable: queue full",
		},
		{
			name: "accepted without an id",
			answer: func(w http.ResponseWriter) {
				w.WriteHeader(http.StatusAccepted)
				_, _ = io.WriteString(w, `{}`)
			},
			wantErr: "publishing order.created: the answer names no id: {}",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answer = tc.answer
			id, err := Publish(context.Background(), srv.URL, "the-token", "demo", event)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Errorf("error %v, want %q", err, tc.wantErr)
				}
			} else if err != nil || id != tc.wantID {
				t.Errorf("Publish = %q, %v; want %q", id, err, tc.wantID)
			}
			if gotReq.method != http.MethodPost || gotReq.path != "/v1/namespaces/demo/events" ||
				gotReq.auth != "Bearer the-token" || gotReq.contentType != "application/json" {
				t.Errorf("request %s %s, Authorization %q, Content-Type %q", gotReq.method, gotReq.path, gotReq.auth, gotReq.contentType)
			}
			if gotReq.body["id"] != "order-1" || gotReq.body["type"] != "order.created" || len(gotReq.body) != 3 {
				t.Errorf("body %v", gotReq.body)
			}
		})
	}
}

func TestReadManifests(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: one}\n---\n# nothing\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: two}\n")
	write("kustomization.yaml", "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n")
	objs, err := ReadManifests(dir, "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, o.GetKind()+"/"+o.GetName())
	}
	if !slices.Equal(names, []string{"ServiceAccount/one", "ServiceAccount/two"}) {
		t.Errorf("read %v", names)
	}

	if _, err := ReadManifests(dir, "*.json"); err == nil || !strings.Contains(err.Error(), "no file matches") {
		t.Errorf("no match: %v", err)
	}
	write("b.yaml", "kind: [unclosed\n")
	if _, err := ReadManifests(dir, "*.yaml"); err == nil || !strings.Contains(err.Error(), "b.yaml") {
		t.Errorf("bad YAML: %v", err)
	}

	// The install's RBAC, which the playground applies, reads whole.
	objs, err = ReadManifests(filepath.Join("..", ".."), filepath.Join("config", "rbac", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	names = nil
	for _, o := range objs {
		names = append(names, o.GetKind()+"/"+o.GetName())
	}
	for _, want := range []string{"ServiceAccount/hookline-manager", "ClusterRole/hookline-dispatcher", "ClusterRole/hookline-dispatcher-local"} {
		if !slices.Contains(names, want) {
			t.Errorf("config/rbac lacks %s: %v", want, names)
		}
	}
}
