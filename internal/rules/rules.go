// Package rules decides whether a WebhookSubscription can be served, and
// why not. It is the one place for those rules: the admission webhook, the
// controller (with what it can see of the referenced objects) and the
// dispatcher (with their live values) all call it, so they never disagree.
//
// A decision is a *Refusal: the field it concerns, the condition reason,
// and whether the spec must change (kstatus Stalled) or something may still
// appear or become ready (InProgress). Messages name the field's full path
// and the rule, and never carry secret material: no header value, no URL
// path or query, no key a referenced object holds.
//
// Everything here is pure: no client, no clock, no network.
package rules

import (
	"fmt"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// Refusal is why a subscription cannot be served.
type Refusal struct {
	// Field is the full path of the field the refusal concerns, such as
	// "spec.headers[1].name", or "" when it concerns no single field.
	Field string
	// Reason is the condition reason, one of the API package's constants.
	Reason string
	// Message says what is wrong and, where a field is concerned, starts
	// with its path.
	Message string
}

// Error returns the message, so a Refusal can travel as an error.
func (r *Refusal) Error() string { return r.Message }

// Stalled says whether the refusal needs someone to change a spec (kstatus
// Stalled) rather than waiting for something to appear (InProgress).
func (r *Refusal) Stalled() bool { return Stalls(r.Reason) }

// Stalls says whether a refusal with this reason needs someone to change a
// spec (the subscription's, or the dispatcher's admission or egress policy):
// kstatus Stalled. Every other reason is waited for: InProgress.
func Stalls(reason string) bool {
	switch reason {
	case hooklinev1.ReasonInvalidSpec, hooklinev1.ReasonFilterInvalid,
		hooklinev1.ReasonURLNotAllowed, hooklinev1.ReasonNamespaceNotAllowed:
		return true
	}
	return false
}

func refuse(field, reason, format string, args ...any) *Refusal {
	msg := fmt.Sprintf(format, args...)
	if field != "" {
		msg = field + ": " + msg
	}
	return &Refusal{Field: field, Reason: reason, Message: msg}
}
