package controllers

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/keys"
)

const whTimeout = 20 * time.Second

// whCreate creates a WebhookSecret in ns.
func whCreate(t *testing.T, ns, name string, mutate ...func(*hooklinev1.WebhookSecret)) *hooklinev1.WebhookSecret {
	t.Helper()
	ws := &hooklinev1.WebhookSecret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, m := range mutate {
		m(ws)
	}
	if err := k8sClient.Create(suiteCtx, ws); err != nil {
		t.Fatalf("creating WebhookSecret %s: %v", name, err)
	}
	return ws
}

// whPatch changes a WebhookSecret as a user would (a merge patch).
func whPatch(t *testing.T, ws *hooklinev1.WebhookSecret, mutate func(*hooklinev1.WebhookSecret)) {
	t.Helper()
	if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(ws), ws); err != nil {
		t.Fatalf("getting WebhookSecret %s: %v", ws.Name, err)
	}
	patch := client.MergeFrom(ws.DeepCopy())
	mutate(ws)
	if err := k8sClient.Patch(suiteCtx, ws, patch); err != nil {
		t.Fatalf("patching WebhookSecret %s: %v", ws.Name, err)
	}
}

// whAnnotate sets one annotation on a WebhookSecret.
func whAnnotate(t *testing.T, ws *hooklinev1.WebhookSecret, key, value string) {
	t.Helper()
	whPatch(t, ws, func(ws *hooklinev1.WebhookSecret) {
		if ws.Annotations == nil {
			ws.Annotations = map[string]string{}
		}
		ws.Annotations[key] = value
	})
}

// whPoke triggers a reconciliation, as time passing would in production:
// requeues run on real time, and tests move the fake clock instead.
func whPoke(t *testing.T, ws *hooklinev1.WebhookSecret) {
	t.Helper()
	whAnnotate(t, ws, "test.hookline.dev/poke", fmt.Sprint(time.Now().UnixNano()))
}

// whWait polls the WebhookSecret until check returns "" and returns it.
func whWait(t *testing.T, ws *hooklinev1.WebhookSecret, check func(*hooklinev1.WebhookSecret) string) *hooklinev1.WebhookSecret {
	t.Helper()
	got := &hooklinev1.WebhookSecret{}
	eventually(t, whTimeout, func() (bool, string) {
		if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(ws), got); err != nil {
			return false, err.Error()
		}
		if msg := check(got); msg != "" {
			return false, fmt.Sprintf("WebhookSecret %s: %s; status %s", ws.Name, msg, whJSON(t, got.Status))
		}
		return true, ""
	})
	return got
}

// whReady waits until the WebhookSecret is Ready for its current
// generation, then checks that kstatus says Current.
func whReady(t *testing.T, ws *hooklinev1.WebhookSecret, extra ...func(*hooklinev1.WebhookSecret) string) *hooklinev1.WebhookSecret {
	t.Helper()
	got := whWait(t, ws, func(got *hooklinev1.WebhookSecret) string {
		ready := meta.FindStatusCondition(got.Status.Conditions, hooklinev1.ConditionReady)
		switch {
		case got.Status.ObservedGeneration != got.Generation:
			return fmt.Sprintf("observedGeneration %d, generation %d", got.Status.ObservedGeneration, got.Generation)
		case ready == nil || ready.Status != metav1.ConditionTrue:
			return "not Ready"
		}
		for _, check := range extra {
			if msg := check(got); msg != "" {
				return msg
			}
		}
		return ""
	})
	if st, msg := kstatusOf(t, got.DeepCopy()); st != status.CurrentStatus {
		t.Fatalf("kstatus of a Ready WebhookSecret is %s (%s), want Current", st, msg)
	}
	return got
}

// whKeyIsNot waits for a current key other than id.
func whKeyIsNot(id string) func(*hooklinev1.WebhookSecret) string {
	return func(ws *hooklinev1.WebhookSecret) string {
		if ws.Status.CurrentKeyID == "" || ws.Status.CurrentKeyID == id {
			return fmt.Sprintf("current key is %q, waiting for another", ws.Status.CurrentKeyID)
		}
		return ""
	}
}

// whSecret reads a Secret from the API server.
func whSecret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	secret := &corev1.Secret{}
	if err := k8sClient.Get(suiteCtx, types.NamespacedName{Namespace: ns, Name: name}, secret); err != nil {
		t.Fatalf("getting Secret %s: %v", name, err)
	}
	return secret
}

// whParse parses a key from a Secret.
func whParse(t *testing.T, secret *corev1.Secret, dataKey string) keys.Key {
	t.Helper()
	raw, ok := secret.Data[dataKey]
	if !ok {
		t.Fatalf("Secret %s has no %s", secret.Name, dataKey)
	}
	k, err := keys.Parse(string(raw))
	if err != nil {
		t.Fatalf("parsing %s of Secret %s: %v", dataKey, secret.Name, err)
	}
	return k
}

