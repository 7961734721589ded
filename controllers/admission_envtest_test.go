package controllers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// The tests in this file send manifests to the real API server with the
// real CRDs, as kubectl would, and check what admission answers.

// manifest builds a manifest of kind from its spec, written as YAML at the
// top level of the backquoted string.
func manifest(kind, spec string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: %s\nkind: %s\nmetadata:\n  name: placeholder\nspec:\n", hooklinev1.GroupVersion, kind)
	for line := range strings.SplitSeq(strings.Trim(spec, "\n"), "\n") {
		b.WriteString("  " + line + "\n")
	}
	return b.String()
}

func subscriptionManifest(spec string) string { return manifest("WebhookSubscription", spec) }
func secretManifest(spec string) string       { return manifest("WebhookSecret", spec) }
func dispatcherManifest(spec string) string   { return manifest("WebhookDispatcher", spec) }

// decodeManifest turns a YAML manifest into an object named name in ns.
func decodeManifest(t *testing.T, doc, ns, name string) *unstructured.Unstructured {
	t.Helper()
	data, err := yaml.ToJSON([]byte(doc))
	if err != nil {
		t.Fatalf("the test's YAML does not parse: %v\n%s", err, doc)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(data); err != nil {
		t.Fatalf("the test's manifest does not decode: %v\n%s", err, doc)
	}
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

// The words admission uses for malformed event type patterns and durations.
const (
	eventTypeGrammar = "must be segments of letters, digits, '_' or '-' (at most 64 each) joined by '.', with '*' for one segment and '>' only as the last"
	durationWords    = "must be a duration such as 30s, 5m or 1h"
)

func TestAdmissionRefusesInvalidManifests(t *testing.T) {
	ns := newNamespace(t)
	tests := []struct {
		name     string
		manifest string
		// field is the path the error must name; words are the rule's.
		field, words string
	}{
		// WebhookSubscription: the URL.
		{"unparsable URL", subscriptionManifest(`
url: https://exa mple.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}`), "spec.url", "must be an absolute URL"},
		{"URL without scheme", subscriptionManifest(`
url: example.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}`), "spec.url", "must be an absolute URL"},
		{"relative URL", subscriptionManifest(`
url: /hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}`), "spec.url", "must be an absolute URL with the https or http scheme"},
		{"ftp scheme", subscriptionManifest(`
url: ftp://example.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}`), "spec.url", "must be an absolute URL with the https or http scheme"},
		{"user info in the URL", subscriptionManifest(`
url: https://user:password@example.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}`), "spec.url", "must not carry user info"},
		{"fragment in the URL", subscriptionManifest(`
url: https://example.com/hooks#top
eventTypes: [order.created]
signing: {secretRef: {name: s}}`), "spec.url", "must not carry a fragment"},
		{"URL without host", subscriptionManifest(`
url: https:///hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}`), "spec.url", "must name a host"},

		// Event types.
		{"no event types", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: []
signing: {secretRef: {name: s}}`), "spec.eventTypes", "should have at least 1 items"},
		{"empty segment", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [a..b]
signing: {secretRef: {name: s}}`), "spec.eventTypes[0]", eventTypeGrammar},
		{"tail wildcard first", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [">.a"]
signing: {secretRef: {name: s}}`), "spec.eventTypes[0]", eventTypeGrammar},
		{"tail wildcard in the middle", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [order.created, a.>.b]
signing: {secretRef: {name: s}}`), "spec.eventTypes[1]", eventTypeGrammar},
		{"space in a type", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [a b]
signing: {secretRef: {name: s}}`), "spec.eventTypes[0]", eventTypeGrammar},
		{"wildcard inside a segment", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: ["*x"]
signing: {secretRef: {name: s}}`), "spec.eventTypes[0]", eventTypeGrammar},
		{"segment of 65 characters", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [order.` + strings.Repeat("x", 65) + `]
signing: {secretRef: {name: s}}`), "spec.eventTypes[0]", eventTypeGrammar},

		// Filter, signing, headers, TLS.
		{"empty filter", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [order.created]
filter: ""
signing: {secretRef: {name: s}}`), "spec.filter", "at least 1 chars long"},
		{"signing secret in another namespace", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: s, namespace: other}}`), "spec.signing.secretRef", "namespace must not be set"},
		{"header with value and valueFrom", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}
headers:
- name: Authorization
  value: Bearer x
  valueFrom: {secretKeyRef: {name: auth, key: token}}`), "spec.headers[0]", "set exactly one of value and valueFrom"},
		{"nine headers from Secrets", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}
