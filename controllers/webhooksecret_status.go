package controllers

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/keys"
)

// webhookSecretObservation is what one reconciliation of a WebhookSecret
// learned, and all its status is computed from.
type webhookSecretObservation struct {
	secretName string
	// observed says keys is what the Secret holds (nothing, when the
	// Secret belongs to someone else). When the Secret could not be read,
	// status keeps the keys it showed before.
	observed bool
	keys     keyState
	// interval of automatic rotation; zero without one, or when the spec
	// is invalid.
	interval time.Duration
	out      outcome
}

// webhookSecretStatus computes the whole status of ws at now. It never
// carries key material: ids are fingerprints, and Ed25519 public keys are
// public.
func webhookSecretStatus(ws *hooklinev1.WebhookSecret, obs webhookSecretObservation, now time.Time) hooklinev1.WebhookSecretStatus {
	st := hooklinev1.WebhookSecretStatus{
		ObservedGeneration: ws.Generation,
		Conditions:         mergeConditions(ws.Status.Conditions, summaryConditions(obs.out), summaryTypes, ws.Generation, metav1.NewTime(now)),
		SecretName:         obs.secretName,
	}
	if !obs.observed {
		prev := ws.Status
		st.Keys, st.CurrentKeyID, st.PublicKey = prev.Keys, prev.CurrentKeyID, prev.PublicKey
		st.LastRotationTime, st.NextRotationTime = prev.LastRotationTime, prev.NextRotationTime
		st.LastHandledRotateRequest = prev.LastHandledRotateRequest
		return st
	}
	s := obs.keys
	st.LastHandledRotateRequest = s.lastRotateRequest
	if s.current.IsZero() {
		return st
	}
	st.Keys = append(st.Keys, keyStatus(s.current, s.currentCreatedAt, time.Time{}))
	st.Keys[0].Current = true
	if !s.previous.IsZero() {
		st.Keys = append(st.Keys, keyStatus(s.previous, s.previousCreatedAt, s.previousExpiresAt))
	}
	st.CurrentKeyID = s.current.ID()
	st.PublicKey = s.current.PublicKey()
	st.LastRotationTime = timePtr(s.currentCreatedAt)
	if obs.interval > 0 {
		st.NextRotationTime = timePtr(s.currentCreatedAt.Add(obs.interval))
	}
	return st
}

// keyStatus describes one key; expiresAt is zero for the current key.
func keyStatus(k keys.Key, createdAt, expiresAt time.Time) hooklinev1.KeyStatus {
	return hooklinev1.KeyStatus{
		ID:        k.ID(),
		Algorithm: hooklinev1.SigningAlgorithm(k.Algorithm()),
		CreatedAt: metav1.NewTime(createdAt),
		ExpiresAt: timePtr(expiresAt),
		PublicKey: k.PublicKey(),
	}
}

// readyOutcome says which key signs, and until when the previous one does.
func readyOutcome(s keyState) outcome {
	msg := fmt.Sprintf("Signing with key %s (%s)", s.current.ID(), s.current.Algorithm())
	if !s.previous.IsZero() {
		msg += fmt.Sprintf("; previous key %s signs until %s", s.previous.ID(), s.previousExpiresAt.UTC().Format(time.RFC3339))
	}
	return outcome{phase: phaseReady, reason: hooklinev1.ReasonSucceeded, message: msg}
}

// secretConflictOutcome is the outcome for a target Secret this
// WebhookSecret does not control.
func secretConflictOutcome(secretName string) outcome {
	return outcome{
		phase:  phaseStalled,
		reason: hooklinev1.ReasonSecretConflict,
		message: fmt.Sprintf("Secret %s exists and is not controlled by this WebhookSecret, so it is left untouched: "+
			"delete or rename that Secret, or recreate this WebhookSecret with another spec.secretName", secretName),
	}
}

// secretDeletingOutcome is the outcome while this WebhookSecret's Secret
// is being deleted (a finalizer holds it): a new one is created once it is
// gone.
func secretDeletingOutcome(secretName string) outcome {
	return outcome{
		phase:   phaseProgressing,
		reason:  hooklinev1.ReasonProgressing,
		message: fmt.Sprintf("Secret %s is being deleted; a new one with a new signing key is created once it is gone", secretName),
	}
}

// invalidSpecOutcome is the outcome for a spec admission should have
// refused.
func invalidSpecOutcome(err error) outcome {
	return outcome{phase: phaseStalled, reason: hooklinev1.ReasonInvalidSpec, message: err.Error()}
}

// timePtr returns t as an API time, or nil for the zero time.
func timePtr(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	mt := metav1.NewTime(t)
	return &mt
}
