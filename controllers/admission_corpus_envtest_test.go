package controllers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hookline/hookline/internal/endpoint"
	"github.com/hookline/hookline/internal/rules"
)

// The corpus of manifests that can never work, each refused when it is
// applied: by the CRD's schema, or, for what a schema cannot judge (a CEL
// filter), by the manager's admission webhook, which the real API server
// calls. Each refusal must name the field's full path and the rule.

// webhookDenied is how the API server reports a refusal by the webhook.
const webhookDenied = `admission webhook "webhooksubscriptions.hookline.dev" denied the request`

// sub is a valid subscription spec with extra lines appended at the top
// level; each corpus entry breaks exactly one rule.
func sub(extra string) string {
	return subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: s}}
` + strings.Trim(extra, "\n"))
}

// subURL is a subscription with url.
func subURL(url string) string {
	return subscriptionManifest(`
url: "` + url + `"
eventTypes: [order.created]
signing: {secretRef: {name: s}}`)
}

func header(name, valueYAML string) string {
	return "headers:\n- name: " + name + "\n  value: " + valueYAML
}

func oauth(tokenURL, secretName string) string {
	return `auth:
  oauth2:
    tokenURL: "` + tokenURL + `"
    clientID: hookline
    clientSecretRef: {name: ` + secretName + `, key: secret}`
}

type corpusEntry struct {
	name     string
	manifest string
	// field is the full path the error must name; words are the rule's.
	field, words string
	// webhook says the manager's webhook, not the schema, refuses it.
	webhook bool
}

var refusedCorpus = []corpusEntry{
	// The filter: only the webhook can compile it.
	{"filter with a syntax error", sub(`filter: "event.type =="`), "spec.filter", "Syntax error", true},
	{"filter with an unknown variable", sub(`filter: "request.size > 1"`), "spec.filter", "undeclared reference to 'request'", true},
	{"filter that is not boolean", sub(`filter: "event.type"`), "spec.filter", "must be a bool expression", true},
	{"filter with an unknown event key", sub(`filter: 'event.kind == "x"'`), "spec.filter", `event has no key "kind"`, true},
	{"filter that does not type-check", sub(`filter: "1 + 'a' == 2"`), "spec.filter", "found no matching overload", true},

	// Header values and names.
	{"header value with CR LF", sub(header("X-Team", `"a\r\nX-Injected: 1"`)), "spec.headers[0].value", rules.MsgHeaderValueCtrl, false},
	{"header value with LF", sub(header("X-Team", `"a\nb"`)), "spec.headers[0].value", rules.MsgHeaderValueCtrl, false},
	{"header value with NUL", sub(header("X-Team", `"a\0b"`)), "spec.headers[0].value", rules.MsgHeaderValueCtrl, false},
	{"header value with tab", sub(header("X-Team", `"a\tb"`)), "spec.headers[0].value", rules.MsgHeaderValueCtrl, false},
	{"header value with DEL", sub(header("X-Team", `"a\x7Fb"`)), "spec.headers[0].value", rules.MsgHeaderValueCtrl, false},
	{"header value with a C1 control", sub(header("X-Team", `"a\x85b"`)), "spec.headers[0].value", rules.MsgHeaderValueCtrl, false},
	{"Keep-Alive header", sub(header("Keep-Alive", "x")), "spec.headers[0]", rules.MsgHeaderReserved, false},
	{"TE header", sub(header("TE", "trailers")), "spec.headers[0]", rules.MsgHeaderReserved, false},
	{"Trailer header", sub(header("Trailer", "x")), "spec.headers[0]", rules.MsgHeaderReserved, false},
	{"Upgrade header", sub(header("Upgrade", "h2c")), "spec.headers[0]", rules.MsgHeaderReserved, false},
	{"Proxy-Connection header", sub(header("Proxy-Connection", "close")), "spec.headers[0]", rules.MsgHeaderReserved, false},
	{"upper-case Content-Type header", sub(header("CONTENT-TYPE", "text/plain")), "spec.headers[0]", rules.MsgHeaderReserved, false},
	{"Webhook-Timestamp header", sub(header("Webhook-Timestamp", `"1"`)), "spec.headers[0]", rules.MsgHeaderReserved, false},
	{"header name with a space", sub(header(`"X Team"`, "a")), "spec.headers[0].name", "should match", false},

	// URLs: ports and hosts.
	{"port 99999", subURL("https://example.com:99999/hooks"), "spec.url", endpoint.MsgPort, false},
	{"port 0", subURL("https://example.com:0/hooks"), "spec.url", endpoint.MsgPort, false},
	{"port 65536", subURL("https://example.com:65536/hooks"), "spec.url", endpoint.MsgPort, false},
	{"full-width digits", subURL("https://１２７．０．０．１/hooks"), "spec.url", endpoint.MsgHostASCII, false},
	{"ideographic full stops", subURL("https://127。0。0。1/hooks"), "spec.url", endpoint.MsgHostASCII, false},
	{"Unicode host name", subURL("https://bücher.example/hooks"), "spec.url", endpoint.MsgHostASCII, false},
	{"escaped host", subURL("https://%31%32%37.0.0.1/hooks"), "spec.url", "must be an absolute URL", false},
	{"label of 64 characters", subURL("https://" + strings.Repeat("a", 64) + ".example/hooks"), "spec.url", endpoint.MsgHostASCII, false},
	{"host of 254 characters", subURL("https://" + strings.Repeat(strings.Repeat("a", 62)+".", 4) + "ab/hooks"), "spec.url", endpoint.MsgHostASCII, false},
	{"short IPv4 form", subURL("https://127.1/hooks"), "spec.url", endpoint.MsgHostCanonicalIP, false},
	{"decimal IPv4 form", subURL("https://2130706433/hooks"), "spec.url", endpoint.MsgHostCanonicalIP, false},
	{"hexadecimal IPv4 form", subURL("https://0x7f.0.0.1/hooks"), "spec.url", endpoint.MsgHostCanonicalIP, false},
	{"IPv4 with leading zeros", subURL("https://127.000.000.001/hooks"), "spec.url", endpoint.MsgHostCanonicalIP, false},
	{"IPv4-mapped IPv6 host", subURL("https://[::ffff:127.0.0.1]/hooks"), "spec.url", endpoint.MsgHostCanonicalIP, false},
	{"IPv6 host with a zone", subURL("https://[fe80::1%25eth0]/hooks"), "spec.url", endpoint.MsgHostCanonicalIP, false},
	{"non-canonical IPv6 host", subURL("https://[2001:DB8:0:0::1]/hooks"), "spec.url", endpoint.MsgHostCanonicalIP, false},
	{"token URL with user info", sub(oauth("https://client:secret@auth.example/token", "oauth")), "spec.auth.oauth2.tokenURL", "must not carry user info", false},
	{"token URL with a fragment", sub(oauth("https://auth.example/token#x", "oauth")), "spec.auth.oauth2.tokenURL", "must not carry a fragment", false},
	{"token URL with port 99999", sub(oauth("https://auth.example:99999/token", "oauth")), "spec.auth.oauth2.tokenURL", endpoint.MsgPort, false},
	{"token URL with a Unicode host", sub(oauth("https://ａｕｔｈ.example/token", "oauth")), "spec.auth.oauth2.tokenURL", endpoint.MsgHostASCII, false},
	{"token URL without scheme", sub(oauth("auth.example/token", "oauth")), "spec.auth.oauth2.tokenURL", "must be an absolute URL", false},

	// References to other objects.
	{"dispatcher name with a slash", sub(`dispatcherRef: {name: Bad/Name}`), "spec.dispatcherRef.name", rules.MsgDispatcherName, false},
	{"dispatcher name of 42 characters", sub(`dispatcherRef: {name: d` + strings.Repeat("a", 41) + `}`), "spec.dispatcherRef.name", rules.MsgDispatcherName, false},
	{"dispatcher namespace with spaces", sub(`dispatcherRef: {name: shared, namespace: Not A Namespace}`), "spec.dispatcherRef.namespace", rules.MsgNamespaceName, false},
	{"signing secret name with a slash", subscriptionManifest(`