headers:
- {name: X-1, valueFrom: {secretKeyRef: {name: auth, key: k}}}
- {name: X-2, valueFrom: {secretKeyRef: {name: auth, key: k}}}
- {name: X-3, valueFrom: {secretKeyRef: {name: auth, key: k}}}
- {name: X-4, valueFrom: {secretKeyRef: {name: auth, key: k}}}
- {name: X-5, valueFrom: {secretKeyRef: {name: auth, key: k}}}
- {name: X-6, valueFrom: {secretKeyRef: {name: auth, key: k}}}
- {name: X-7, valueFrom: {secretKeyRef: {name: auth, key: k}}}
- {name: X-8, valueFrom: {secretKeyRef: {name: auth, key: k}}}
- {name: X-9, valueFrom: {secretKeyRef: {name: auth, key: k}}}`), "spec.headers", "at most 8 headers may take their value from a Secret"},
		{"reserved header", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}
headers:
- name: X-Team
  value: a
- name: webhook-id
  value: fixed`), "spec.headers[1]", "this header is set by Hookline and cannot be overridden"},
		{"CA from a Secret and a ConfigMap", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}
tls:
  ca:
    secretKeyRef: {name: ca, key: ca.crt}
    configMapKeyRef: {name: ca, key: ca.crt}`), "spec.tls.ca", "set exactly one of secretKeyRef and configMapKeyRef"},

		// Delivery policy.
		{"zero timeout", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}
delivery: {timeout: 0s}`), "spec.delivery.timeout", "must be between 1s and 5m"},
		{"negative timeout", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}
delivery: {timeout: -5s}`), "spec.delivery.timeout", durationWords},
		{"oversized timeout", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}
delivery: {timeout: 10m}`), "spec.delivery.timeout", "must be between 1s and 5m"},
		{"timeout that is not a duration", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}
delivery: {timeout: soon}`), "spec.delivery.timeout", durationWords},
		{"retry age that is not a duration", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}
delivery: {retry: {maxAge: 1d}}`), "spec.delivery.retry.maxAge", durationWords},
		{"zero attempts", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}
delivery: {retry: {maxAttempts: 0}}`), "spec.delivery.retry.maxAttempts", "should be greater than or equal to 1"},
		{"too many attempts", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}
delivery: {retry: {maxAttempts: 101}}`), "spec.delivery.retry.maxAttempts", "should be less than or equal to 100"},
		{"initial backoff above max backoff", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}
delivery: {retry: {initialBackoff: 10m, maxBackoff: 1m}}`), "spec.delivery.retry", "initialBackoff must not exceed maxBackoff"},
		{"unknown ordering", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}
delivery: {ordering: Random}`), "spec.delivery.ordering", `supported values: "Unordered", "Ordered"`},
		{"unknown field", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}
retries: 3`), "spec.retries", "unknown field"},

		// WebhookSecret.
		{"unknown algorithm", secretManifest(`
algorithm: RSA`), "spec.algorithm", `supported values: "HMAC-SHA256", "Ed25519"`},
		{"rotation interval below 1h", secretManifest(`
rotation: {interval: 10m}`), "spec.rotation.interval", "must be between 1h and 8760h"},
		{"rotation interval that is not a duration", secretManifest(`
rotation: {interval: monthly}`), "spec.rotation.interval", durationWords},
		{"negative overlap", secretManifest(`
rotation: {overlap: -1h}`), "spec.rotation.overlap", durationWords},
		{"overlap above 720h", secretManifest(`
rotation: {interval: 720h, overlap: 1000h}`), "spec.rotation.overlap", "must be between 0s and 720h"},
		{"secret name that is not a DNS name", secretManifest(`
secretName: Signing_Key`), "spec.secretName", "should match"},

		// WebhookDispatcher.
		{"three replicas on the embedded queue", dispatcherManifest(`
replicas: 3
queue: {embedded: {}}`), "spec", "the embedded queue serves one replica"},
		{"three replicas on the default queue", dispatcherManifest(`
replicas: 3`), "spec", "the embedded queue serves one replica"},
		{"embedded and external queue", dispatcherManifest(`
queue:
  embedded: {}
  external: {url: "nats://nats:4222"}`), "spec.queue", "set at most one of embedded and external"},
		{"invalid external queue URL", dispatcherManifest(`
replicas: 2
queue: {external: {url: "http://nats:4222"}}`), "spec.queue.external.url", "must be a comma-separated list of nats:// or tls:// URLs"},
		{"bad CIDR", dispatcherManifest(`
egress: {allowedCIDRs: [10.0.0.0/8, 10.0.0.0/33]}`), "spec.egress.allowedCIDRs", "every entry must be a CIDR"},
		{"Selector without selector", dispatcherManifest(`
allowedNamespaces: {from: Selector}`), "spec.allowedNamespaces", "selector must be set when, and only when, from is Selector"},
		{"selector without Selector", dispatcherManifest(`
allowedNamespaces: {selector: {matchLabels: {team: a}}}`), "spec.allowedNamespaces", "selector must be set when, and only when, from is Selector"},
		{"proxy that is not a URL", dispatcherManifest(`
