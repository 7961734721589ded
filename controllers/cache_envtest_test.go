package controllers

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// requestLog records the requests a client configuration sends.
type requestLog struct {
	mu   sync.Mutex
	reqs []recordedRequest
}

type recordedRequest struct {
	method, path, query, accept string
}

func (l *requestLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		l.mu.Lock()
		l.reqs = append(l.reqs, recordedRequest{req.Method, req.URL.Path, req.URL.RawQuery, req.Header.Get("Accept")})
		l.mu.Unlock()
		return rt.RoundTrip(req)
	})
}

func (l *requestLog) snapshot() []recordedRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]recordedRequest(nil), l.reqs...)
}

// count returns how many GETs of path were sent.
func (l *requestLog) count(path string) int {
	n := 0
	for _, r := range l.snapshot() {
		if r.method == http.MethodGet && r.path == path {
			n++
		}
	}
	return n
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// TestManagerCachesNoSecretOrConfigMapData runs every controller, as
// cmd/manager sets them up, in a manager of its own whose every request is
// recorded: Secrets and ConfigMaps are listed and watched as metadata only,
// never with their data (a cluster's Secrets never sit in the manager's
// memory), and the ones needed are read with a direct GET. A change to a
// referenced Secret still wakes the subscription.
func TestManagerCachesNoSecretOrConfigMapData(t *testing.T) {
	ns := newNamespace(t)
	whsubAvailableDispatcher(t, ns, "d", nil)
	whsubWebhookSecret(t, ns, "s")
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "auth"}, Data: map[string][]byte{"token": []byte("Bearer c4che-Zq9")}}
	if err := k8sClient.Create(suiteCtx, secret); err != nil {
		t.Fatalf("creating the Secret: %v", err)
	}
	if err := k8sClient.Create(suiteCtx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bundle"}, Data: map[string]string{"ca.crt": "-----BEGIN CERTIFICATE-----\n"}}); err != nil {
		t.Fatalf("creating the ConfigMap: %v", err)
	}

	var log requestLog
	startNamespacedManager(t, ns, log.wrap, 0)

	sub := whsubSubscription(t, ns, "cached", func(s *hooklinev1.WebhookSubscription) {
		s.Spec.Headers = []hooklinev1.Header{
			{Name: "Authorization", ValueFrom: &hooklinev1.HeaderValueSource{SecretKeyRef: hooklinev1.SecretKeyReference{Name: "auth", Key: "token"}}},
			{Name: "X-Also-Authorization", ValueFrom: &hooklinev1.HeaderValueSource{SecretKeyRef: hooklinev1.SecretKeyReference{Name: "auth", Key: "token"}}},
		}
		s.Spec.TLS = &hooklinev1.TLSSpec{CA: &hooklinev1.CASource{ConfigMapKeyRef: &hooklinev1.SecretKeyReference{Name: "bundle", Key: "ca.crt"}}}
	})
	secretPath := "/api/v1/namespaces/" + ns + "/secrets/auth"
	configMapPath := "/api/v1/namespaces/" + ns + "/configmaps/bundle"
	eventually(t, whsubTimeout, func() (bool, string) {
		s, c := log.count(secretPath), log.count(configMapPath)
		w := log.count("/api/v1/namespaces/" + ns + "/secrets/s")
		return s > 0 && c > 0 && w > 0, fmt.Sprintf("the test's controllers sent %d GETs of the header Secret, %d of the ConfigMap and %d of the signing Secret", s, c, w)
	})
	whsubAcceptAndWaitForReady(t, sub, hooklinev1.ReasonSucceeded)

	// A change to the Secret's data reaches the controller through the
	// metadata watch, and it reads the Secret again.
	before := log.count(secretPath)
	whsubUpdate(t, secret, func(s *corev1.Secret) { s.Data = map[string][]byte{"renamed": []byte("Bearer c4che-Zq9")} })
	eventually(t, whsubTimeout, func() (bool, string) {
		n := log.count(secretPath)
		return n > before, fmt.Sprintf("%d GETs of the Secret, as many as before it changed", n)
	})
	whsubWaitFor(t, sub, metav1.ConditionFalse, hooklinev1.ReasonReferenceNotFound)

	watched := map[string]bool{}
	for _, r := range log.snapshot() {
		for _, kind := range []string{"secrets", "configmaps"} {
			if !strings.HasSuffix(r.path, "/"+kind) {
				continue
			}
			if !strings.Contains(r.accept, "as=PartialObjectMetadata") {
				t.Errorf("a controller read the %s collection with their data: %s %s?%s (Accept %q)", kind, r.method, r.path, r.query, r.accept)
				continue
			}
			watched[kind] = true
		}
	}
	for _, kind := range []string{"secrets", "configmaps"} {
		if !watched[kind] {
			t.Errorf("no controller listed or watched %s metadata", kind)
		}
	}
}