url: https://example.com/hooks
eventTypes: [order.created]
signing: {secretRef: {name: Bad/Name}}`), "spec.signing.secretRef.name", rules.MsgObjectName, false},
	{"header Secret name with an underscore", sub(`
headers:
- name: Authorization
  valueFrom: {secretKeyRef: {name: auth_token, key: token}}`), "spec.headers[0].valueFrom.secretKeyRef.name", rules.MsgObjectName, false},
	{"CA ConfigMap name starting with a dash", sub(`tls: {ca: {configMapKeyRef: {name: -ca, key: ca.crt}}}`), "spec.tls.ca.configMapKeyRef.name", rules.MsgObjectName, false},
	{"client certificate Secret name in upper case", sub(`tls: {clientCertificateSecretRef: {name: Cert}}`), "spec.tls.clientCertificateSecretRef.name", rules.MsgObjectName, false},
	{"basic auth Secret name with a space", sub(`auth: {basic: {secretRef: {name: a b}}}`), "spec.auth.basic.secretRef.name", rules.MsgObjectName, false},
	{"OAuth2 Secret name in upper case", sub(oauth("https://auth.example/token", "OAuth")), "spec.auth.oauth2.clientSecretRef.name", rules.MsgObjectName, false},

	// Delivery policy quantities.
	{"zero concurrency", sub(`delivery: {concurrency: 0}`), "spec.delivery.concurrency", "should be greater than or equal to 1", false},
	{"zero requests per second", sub(`delivery: {rateLimit: {requestsPerSecond: 0}}`), "spec.delivery.rateLimit.requestsPerSecond", "should be greater than or equal to 1", false},

	// WebhookSecret.
	{"overlap defaulting above the interval", secretManifest(`rotation: {interval: 1h}`), "spec.rotation.overlap", "overlap must be shorter than interval", false},
	{"overlap equal to the interval", secretManifest(`rotation: {interval: 720h, overlap: 720h}`), "spec.rotation.overlap", "overlap must be shorter than interval", false},
	{"overlap above the interval", secretManifest(`rotation: {interval: 2h, overlap: 3h}`), "spec.rotation.overlap", "overlap must be shorter than interval", false},

	// WebhookDispatcher.
	{"two replicas on the embedded queue", dispatcherManifest(`replicas: 2`), "spec.replicas", "the embedded queue serves one replica", false},
	{"101 replicas", dispatcherManifest(`
