package rules

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/endpoint"
)

// Kinds of referenced objects.
const (
	KindSecret    = "Secret"
	KindConfigMap = "ConfigMap"
)

// Reference is a Secret or ConfigMap a subscription reads, in its own
// namespace, with the keys it needs and the field that names it.
type Reference struct {
	// Kind is KindSecret or KindConfigMap.
	Kind string
	Name string
	// Keys that must be present.
	Keys []string
	// Field is the full path of the reference, for messages.
	Field string
}

// References lists the Secrets and ConfigMaps the subscription's headers,
// TLS and auth settings read, in the order of the spec. The signing
// WebhookSecret is not among them.
func References(spec *hooklinev1.WebhookSubscriptionSpec) []Reference {
	var refs []Reference
	for i, h := range spec.Headers {
		if h.ValueFrom != nil {
			r := h.ValueFrom.SecretKeyRef
			refs = append(refs, Reference{KindSecret, r.Name, []string{r.Key}, fmt.Sprintf("spec.headers[%d].valueFrom.secretKeyRef", i)})
		}
	}
	if tls := spec.TLS; tls != nil {
		if ca := tls.CA; ca != nil {
			if r := ca.SecretKeyRef; r != nil {
				refs = append(refs, Reference{KindSecret, r.Name, []string{r.Key}, "spec.tls.ca.secretKeyRef"})
			}
			if r := ca.ConfigMapKeyRef; r != nil {
				refs = append(refs, Reference{KindConfigMap, r.Name, []string{r.Key}, "spec.tls.ca.configMapKeyRef"})
			}
		}
		if r := tls.ClientCertificateSecretRef; r != nil {
			refs = append(refs, Reference{KindSecret, r.Name, []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey}, "spec.tls.clientCertificateSecretRef"})
		}
	}
	if auth := spec.Auth; auth != nil {
		if b := auth.Basic; b != nil {
			refs = append(refs, Reference{KindSecret, b.SecretRef.Name, []string{corev1.BasicAuthUsernameKey, corev1.BasicAuthPasswordKey}, "spec.auth.basic.secretRef"})
		}
		if o := auth.OAuth2; o != nil {
			refs = append(refs, Reference{KindSecret, o.ClientSecretRef.Name, []string{o.ClientSecretRef.Key}, "spec.auth.oauth2.clientSecretRef"})
		}
	}
	return refs
}

// MissingKey returns the first of ref's keys that present says is absent,
// or "".
func MissingKey(ref Reference, present func(key string) bool) string {
	for _, k := range ref.Keys {
		if !present(k) {
			return k
		}
	}
	return ""
}

// MissingReference is the refusal for a referenced object that does not
// exist (found false) or lacks key: ReferenceNotFound, InProgress, since it
// may still be created. It names the object, the field and the key, never
// a value nor the keys the object has.
func MissingReference(ref Reference, found bool, key string) *Refusal {
	msg := fmt.Sprintf("%s %s, referenced by %s, not found", ref.Kind, ref.Name, ref.Field)
	if found {
		msg = fmt.Sprintf("%s %s, referenced by %s, has no key %q", ref.Kind, ref.Name, ref.Field, key)
	}
	return &Refusal{Field: ref.Field, Reason: hooklinev1.ReasonReferenceNotFound, Message: msg}
}

// InvalidReferencedValue is the refusal for a referenced value that cannot
// be used as it is (a header value from a Secret holding a line break):
// ReferenceNotFound, InProgress, since the object may still change. The
// message names the key, never the value.
func InvalidReferencedValue(ref Reference, key string, err error) *Refusal {
	return &Refusal{Field: ref.Field, Reason: hooklinev1.ReasonReferenceNotFound,
		Message: fmt.Sprintf("%s %s, referenced by %s, holds in key %q a value that cannot be used: %v", ref.Kind, ref.Name, ref.Field, key, err)}
}

// Dispatcher is what a subscription's admission depends on in the
// dispatcher that serves it.
type Dispatcher struct {
	// Key names the dispatcher, "namespace/name", for messages.
	Key string
	// Admits says whether the dispatcher admits the subscription's
	// namespace; AdmitErr is why it cannot tell (a bad selector).
	Admits   bool
	AdmitErr error
	// AllowPlainHTTP is the dispatcher's spec.egress.allowPlainHTTP.
	AllowPlainHTTP bool
	// CheckURL is the dispatcher's egress policy on a URL before any dial
	// (literal addresses, numeric host spellings), or nil to skip it.
	CheckURL func(rawURL string) error
}

// CheckDispatcher decides whether d may serve the subscription: d admits
// its namespace, and its egress policy allows spec.url and the OAuth2 token
// URL. Every refusal here is Stalled: the subscription or the dispatcher
// must change.
func CheckDispatcher(namespace string, spec *hooklinev1.WebhookSubscriptionSpec, d Dispatcher) *Refusal {
	if d.AdmitErr != nil {
		return refuse("", hooklinev1.ReasonNamespaceNotAllowed, "dispatcher %s cannot admit subscriptions: %v", d.Key, d.AdmitErr)
	}
	if !d.Admits {
		return refuse("", hooklinev1.ReasonNamespaceNotAllowed, "dispatcher %s does not admit subscriptions from namespace %s", d.Key, namespace)
	}
	urls := []struct{ field, raw string }{{"spec.url", spec.URL}}
	if spec.Auth != nil && spec.Auth.OAuth2 != nil {
		urls = append(urls, struct{ field, raw string }{"spec.auth.oauth2.tokenURL", spec.Auth.OAuth2.TokenURL})
	}
	for _, u := range urls {
		if err := endpoint.ValidateURL(u.raw, d.AllowPlainHTTP); err != nil {
			if errors.Is(err, endpoint.ErrPlainHTTP) {
				return &Refusal{Field: u.field, Reason: hooklinev1.ReasonURLNotAllowed,
					Message: fmt.Sprintf("%s uses plain http, which dispatcher %s does not allow: use https, or set spec.egress.allowPlainHTTP on the dispatcher", u.field, d.Key)}
			}
			return refuse(u.field, hooklinev1.ReasonInvalidSpec, "%v", err)
		}
		if d.CheckURL != nil {
			if err := d.CheckURL(u.raw); err != nil {
				return refuse(u.field, hooklinev1.ReasonURLNotAllowed, "%v", err)
			}
		}
	}
	return nil
}
