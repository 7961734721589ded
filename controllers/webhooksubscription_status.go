package controllers

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/endpoint"
	"github.com/hookline/hookline/internal/eventtype"
	"github.com/hookline/hookline/internal/filter"
)

// validateSubscriptionSpec checks the rules admission enforces with CEL and
// patterns, for API servers that could not check them. Plain http is left to
// the dispatcher's policy. The error names the offending field.
func validateSubscriptionSpec(spec *hooklinev1.WebhookSubscriptionSpec) error {
	if err := endpoint.ValidateURL(spec.URL, true); err != nil {
		return fmt.Errorf("spec.url: %w", err)
	}
	if len(spec.EventTypes) == 0 {
		return errors.New("spec.eventTypes: at least one event type pattern is required")
	}
	for i, p := range spec.EventTypes {
		if err := eventtype.ValidatePattern(p); err != nil {
			return fmt.Errorf("spec.eventTypes[%d]: %w", i, err)
		}
	}
	if spec.Filter != "" {
		if _, err := filter.Compile(spec.Filter); err != nil {
			return fmt.Errorf("spec.filter: %w", err)
		}
	}
	if spec.Signing.SecretRef.Namespace != "" {
		return errors.New("spec.signing.secretRef.namespace: must not be set: a subscription only uses secrets in its own namespace")
	}
	fromSecrets := 0
	for i, h := range spec.Headers {
		if h.ValueFrom != nil {
			fromSecrets++
		}
		if (h.Value != nil) == (h.ValueFrom != nil) {
			return fmt.Errorf("spec.headers[%d]: set exactly one of value and valueFrom", i)
		}
		if subscriptionReservedHeader(h.Name) {
			return fmt.Errorf("spec.headers[%d].name: %q is set by Hookline and cannot be overridden", i, h.Name)
		}
	}
	if fromSecrets > subscriptionMaxSecretHeaders {
		return fmt.Errorf("spec.headers: at most %d headers may take their value from a Secret", subscriptionMaxSecretHeaders)
	}
	if tls := spec.TLS; tls != nil && tls.CA != nil && (tls.CA.SecretKeyRef != nil) == (tls.CA.ConfigMapKeyRef != nil) {
		return errors.New("spec.tls.ca: set exactly one of secretKeyRef and configMapKeyRef")
	}
	if a := spec.Auth; a != nil && (a.Basic != nil) == (a.OAuth2 != nil) {
		return errors.New("spec.auth: set exactly one of basic and oauth2")
	}
	d := &spec.Delivery
	for _, b := range []struct {
		path     string
		value    *metav1.Duration
		min, max time.Duration
	}{
		{"spec.delivery.timeout", d.Timeout, time.Second, 5 * time.Minute},
		{"spec.delivery.retry.maxAge", d.Retry.MaxAge, time.Minute, 720 * time.Hour},
		{"spec.delivery.retry.initialBackoff", d.Retry.InitialBackoff, 100 * time.Millisecond, time.Hour},
		{"spec.delivery.retry.maxBackoff", d.Retry.MaxBackoff, time.Second, 24 * time.Hour},
		{"spec.delivery.suspendAfter", d.SuspendAfter, time.Minute, 720 * time.Hour},
	} {
		if b.value != nil && (b.value.Duration < b.min || b.value.Duration > b.max) {
			return fmt.Errorf("%s: must be between %s and %s", b.path, subscriptionBound(b.min), subscriptionBound(b.max))
		}
	}
	if d.Retry.InitialBackoff != nil && d.Retry.MaxBackoff != nil && d.Retry.InitialBackoff.Duration > d.Retry.MaxBackoff.Duration {
		return errors.New("spec.delivery.retry: initialBackoff must not exceed maxBackoff")
	}
	return nil
}

// subscriptionMaxSecretHeaders is how many headers may take their value from
// a Secret. It keeps the Secrets a subscription names within what the
// admission policy can authorize: every authorization check has a fixed CEL
// cost, and the policy's budget allows about two dozen.
const subscriptionMaxSecretHeaders = 8

// subscriptionReservedHeader says whether Hookline sets the header itself: the
// signature scheme's webhook-* headers and those the HTTP client owns.
func subscriptionReservedHeader(name string) bool {
	n := strings.ToLower(name)
	return strings.HasPrefix(n, "webhook-") ||
		slices.Contains([]string{"content-type", "content-length", "host", "user-agent", "transfer-encoding", "connection"}, n)
}