replicas: 101
queue: {external: {url: "nats://nats:4222"}}`), "spec.replicas", "should be less than or equal to 100", false},
	{"zero queue size", dispatcherManifest(`queue: {embedded: {size: "0"}}`), "spec.queue.embedded.size", "must be a positive quantity", false},
	{"negative queue size", dispatcherManifest(`queue: {embedded: {size: -1Gi}}`), "spec.queue.embedded.size", "must be a positive quantity", false},
	{"zero cpu request", dispatcherManifest(`resources: {requests: {cpu: "0"}}`), "spec.resources.requests", "requests must be positive quantities", false},
	{"negative memory request", dispatcherManifest(`resources: {requests: {memory: -64Mi}}`), "spec.resources.requests", "requests must be positive quantities", false},
	{"zero memory limit", dispatcherManifest(`resources: {limits: {memory: "0"}}`), "spec.resources.limits", "limits must be positive quantities", false},
	{"proxy URL with user info", dispatcherManifest(`egress: {proxyURL: "http://user:pass@proxy:3128"}`), "spec.egress.proxyURL", "must not carry user info", false},
	{"proxy URL with port 70000", dispatcherManifest(`egress: {proxyURL: "http://proxy:70000"}`), "spec.egress.proxyURL", endpoint.MsgPort, false},
	{"proxy URL with full-width digits", dispatcherManifest(`egress: {proxyURL: "http://１０.0.0.1:3128"}`), "spec.egress.proxyURL", endpoint.MsgHostASCII, false},
	{"IPv4-mapped CIDR shorter than /96", dispatcherManifest(`egress: {allowedCIDRs: ["::ffff:10.0.0.0/95"]}`), "spec.egress.allowedCIDRs", "every entry must be a CIDR", false},
	{"queue credentials Secret name with a slash", dispatcherManifest(`
replicas: 1
queue: {external: {url: "nats://nats:4222", credentialsSecretRef: {name: Bad/Name}}}`), "spec.queue.external.credentialsSecretRef.name", rules.MsgObjectName, false},
}

func TestAdmissionRefusesCorpus(t *testing.T) {
	ns := newNamespace(t)
	for i, tt := range refusedCorpus {
		t.Run(tt.name, func(t *testing.T) {
			obj := decodeManifest(t, tt.manifest, ns, fmt.Sprintf("corpus-%d", i))
			err := k8sClient.Create(suiteCtx, obj, client.FieldValidation("Strict"))
			if err == nil {
				t.Fatalf("the API server accepted\n%s", tt.manifest)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("error is %v (%T), want Invalid", err, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.field+":") || !strings.Contains(msg, tt.words) {
				t.Errorf("error %q does not name %s with %q", msg, tt.field, tt.words)
			}
			if got := strings.Contains(msg, webhookDenied); got != tt.webhook {
				t.Errorf("refused by the webhook: %v, want %v: %s", got, tt.webhook, msg)
			}
		})
	}
}

// TestAdmissionAcceptsUnusualManifests applies manifests at the edges of
// the rules, which must be accepted as they are.
func TestAdmissionAcceptsUnusualManifests(t *testing.T) {
	ns := newNamespace(t)
	longValue := strings.Repeat("é", 4096)
	tests := []struct{ name, manifest string }{
		{"IPv6 literal and the highest port", subURL("https://[2001:db8::1]:65535/hooks")},
		{"IPv6 loopback literal", subURL("https://[::1]/hooks")},
		{"punycode host with a trailing dot", subURL("https://xn--bcher-kva.example./hooks")},
		{"underscore label and port 1", subURL("https://_hooks.example.com:1/hooks")},
		{"label of 63 and host of 253 characters", subURL("https://" + strings.Repeat(strings.Repeat("a", 62)+".", 3) + strings.Repeat("b", 63) + "/")},
		{"digits before the last label", subURL("https://123.example/hooks")},
		{"canonical IPv4 literal", subURL("https://203.0.113.7:8443/hooks")},
		{"URL of 2048 characters", subURL("https://example.com/" + strings.Repeat("a", 2048-len("https://example.com/")))},
		{"filter that compiles", sub(`filter: 'event.type.startsWith("order.") && event.data.amount > 100'`)},
		{"longest names and a 4096-character non-ASCII header value", sub(`