// whDataKeys lists the data keys of a Secret, sorted.
func whDataKeys(secret *corev1.Secret) []string {
	var out []string
	for _, k := range []string{hooklinev1.SecretKeySigningKey, hooklinev1.SecretKeyPublicKey, hooklinev1.SecretKeyPreviousSigningKey, hooklinev1.SecretKeyPreviousPublicKey} {
		if _, ok := secret.Data[k]; ok {
			out = append(out, k)
		}
	}
	if len(out) != len(secret.Data) {
		for k := range secret.Data {
			out = append(out, "unexpected:"+k)
		}
	}
	return out
}

// whEvents waits for an event with reason about the WebhookSecret and
// returns all such events.
func whEvents(t *testing.T, ws *hooklinev1.WebhookSecret, reason string) []eventsv1.Event {
	t.Helper()
	var found []eventsv1.Event
	eventually(t, whTimeout, func() (bool, string) {
		found = nil
		for _, e := range eventsWithReason(t, ws.Namespace, reason) {
			if e.Regarding.Kind == "WebhookSecret" && e.Regarding.Name == ws.Name {
				found = append(found, e)
			}
		}
		return len(found) > 0, fmt.Sprintf("no %s event about WebhookSecret %s", reason, ws.Name)
	})
	return found
}

func whJSON(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshalling: %v", err)
	}
	return string(raw)
}

