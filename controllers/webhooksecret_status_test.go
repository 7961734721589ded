package controllers

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

func whTime(t time.Time) metav1.Time { return metav1.NewTime(t) }

func whTimePtr(t time.Time) *metav1.Time {
	m := metav1.NewTime(t)
	return &m
}

func TestWebhookSecretStatus(t *testing.T) {
	now := whAt(3 * time.Hour)
	earlier := whAt(-time.Hour)
	// Status as a previous reconciliation left it.
	previousStatus := hooklinev1.WebhookSecretStatus{
		ObservedGeneration: 2,
		Conditions: []metav1.Condition{{
			Type: "Ready", Status: "True", Reason: "Succeeded", Message: "Signing with key k-old (HMAC-SHA256)",
			ObservedGeneration: 2, LastTransitionTime: whTime(earlier),
		}},
		SecretName:               "payments",
		Keys:                     []hooklinev1.KeyStatus{{ID: whHMAC1.ID(), Algorithm: "HMAC-SHA256", Current: true, CreatedAt: whTime(whT0)}},
		CurrentKeyID:             whHMAC1.ID(),
		LastRotationTime:         whTimePtr(whT0),
		NextRotationTime:         whTimePtr(whAt(time.Hour)),
		LastHandledRotateRequest: "1",
	}
	hmacOnly := keyState{current: whHMAC1, currentCreatedAt: whT0, lastRotateRequest: "1"}
	edOverlap := keyState{current: whEd2, currentCreatedAt: whAt(2 * time.Hour), previous: whEd1, previousCreatedAt: whT0, previousExpiresAt: whAt(4 * time.Hour)}
	edAfterHMAC := keyState{current: whEd1, currentCreatedAt: whAt(2 * time.Hour), previous: whHMAC1, previousCreatedAt: whT0, previousExpiresAt: whAt(4 * time.Hour)}

	tests := []struct {
		name      string
		current   hooklinev1.WebhookSecretStatus
		obs       webhookSecretObservation
		want      hooklinev1.WebhookSecretStatus
		wantConds map[string]string // type -> status/reason
	}{
		{
			name: "HMAC key without an interval",
			obs:  webhookSecretObservation{secretName: "payments", observed: true, keys: hmacOnly, out: readyOutcome(hmacOnly)},
			want: hooklinev1.WebhookSecretStatus{
				SecretName:               "payments",
				Keys:                     []hooklinev1.KeyStatus{{ID: whHMAC1.ID(), Algorithm: "HMAC-SHA256", Current: true, CreatedAt: whTime(whT0)}},
				CurrentKeyID:             whHMAC1.ID(),
				LastRotationTime:         whTimePtr(whT0),
				LastHandledRotateRequest: "1",
			},
			wantConds: map[string]string{"Ready": "True/Succeeded"},
		},
		{
			name: "HMAC key with an interval has a next rotation",
			obs:  webhookSecretObservation{secretName: "payments", observed: true, keys: hmacOnly, interval: 720 * time.Hour, out: readyOutcome(hmacOnly)},
			want: hooklinev1.WebhookSecretStatus{
				SecretName:               "payments",
				Keys:                     []hooklinev1.KeyStatus{{ID: whHMAC1.ID(), Algorithm: "HMAC-SHA256", Current: true, CreatedAt: whTime(whT0)}},
				CurrentKeyID:             whHMAC1.ID(),
				LastRotationTime:         whTimePtr(whT0),
				NextRotationTime:         whTimePtr(whAt(720 * time.Hour)),
				LastHandledRotateRequest: "1",
			},
			wantConds: map[string]string{"Ready": "True/Succeeded"},
		},
		{
			name: "Ed25519 keys during an overlap: current first, public keys shown",
			obs:  webhookSecretObservation{secretName: "signing", observed: true, keys: edOverlap, interval: 2 * time.Hour, out: readyOutcome(edOverlap)},
			want: hooklinev1.WebhookSecretStatus{
				SecretName: "signing",
				Keys: []hooklinev1.KeyStatus{
					{ID: whEd2.ID(), Algorithm: "Ed25519", Current: true, CreatedAt: whTime(whAt(2 * time.Hour)), PublicKey: whEd2.PublicKey()},
					{ID: whEd1.ID(), Algorithm: "Ed25519", CreatedAt: whTime(whT0), ExpiresAt: whTimePtr(whAt(4 * time.Hour)), PublicKey: whEd1.PublicKey()},
				},
				CurrentKeyID:     whEd2.ID(),
				PublicKey:        whEd2.PublicKey(),
				LastRotationTime: whTimePtr(whAt(2 * time.Hour)),
				NextRotationTime: whTimePtr(whAt(4 * time.Hour)),
			},
			wantConds: map[string]string{"Ready": "True/Succeeded"},
		},
		{
			name: "Ed25519 key after an HMAC key",
			obs:  webhookSecretObservation{secretName: "signing", observed: true, keys: edAfterHMAC, out: readyOutcome(edAfterHMAC)},
			want: hooklinev1.WebhookSecretStatus{
				SecretName: "signing",
				Keys: []hooklinev1.KeyStatus{
					{ID: whEd1.ID(), Algorithm: "Ed25519", Current: true, CreatedAt: whTime(whAt(2 * time.Hour)), PublicKey: whEd1.PublicKey()},
					{ID: whHMAC1.ID(), Algorithm: "HMAC-SHA256", CreatedAt: whTime(whT0), ExpiresAt: whTimePtr(whAt(4 * time.Hour))},
				},
				CurrentKeyID:     whEd1.ID(),
				PublicKey:        whEd1.PublicKey(),
				LastRotationTime: whTimePtr(whAt(2 * time.Hour)),
			},
			wantConds: map[string]string{"Ready": "True/Succeeded"},
		},
		{
			name:      "Secret owned by someone else: stalled, no keys",
			current:   previousStatus,
			obs:       webhookSecretObservation{secretName: "payments", observed: true, out: secretConflictOutcome("payments")},
			want:      hooklinev1.WebhookSecretStatus{SecretName: "payments"},
			wantConds: map[string]string{"Ready": "False/SecretConflict", "Stalled": "True/SecretConflict"},
		},
		{
			name:    "invalid spec: stalled, keys still shown, no next rotation",
			current: previousStatus,
			obs: webhookSecretObservation{secretName: "payments", observed: true, keys: hmacOnly,
				out: invalidSpecOutcome(errors.New("spec.rotation.interval 1m0s must be between 1h0m0s and 8760h0m0s"))},
			want: hooklinev1.WebhookSecretStatus{
				SecretName:               "payments",
				Keys:                     []hooklinev1.KeyStatus{{ID: whHMAC1.ID(), Algorithm: "HMAC-SHA256", Current: true, CreatedAt: whTime(whT0)}},
				CurrentKeyID:             whHMAC1.ID(),
				LastRotationTime:         whTimePtr(whT0),
				LastHandledRotateRequest: "1",
			},
			wantConds: map[string]string{"Ready": "False/InvalidSpec", "Stalled": "True/InvalidSpec"},
		},
		{
			name:      "Secret not read: the keys shown before stay",
			current:   previousStatus,
			obs:       webhookSecretObservation{secretName: "payments", out: errorOutcome(errors.New("reading Secret payments: timeout"))},
			want:      whWithoutConditions(previousStatus),
			wantConds: map[string]string{"Ready": "False/ReconcileError", "Reconciling": "True/ReconcileError"},
		},
		{
			name:    "write failed after the Secret was read: the keys it holds",
			current: previousStatus,
			obs: webhookSecretObservation{secretName: "payments", observed: true, keys: hmacOnly, interval: time.Hour,
				out: errorOutcome(errors.New("applying Secret payments: timeout"))},
			want:      whWithoutConditions(previousStatus),
			wantConds: map[string]string{"Ready": "False/ReconcileError", "Reconciling": "True/ReconcileError"},
		},
		{
			name:      "no key yet",
			obs:       webhookSecretObservation{secretName: "payments", observed: true, out: errorOutcome(errors.New("generating a signing key: no entropy"))},
			want:      hooklinev1.WebhookSecretStatus{SecretName: "payments"},
			wantConds: map[string]string{"Ready": "False/ReconcileError", "Reconciling": "True/ReconcileError"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := whFixture("payments")
			ws.Status = tt.current
			got := webhookSecretStatus(ws, tt.obs, now)
			if got.ObservedGeneration != ws.Generation {
				t.Errorf("observedGeneration = %d, want %d", got.ObservedGeneration, ws.Generation)
			}
			conds := map[string]string{}
			for _, c := range got.Conditions {
				conds[c.Type] = string(c.Status) + "/" + c.Reason
				if c.ObservedGeneration != ws.Generation {
					t.Errorf("condition %s has observedGeneration %d", c.Type, c.ObservedGeneration)
				}
				if c.Message == "" {
					t.Errorf("condition %s has no message", c.Type)
				}
			}
			if diff := cmp.Diff(tt.wantConds, conds); diff != "" {
				t.Errorf("conditions (-want +got):\n%s", diff)
			}
			got.Conditions, got.ObservedGeneration = nil, 0
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		})
	}
}