egress: {proxyURL: "proxy:3128"}`), "spec.egress.proxyURL", "must be an absolute http:// or https:// URL"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := decodeManifest(t, tt.manifest, ns, fmt.Sprintf("refused-%d", i))
			err := k8sClient.Create(suiteCtx, obj, client.FieldValidation("Strict"))
			if err == nil {
				t.Fatalf("the API server accepted\n%s", tt.manifest)
			}
			if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
				t.Fatalf("error is %v (%T), want Invalid or BadRequest", err, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.field) || !strings.Contains(msg, tt.words) {
				t.Errorf("error %q does not name %s with %q", msg, tt.field, tt.words)
			}

			// Nothing half-created.
			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(obj.GroupVersionKind())
			if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(obj), got); !apierrors.IsNotFound(err) {
				t.Errorf("after the refusal, getting %s gives %v, want NotFound", obj.GetName(), err)
			}
		})
	}

	for _, list := range []client.ObjectList{&hooklinev1.WebhookSubscriptionList{}, &hooklinev1.WebhookSecretList{}, &hooklinev1.WebhookDispatcherList{}} {
		if err := k8sClient.List(suiteCtx, list, client.InNamespace(ns)); err != nil {
			t.Fatalf("listing %T: %v", list, err)
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			t.Fatalf("reading %T: %v", list, err)
		}
		if n := len(items); n != 0 {
			t.Errorf("%T holds %d objects after only refused creations", list, n)
		}
	}
}

func TestAdmissionAcceptsValidManifestsWithDefaults(t *testing.T) {
	ns := newNamespace(t)
	tests := []struct {
		name     string
		manifest string
		// want maps dotted paths to the values the server must store,
		// defaults included.
		want map[string]any
	}{
		{"minimal subscription", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}`), map[string]any{
			"spec.delivery.timeout":              "15s",
			"spec.delivery.concurrency":          int64(10),
			"spec.delivery.ordering":             "Unordered",
			"spec.delivery.retry.maxAttempts":    int64(10),
			"spec.delivery.retry.maxAge":         "24h",
			"spec.delivery.retry.initialBackoff": "5s",
			"spec.delivery.retry.maxBackoff":     "1h",
		}},
		{"full subscription", subscriptionManifest(`
url: http://receiver.team-a.svc:8080/hooks?source=hookline
eventTypes: ["order.*", "*.created", "invoice.>", ">", a-b_c.D-9]
filter: event.data.amount > 100 && event.type.startsWith("order.")
dispatcherRef: {name: shared, namespace: infra}
signing: {secretRef: {name: s}}
headers:
- name: X-Team
  value: payments
- name: Authorization
  valueFrom: {secretKeyRef: {name: auth, key: token}}
tls:
  ca: {configMapKeyRef: {name: bundle, key: ca.crt}}
  clientCertificateSecretRef: {name: client-cert}
delivery:
  timeout: 1s
  concurrency: 1
  ordering: Ordered
  rateLimit: {requestsPerSecond: 50}
  retry: {maxAttempts: 100, maxAge: 720h, initialBackoff: 100ms, maxBackoff: 1m30s}
suspend: true`), map[string]any{
			"spec.delivery.timeout":              "1s",
			"spec.delivery.retry.maxAttempts":    int64(100),
			"spec.delivery.retry.maxBackoff":     "1m30s",
			"spec.delivery.rateLimit.burst":      nil,
			"spec.headers":                       []any{map[string]any{"name": "X-Team", "value": "payments"}, map[string]any{"name": "Authorization", "valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": "auth", "key": "token"}}}},
			"spec.dispatcherRef.namespace":       "infra",
			"spec.suspend":                       true,
			"spec.delivery.retry.maxAge":         "720h",
			"spec.delivery.retry.initialBackoff": "100ms",
		}},
		{"upper-case https scheme", subscriptionManifest(`
url: HTTPS://Example.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}`), map[string]any{"spec.url": "HTTPS://Example.com/hooks"}},
		{"minimal WebhookSecret", secretManifest(`{}`), map[string]any{
			"spec.algorithm":  "HMAC-SHA256",
			"spec.secretName": nil,
			"spec.rotation":   nil,
		}},
		{"rotating Ed25519 WebhookSecret", secretManifest(`
algorithm: Ed25519
secretName: payments-signing
rotation: {interval: 720h}`), map[string]any{
			"spec.algorithm":        "Ed25519",
			"spec.rotation.overlap": "24h",
		}},
		{"WebhookSecret without overlap", secretManifest(`
rotation: {interval: 1h, overlap: 0s}`), map[string]any{
			"spec.algorithm":        "HMAC-SHA256",
			"spec.rotation.overlap": "0s",
		}},
		{"minimal dispatcher", dispatcherManifest(`{}`), map[string]any{
			"spec.replicas":               int64(1),
			"spec.producerAuthentication": "ServiceAccountToken",
		}},
		{"dispatcher on an external queue", dispatcherManifest(`
replicas: 3
queue: {external: {url: "nats://nats-0.nats:4222, tls://nats-1.nats:4222"}}
egress:
  allowedCIDRs: [10.0.0.0/8, "fd00::/8"]
  allowPlainHTTP: true
  proxyURL: http://proxy.infra.svc:3128
allowedNamespaces:
  from: Selector
  selector: {matchLabels: {hookline.dev/webhooks: enabled}}`), map[string]any{
			"spec.queue.external.streamReplicas": int64(3),
			"spec.producerAuthentication":        "ServiceAccountToken",
		}},
		{"dispatcher admitting all namespaces", dispatcherManifest(`
replicas: 0
allowedNamespaces: {from: All}`), map[string]any{
			"spec.replicas":               int64(0),
			"spec.allowedNamespaces.from": "All",
		}},
		{"dispatcher defaulting allowedNamespaces.from", dispatcherManifest(`
allowedNamespaces: {}`), map[string]any{
			"spec.allowedNamespaces.from": "Same",
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := decodeManifest(t, tt.manifest, ns, fmt.Sprintf("accepted-%d", i))
			if err := k8sClient.Create(suiteCtx, obj, client.FieldValidation("Strict")); err != nil {
				t.Fatalf("the API server refused\n%s\n%v", tt.manifest, err)
			}
			stored := &unstructured.Unstructured{}
			stored.SetGroupVersionKind(obj.GroupVersionKind())
			if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(obj), stored); err != nil {
				t.Fatalf("getting the created object: %v", err)
			}
			for path, want := range tt.want {
				got, found, err := unstructured.NestedFieldCopy(stored.Object, strings.Split(path, ".")...)
				if err != nil {
					t.Fatalf("reading %s: %v", path, err)
				}
				if want == nil {
					if found {
						t.Errorf("%s = %v, want it unset", path, got)
					}
					continue
				}
				if !found {
					t.Errorf("%s is unset, want %v", path, want)
					continue
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("%s (-want +got):\n%s", path, diff)
				}
			}
		})
	}
}