// subscriptionBound prints a bound as the schema's messages do: 5m, not 5m0s.
func subscriptionBound(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// subscriptionObjectRef is a Secret or ConfigMap key a subscription needs, with the
// field that names it.
type subscriptionObjectRef struct {
	// kind is "Secret" or "ConfigMap".
	kind string
	name string
	// keys that must be present.
	keys []string
	// field is the spec path of the reference, for messages.
	field string
}

const (
	subscriptionRefSecret    = "Secret"
	subscriptionRefConfigMap = "ConfigMap"
)

// subscriptionObjectRefList lists the Secrets and ConfigMaps the subscription's
// headers and TLS settings read, all in its own namespace.
func subscriptionObjectRefList(spec *hooklinev1.WebhookSubscriptionSpec) []subscriptionObjectRef {
	var refs []subscriptionObjectRef
	for i, h := range spec.Headers {
		if h.ValueFrom != nil {
			r := h.ValueFrom.SecretKeyRef
			refs = append(refs, subscriptionObjectRef{subscriptionRefSecret, r.Name, []string{r.Key}, fmt.Sprintf("spec.headers[%d].valueFrom.secretKeyRef", i)})
		}
	}
	if tls := spec.TLS; tls != nil {
		if ca := tls.CA; ca != nil {
			if r := ca.SecretKeyRef; r != nil {
				refs = append(refs, subscriptionObjectRef{subscriptionRefSecret, r.Name, []string{r.Key}, "spec.tls.ca.secretKeyRef"})
			}
			if r := ca.ConfigMapKeyRef; r != nil {
				refs = append(refs, subscriptionObjectRef{subscriptionRefConfigMap, r.Name, []string{r.Key}, "spec.tls.ca.configMapKeyRef"})
			}
		}
		if r := tls.ClientCertificateSecretRef; r != nil {
			refs = append(refs, subscriptionObjectRef{subscriptionRefSecret, r.Name, []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey}, "spec.tls.clientCertificateSecretRef"})
		}
	}
	if auth := spec.Auth; auth != nil {
		if b := auth.Basic; b != nil {
			refs = append(refs, subscriptionObjectRef{subscriptionRefSecret, b.SecretRef.Name, []string{corev1.BasicAuthUsernameKey, corev1.BasicAuthPasswordKey}, "spec.auth.basic.secretRef"})
		}
		if o := auth.OAuth2; o != nil {
			refs = append(refs, subscriptionObjectRef{subscriptionRefSecret, o.ClientSecretRef.Name, []string{o.ClientSecretRef.Key}, "spec.auth.oauth2.clientSecretRef"})
		}
	}
	return refs
}

// subscriptionReferencedNames returns the distinct names of the objects of kind the
// subscription references, for the field indexes.
func subscriptionReferencedNames(spec *hooklinev1.WebhookSubscriptionSpec, kind string) []string {
	var names []string
	for _, r := range subscriptionObjectRefList(spec) {
		if r.kind == kind && !slices.Contains(names, r.name) {
			names = append(names, r.name)
		}
	}
	return names
}

// subscriptionMissingKey returns the first of ref's keys absent from present, or "".
func subscriptionMissingKey(ref subscriptionObjectRef, present func(key string) bool) string {
	for _, k := range ref.keys {
		if !present(k) {
			return k
		}
	}
	return ""
}

// subscriptionRefOutcome is the outcome for a referenced Secret or ConfigMap that
// is missing (found false) or lacks the key the spec names. It names the
// object, the field and that key: never a value, nor the keys the object
// has.
func subscriptionRefOutcome(ref subscriptionObjectRef, found bool, key string) outcome {
	msg := fmt.Sprintf("%s %s, referenced by %s, not found", ref.kind, ref.name, ref.field)
	if found {
		msg = fmt.Sprintf("%s %s, referenced by %s, has no key %q", ref.kind, ref.name, ref.field, key)
	}
	return outcome{phase: phaseProgressing, reason: hooklinev1.ReasonReferenceNotFound, message: msg}
}