func whWithoutConditions(st hooklinev1.WebhookSecretStatus) hooklinev1.WebhookSecretStatus {
	st.Conditions, st.ObservedGeneration = nil, 0
	return st
}

func TestWebhookSecretStatusKeepsTransitionTime(t *testing.T) {
	ws := whFixture("payments")
	ws.Status.Conditions = []metav1.Condition{{
		Type: "Ready", Status: "True", Reason: "Succeeded", Message: "Signing with key k-old (HMAC-SHA256)",
		ObservedGeneration: 2, LastTransitionTime: whTime(whT0),
	}}
	s := keyState{current: whHMAC2, currentCreatedAt: whAt(time.Hour), previous: whHMAC1, previousCreatedAt: whT0, previousExpiresAt: whAt(2 * time.Hour)}
	got := webhookSecretStatus(ws, webhookSecretObservation{secretName: "payments", observed: true, keys: s, out: readyOutcome(s)}, whAt(time.Hour))
	if len(got.Conditions) != 1 {
		t.Fatalf("conditions = %+v, want Ready alone", got.Conditions)
	}
	ready := got.Conditions[0]
	if !ready.LastTransitionTime.Time.Equal(whT0) {
		t.Errorf("Ready stayed True through a rotation, but its lastTransitionTime moved to %v", ready.LastTransitionTime)
	}
	if !strings.Contains(ready.Message, whHMAC2.ID()) {
		t.Errorf("Ready message %q does not name the new key", ready.Message)
	}
}