func TestAdmissionRefusesChangingSecretName(t *testing.T) {
	ns := newNamespace(t)
	obj := decodeManifest(t, secretManifest(`secretName: keys-a`), ns, "signing")
	if err := k8sClient.Create(suiteCtx, obj, client.FieldValidation("Strict")); err != nil {
		t.Fatalf("creating the WebhookSecret: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(u *unstructured.Unstructured)
	}{
		{"renamed", func(u *unstructured.Unstructured) {
			_ = unstructured.SetNestedField(u.Object, "keys-b", "spec", "secretName")
		}},
		{"removed", func(u *unstructured.Unstructured) {
			unstructured.RemoveNestedField(u.Object, "spec", "secretName")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The controller writes the object too; a conflict only means
			// the update must be made on the latest version.
			var err error
			eventually(t, 10*time.Second, func() (bool, string) {
				u := &unstructured.Unstructured{}
				u.SetGroupVersionKind(obj.GroupVersionKind())
				if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(obj), u); err != nil {
					t.Fatalf("getting the WebhookSecret: %v", err)
				}
				tt.mutate(u)
				err = k8sClient.Update(suiteCtx, u, client.FieldValidation("Strict"))
				return !apierrors.IsConflict(err), fmt.Sprintf("updating: %v", err)
			})
			if !apierrors.IsInvalid(err) {
				t.Fatalf("update error = %v, want Invalid", err)
			}
			if msg := err.Error(); !strings.Contains(msg, "spec") || !strings.Contains(msg, "secretName is immutable once set") {
				t.Errorf("error %q does not say that secretName is immutable", msg)
			}
		})
	}

	stored := &hooklinev1.WebhookSecret{}
	if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(obj), stored); err != nil {
		t.Fatalf("getting the WebhookSecret: %v", err)
	}
	if stored.Spec.SecretName != "keys-a" {
		t.Errorf("spec.secretName = %q after refused updates, want keys-a", stored.Spec.SecretName)
	}

	// Other fields stay editable.
	eventually(t, 10*time.Second, func() (bool, string) {
		if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(obj), stored); err != nil {
			t.Fatalf("getting the WebhookSecret: %v", err)
		}
		stored.Spec.Algorithm = hooklinev1.AlgorithmEd25519
		err := k8sClient.Update(suiteCtx, stored)
		if err != nil && !apierrors.IsConflict(err) {
			t.Fatalf("changing the algorithm: %v", err)
		}
		return err == nil, fmt.Sprintf("changing the algorithm: %v", err)
	})
}