func TestWebhookSecretHMACReady(t *testing.T) {
	ns := newNamespace(t)
	ws := whCreate(t, ns, "payments")
	got := whReady(t, ws)

	secret := whSecret(t, ns, "payments")
	if diff := cmp.Diff([]string{"signing-key"}, whDataKeys(secret)); diff != "" {
		t.Errorf("Secret data keys (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(string(secret.Data["signing-key"]), "whsec_") {
		t.Errorf("signing-key does not start with whsec_")
	}
	key := whParse(t, secret, "signing-key")
	if key.Algorithm() != keys.HMACSHA256 {
		t.Errorf("signing-key is a %s key", key.Algorithm())
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(string(secret.Data["signing-key"]), "whsec_"))
	if err != nil || len(raw) != 32 {
		t.Errorf("signing-key holds %d bytes (%v), want 32", len(raw), err)
	}
	if key.ID() != got.Status.CurrentKeyID {
		t.Errorf("status.currentKeyID = %q, the Secret's key is %q", got.Status.CurrentKeyID, key.ID())
	}
	if secret.Type != "hookline.dev/signing-key" {
		t.Errorf("Secret type = %q", secret.Type)
	}
	if secret.Labels["app.kubernetes.io/managed-by"] != "hookline" || secret.Labels["hookline.dev/webhooksecret"] != "payments" {
		t.Errorf("Secret labels = %v", secret.Labels)
	}
	if _, err := time.Parse(time.RFC3339, secret.Annotations["hookline.dev/signing-key-created-at"]); err != nil {
		t.Errorf("Secret has no readable creation time: %v (annotations %v)", err, secret.Annotations)
	}
	owner := metav1.GetControllerOf(secret)
	if owner == nil || owner.UID != got.UID || owner.Kind != "WebhookSecret" || owner.APIVersion != "hookline.dev/v1alpha1" || owner.Name != "payments" {
		t.Errorf("Secret's controller reference = %+v, want the WebhookSecret %s", owner, got.UID)
	}

	st := got.Status
	if st.SecretName != "payments" || len(st.Keys) != 1 || st.Keys[0].ID != key.ID() || !st.Keys[0].Current ||
		st.Keys[0].Algorithm != hooklinev1.AlgorithmHMACSHA256 || st.Keys[0].ExpiresAt != nil || st.Keys[0].PublicKey != "" {
		t.Errorf("status = %s", whJSON(t, st))
	}
	if st.PublicKey != "" || st.NextRotationTime != nil || st.LastRotationTime == nil {
		t.Errorf("status = %s; want no public key, no next rotation without an interval, a last rotation", whJSON(t, st))
	}
	ready := meta.FindStatusCondition(st.Conditions, hooklinev1.ConditionReady)
	if ready.Reason != hooklinev1.ReasonSucceeded || !strings.Contains(ready.Message, key.ID()) {
		t.Errorf("Ready = %+v, want Succeeded naming %s", ready, key.ID())
	}
	created := whEvents(t, got, hooklinev1.ReasonKeyCreated)
	if created[0].Type != corev1.EventTypeNormal || !strings.Contains(created[0].Note, key.ID()) {
		t.Errorf("KeyCreated event = %s %q", created[0].Type, created[0].Note)
	}
}

func TestWebhookSecretEd25519(t *testing.T) {
	ns := newNamespace(t)
	ws := whCreate(t, ns, "orders", func(ws *hooklinev1.WebhookSecret) {
		ws.Spec.Algorithm = hooklinev1.AlgorithmEd25519
		ws.Spec.SecretName = "orders-signing"
	})
	got := whReady(t, ws)

	secret := whSecret(t, ns, "orders-signing")
	if diff := cmp.Diff([]string{"signing-key", "public-key"}, whDataKeys(secret)); diff != "" {
		t.Errorf("Secret data keys (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(string(secret.Data["signing-key"]), "whsk_") || !strings.HasPrefix(string(secret.Data["public-key"]), "whpk_") {
		t.Fatalf("Secret keys are not whsk_/whpk_")
	}
	key := whParse(t, secret, "signing-key")
	if key.Algorithm() != keys.Ed25519 || key.ID() != got.Status.CurrentKeyID {
		t.Errorf("signing-key is %s, status says %s", key, got.Status.CurrentKeyID)
	}
	if string(secret.Data["public-key"]) != got.Status.PublicKey || got.Status.Keys[0].PublicKey != got.Status.PublicKey {
		t.Errorf("public-key %q, status.publicKey %q, status.keys[0].publicKey %q",
			secret.Data["public-key"], got.Status.PublicKey, got.Status.Keys[0].PublicKey)
	}
	if got.Status.SecretName != "orders-signing" {
		t.Errorf("status.secretName = %q", got.Status.SecretName)
	}

	// What the private key signs, the published public key verifies.
	pub, err := keys.ParsePublicKey(got.Status.PublicKey)
	if err != nil {
		t.Fatalf("parsing status.publicKey: %v", err)
	}
	body := []byte(`{"type":"order.created"}`)
	sig, ok := strings.CutPrefix(key.Sign("msg_1", 1767225600, body), "v1a,")
	if !ok {
		t.Fatalf("Ed25519 signature is not v1a")
	}
	rawSig, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(pub, []byte("msg_1.1767225600."+string(body)), rawSig) {
		t.Errorf("a signature by signing-key does not verify with public-key")
	}
	if ed25519.Verify(pub, []byte("msg_1.1767225600.{}"), rawSig) {
		t.Errorf("the signature verifies for another body")
	}

	// A damaged public key is repaired from the private key.
	secret.Data["public-key"] = []byte("whpk_tampered")
	if err := k8sClient.Update(suiteCtx, secret); err != nil {
		t.Fatalf("updating Secret: %v", err)
	}
	eventually(t, whTimeout, func() (bool, string) {
		s := whSecret(t, ns, "orders-signing")
		return string(s.Data["public-key"]) == got.Status.PublicKey, fmt.Sprintf("public-key is %q", s.Data["public-key"])
	})
	if after := whReady(t, ws); after.Status.CurrentKeyID != key.ID() {
		t.Errorf("repairing the public key rotated the key to %s", after.Status.CurrentKeyID)
	}
}

func TestWebhookSecretRotatesOnInterval(t *testing.T) {
	ns := newNamespace(t)
	ws := whCreate(t, ns, "rotating", func(ws *hooklinev1.WebhookSecret) {
		ws.Spec.Rotation = &hooklinev1.RotationPolicy{Interval: &metav1.Duration{Duration: time.Hour}, Overlap: &metav1.Duration{Duration: 30 * time.Minute}}
	})
	first := whReady(t, ws)
	firstKey := first.Status.CurrentKeyID
	createdAt := first.Status.LastRotationTime.Time
	if first.Status.NextRotationTime == nil || !first.Status.NextRotationTime.Time.Equal(createdAt.Add(time.Hour)) {
		t.Errorf("nextRotationTime = %v, want %v", first.Status.NextRotationTime, createdAt.Add(time.Hour))
	}
	readySince := meta.FindStatusCondition(first.Status.Conditions, hooklinev1.ConditionReady).LastTransitionTime

	// Before the interval ends, nothing happens.
	testClock.Step(59 * time.Minute)
	whPoke(t, ws)
	whPatch(t, ws, func(ws *hooklinev1.WebhookSecret) { ws.Spec.Rotation.Overlap.Duration = 31 * time.Minute }) // a generation to wait for
	if got := whReady(t, ws); got.Status.CurrentKeyID != firstKey {
		t.Fatalf("key rotated to %s before the interval ended", got.Status.CurrentKeyID)
	}
	whPatch(t, ws, func(ws *hooklinev1.WebhookSecret) { ws.Spec.Rotation.Overlap.Duration = 30 * time.Minute })

	// The interval ends: a new key, the old one kept for the overlap.
	testClock.Step(2 * time.Minute)
	rotatedAt := testClock.Now().UTC().Truncate(time.Second)
	whPoke(t, ws)
	rotated := whReady(t, ws, whKeyIsNot(firstKey))
	secret := whSecret(t, ns, "rotating")
	if diff := cmp.Diff([]string{"signing-key", "signing-key.previous"}, whDataKeys(secret)); diff != "" {
		t.Errorf("Secret data keys during the overlap (-want +got):\n%s", diff)
	}
	if prev := whParse(t, secret, "signing-key.previous"); prev.ID() != firstKey {
		t.Errorf("signing-key.previous is %s, want the old key %s", prev.ID(), firstKey)
	}
	if cur := whParse(t, secret, "signing-key"); cur.ID() != rotated.Status.CurrentKeyID {
		t.Errorf("signing-key is %s, status says %s", cur.ID(), rotated.Status.CurrentKeyID)
	}
	st := rotated.Status
	if len(st.Keys) != 2 || st.Keys[1].ID != firstKey || st.Keys[1].Current || st.Keys[1].ExpiresAt == nil ||
		!st.Keys[1].ExpiresAt.Time.Equal(rotatedAt.Add(30*time.Minute)) || !st.Keys[1].CreatedAt.Time.Equal(createdAt) {
		t.Errorf("status keys = %s, want the old key expiring at %s", whJSON(t, st.Keys), rotatedAt.Add(30*time.Minute))
	}
	if !st.LastRotationTime.Time.Equal(rotatedAt) || !st.NextRotationTime.Time.Equal(rotatedAt.Add(time.Hour)) {
		t.Errorf("lastRotationTime %v, nextRotationTime %v; rotated at %v", st.LastRotationTime, st.NextRotationTime, rotatedAt)
	}
	rotatedEvents := whEvents(t, ws, hooklinev1.ReasonKeyRotated)
	if note := rotatedEvents[0].Note; !strings.Contains(note, firstKey) || !strings.Contains(note, st.CurrentKeyID) || !strings.Contains(note, "interval") {
		t.Errorf("KeyRotated note %q does not name both keys and the interval", note)
	}

	// The overlap ends: the old key leaves the Secret.
	testClock.Step(31 * time.Minute)
	whPoke(t, ws)
	expired := whReady(t, ws, func(ws *hooklinev1.WebhookSecret) string {
		if len(ws.Status.Keys) != 1 {
			return fmt.Sprintf("%d keys", len(ws.Status.Keys))
		}
		return ""
	})
	if expired.Status.CurrentKeyID != st.CurrentKeyID {
		t.Errorf("the current key changed to %s when the previous one expired", expired.Status.CurrentKeyID)
	}
	secret = whSecret(t, ns, "rotating")
	if diff := cmp.Diff([]string{"signing-key"}, whDataKeys(secret)); diff != "" {
		t.Errorf("Secret data keys after the overlap (-want +got):\n%s", diff)
	}
	for _, a := range []string{"hookline.dev/previous-key-created-at", "hookline.dev/previous-key-expires-at"} {
		if _, ok := secret.Annotations[a]; ok {
			t.Errorf("Secret still has annotation %s", a)
		}
	}
	if note := whEvents(t, ws, hooklinev1.ReasonKeyExpired)[0].Note; !strings.Contains(note, firstKey) {
		t.Errorf("KeyExpired note %q does not name %s", note, firstKey)
	}

	// Ready never flipped: its transition time is the first one.
	if ready := meta.FindStatusCondition(expired.Status.Conditions, hooklinev1.ConditionReady); !ready.LastTransitionTime.Equal(&readySince) {
		t.Errorf("Ready last changed at %v, want %v: it did not stay True", ready.LastTransitionTime, readySince)
	}
}

func TestWebhookSecretManualRotation(t *testing.T) {
	ns := newNamespace(t)
	ws := whCreate(t, ns, "manual")
	keyA := whReady(t, ws).Status.CurrentKeyID

	whAnnotate(t, ws, hooklinev1.RotateAnnotation, "1")
	rotated := whReady(t, ws, whKeyIsNot(keyA))
	keyB := rotated.Status.CurrentKeyID
	if rotated.Status.LastHandledRotateRequest != "1" {
		t.Errorf("lastHandledRotateRequest = %q, want 1", rotated.Status.LastHandledRotateRequest)
	}
	if got := whSecret(t, ns, "manual").Annotations["hookline.dev/last-rotate-request"]; got != "1" {
		t.Errorf("Secret records last rotate request %q, want 1", got)
	}
	if note := whEvents(t, ws, hooklinev1.ReasonKeyRotated)[0].Note; !strings.Contains(note, keyA) || !strings.Contains(note, keyB) || !strings.Contains(note, "hookline.dev/rotate") {
		t.Errorf("KeyRotated note %q does not name both keys and the request", note)
	}

	// Reconciliations that see the same request do not rotate again.
	whPoke(t, ws)
	whPoke(t, ws)
	// A spec change gives a generation to wait for: the reconciliation
	// that observes it also saw the pokes. The shorter overlap brings the
	// previous key's expiry forward.
	whPatch(t, ws, func(ws *hooklinev1.WebhookSecret) {
		ws.Spec.Rotation = &hooklinev1.RotationPolicy{Overlap: &metav1.Duration{Duration: 23 * time.Hour}}
	})
	settled := whReady(t, ws)
	if settled.Status.CurrentKeyID != keyB {
		t.Fatalf("key changed again to %s without a new rotate request", settled.Status.CurrentKeyID)
	}
	if k := settled.Status.Keys; len(k) != 2 || k[1].ID != keyA || !k[1].ExpiresAt.Time.Equal(rotated.Status.LastRotationTime.Add(23*time.Hour)) {
		t.Errorf("status keys = %s, want %s expiring 23h after the rotation", whJSON(t, k), keyA)
	}

	// A new value: exactly one more rotation, from B.
	whAnnotate(t, ws, hooklinev1.RotateAnnotation, "2")
	again := whReady(t, ws, whKeyIsNot(keyB))
	if prev := whParse(t, whSecret(t, ns, "manual"), "signing-key.previous"); prev.ID() != keyB {
		t.Errorf("previous key is %s, want %s: more than one rotation happened", prev.ID(), keyB)
	}
	if again.Status.LastHandledRotateRequest != "2" {
		t.Errorf("lastHandledRotateRequest = %q, want 2", again.Status.LastHandledRotateRequest)
	}
	keyC := again.Status.CurrentKeyID
	whPoke(t, ws)
	whPatch(t, ws, func(ws *hooklinev1.WebhookSecret) { ws.Spec.Rotation.Overlap.Duration = 22 * time.Hour })
	if got := whReady(t, ws); got.Status.CurrentKeyID != keyC {
		t.Errorf("key changed again to %s after the second request", got.Status.CurrentKeyID)
	}
}

func TestWebhookSecretRepairsSecret(t *testing.T) {
	ns := newNamespace(t)
	ws := whCreate(t, ns, "repair")
	keyA := whReady(t, ws).Status.CurrentKeyID

	// Deleted: recreated with a new key.
	if err := k8sClient.Delete(suiteCtx, whSecret(t, ns, "repair")); err != nil {
		t.Fatalf("deleting Secret: %v", err)
	}
	recreated := whReady(t, ws, whKeyIsNot(keyA))
	keyB := recreated.Status.CurrentKeyID
	if k := whParse(t, whSecret(t, ns, "repair"), "signing-key"); k.ID() != keyB {
		t.Errorf("recreated Secret holds %s, status says %s", k.ID(), keyB)
	}

	// The previous key removed by hand: the Secret and status follow.
	whAnnotate(t, ws, hooklinev1.RotateAnnotation, "now")
	keyC := whReady(t, ws, whKeyIsNot(keyB)).Status.CurrentKeyID
	secret := whSecret(t, ns, "repair")
	delete(secret.Data, "signing-key.previous")
	if err := k8sClient.Update(suiteCtx, secret); err != nil {
		t.Fatalf("updating Secret: %v", err)
	}
	trimmed := whReady(t, ws, func(ws *hooklinev1.WebhookSecret) string {
		if len(ws.Status.Keys) != 1 {
			return fmt.Sprintf("status shows %d keys", len(ws.Status.Keys))
		}
		return ""
	})
	if trimmed.Status.CurrentKeyID != keyC {
		t.Errorf("removing the previous key changed the current one to %s", trimmed.Status.CurrentKeyID)
	}
	eventually(t, whTimeout, func() (bool, string) {
		s := whSecret(t, ns, "repair")
		_, stale := s.Annotations["hookline.dev/previous-key-expires-at"]
		return !stale, fmt.Sprintf("Secret annotations %v still describe a previous key", s.Annotations)
	})

	// The current key overwritten with garbage: a new key.
	secret = whSecret(t, ns, "repair")
	secret.Data["signing-key"] = []byte("garbage")
	if err := k8sClient.Update(suiteCtx, secret); err != nil {
		t.Fatalf("updating Secret: %v", err)
	}
	repaired := whReady(t, ws, whKeyIsNot(keyC))
	secret = whSecret(t, ns, "repair")
	if k := whParse(t, secret, "signing-key"); k.ID() != repaired.Status.CurrentKeyID {
		t.Errorf("signing-key is %s, status says %s", k.ID(), repaired.Status.CurrentKeyID)
	}
	if diff := cmp.Diff([]string{"signing-key"}, whDataKeys(secret)); diff != "" {
		t.Errorf("Secret data keys (-want +got):\n%s", diff)
	}
	if _, err := keys.Parse(string(secret.Data["signing-key"])); err != nil {
		t.Errorf("repaired key does not parse: %v", err)
	}
}

func TestWebhookSecretConflict(t *testing.T) {
	ns := newNamespace(t)
	foreign := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken"},
		Data:       map[string][]byte{"password": []byte("hunter2")},
	}
	if err := k8sClient.Create(suiteCtx, foreign); err != nil {
		t.Fatalf("creating Secret: %v", err)
	}
	ws := whCreate(t, ns, "conflicting", func(ws *hooklinev1.WebhookSecret) { ws.Spec.SecretName = "taken" })
	waitForKstatus(t, ws, status.FailedStatus)
	got := whWait(t, ws, func(*hooklinev1.WebhookSecret) string { return "" })
	stalled := meta.FindStatusCondition(got.Status.Conditions, hooklinev1.ConditionStalled)
	if stalled == nil || stalled.Status != metav1.ConditionTrue || stalled.Reason != hooklinev1.ReasonSecretConflict || !strings.Contains(stalled.Message, "taken") {
		t.Errorf("Stalled = %+v, want True, SecretConflict", stalled)
	}
	if ready := meta.FindStatusCondition(got.Status.Conditions, hooklinev1.ConditionReady); ready == nil || ready.Status != metav1.ConditionFalse {
		t.Errorf("Ready = %+v, want False", ready)
	}
	if got.Status.CurrentKeyID != "" || len(got.Status.Keys) != 0 {
		t.Errorf("status shows keys of a Secret it does not own: %s", whJSON(t, got.Status))
	}
	warning := whEvents(t, ws, hooklinev1.ReasonSecretConflict)[0]
	if warning.Type != corev1.EventTypeWarning {
		t.Errorf("SecretConflict event is %s", warning.Type)
	}

	// Untouched: not a single write.
	after := whSecret(t, ns, "taken")
	if after.ResourceVersion != foreign.ResourceVersion || string(after.Data["password"]) != "hunter2" || len(after.Data) != 1 ||
		len(after.OwnerReferences) != 0 || len(after.Labels) != 0 || len(after.Annotations) != 0 || after.Type != corev1.SecretTypeOpaque {
		t.Errorf("the foreign Secret changed: %s", whJSON(t, after))
	}

	// Once it is gone, the WebhookSecret creates its own.
	if err := k8sClient.Delete(suiteCtx, after); err != nil {
		t.Fatalf("deleting Secret: %v", err)
	}
	ready := whReady(t, ws)
	owned := whSecret(t, ns, "taken")
	if !metav1.IsControlledBy(owned, ready) || whParse(t, owned, "signing-key").ID() != ready.Status.CurrentKeyID {
		t.Errorf("the WebhookSecret did not take the freed name: %s", whJSON(t, owned.ObjectMeta))
	}
}

func TestWebhookSecretNoMaterialInStatusOrEvents(t *testing.T) {
	ns := newNamespace(t)
	hmacWS := whCreate(t, ns, "hmac")
	edWS := whCreate(t, ns, "ed", func(ws *hooklinev1.WebhookSecret) { ws.Spec.Algorithm = hooklinev1.AlgorithmEd25519 })
	var material []string
	for _, ws := range []*hooklinev1.WebhookSecret{hmacWS, edWS} {
		first := whReady(t, ws).Status.CurrentKeyID
		whAnnotate(t, ws, hooklinev1.RotateAnnotation, "leak-check")
		whReady(t, ws, whKeyIsNot(first))
		whEvents(t, ws, hooklinev1.ReasonKeyCreated)
		whEvents(t, ws, hooklinev1.ReasonKeyRotated)
		secret := whSecret(t, ns, ws.Name)
		for _, k := range []string{"signing-key", "signing-key.previous"} {
			v := string(secret.Data[k])
			if !strings.HasPrefix(v, "whsec_") && !strings.HasPrefix(v, "whsk_") {
				t.Fatalf("%s of %s is not a secret key", k, ws.Name)
			}
			body := v[strings.Index(v, "_")+1:]
			material = append(material, v, body[:16])
		}
	}

	var scanned []string
	for _, ws := range []*hooklinev1.WebhookSecret{hmacWS, edWS} {
		got := whWait(t, ws, func(*hooklinev1.WebhookSecret) string { return "" })
		scanned = append(scanned, whJSON(t, got.Status), whJSON(t, got.Annotations))
	}
	var events eventsv1.EventList
	if err := k8sClient.List(suiteCtx, &events, client.InNamespace(ns)); err != nil {
		t.Fatalf("listing events: %v", err)
	}
	if len(events.Items) < 4 {
		t.Fatalf("only %d events to scan", len(events.Items))
	}
	scanned = append(scanned, whJSON(t, events.Items))
	for _, text := range scanned {
		for _, m := range material {
			if strings.Contains(text, m) {
				t.Errorf("key material found in %s", text)
			}
		}
		if strings.Contains(text, "whsec_") || strings.Contains(text, "whsk_") {
			t.Errorf("a secret key prefix found in %s", text)
		}
	}
}

func TestWebhookSecretAlgorithmChange(t *testing.T) {
	ns := newNamespace(t)
	ws := whCreate(t, ns, "switch")
	first := whReady(t, ws)
	hmacKey := whParse(t, whSecret(t, ns, "switch"), "signing-key")
	if hmacKey.Algorithm() != keys.HMACSHA256 || hmacKey.ID() != first.Status.CurrentKeyID {
		t.Fatalf("first key is %s, status says %s", hmacKey, first.Status.CurrentKeyID)
	}

	whPatch(t, ws, func(ws *hooklinev1.WebhookSecret) { ws.Spec.Algorithm = hooklinev1.AlgorithmEd25519 })
	switched := whReady(t, ws, whKeyIsNot(hmacKey.ID()))
	secret := whSecret(t, ns, "switch")
	if diff := cmp.Diff([]string{"signing-key", "public-key", "signing-key.previous"}, whDataKeys(secret)); diff != "" {
		t.Errorf("Secret data keys (-want +got):\n%s", diff)
	}
	cur := whParse(t, secret, "signing-key")
	if cur.Algorithm() != keys.Ed25519 || cur.ID() != switched.Status.CurrentKeyID || string(secret.Data["public-key"]) != switched.Status.PublicKey {
		t.Errorf("current key %s, status %s / %s", cur, switched.Status.CurrentKeyID, switched.Status.PublicKey)
	}
	if prev := whParse(t, secret, "signing-key.previous"); prev.ID() != hmacKey.ID() || prev.Algorithm() != keys.HMACSHA256 {
		t.Errorf("previous key is %s, want the HMAC key %s", prev, hmacKey.ID())
	}
	k := switched.Status.Keys
	if len(k) != 2 || k[0].Algorithm != hooklinev1.AlgorithmEd25519 || !k[0].Current || k[0].PublicKey == "" ||
		k[1].Algorithm != hooklinev1.AlgorithmHMACSHA256 || k[1].ID != hmacKey.ID() || k[1].ExpiresAt == nil || k[1].PublicKey != "" {
		t.Errorf("status keys = %s", whJSON(t, k))
	}
	// The default overlap is 24h.
	if !k[1].ExpiresAt.Time.Equal(k[0].CreatedAt.Add(24 * time.Hour)) {
		t.Errorf("previous key expires at %v, want 24h after %v", k[1].ExpiresAt, k[0].CreatedAt)
	}
	if note := whEvents(t, ws, hooklinev1.ReasonKeyRotated)[0].Note; !strings.Contains(note, "spec.algorithm") {
		t.Errorf("KeyRotated note %q does not say the algorithm changed", note)
	}
}

func TestWebhookSecretWriteNeverUsesAStaleRead(t *testing.T) {
	ns := newNamespace(t)
	ws := whCreate(t, ns, "stale")
	whReady(t, ws)
	stale := whSecret(t, ns, "stale")
	whAnnotate(t, ws, hooklinev1.RotateAnnotation, "1")
	fresh := whReady(t, ws, whKeyIsNot(whParse(t, stale, "signing-key").ID()))
	before := whSecret(t, ns, "stale")

	// A reconciler that read the Secret before someone else's write (the
	// rotation, here) must not write what it derived from it.
	r := &WebhookSecretReconciler{Client: k8sClient, APIReader: k8sClient}
	old := keysFromSecret(stale, testClock.Now())
	err := r.writeSecret(suiteCtx, fresh, stale, "stale", old)
	if !errors.Is(err, errStaleSecret) {
		t.Errorf("writing from a stale read: error %v, want errStaleSecret", err)
	}
	if after := whSecret(t, ns, "stale"); after.ResourceVersion != before.ResourceVersion {
		t.Errorf("the Secret was written from a stale read")
	}

	// A Secret deleted since it was read must not be brought back with
	// the keys it held. (No WebhookSecret writes this one.)
	gone := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gone"}, Type: hooklinev1.SigningKeySecretType}
	if err := k8sClient.Create(suiteCtx, gone); err != nil {
		t.Fatalf("creating Secret: %v", err)
	}
	if err := k8sClient.Delete(suiteCtx, gone); err != nil {
		t.Fatalf("deleting Secret: %v", err)
	}
	err = r.writeSecret(suiteCtx, fresh, gone, "gone", old)
	if !errors.Is(err, errStaleSecret) {
		t.Errorf("writing a Secret deleted since it was read: error %v, want errStaleSecret", err)
	}
	if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(gone), &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("a Secret deleted since it was read was brought back (get: %v)", err)
	}

	// A Secret created after the read found none must not be taken over.
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "unseen"}, Data: map[string][]byte{"token": []byte("abc")}}
	if err := k8sClient.Create(suiteCtx, foreign); err != nil {
		t.Fatalf("creating Secret: %v", err)
	}
	err = r.writeSecret(suiteCtx, fresh, nil, "unseen", old)
	if !errors.Is(err, errStaleSecret) {
		t.Errorf("writing a Secret the read did not show: error %v, want errStaleSecret", err)
	}
	if after := whSecret(t, ns, "unseen"); after.ResourceVersion != foreign.ResourceVersion {
		t.Errorf("a Secret the read did not show was written: %s", whJSON(t, after))
	}
}