func TestWebhookSecretReadyOutcome(t *testing.T) {
	tests := []struct {
		name  string
		state keyState
		want  string
	}{
		{"one key", keyState{current: whHMAC1, currentCreatedAt: whT0},
			"Signing with key " + whHMAC1.ID() + " (HMAC-SHA256)"},
		{"with a previous key", keyState{current: whEd2, currentCreatedAt: whAt(time.Hour), previous: whEd1, previousCreatedAt: whT0, previousExpiresAt: whAt(25 * time.Hour)},
			"Signing with key " + whEd2.ID() + " (Ed25519); previous key " + whEd1.ID() + " signs until 2026-01-02T01:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readyOutcome(tt.state)
			if got.phase != phaseReady || got.reason != hooklinev1.ReasonSucceeded || got.message != tt.want {
				t.Errorf("outcome = %+v, want ready, Succeeded, %q", got, tt.want)
			}
		})
	}
}

func TestWebhookSecretStalledOutcomes(t *testing.T) {
	conflict := secretConflictOutcome("payments")
	if conflict.phase != phaseStalled || conflict.reason != hooklinev1.ReasonSecretConflict ||
		!strings.Contains(conflict.message, "Secret payments exists and is not controlled by this WebhookSecret") {
		t.Errorf("conflict outcome = %+v", conflict)
	}
	invalid := invalidSpecOutcome(errors.New("spec.algorithm \"RSA\" is not supported"))
	if invalid.phase != phaseStalled || invalid.reason != hooklinev1.ReasonInvalidSpec || invalid.message != "spec.algorithm \"RSA\" is not supported" {
		t.Errorf("invalid spec outcome = %+v", invalid)
	}
}

func TestWebhookSecretDeletingOutcome(t *testing.T) {
	// Waiting for a Secret to go is progress, not a problem to report.
	got := secretDeletingOutcome("payments")
	if got.phase != phaseProgressing || got.reason != hooklinev1.ReasonProgressing ||
		got.message != "Secret payments is being deleted; a new one with a new signing key is created once it is gone" {
		t.Errorf("outcome = %+v", got)
	}
}

func TestWebhookSecretStatusHasNoKeyMaterial(t *testing.T) {
	states := []keyState{
		{current: whHMAC2, currentCreatedAt: whAt(time.Hour), previous: whHMAC1, previousCreatedAt: whT0, previousExpiresAt: whAt(2 * time.Hour)},
		{current: whEd2, currentCreatedAt: whAt(time.Hour), previous: whEd1, previousCreatedAt: whT0, previousExpiresAt: whAt(2 * time.Hour)},
		{current: whEd1, currentCreatedAt: whAt(time.Hour), previous: whHMAC1, previousCreatedAt: whT0, previousExpiresAt: whAt(2 * time.Hour)},
	}
	for _, s := range states {
		st := webhookSecretStatus(whFixture("payments"),
			webhookSecretObservation{secretName: "payments", observed: true, keys: s, interval: time.Hour, out: readyOutcome(s)}, whAt(time.Hour))
		raw, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{s.current.Encoded(), s.previous.Encoded()} {
			// The prefix and the whole encoding, and a stretch of the
			// base64 alone.
			body := k[strings.Index(k, "_")+1:]
			for _, needle := range []string{k, body[:16]} {
				if strings.Contains(string(raw), needle) {
					t.Errorf("status %s contains key material", raw)
				}
			}
		}
		if strings.Contains(string(raw), "whsec_") || strings.Contains(string(raw), "whsk_") {
			t.Errorf("status %s contains a secret key prefix", raw)
		}
	}
}