// subscriptionDispatcherOutcome decides whether a subscription may attach to d: the
// namespace must be admitted, an http URL needs plain HTTP allowed, and d
// must be Ready. It returns false when attaching is fine.
func subscriptionDispatcherOutcome(spec *hooklinev1.WebhookSubscriptionSpec, d *hooklinev1.WebhookDispatcher, ns *corev1.Namespace) (outcome, bool) {
	key := types.NamespacedName{Namespace: d.Namespace, Name: d.Name}
	admitted, err := admitsNamespace(d, ns)
	if err != nil {
		return outcome{phase: phaseStalled, reason: hooklinev1.ReasonNamespaceNotAllowed,
			message: fmt.Sprintf("dispatcher %s cannot admit subscriptions: %v", key, err)}, true
	}
	if !admitted {
		return outcome{phase: phaseStalled, reason: hooklinev1.ReasonNamespaceNotAllowed,
			message: fmt.Sprintf("dispatcher %s does not admit subscriptions from namespace %s", key, ns.Name)}, true
	}
	if err := endpoint.ValidateURL(spec.URL, d.Spec.Egress.AllowPlainHTTP); errors.Is(err, endpoint.ErrPlainHTTP) {
		return outcome{phase: phaseStalled, reason: hooklinev1.ReasonURLNotAllowed,
			message: fmt.Sprintf("spec.url uses plain http, which dispatcher %s does not allow: use https, or set spec.egress.allowPlainHTTP on the dispatcher", key)}, true
	}
	if ready := meta.FindStatusCondition(d.Status.Conditions, hooklinev1.ConditionReady); ready == nil || ready.Status != metav1.ConditionTrue {
		msg := fmt.Sprintf("dispatcher %s is not Ready", key)
		if ready != nil && ready.Message != "" {
			msg += ": " + ready.Message
		}
		return outcome{phase: phaseProgressing, reason: hooklinev1.ReasonDispatcherNotReady, message: msg}, true
	}
	return outcome{}, false
}

// subscriptionSigningOutcome decides whether the signing WebhookSecret can be
// used; it returns false when it is Ready.
func subscriptionSigningOutcome(s *hooklinev1.WebhookSecret) (outcome, bool) {
	ready := meta.FindStatusCondition(s.Status.Conditions, hooklinev1.ConditionReady)
	if ready != nil && ready.Status == metav1.ConditionTrue {
		return outcome{}, false
	}
	msg := fmt.Sprintf("WebhookSecret %s is not Ready", s.Name)
	if ready != nil && ready.Message != "" {
		msg += ": " + ready.Message
	}
	return outcome{phase: phaseProgressing, reason: hooklinev1.ReasonSecretNotReady, message: msg}, true
}

// subscriptionReadyOutcome is the outcome of a subscription whose spec and
// references check out. The message says only what the controller knows
// (whether deliveries succeed is the dispatcher's to report, in
// EndpointHealthy): it names the URL's host (never its path or query, which
// may carry a token) and the dispatcher.
func subscriptionReadyOutcome(spec *hooklinev1.WebhookSubscriptionSpec, dispatcher types.NamespacedName) outcome {
	host := "the endpoint"
	if u, err := url.Parse(spec.URL); err == nil && u.Host != "" {
		host = u.Host
	}
	msg := fmt.Sprintf("Valid; events for %s go through %s", host, dispatcher)
	if spec.Suspend {
		msg = fmt.Sprintf("Suspended by spec.suspend; otherwise valid, events for %s go through %s once resumed", host, dispatcher)
	}
	return outcome{phase: phaseReady, reason: hooklinev1.ReasonSucceeded, message: msg}
}