func TestWebhookSecretReplacesSecretOfAnotherType(t *testing.T) {
	ns := newNamespace(t)
	oldKey, err := keys.Generate(keys.HMACSHA256, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// A Secret with the WebhookSecret's keys but of type Opaque, as a
	// restore from a backup or a hand-made copy leaves it.
	opaque := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "retyped", Annotations: map[string]string{
			"hookline.dev/signing-key-created-at": testClock.Now().UTC().Add(-time.Hour).Format(time.RFC3339),
		}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{"signing-key": []byte(oldKey.Encoded())},
	}
	if err := k8sClient.Create(suiteCtx, opaque); err != nil {
		t.Fatalf("creating Secret: %v", err)
	}
	ws := whCreate(t, ns, "retyped")
	waitForKstatus(t, ws, status.FailedStatus) // not its own yet
	whEvents(t, ws, hooklinev1.ReasonSecretConflict)

	// It becomes the WebhookSecret's, and keeps its type: every apply
	// would fail, as a Secret's type cannot change.
	opaque.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(ws, hooklinev1.GroupVersion.WithKind("WebhookSecret"))}
	if err := k8sClient.Update(suiteCtx, opaque); err != nil {
		t.Fatalf("adopting the Secret: %v", err)
	}
	got := whReady(t, ws, whKeyIsNot(""), whKeyIsNot(oldKey.ID()))
	secret := whSecret(t, ns, "retyped")
	if secret.Type != hooklinev1.SigningKeySecretType || secret.UID == opaque.UID || !metav1.IsControlledBy(secret, got) {
		t.Errorf("Secret is of type %q, UID %s (was %s), controller %v: want a new Secret of type %s controlled by the WebhookSecret",
			secret.Type, secret.UID, opaque.UID, metav1.GetControllerOf(secret), hooklinev1.SigningKeySecretType)
	}
	// A rotation like any other: the old key keeps signing for the
	// overlap.
	if cur := whParse(t, secret, "signing-key"); cur.ID() != got.Status.CurrentKeyID {
		t.Errorf("signing-key is %s, status says %s", cur.ID(), got.Status.CurrentKeyID)
	}
	if prev := whParse(t, secret, "signing-key.previous"); prev.ID() != oldKey.ID() {
		t.Errorf("signing-key.previous is %s, want the old key %s", prev.ID(), oldKey.ID())
	}
	if k := got.Status.Keys; len(k) != 2 || k[1].ID != oldKey.ID() || k[1].ExpiresAt == nil || !k[1].ExpiresAt.Time.Equal(k[0].CreatedAt.Add(24*time.Hour)) {
		t.Errorf("status keys = %s, want the old key expiring 24h after the new one's creation", whJSON(t, k))
	}
	rotated := whEvents(t, ws, hooklinev1.ReasonKeyRotated)[0]
	if note := rotated.Note; rotated.Type != corev1.EventTypeNormal || !strings.Contains(note, oldKey.ID()) || !strings.Contains(note, got.Status.CurrentKeyID) ||
		!strings.Contains(note, `the Secret had type "Opaque"`) || !strings.Contains(note, "recreated") {
		t.Errorf("KeyRotated event %s %q does not say the Secret was recreated for its type", rotated.Type, note)
	}
}