dispatcherRef: {name: d` + strings.Repeat("a", 40) + `, namespace: ` + strings.Repeat("n", 63) + `}
headers:
- name: ` + strings.Repeat("X", 256) + `
  value: "` + longValue + `"
- name: Authorization
  valueFrom: {secretKeyRef: {name: ` + strings.Repeat("s", 253) + `, key: token}}
` + oauth("https://xn--bcher-kva.example:8443/token", "o."+strings.Repeat("a", 251)))},
		{"WebhookSecret with the longest interval and overlap", secretManifest(`rotation: {interval: 8760h, overlap: 720h}`)},
		{"WebhookSecret with an overlap just below the interval", secretManifest(`rotation: {interval: 1h, overlap: 59m}`)},
		{"dispatcher with IPv4-mapped CIDRs", dispatcherManifest(`
egress:
  allowedCIDRs: ["::ffff:10.0.0.0/104", "::FFFF:192.168.0.0/112", "10.0.0.0/8", "fd00::/8"]
  deniedCIDRs: ["::ffff:10.1.0.0/112"]
  proxyURL: "http://[2001:db8::3]:3128"`)},
		{"dispatcher with 100 replicas and the smallest quantities", dispatcherManifest(`
replicas: 100
queue: {external: {url: "nats://nats:4222"}}
resources: {requests: {cpu: 1m, memory: "1"}, limits: {cpu: "1", memory: 1Ki}}`)},
		{"dispatcher with a queue size of one byte", dispatcherManifest(`queue: {embedded: {size: "1"}}`)},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := decodeManifest(t, tt.manifest, ns, fmt.Sprintf("unusual-%d", i))
			if err := k8sClient.Create(suiteCtx, obj, client.FieldValidation("Strict")); err != nil {
				t.Fatalf("the API server refused\n%s\n%v", tt.manifest, err)
			}
		})
	}
}

// TestAdmissionWebhookChecksFilterChanges changes a stored subscription's
// filter: a broken one is refused by the webhook and the stored object
// keeps its filter; other changes need no webhook.
func TestAdmissionWebhookChecksFilterChanges(t *testing.T) {
	ns := newNamespace(t)
	obj := decodeManifest(t, sub(`filter: "event.data.amount > 100"`), ns, "filtered")
	if err := k8sClient.Create(suiteCtx, obj); err != nil {
		t.Fatalf("creating the subscription: %v", err)
	}
	update := func(mutate func(u *unstructured.Unstructured)) error {
		var err error
		eventually(t, 30*time.Second, func() (bool, string) {
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(obj.GroupVersionKind())
			if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(obj), u); err != nil {
				t.Fatalf("getting the subscription: %v", err)
			}
			mutate(u)
			err = k8sClient.Update(suiteCtx, u)
			return !apierrors.IsConflict(err), fmt.Sprintf("updating: %v", err)
		})
		return err
	}
	err := update(func(u *unstructured.Unstructured) {
		_ = unstructured.SetNestedField(u.Object, "event.data.amount >", "spec", "filter")
	})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), webhookDenied) || !strings.Contains(err.Error(), "spec.filter:") {
		t.Fatalf("changing to a broken filter: %v, want Invalid from the webhook naming spec.filter", err)
	}
	if err := update(func(u *unstructured.Unstructured) { u.SetLabels(map[string]string{"team": "a"}) }); err != nil {
		t.Fatalf("changing a label: %v", err)
	}
	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(obj.GroupVersionKind())
	if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(obj), got); err != nil {
		t.Fatalf("getting the subscription: %v", err)
	}
	if f, _, _ := unstructured.NestedString(got.Object, "spec", "filter"); f != "event.data.amount > 100" {
		t.Errorf("stored filter = %q, want the one before the refused change", f)
	}
}
