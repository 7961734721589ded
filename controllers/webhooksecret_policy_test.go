package controllers

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/keys"
)

// Fixed times and keys for the pure tests.
var (
	whT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	whHMAC1 = whTestKey(keys.HMACSHA256, 1)
	whHMAC2 = whTestKey(keys.HMACSHA256, 2)
	whEd1   = whTestKey(keys.Ed25519, 3)
	whEd2   = whTestKey(keys.Ed25519, 4)
	// whNewHMAC and whNewEd stand for the key a rotation generates.
	whNewHMAC = whTestKey(keys.HMACSHA256, 9)
	whNewEd   = whTestKey(keys.Ed25519, 9)
)

// whTestKey derives a key of alg deterministically from seed.
func whTestKey(alg keys.Algorithm, seed byte) keys.Key {
	k, err := keys.Generate(alg, bytes.NewReader(bytes.Repeat([]byte{seed}, 64)))
	if err != nil {
		panic(err)
	}
	return k
}

func whAt(d time.Duration) time.Time { return whT0.Add(d) }

func whDur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func TestWebhookSecretPolicyFor(t *testing.T) {
	tests := []struct {
		name    string
		spec    hooklinev1.WebhookSecretSpec
		want    rotationPolicy
		wantErr string
	}{
		{"defaults", hooklinev1.WebhookSecretSpec{},
			rotationPolicy{algorithm: keys.HMACSHA256, overlap: 24 * time.Hour}, ""},
		{"explicit HMAC", hooklinev1.WebhookSecretSpec{Algorithm: hooklinev1.AlgorithmHMACSHA256},
			rotationPolicy{algorithm: keys.HMACSHA256, overlap: 24 * time.Hour}, ""},
		{"Ed25519", hooklinev1.WebhookSecretSpec{Algorithm: hooklinev1.AlgorithmEd25519},
			rotationPolicy{algorithm: keys.Ed25519, overlap: 24 * time.Hour}, ""},
		{"interval only keeps default overlap",
			hooklinev1.WebhookSecretSpec{Rotation: &hooklinev1.RotationPolicy{Interval: whDur(720 * time.Hour)}},
			rotationPolicy{algorithm: keys.HMACSHA256, interval: 720 * time.Hour, overlap: 24 * time.Hour}, ""},
		{"interval and overlap",
			hooklinev1.WebhookSecretSpec{Rotation: &hooklinev1.RotationPolicy{Interval: whDur(time.Hour), Overlap: whDur(30 * time.Minute)}},
			rotationPolicy{algorithm: keys.HMACSHA256, interval: time.Hour, overlap: 30 * time.Minute}, ""},
		{"zero overlap",
			hooklinev1.WebhookSecretSpec{Rotation: &hooklinev1.RotationPolicy{Overlap: whDur(0)}},
			rotationPolicy{algorithm: keys.HMACSHA256}, ""},
		{"longest interval and overlap",
			hooklinev1.WebhookSecretSpec{Rotation: &hooklinev1.RotationPolicy{Interval: whDur(8760 * time.Hour), Overlap: whDur(720 * time.Hour)}},
			rotationPolicy{algorithm: keys.HMACSHA256, interval: 8760 * time.Hour, overlap: 720 * time.Hour}, ""},
		{"unknown algorithm", hooklinev1.WebhookSecretSpec{Algorithm: "RSA"}, rotationPolicy{}, `spec.algorithm "RSA"`},
		{"interval too short",
			hooklinev1.WebhookSecretSpec{Rotation: &hooklinev1.RotationPolicy{Interval: whDur(59 * time.Minute)}},
			rotationPolicy{}, "spec.rotation.interval 59m0s must be between 1h0m0s and 8760h0m0s"},
		{"interval too long",
			hooklinev1.WebhookSecretSpec{Rotation: &hooklinev1.RotationPolicy{Interval: whDur(8761 * time.Hour)}},
			rotationPolicy{}, "spec.rotation.interval"},
		{"negative overlap",
			hooklinev1.WebhookSecretSpec{Rotation: &hooklinev1.RotationPolicy{Overlap: whDur(-time.Second)}},
			rotationPolicy{}, "spec.rotation.overlap -1s must be between 0s and 720h0m0s"},
		{"overlap as long as the interval",
			hooklinev1.WebhookSecretSpec{Rotation: &hooklinev1.RotationPolicy{Interval: whDur(2 * time.Hour), Overlap: whDur(2 * time.Hour)}},
			rotationPolicy{}, "spec.rotation.overlap 2h0m0s must be shorter than spec.rotation.interval 2h0m0s"},
		{"default overlap above the interval",
			hooklinev1.WebhookSecretSpec{Rotation: &hooklinev1.RotationPolicy{Interval: whDur(time.Hour)}},
			rotationPolicy{}, "spec.rotation.overlap 24h0m0s must be shorter than spec.rotation.interval 1h0m0s"},
		{"overlap too long",
			hooklinev1.WebhookSecretSpec{Rotation: &hooklinev1.RotationPolicy{Overlap: whDur(721 * time.Hour)}},
			rotationPolicy{}, "spec.rotation.overlap"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := policyFor(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got != tt.want {
				t.Errorf("policy = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// whKeysSummary shows a keyState by key ids, so that tests compare states
// with cmp; "new" is the generated key.
type whKeysSummary struct {
	Current, Previous                                string
	CurrentCreated, PreviousCreated, PreviousExpires time.Time
	Damaged                                          bool
	WrongType                                        string
	LastRequest                                      string
}

func whSummarize(s keyState) whKeysSummary {
	id := func(k keys.Key) string {
		if k.ID() != "" && (k.ID() == whNewHMAC.ID() || k.ID() == whNewEd.ID()) {
			return "new"
		}
		return k.ID()
	}
	return whKeysSummary{
		Current: id(s.current), Previous: id(s.previous),
		CurrentCreated: s.currentCreatedAt, PreviousCreated: s.previousCreatedAt, PreviousExpires: s.previousExpiresAt,
		Damaged: s.damaged, WrongType: s.wrongType, LastRequest: s.lastRotateRequest,
	}
}

func TestWebhookSecretRotationDecision(t *testing.T) {
	hmac := func(interval, overlap time.Duration) rotationPolicy {
		return rotationPolicy{algorithm: keys.HMACSHA256, interval: interval, overlap: overlap}
	}
	ed := func(interval, overlap time.Duration) rotationPolicy {
		return rotationPolicy{algorithm: keys.Ed25519, interval: interval, overlap: overlap}
	}
	// One HMAC key created at whT0.
	single := keyState{current: whHMAC1, currentCreatedAt: whT0}
	// whHMAC2 current since 2h, whHMAC1 previous until 3h.
	overlapping := keyState{current: whHMAC2, currentCreatedAt: whAt(2 * time.Hour), previous: whHMAC1, previousCreatedAt: whT0, previousExpiresAt: whAt(3 * time.Hour)}

	tests := []struct {
		name       string
		now        time.Time
		policy     rotationPolicy
		state      keyState
		request    string
		wantReason rotateReason
		wantExpire bool
		wantNext   time.Time
		wantAfter  whKeysSummary
	}{
		{
			name: "no key: create", now: whT0, policy: hmac(0, time.Hour),
			wantReason: rotateCreate,
			wantAfter:  whKeysSummary{Current: "new", CurrentCreated: whT0},
		},
		{
			name: "no key with an interval: create, next rotation after the interval", now: whT0, policy: hmac(time.Hour, time.Hour),
			wantReason: rotateCreate, wantNext: whAt(time.Hour),
			wantAfter: whKeysSummary{Current: "new", CurrentCreated: whT0},
		},
		{
			name: "no key with a rotate request: creation acts upon it", now: whT0, policy: hmac(0, time.Hour), request: "1",
			wantReason: rotateCreate,
			wantAfter:  whKeysSummary{Current: "new", CurrentCreated: whT0, LastRequest: "1"},
		},
		{
			name: "fresh key, nothing to do", now: whAt(time.Minute), policy: hmac(0, time.Hour), state: single,
			wantAfter: whKeysSummary{Current: whHMAC1.ID(), CurrentCreated: whT0},
		},
		{
			name: "interval not yet elapsed: next check at the rotation time", now: whAt(59 * time.Minute), policy: hmac(time.Hour, time.Hour), state: single,
			wantNext:  whAt(time.Hour),
			wantAfter: whKeysSummary{Current: whHMAC1.ID(), CurrentCreated: whT0},
		},
		{
			name: "interval elapsed exactly: rotate", now: whAt(time.Hour), policy: hmac(time.Hour, 30*time.Minute), state: single,
			wantReason: rotateInterval, wantNext: whAt(90 * time.Minute),
			wantAfter: whKeysSummary{Current: "new", CurrentCreated: whAt(time.Hour), Previous: whHMAC1.ID(), PreviousCreated: whT0, PreviousExpires: whAt(90 * time.Minute)},
		},
		{
			name: "interval long elapsed: one rotation, the next interval counts from now", now: whAt(100 * time.Hour), policy: hmac(time.Hour, 2*time.Hour), state: single,
			wantReason: rotateInterval, wantNext: whAt(101 * time.Hour),
			wantAfter: whKeysSummary{Current: "new", CurrentCreated: whAt(100 * time.Hour), Previous: whHMAC1.ID(), PreviousCreated: whT0, PreviousExpires: whAt(102 * time.Hour)},
		},
		{
			name: "without an interval an old key stays", now: whAt(10000 * time.Hour), policy: hmac(0, time.Hour), state: single,
			wantAfter: whKeysSummary{Current: whHMAC1.ID(), CurrentCreated: whT0},
		},
		{
			name: "interval elapsed with zero overlap: the old key goes at once", now: whAt(time.Hour), policy: hmac(time.Hour, 0), state: single,
			wantReason: rotateInterval, wantNext: whAt(2 * time.Hour),
			wantAfter: whKeysSummary{Current: "new", CurrentCreated: whAt(time.Hour)},
		},
		{
			name: "new rotate request: rotate and remember it", now: whAt(time.Minute), policy: hmac(0, time.Hour), state: single, request: "1",
			wantReason: rotateRequest, wantNext: whAt(61 * time.Minute),
			wantAfter: whKeysSummary{Current: "new", CurrentCreated: whAt(time.Minute), Previous: whHMAC1.ID(), PreviousCreated: whT0, PreviousExpires: whAt(61 * time.Minute), LastRequest: "1"},
		},
		{
			name: "rotate request already handled: nothing", now: whAt(time.Minute), policy: hmac(0, time.Hour),
			state: keyState{current: whHMAC1, currentCreatedAt: whT0, lastRotateRequest: "1"}, request: "1",
			wantAfter: whKeysSummary{Current: whHMAC1.ID(), CurrentCreated: whT0, LastRequest: "1"},
		},
		{
			name: "rotate request changed again: rotate", now: whAt(time.Minute), policy: hmac(0, time.Hour),
			state: keyState{current: whHMAC1, currentCreatedAt: whT0, lastRotateRequest: "1"}, request: "2",
			wantReason: rotateRequest, wantNext: whAt(61 * time.Minute),
			wantAfter: whKeysSummary{Current: "new", CurrentCreated: whAt(time.Minute), Previous: whHMAC1.ID(), PreviousCreated: whT0, PreviousExpires: whAt(61 * time.Minute), LastRequest: "2"},
		},
		{
			name: "rotate annotation removed: nothing, the last request is kept", now: whAt(time.Minute), policy: hmac(0, time.Hour),
			state:     keyState{current: whHMAC1, currentCreatedAt: whT0, lastRotateRequest: "1"},
			wantAfter: whKeysSummary{Current: whHMAC1.ID(), CurrentCreated: whT0, LastRequest: "1"},
		},
		{
			name: "algorithm changed: rotate to the new algorithm, keep the old key", now: whAt(time.Minute), policy: ed(0, time.Hour), state: single,
			wantReason: rotateAlgorithm, wantNext: whAt(61 * time.Minute),
			wantAfter: whKeysSummary{Current: "new", CurrentCreated: whAt(time.Minute), Previous: whHMAC1.ID(), PreviousCreated: whT0, PreviousExpires: whAt(61 * time.Minute)},
		},
		{
			name: "Ed25519 key under an Ed25519 policy: nothing", now: whAt(time.Minute), policy: ed(0, time.Hour),
			state:     keyState{current: whEd1, currentCreatedAt: whT0},
			wantAfter: whKeysSummary{Current: whEd1.ID(), CurrentCreated: whT0},
		},
		{
			name: "damaged key: rotate", now: whAt(time.Minute), policy: hmac(time.Hour, time.Hour),
			state:      keyState{damaged: true, currentCreatedAt: whT0},
			wantReason: rotateDamaged, wantNext: whAt(61 * time.Minute),
			wantAfter: whKeysSummary{Current: "new", CurrentCreated: whAt(time.Minute)},
		},
		{
			name: "damaged key: the previous key stays until its expiry", now: whAt(150 * time.Minute), policy: hmac(5*time.Hour, time.Hour),
			state:      keyState{damaged: true, currentCreatedAt: whAt(2 * time.Hour), previous: whHMAC1, previousCreatedAt: whT0, previousExpiresAt: whAt(3 * time.Hour)},
			wantReason: rotateDamaged, wantNext: whAt(3 * time.Hour),
			wantAfter: whKeysSummary{Current: "new", CurrentCreated: whAt(150 * time.Minute), Previous: whHMAC1.ID(), PreviousCreated: whT0, PreviousExpires: whAt(3 * time.Hour)},
		},
		{
			name: "damaged key outranks a rotate request, which it acts upon", now: whAt(time.Minute), policy: hmac(0, time.Hour),
			state: keyState{damaged: true}, request: "7",
			wantReason: rotateDamaged,
			wantAfter:  whKeysSummary{Current: "new", CurrentCreated: whAt(time.Minute), LastRequest: "7"},
		},
		{
			name: "Secret of another type: rotate, keep the old key for the overlap", now: whAt(time.Minute), policy: hmac(time.Hour, 30*time.Minute),
			state:      keyState{current: whHMAC1, currentCreatedAt: whT0, wrongType: "Opaque"},
			wantReason: rotateSecretType, wantNext: whAt(31 * time.Minute),
			wantAfter: whKeysSummary{Current: "new", CurrentCreated: whAt(time.Minute), Previous: whHMAC1.ID(), PreviousCreated: whT0, PreviousExpires: whAt(31 * time.Minute)},
		},
		{
			name: "Secret of another type outranks a damaged key and an algorithm change", now: whAt(time.Minute), policy: ed(0, time.Hour),
			state:      keyState{damaged: true, wrongType: "Opaque"},
			wantReason: rotateSecretType,
			wantAfter:  whKeysSummary{Current: "new", CurrentCreated: whAt(time.Minute)},
		},
		{
			name: "algorithm change outranks a rotate request, which it acts upon", now: whAt(time.Minute), policy: ed(0, time.Hour), state: single, request: "7",
			wantReason: rotateAlgorithm, wantNext: whAt(61 * time.Minute),
			wantAfter: whKeysSummary{Current: "new", CurrentCreated: whAt(time.Minute), Previous: whHMAC1.ID(), PreviousCreated: whT0, PreviousExpires: whAt(61 * time.Minute), LastRequest: "7"},
		},
		{
			name: "previous key in its overlap window: next check at its expiry", now: whAt(150 * time.Minute), policy: hmac(10*time.Hour, time.Hour), state: overlapping,
			wantNext:  whAt(3 * time.Hour),
			wantAfter: whSummarize(overlapping),
		},
		{
			name: "previous key expires exactly now: remove it", now: whAt(3 * time.Hour), policy: hmac(10*time.Hour, time.Hour), state: overlapping,
			wantExpire: true, wantNext: whAt(12 * time.Hour),
			wantAfter: whKeysSummary{Current: whHMAC2.ID(), CurrentCreated: whAt(2 * time.Hour)},
		},
		{
			name: "previous key expired without an interval: remove it, then nothing is due", now: whAt(4 * time.Hour), policy: hmac(0, time.Hour), state: overlapping,
			wantExpire: true,
			wantAfter:  whKeysSummary{Current: whHMAC2.ID(), CurrentCreated: whAt(2 * time.Hour)},
		},
		{
			name: "overlap shortened: the previous key's expiry comes forward", now: whAt(150 * time.Minute), policy: hmac(0, 45*time.Minute), state: overlapping,
			wantNext:  whAt(165 * time.Minute),
			wantAfter: whKeysSummary{Current: whHMAC2.ID(), CurrentCreated: whAt(2 * time.Hour), Previous: whHMAC1.ID(), PreviousCreated: whT0, PreviousExpires: whAt(165 * time.Minute)},
		},
		{
			name: "overlap set to zero: the previous key goes at once", now: whAt(150 * time.Minute), policy: hmac(0, 0), state: overlapping,
			wantExpire: true,
			wantAfter:  whKeysSummary{Current: whHMAC2.ID(), CurrentCreated: whAt(2 * time.Hour)},
		},
		{
			name: "overlap lengthened: the recorded expiry stands", now: whAt(150 * time.Minute), policy: hmac(0, 10*time.Hour), state: overlapping,
			wantNext:  whAt(3 * time.Hour),
			wantAfter: whSummarize(overlapping),
		},
		{
			name: "previous key without a recorded expiry: the overlap after the current key's creation", now: whAt(150 * time.Minute), policy: hmac(0, 2*time.Hour),
			state:     keyState{current: whHMAC2, currentCreatedAt: whAt(2 * time.Hour), previous: whHMAC1, previousCreatedAt: whT0},
			wantNext:  whAt(4 * time.Hour),
			wantAfter: whKeysSummary{Current: whHMAC2.ID(), CurrentCreated: whAt(2 * time.Hour), Previous: whHMAC1.ID(), PreviousCreated: whT0, PreviousExpires: whAt(4 * time.Hour)},
		},
		{
			name: "previous key with neither expiry nor current key: remove it and create", now: whAt(time.Minute), policy: hmac(0, time.Hour),
			state:      keyState{previous: whHMAC1, previousCreatedAt: whT0},
			wantReason: rotateCreate, wantExpire: true,
			wantAfter: whKeysSummary{Current: "new", CurrentCreated: whAt(time.Minute)},
		},
		{
			name: "rotation during an overlap window drops the older key", now: whAt(150 * time.Minute), policy: hmac(10*time.Hour, time.Hour), state: overlapping, request: "x",
			wantReason: rotateRequest, wantNext: whAt(210 * time.Minute),
			wantAfter: whKeysSummary{Current: "new", CurrentCreated: whAt(150 * time.Minute), Previous: whHMAC2.ID(), PreviousCreated: whAt(2 * time.Hour), PreviousExpires: whAt(210 * time.Minute), LastRequest: "x"},
		},
		{
			name: "rotation when the previous key has just expired: both", now: whAt(12 * time.Hour), policy: hmac(10*time.Hour, time.Hour), state: overlapping,
			wantReason: rotateInterval, wantExpire: true, wantNext: whAt(13 * time.Hour),
			wantAfter: whKeysSummary{Current: "new", CurrentCreated: whAt(12 * time.Hour), Previous: whHMAC2.ID(), PreviousCreated: whAt(2 * time.Hour), PreviousExpires: whAt(13 * time.Hour)},
		},
		{
			name: "next rotation before the previous key's expiry", now: whAt(150 * time.Minute), policy: hmac(time.Hour, 5*time.Hour),
			state:     keyState{current: whHMAC2, currentCreatedAt: whAt(2 * time.Hour), previous: whHMAC1, previousCreatedAt: whT0, previousExpiresAt: whAt(7 * time.Hour)},
			wantNext:  whAt(3 * time.Hour),
			wantAfter: whKeysSummary{Current: whHMAC2.ID(), CurrentCreated: whAt(2 * time.Hour), Previous: whHMAC1.ID(), PreviousCreated: whT0, PreviousExpires: whAt(7 * time.Hour)},
		},
		{
			name: "Ed25519 previous key of an Ed25519 current key expires", now: whAt(3 * time.Hour), policy: ed(0, time.Hour),
			state:      keyState{current: whEd2, currentCreatedAt: whAt(2 * time.Hour), previous: whEd1, previousCreatedAt: whT0, previousExpiresAt: whAt(3 * time.Hour)},
			wantExpire: true,
			wantAfter:  whKeysSummary{Current: whEd2.ID(), CurrentCreated: whAt(2 * time.Hour)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := rotationDecision(tt.now, tt.policy, tt.state, tt.request)
			if d.reason != tt.wantReason {
				t.Errorf("reason = %d (%s), want %d", d.reason, d.why, tt.wantReason)
			}
			if d.rotate() != (tt.wantReason != rotateNone) {
				t.Errorf("rotate() = %v with reason %d", d.rotate(), d.reason)
			}
			if d.rotate() == (d.why == "") {
				t.Errorf("why = %q with rotate() = %v", d.why, d.rotate())
			}
			if d.expirePrevious != tt.wantExpire {
				t.Errorf("expirePrevious = %v, want %v", d.expirePrevious, tt.wantExpire)
			}
			if !d.next.Equal(tt.wantNext) {
				t.Errorf("next = %v, want %v", d.next, tt.wantNext)
			}
			var generated keys.Key
			if d.rotate() {
				generated = whNewHMAC
				if tt.policy.algorithm == keys.Ed25519 {
					generated = whNewEd
				}
			}
			after := nextKeys(tt.now, tt.policy, tt.state, d, generated, tt.request)
			if diff := cmp.Diff(tt.wantAfter, whSummarize(after)); diff != "" {
				t.Errorf("keys after (-want +got):\n%s", diff)
			}
			// The decision for the keys as they are now must be stable:
			// nothing more to do until next.
			again := rotationDecision(tt.now, tt.policy, after, tt.request)
			if again.rotate() || again.expirePrevious {
				t.Errorf("decision is not stable: a second one at the same time says %+v", again)
			}
			if !again.next.Equal(d.next) {
				t.Errorf("second decision's next = %v, want %v", again.next, d.next)
			}
			if !d.next.IsZero() && !d.next.After(tt.now) {
				t.Errorf("next = %v is not after now %v", d.next, tt.now)
			}
		})
	}
}

func TestWebhookSecretRotationWhy(t *testing.T) {
	// The explanation names the cause and never key material.
	tests := []struct {
		name   string
		policy rotationPolicy
		state  keyState
		req    string
		want   string
	}{
		{"create", rotationPolicy{algorithm: keys.HMACSHA256}, keyState{}, "", "no signing key"},
		{"damaged", rotationPolicy{algorithm: keys.HMACSHA256}, keyState{damaged: true}, "", "could not be parsed"},
		{"Secret type", rotationPolicy{algorithm: keys.HMACSHA256}, keyState{current: whHMAC1, currentCreatedAt: whT0, wrongType: "Opaque"}, "",
			`the Secret had type "Opaque", and as a type cannot change the Secret was recreated with type "hookline.dev/signing-key"`},
		{"algorithm", rotationPolicy{algorithm: keys.Ed25519}, keyState{current: whHMAC1, currentCreatedAt: whT0}, "", "from HMAC-SHA256 to Ed25519"},
		{"request", rotationPolicy{algorithm: keys.HMACSHA256}, keyState{current: whHMAC1, currentCreatedAt: whT0}, "2026-06-01", `hookline.dev/rotate="2026-06-01"`},
		{"interval", rotationPolicy{algorithm: keys.HMACSHA256, interval: time.Hour}, keyState{current: whHMAC1, currentCreatedAt: whT0}, "", "interval of 1h0m0s has elapsed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := rotationDecision(whAt(2*time.Hour), tt.policy, tt.state, tt.req)
			if !strings.Contains(d.why, tt.want) {
				t.Errorf("why = %q, want it to contain %q", d.why, tt.want)
			}
			if strings.Contains(d.why, whHMAC1.Encoded()) {
				t.Errorf("why %q contains key material", d.why)
			}
		})
	}
}

func TestWebhookSecretEarliest(t *testing.T) {
	tests := []struct {
		a, b, want time.Time
	}{
		{time.Time{}, time.Time{}, time.Time{}},
		{whT0, time.Time{}, whT0},
		{time.Time{}, whT0, whT0},
		{whT0, whAt(time.Hour), whT0},
		{whAt(time.Hour), whT0, whT0},
	}
	for _, tt := range tests {
		if got := earliest(tt.a, tt.b); !got.Equal(tt.want) {
			t.Errorf("earliest(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

// whFixture is a WebhookSecret as the API server would return it.
func whFixture(name string) *hooklinev1.WebhookSecret {
	return &hooklinev1.WebhookSecret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: name, UID: "uid-1", Generation: 3}}
}

// whSecretFromApply turns what would be applied into the Secret
// the API server would store.
func whSecretFromApply(t *testing.T, ws *hooklinev1.WebhookSecret, s keyState) *corev1.Secret {
	t.Helper()
	raw, err := json.Marshal(secretFor(ws, "signing", s))
	if err != nil {
		t.Fatalf("marshalling the Secret: %v", err)
	}
	secret := &corev1.Secret{}
	if err := json.Unmarshal(raw, secret); err != nil {
		t.Fatalf("unmarshalling the Secret: %v", err)
	}
	return secret
}

func TestWebhookSecretSecretLayout(t *testing.T) {
	ws := whFixture("payments")
	tests := []struct {
		name            string
		state           keyState
		wantData        map[string]string
		wantAnnotations map[string]string
	}{
		{
			name:  "HMAC key alone",
			state: keyState{current: whHMAC1, currentCreatedAt: whT0},
			wantData: map[string]string{
				"signing-key": whHMAC1.Encoded(),
			},
			wantAnnotations: map[string]string{
				"hookline.dev/signing-key-created-at": "2026-01-01T00:00:00Z",
			},
		},
		{
			name:  "HMAC keys during an overlap, with a handled rotate request",
			state: keyState{current: whHMAC2, currentCreatedAt: whAt(time.Hour), previous: whHMAC1, previousCreatedAt: whT0, previousExpiresAt: whAt(2 * time.Hour), lastRotateRequest: "1"},
			wantData: map[string]string{
				"signing-key":          whHMAC2.Encoded(),
				"signing-key.previous": whHMAC1.Encoded(),
			},
			wantAnnotations: map[string]string{
				"hookline.dev/signing-key-created-at":  "2026-01-01T01:00:00Z",
				"hookline.dev/previous-key-created-at": "2026-01-01T00:00:00Z",
				"hookline.dev/previous-key-expires-at": "2026-01-01T02:00:00Z",
				"hookline.dev/last-rotate-request":     "1",
			},
		},
		{
			name:  "Ed25519 key alone",
			state: keyState{current: whEd1, currentCreatedAt: whT0},
			wantData: map[string]string{
				"signing-key": whEd1.Encoded(),
				"public-key":  whEd1.PublicKey(),
			},
			wantAnnotations: map[string]string{
				"hookline.dev/signing-key-created-at": "2026-01-01T00:00:00Z",
			},
		},
		{
			name:  "Ed25519 keys during an overlap",
			state: keyState{current: whEd2, currentCreatedAt: whAt(time.Hour), previous: whEd1, previousCreatedAt: whT0, previousExpiresAt: whAt(2 * time.Hour)},
			wantData: map[string]string{
				"signing-key":          whEd2.Encoded(),
				"public-key":           whEd2.PublicKey(),
				"signing-key.previous": whEd1.Encoded(),
				"public-key.previous":  whEd1.PublicKey(),
			},
			wantAnnotations: map[string]string{
				"hookline.dev/signing-key-created-at":  "2026-01-01T01:00:00Z",
				"hookline.dev/previous-key-created-at": "2026-01-01T00:00:00Z",
				"hookline.dev/previous-key-expires-at": "2026-01-01T02:00:00Z",
			},
		},
		{
			name:  "Ed25519 key after HMAC: no previous public key",
			state: keyState{current: whEd1, currentCreatedAt: whAt(time.Hour), previous: whHMAC1, previousCreatedAt: whT0, previousExpiresAt: whAt(2 * time.Hour)},
			wantData: map[string]string{
				"signing-key":          whEd1.Encoded(),
				"public-key":           whEd1.PublicKey(),
				"signing-key.previous": whHMAC1.Encoded(),
			},
			wantAnnotations: map[string]string{
				"hookline.dev/signing-key-created-at":  "2026-01-01T01:00:00Z",
				"hookline.dev/previous-key-created-at": "2026-01-01T00:00:00Z",
				"hookline.dev/previous-key-expires-at": "2026-01-01T02:00:00Z",
			},
		},
		{
			name:  "HMAC key after Ed25519: the previous public key stays for verifiers",
			state: keyState{current: whHMAC1, currentCreatedAt: whAt(time.Hour), previous: whEd1, previousCreatedAt: whT0, previousExpiresAt: whAt(2 * time.Hour)},
			wantData: map[string]string{
				"signing-key":          whHMAC1.Encoded(),
				"signing-key.previous": whEd1.Encoded(),
				"public-key.previous":  whEd1.PublicKey(),
			},
			wantAnnotations: map[string]string{
				"hookline.dev/signing-key-created-at":  "2026-01-01T01:00:00Z",
				"hookline.dev/previous-key-created-at": "2026-01-01T00:00:00Z",
				"hookline.dev/previous-key-expires-at": "2026-01-01T02:00:00Z",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret := whSecretFromApply(t, ws, tt.state)
			gotData := map[string]string{}
			for k, v := range secret.Data {
				gotData[k] = string(v)
			}
			if diff := cmp.Diff(tt.wantData, gotData); diff != "" {
				t.Errorf("data (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantAnnotations, secret.Annotations); diff != "" {
				t.Errorf("annotations (-want +got):\n%s", diff)
			}
			if secret.Type != "hookline.dev/signing-key" {
				t.Errorf("type = %q", secret.Type)
			}
			if secret.Name != "signing" || secret.Namespace != "team-a" {
				t.Errorf("Secret is %s/%s, want team-a/signing", secret.Namespace, secret.Name)
			}
			wantLabels := map[string]string{"app.kubernetes.io/managed-by": "hookline", "hookline.dev/webhooksecret": "payments"}
			if diff := cmp.Diff(wantLabels, secret.Labels); diff != "" {
				t.Errorf("labels (-want +got):\n%s", diff)
			}
			owner := metav1.GetControllerOf(secret)
			if owner == nil || owner.Kind != "WebhookSecret" || owner.APIVersion != "hookline.dev/v1alpha1" ||
				owner.Name != "payments" || owner.UID != "uid-1" || owner.BlockOwnerDeletion == nil || !*owner.BlockOwnerDeletion {
				t.Errorf("controller reference = %+v", owner)
			}
			// What is written reads back as the same keys.
			if diff := cmp.Diff(whSummarize(tt.state), whSummarize(keysFromSecret(secret, whAt(5*time.Hour)))); diff != "" {
				t.Errorf("keys read back (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWebhookSecretLongNameHasNoNameLabel(t *testing.T) {
	ws := whFixture(strings.Repeat("a", 64))
	secret := whSecretFromApply(t, ws, keyState{current: whHMAC1, currentCreatedAt: whT0})
	if _, ok := secret.Labels["hookline.dev/webhooksecret"]; ok {
		t.Errorf("a 64-character name was put in a label: %v", secret.Labels)
	}
	if secret.Labels["app.kubernetes.io/managed-by"] != "hookline" {
		t.Errorf("labels = %v", secret.Labels)
	}
}

func TestWebhookSecretKeysFromSecret(t *testing.T) {
	now := whAt(10 * time.Hour)
	secret := func(data map[string]string, annotations map[string]string) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Annotations: annotations}, Type: "hookline.dev/signing-key", Data: map[string][]byte{}}
		for k, v := range data {
			s.Data[k] = []byte(v)
		}
		return s
	}
	full := map[string]string{
		"hookline.dev/signing-key-created-at":  "2026-01-01T05:00:00Z",
		"hookline.dev/previous-key-created-at": "2026-01-01T01:00:00Z",
		"hookline.dev/previous-key-expires-at": "2026-01-01T12:00:00Z",
		"hookline.dev/last-rotate-request":     "abc",
	}
	tests := []struct {
		name   string
		secret *corev1.Secret
		want   whKeysSummary
	}{
		{"no Secret", nil, whKeysSummary{}},
		{"empty Secret", secret(nil, nil), whKeysSummary{}},
		{
			"current and previous",
			secret(map[string]string{"signing-key": whHMAC2.Encoded(), "signing-key.previous": whHMAC1.Encoded()}, full),
			whKeysSummary{Current: whHMAC2.ID(), CurrentCreated: whAt(5 * time.Hour), Previous: whHMAC1.ID(), PreviousCreated: whAt(time.Hour), PreviousExpires: whAt(12 * time.Hour), LastRequest: "abc"},
		},
		{
			"Ed25519 key, public key ignored",
			secret(map[string]string{"signing-key": whEd1.Encoded(), "public-key": "whpk_garbage"}, full),
			whKeysSummary{Current: whEd1.ID(), CurrentCreated: whAt(5 * time.Hour), LastRequest: "abc"},
		},
		{
			"key with a trailing newline still parses",
			secret(map[string]string{"signing-key": whHMAC1.Encoded() + "\n"}, full),
			whKeysSummary{Current: whHMAC1.ID(), CurrentCreated: whAt(5 * time.Hour), LastRequest: "abc"},
		},
		{
			"damaged current key",
			secret(map[string]string{"signing-key": "garbage", "signing-key.previous": whHMAC1.Encoded()}, full),
			whKeysSummary{Damaged: true, Previous: whHMAC1.ID(), PreviousCreated: whAt(time.Hour), PreviousExpires: whAt(12 * time.Hour), LastRequest: "abc"},
		},
		{
			"empty current key is damaged",
			secret(map[string]string{"signing-key": ""}, nil),
			whKeysSummary{Damaged: true},
		},
		{
			"public key in place of the signing key is damaged",
			secret(map[string]string{"signing-key": whEd1.PublicKey()}, nil),
			whKeysSummary{Damaged: true},
		},
		{
			"damaged previous key is dropped",
			secret(map[string]string{"signing-key": whHMAC2.Encoded(), "signing-key.previous": "whsec_AAAA"}, full),
			whKeysSummary{Current: whHMAC2.ID(), CurrentCreated: whAt(5 * time.Hour), LastRequest: "abc"},
		},
		{
			"previous key equal to the current one is dropped",
			secret(map[string]string{"signing-key": whHMAC2.Encoded(), "signing-key.previous": whHMAC2.Encoded()}, full),
			whKeysSummary{Current: whHMAC2.ID(), CurrentCreated: whAt(5 * time.Hour), LastRequest: "abc"},
		},
		{
			"missing times: creation now, expiry unknown",
			secret(map[string]string{"signing-key": whHMAC2.Encoded(), "signing-key.previous": whHMAC1.Encoded()}, nil),
			whKeysSummary{Current: whHMAC2.ID(), CurrentCreated: now, Previous: whHMAC1.ID(), PreviousCreated: now},
		},
		{
			"unreadable times: creation now, expiry unknown",
			secret(map[string]string{"signing-key": whHMAC2.Encoded(), "signing-key.previous": whHMAC1.Encoded()}, map[string]string{
				"hookline.dev/signing-key-created-at":  "yesterday",
				"hookline.dev/previous-key-created-at": "1767229200",
				"hookline.dev/previous-key-expires-at": "soon",
			}),
			whKeysSummary{Current: whHMAC2.ID(), CurrentCreated: now, Previous: whHMAC1.ID(), PreviousCreated: now},
		},
		{
			"creation time in the future is taken as now",
			secret(map[string]string{"signing-key": whHMAC2.Encoded()}, map[string]string{"hookline.dev/signing-key-created-at": "2030-01-01T00:00:00Z"}),
			whKeysSummary{Current: whHMAC2.ID(), CurrentCreated: now},
		},
		{
			"Secret of another type: the keys and the type",
			func() *corev1.Secret {
				s := secret(map[string]string{"signing-key": whHMAC2.Encoded()}, full)
				s.Type = corev1.SecretTypeOpaque
				return s
			}(),
			whKeysSummary{Current: whHMAC2.ID(), CurrentCreated: whAt(5 * time.Hour), WrongType: "Opaque", LastRequest: "abc"},
		},
		{
			"Secret without a type is Opaque",
			func() *corev1.Secret {
				s := secret(map[string]string{"signing-key": whHMAC2.Encoded()}, full)
				s.Type = ""
				return s
			}(),
			whKeysSummary{Current: whHMAC2.ID(), CurrentCreated: whAt(5 * time.Hour), WrongType: "Opaque", LastRequest: "abc"},
		},
		{
			"times with an offset are read as UTC",
			secret(map[string]string{"signing-key": whHMAC2.Encoded()}, map[string]string{"hookline.dev/signing-key-created-at": "2026-01-01T07:00:00+02:00"}),
			whKeysSummary{Current: whHMAC2.ID(), CurrentCreated: whAt(5 * time.Hour)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := whSummarize(keysFromSecret(tt.secret, now))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("keys (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWebhookSecretSigningSecretName(t *testing.T) {
	ws := whFixture("payments")
	if got := signingSecretName(ws); got != "payments" {
		t.Errorf("default Secret name = %q, want the WebhookSecret's name", got)
	}
	ws.Spec.SecretName = "payments-signing"
	if got := signingSecretName(ws); got != "payments-signing" {
		t.Errorf("Secret name = %q, want spec.secretName", got)
	}
}