// subscriptionDeliveryOutcome refines ready, the outcome of a subscription
// whose spec and references check out, with what dispatcher reports in its
// own conditions (Accepted, EndpointHealthy, Suspended). A condition that
// describes an older generation than sub's is ignored: the dispatcher has
// not yet caught up with the spec.
//
//   - Suspended because the endpoint answered 410 Gone: Stalled, since only
//     a change to the spec resumes deliveries.
//   - Not accepted: Stalled when the spec must change, in progress when
//     something may still appear or become ready.
//   - Accepted not yet reported for this generation (absent, stale, or
//     Unknown): in progress. Until the dispatcher accepts a subscription
//     its queue consumer may not exist, and an event published then is not
//     kept for it; Ready means events reach the subscription, so it waits.
//   - Suspended by spec.suspend: Ready, once accepted (the dispatcher
//     accepts a suspended subscription and holds its events).
//   - Suspended otherwise (a circuit breaker): Ready=False, neither
//     Reconciling nor Stalled: the spec is reconciled, deliveries are held.
//   - Endpoint unhealthy: Ready=False, neither Reconciling nor Stalled,
//     likewise; deliveries are retried without anyone acting.
func subscriptionDeliveryOutcome(sub *hooklinev1.WebhookSubscription, dispatcher types.NamespacedName, ready outcome) outcome {
	current := func(typ string) *metav1.Condition {
		c := meta.FindStatusCondition(sub.Status.Conditions, typ)
		if c == nil || c.ObservedGeneration != sub.Generation {
			return nil
		}
		return c
	}
	suspended := current(hooklinev1.ConditionSuspended)
	if suspended != nil && suspended.Status != metav1.ConditionTrue {
		suspended = nil
	}
	if suspended != nil && suspended.Reason == hooklinev1.ReasonEndpointGone {
		return outcome{phase: phaseStalled, reason: hooklinev1.ReasonEndpointGone,
			message: subscriptionConditionMessage(suspended, "The endpoint answered 410 Gone; deliveries are suspended until the spec changes")}
	}
	accepted := current(hooklinev1.ConditionAccepted)
	if accepted != nil && accepted.Status == metav1.ConditionFalse {
		p := phaseProgressing
		if subscriptionNotAcceptedStalls(accepted.Reason) {
			p = phaseStalled
		}
		return outcome{phase: p, reason: accepted.Reason,
			message: subscriptionConditionMessage(accepted, "The dispatcher does not serve this subscription")}
	}
	if accepted == nil || accepted.Status != metav1.ConditionTrue {
		return outcome{phase: phaseProgressing, reason: hooklinev1.ReasonAwaitingDispatcher,
			message: fmt.Sprintf("Waiting for dispatcher %s to accept generation %d", dispatcher, sub.Generation)}
	}
	if suspended != nil {
		// Suspending by hand is a state the user chose: Ready stays True,
		// so kstatus and GitOps health checks see it as Current. Any
		// other suspension is trouble to see.
		p := phaseHeld
		if suspended.Reason == hooklinev1.ReasonSuspendedBySpec {
			p = phaseReady
		}
		return outcome{phase: p, reason: hooklinev1.ReasonSuspended,
			message: subscriptionConditionMessage(suspended, "Deliveries are held; events stay queued")}
	}
	healthy := current(hooklinev1.ConditionEndpointHealthy)
	if healthy != nil && healthy.Status == metav1.ConditionFalse {
		return outcome{phase: phaseHeld, reason: hooklinev1.ReasonEndpointUnhealthy,
			message: subscriptionConditionMessage(healthy, "Deliveries to the endpoint fail")}
	}
	if healthy != nil && healthy.Status == metav1.ConditionTrue && ready.phase == phaseReady {
		ready.message += "; the endpoint is healthy"
	}
	return ready
}

// subscriptionNotAcceptedStalls says whether the dispatcher's reason for not
// serving a subscription needs someone to change a spec (the
// subscription's, or the dispatcher's admission or egress policy), rather
// than waiting for something to appear.
func subscriptionNotAcceptedStalls(reason string) bool {
	switch reason {
	case hooklinev1.ReasonInvalidSpec, hooklinev1.ReasonURLNotAllowed, hooklinev1.ReasonNamespaceNotAllowed, hooklinev1.ReasonFilterInvalid:
		return true
	}
	return false
}

// subscriptionConditionMessage is c's message, or fallback when it has none.
func subscriptionConditionMessage(c *metav1.Condition, fallback string) string {
	if c.Message != "" {
		return c.Message
	}
	return fallback
}

// subscriptionStatus is the status this controller applies: its own
// conditions merged with the current ones, the generation they describe,
// the resolved dispatcher and the event types as kubectl get shows them.
// The dispatcher's conditions and delivery block are left out; another
// field manager owns them.
func subscriptionStatus(sub *hooklinev1.WebhookSubscription, out outcome, dispatcher string, now metav1.Time) hooklinev1.WebhookSubscriptionStatus {
	return hooklinev1.WebhookSubscriptionStatus{
		ObservedGeneration: sub.Generation,
		Conditions:         mergeConditions(sub.Status.Conditions, summaryConditions(out), summaryTypes, sub.Generation, now),
		Dispatcher:         dispatcher,
		EventTypes:         strings.Join(sub.Spec.EventTypes, ", "),
	}
}
