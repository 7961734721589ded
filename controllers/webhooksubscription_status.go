package controllers

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/rules"
)

// refusalOutcome is the outcome of a refusal by the rules package:
// Stalled or in progress as the rules map its reason.
func refusalOutcome(r *rules.Refusal) outcome {
	p := phaseProgressing
	if r.Stalled() {
		p = phaseStalled
	}
	return outcome{phase: p, reason: r.Reason, message: r.Message}
}

// subscriptionReferencedNames returns the distinct names of the objects of
// kind (rules.KindSecret or rules.KindConfigMap) the subscription
// references, for the field indexes.
func subscriptionReferencedNames(spec *hooklinev1.WebhookSubscriptionSpec, kind string) []string {
	var names []string
	for _, r := range rules.References(spec) {
		if r.Kind == kind && !slices.Contains(names, r.Name) {
			names = append(names, r.Name)
		}
	}
	return names
}

// subscriptionDispatcherOutcome decides whether a subscription in ns may
// attach to d, by the rules the dispatcher applies too (the namespace must be
// admitted, an http URL needs plain HTTP allowed), and whether d is Ready.
// It returns false when attaching is fine.
func subscriptionDispatcherOutcome(spec *hooklinev1.WebhookSubscriptionSpec, d *hooklinev1.WebhookDispatcher, ns *corev1.Namespace) (outcome, bool) {
	key := types.NamespacedName{Namespace: d.Namespace, Name: d.Name}
	admitted, err := admitsNamespace(d, ns)
	if r := rules.CheckDispatcher(ns.Name, spec, rules.Dispatcher{
		Key: key.String(), Admits: admitted, AdmitErr: err, AllowPlainHTTP: d.Spec.Egress.AllowPlainHTTP,
	}); r != nil {
		return refusalOutcome(r), true
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
		if rules.Stalls(accepted.Reason) {
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
