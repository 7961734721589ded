package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// Per-step tests of the WebhookSecret reconciler: Reconcile called
// directly against the fake client, with a clock each test owns.

// whFakeT0 is when every fake-client test starts.
var whFakeT0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// whRecordedEvent is one event as a test compares it.
type whRecordedEvent struct {
	Type, Reason, Action, Note string
	// Regarding and Related are object names; Related is empty without
	// a related object.
	Regarding, Related string
}

// whRecorder records the events a reconciler emits.
type whRecorder struct {
	mu     sync.Mutex
	events []whRecordedEvent
}

var _ recorder.EventRecorder = &whRecorder{}

func (r *whRecorder) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	r.AnnotatedEventf(regarding, related, nil, eventtype, reason, action, note, args...)
}

func (r *whRecorder) AnnotatedEventf(regarding, related runtime.Object, _ map[string]string, eventtype, reason, action, note string, args ...any) {
	e := whRecordedEvent{Type: eventtype, Reason: reason, Action: action, Note: fmt.Sprintf(note, args...)}
	if o, ok := regarding.(client.Object); ok {
		e.Regarding = o.GetName()
	}
	if o, ok := related.(client.Object); ok {
		e.Related = o.GetName()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// take returns the events recorded since the last call.
func (r *whRecorder) take() []whRecordedEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

// whFake is a reconciler wired to a fake API server.
type whFake struct {
	t *testing.T
	// api is the fake API server, unrestricted, for the test's own reads
	// and writes.
	api    client.WithWatch
	clock  *clocktesting.FakeClock
	events *whRecorder
	r      *WebhookSecretReconciler
}

// whNewFake starts a fake API server holding objs. The reconciler's
// cached client refuses Secrets, as the manager's cache holds only their
// metadata: Secrets must be read through the APIReader.
func whNewFake(t *testing.T, objs ...client.Object) *whFake {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := hooklinev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	api := fake.NewClientBuilder().
		WithScheme(scheme).
		WithStatusSubresource(&hooklinev1.WebhookSecret{}).
		WithObjects(objs...).
		Build()
	cached := interceptor.NewClient(api, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if _, ok := obj.(*corev1.Secret); ok {
				t.Errorf("Secret %s was read through the cache, which holds Secrets' metadata only", key)
				return errors.New("the cache holds no Secret contents")
			}
			return c.Get(ctx, key, obj, opts...)
		},
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			if _, ok := list.(*corev1.SecretList); ok {
				t.Errorf("Secrets were listed through the cache, which holds Secrets' metadata only")
				return errors.New("the cache holds no Secret contents")
			}
			return c.List(ctx, list, opts...)
		},
	})
	f := &whFake{t: t, api: api, clock: clocktesting.NewFakeClock(whFakeT0), events: &whRecorder{}}
	f.r = &WebhookSecretReconciler{Client: cached, APIReader: api, Recorder: f.events, Clock: f.clock}
	return f
}

// whFakeWebhookSecret is a WebhookSecret as the API server would return
// it, changed by mutate.
func whFakeWebhookSecret(name string, mutate ...func(*hooklinev1.WebhookSecret)) *hooklinev1.WebhookSecret {
	ws := &hooklinev1.WebhookSecret{ObjectMeta: metav1.ObjectMeta{
		Namespace: "team-a", Name: name, UID: types.UID("uid-" + name), Generation: 1,
	}}
	for _, m := range mutate {
		m(ws)
	}
	return ws
}

// whRotation sets the rotation policy; a zero interval means none.
func whRotation(interval, overlap time.Duration) func(*hooklinev1.WebhookSecret) {
	return func(ws *hooklinev1.WebhookSecret) {
		ws.Spec.Rotation = &hooklinev1.RotationPolicy{Overlap: whDur(overlap)}
		if interval > 0 {
			ws.Spec.Rotation.Interval = whDur(interval)
		}
	}
}

// reconcile runs one reconciliation of ws and fails the test on an error.
func (f *whFake) reconcile(ws *hooklinev1.WebhookSecret) ctrl.Result {
	f.t.Helper()
	res, err := f.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(ws)})
	if err != nil {
		f.t.Fatalf("reconciling %s: %v", ws.Name, err)
	}
	return res
}

// get reads obj back from the fake API server.
func (f *whFake) get(obj client.Object) {
	f.t.Helper()
	if err := f.api.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
		f.t.Fatalf("getting %s: %v", obj.GetName(), err)
	}
}

// webhookSecret reads ws back.
func (f *whFake) webhookSecret(ws *hooklinev1.WebhookSecret) *hooklinev1.WebhookSecret {
	f.t.Helper()
	got := &hooklinev1.WebhookSecret{ObjectMeta: metav1.ObjectMeta{Namespace: ws.Namespace, Name: ws.Name}}
	f.get(got)
	return got
}

// secret reads the Secret name in the WebhookSecrets' namespace.
func (f *whFake) secret(name string) *corev1.Secret {
	f.t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: name}}
	f.get(s)
	return s
}

// update changes ws in the fake API server as a user would.
func (f *whFake) update(ws *hooklinev1.WebhookSecret, mutate func(*hooklinev1.WebhookSecret)) {
	f.t.Helper()
	got := f.webhookSecret(ws)
	mutate(got)
	if err := f.api.Update(context.Background(), got); err != nil {
		f.t.Fatalf("updating %s: %v", ws.Name, err)
	}
}

// whCondition returns the condition of type in ws's status, or a False one
// with reason "absent".
func whCondition(ws *hooklinev1.WebhookSecret, condType string) metav1.Condition {
	if c := meta.FindStatusCondition(ws.Status.Conditions, condType); c != nil {
		return *c
	}
	return metav1.Condition{Type: condType, Status: metav1.ConditionFalse, Reason: "absent"}
}

// wantRequeue checks the delay Reconcile asked for.
func (f *whFake) wantRequeue(step string, got ctrl.Result, want time.Duration) {
	f.t.Helper()
	if got.RequeueAfter != want {
		f.t.Errorf("%s: RequeueAfter = %s, want %s", step, got.RequeueAfter, want)
	}
}

// wantReady checks that ws is Ready with want keys in status (current
// first) and returns it.
func (f *whFake) wantReady(step string, ws *hooklinev1.WebhookSecret, wantKeys int) *hooklinev1.WebhookSecret {
	f.t.Helper()
	got := f.webhookSecret(ws)
	if c := whCondition(got, hooklinev1.ConditionReady); c.Status != metav1.ConditionTrue {
		f.t.Fatalf("%s: Ready = %+v, want True", step, c)
	}
	if len(got.Status.Keys) != wantKeys {
		f.t.Fatalf("%s: status shows %d keys, want %d: %+v", step, len(got.Status.Keys), wantKeys, got.Status.Keys)
	}
	return got
}

// wantReasons checks the reasons of the events emitted since the last
// check, in order.
func (f *whFake) wantReasons(step string, want ...string) []whRecordedEvent {
	f.t.Helper()
	events := f.events.take()
	var got []string
	for _, e := range events {
		got = append(got, e.Reason)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		f.t.Errorf("%s: events %v, want reasons %v", step, events, want)
	}
	return events
}

func TestWebhookSecretReconcileRequeue(t *testing.T) {
	t.Run("an interval: the key's rotation, then the previous key's expiry, whichever is first", func(t *testing.T) {
		ws := whFakeWebhookSecret("rotating", whRotation(time.Hour, 30*time.Minute))
		f := whNewFake(t, ws)

		// A fresh key: nothing is due until the interval ends.
		f.wantRequeue("first key", f.reconcile(ws), time.Hour)
		first := f.wantReady("first key", ws, 1).Status.CurrentKeyID
		f.wantReasons("first key", hooklinev1.ReasonKeyCreated)

		f.clock.Step(59 * time.Minute)
		f.wantRequeue("a minute before the rotation", f.reconcile(ws), time.Minute)
		if got := f.wantReady("a minute before the rotation", ws, 1).Status.CurrentKeyID; got != first {
			t.Fatalf("the key rotated to %s a minute early", got)
		}
		f.wantReasons("a minute before the rotation")

		// The rotation: the previous key's expiry (30m) comes before the
		// next rotation (1h).
		f.clock.Step(time.Minute)
		f.wantRequeue("rotation", f.reconcile(ws), 30*time.Minute)
		rotated := f.wantReady("rotation", ws, 2)
		if rotated.Status.CurrentKeyID == first || rotated.Status.Keys[1].ID != first {
			t.Fatalf("after the rotation keys are %+v, want a new key and %s", rotated.Status.Keys, first)
		}
		f.wantReasons("rotation", hooklinev1.ReasonKeyRotated)

		// The expiry: the next rotation is half an hour away.
		f.clock.Step(30 * time.Minute)
		f.wantRequeue("expiry", f.reconcile(ws), 30*time.Minute)
		if got := f.wantReady("expiry", ws, 1).Status.CurrentKeyID; got != rotated.Status.CurrentKeyID {
			t.Errorf("the current key changed to %s when the previous one expired", got)
		}
		f.wantReasons("expiry", hooklinev1.ReasonKeyExpired)
		if _, ok := f.secret("rotating").Data[hooklinev1.SecretKeyPreviousSigningKey]; ok {
			t.Errorf("the Secret still holds the expired key")
		}
	})

	t.Run("an overlap not shorter than the interval is refused, not requeued", func(t *testing.T) {
		// The next rotation would come before the previous key expires:
		// three keys would have to sign at once.
		ws := whFakeWebhookSecret("long-overlap", whRotation(time.Hour, 2*time.Hour))
		f := whNewFake(t, ws)
		f.wantRequeue("long overlap", f.reconcile(ws), 0)
		got := f.webhookSecret(ws)
		if c := whCondition(got, hooklinev1.ConditionStalled); c.Status != metav1.ConditionTrue || c.Reason != hooklinev1.ReasonInvalidSpec ||
			!strings.Contains(c.Message, "spec.rotation.overlap 2h0m0s must be shorter than spec.rotation.interval 1h0m0s") {
			t.Errorf("Stalled = %+v, want True, InvalidSpec naming the overlap and the interval", c)
		}
	})

	t.Run("no interval and no previous key: no requeue", func(t *testing.T) {
		ws := whFakeWebhookSecret("manual")
		f := whNewFake(t, ws)
		f.wantRequeue("first key", f.reconcile(ws), 0)
		f.wantReady("first key", ws, 1)
		f.clock.Step(1000 * time.Hour)
		f.wantRequeue("much later", f.reconcile(ws), 0)
		f.wantReady("much later", ws, 1)
		f.wantReasons("no interval", hooklinev1.ReasonKeyCreated)
	})

	t.Run("a manual rotation without an interval: requeue at the previous key's expiry", func(t *testing.T) {
		ws := whFakeWebhookSecret("requested")
		f := whNewFake(t, ws)
		f.wantRequeue("first key", f.reconcile(ws), 0)
		f.clock.Step(10 * time.Minute)
		f.update(ws, func(ws *hooklinev1.WebhookSecret) {
			ws.Annotations = map[string]string{hooklinev1.RotateAnnotation: "1"}
		})
		// The default overlap is 24h.
		f.wantRequeue("rotation", f.reconcile(ws), 24*time.Hour)
		f.wantReady("rotation", ws, 2)
		f.clock.Step(24 * time.Hour)
		f.wantRequeue("expiry", f.reconcile(ws), 0)
		f.wantReady("expiry", ws, 1)
		f.wantReasons("manual rotation", hooklinev1.ReasonKeyCreated, hooklinev1.ReasonKeyRotated, hooklinev1.ReasonKeyExpired)
	})
}

func TestWebhookSecretReconcileConflict(t *testing.T) {
	foreign := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "taken"},
		Data:       map[string][]byte{"password": []byte("hunter2")},
	}
	ws := whFakeWebhookSecret("conflicting", func(ws *hooklinev1.WebhookSecret) { ws.Spec.SecretName = "taken" })
	f := whNewFake(t, ws, foreign)

	f.wantRequeue("conflict", f.reconcile(ws), 0)
	got := f.webhookSecret(ws)
	if c := whCondition(got, hooklinev1.ConditionStalled); c.Status != metav1.ConditionTrue || c.Reason != hooklinev1.ReasonSecretConflict {
		t.Errorf("Stalled = %+v, want True, SecretConflict", c)
	}
	if c := whCondition(got, hooklinev1.ConditionReady); c.Status != metav1.ConditionFalse || c.Reason != hooklinev1.ReasonSecretConflict {
		t.Errorf("Ready = %+v, want False, SecretConflict", c)
	}
	if got.Status.CurrentKeyID != "" || len(got.Status.Keys) != 0 {
		t.Errorf("status shows keys of a Secret it does not own: %+v", got.Status)
	}
	events := f.wantReasons("conflict", hooklinev1.ReasonSecretConflict)
	if len(events) == 1 {
		e := events[0]
		if e.Type != corev1.EventTypeWarning || e.Action != "ApplySecret" || e.Regarding != "conflicting" || e.Related != "taken" ||
			!strings.Contains(e.Note, "Secret taken exists and is not controlled by this WebhookSecret") {
			t.Errorf("conflict event = %+v", e)
		}
		if strings.Contains(e.Note, "hunter2") {
			t.Errorf("the event carries the foreign Secret's data: %q", e.Note)
		}
	}

	// Found again, and again after each change of the foreign Secret: the
	// Warning is not repeated.
	f.reconcile(ws)
	for i := range 3 {
		s := f.secret("taken")
		s.Labels = map[string]string{"edit": fmt.Sprint(i)}
		if err := f.api.Update(context.Background(), s); err != nil {
			t.Fatalf("updating the foreign Secret: %v", err)
		}
		f.wantRequeue("conflict again", f.reconcile(ws), 0)
	}
	f.wantReasons("conflict found again")
	if c := whCondition(f.webhookSecret(ws), hooklinev1.ConditionStalled); c.Status != metav1.ConditionTrue {
		t.Errorf("Stalled = %+v after the foreign Secret changed", c)
	}
	after := f.secret("taken")
	if string(after.Data["password"]) != "hunter2" || len(after.Data) != 1 || len(after.OwnerReferences) != 0 || len(after.Annotations) != 0 {
		t.Errorf("the foreign Secret was written: %+v", after)
	}

	// Once it is gone, the WebhookSecret creates its own.
	if err := f.api.Delete(context.Background(), after); err != nil {
		t.Fatalf("deleting the foreign Secret: %v", err)
	}
	f.reconcile(ws)
	ready := f.wantReady("freed", ws, 1)
	if owned := f.secret("taken"); !metav1.IsControlledBy(owned, ready) {
		t.Errorf("the freed name was not taken: %+v", owned.ObjectMeta)
	}
	f.wantReasons("freed", hooklinev1.ReasonKeyCreated)
}

func TestWebhookSecretReconcileInvalidSpecWarnsOnce(t *testing.T) {
	// The fake API server does not evaluate the CRD's validation rules, as
	// an old API server would not.
	ws := whFakeWebhookSecret("invalid", whRotation(30*time.Minute, time.Hour))
	f := whNewFake(t, ws)

	for range 3 {
		f.wantRequeue("invalid", f.reconcile(ws), 0)
	}
	got := f.webhookSecret(ws)
	if c := whCondition(got, hooklinev1.ConditionStalled); c.Status != metav1.ConditionTrue || c.Reason != hooklinev1.ReasonInvalidSpec ||
		!strings.Contains(c.Message, "spec.rotation.interval 30m0s") {
		t.Errorf("Stalled = %+v, want True, InvalidSpec naming the interval", c)
	}
	events := f.wantReasons("invalid, three times", hooklinev1.ReasonInvalidSpec)
	if len(events) == 1 && (events[0].Type != corev1.EventTypeWarning || events[0].Action != "Validate" ||
		!strings.Contains(events[0].Note, "spec.rotation.interval 30m0s")) {
		t.Errorf("invalid spec event = %+v", events[0])
	}
	if err := f.api.Get(context.Background(), types.NamespacedName{Namespace: "team-a", Name: "invalid"}, &corev1.Secret{}); err == nil {
		t.Errorf("a Secret was written for an invalid spec")
	}

	// Fixed: Ready, and nothing more to warn about.
	f.update(ws, func(ws *hooklinev1.WebhookSecret) { ws.Spec.Rotation.Interval = whDur(2 * time.Hour) })
	f.reconcile(ws)
	f.wantReady("fixed", ws, 1)
	f.wantReasons("fixed", hooklinev1.ReasonKeyCreated)

	// Broken again: the same problem is a new one to tell.
	f.update(ws, func(ws *hooklinev1.WebhookSecret) { ws.Spec.Rotation.Interval = whDur(30 * time.Minute) })
	f.reconcile(ws)
	f.reconcile(ws)
	f.wantReasons("broken again", hooklinev1.ReasonInvalidSpec)

	// A different problem is told too.
	f.update(ws, func(ws *hooklinev1.WebhookSecret) { ws.Spec.Algorithm = "RSA" })
	f.reconcile(ws)
	f.wantReasons("another problem", hooklinev1.ReasonInvalidSpec)
}

func TestWebhookSecretReconcileForgetsDeletedWebhookSecrets(t *testing.T) {
	broken := func(ws *hooklinev1.WebhookSecret) { ws.Spec.Algorithm = "RSA" }
	ws := whFakeWebhookSecret("recreated", broken)
	f := whNewFake(t, ws)
	f.reconcile(ws)
	f.wantReasons("first", hooklinev1.ReasonInvalidSpec)

	if err := f.api.Delete(context.Background(), f.webhookSecret(ws)); err != nil {
		t.Fatalf("deleting: %v", err)
	}
	f.wantRequeue("deleted", f.reconcile(ws), 0)

	// A new WebhookSecret of the same name, with the same problem, is
	// told about it.
	again := whFakeWebhookSecret("recreated", broken)
	again.UID = "uid-recreated-2"
	if err := f.api.Create(context.Background(), again); err != nil {
		t.Fatalf("recreating: %v", err)
	}
	f.reconcile(again)
	f.wantReasons("recreated", hooklinev1.ReasonInvalidSpec)
}

func TestWebhookSecretReconcileWaitsForDeletingSecret(t *testing.T) {
	for _, secretType := range []corev1.SecretType{hooklinev1.SigningKeySecretType, corev1.SecretTypeOpaque} {
		t.Run(string(secretType), func(t *testing.T) {
			ws := whFakeWebhookSecret("waiting")
			deleting := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{
					Namespace: "team-a", Name: "waiting",
					OwnerReferences:   []metav1.OwnerReference{*metav1.NewControllerRef(ws, hooklinev1.GroupVersion.WithKind("WebhookSecret"))},
					Finalizers:        []string{"example.com/hold"},
					DeletionTimestamp: &metav1.Time{Time: whFakeT0},
				},
				Type: secretType,
				Data: map[string][]byte{hooklinev1.SecretKeySigningKey: []byte(whHMAC1.Encoded())},
			}
			f := whNewFake(t, ws, deleting)
			before := f.secret("waiting")

			f.wantRequeue("Secret being deleted", f.reconcile(ws), 0)
			got := f.webhookSecret(ws)
			if c := whCondition(got, hooklinev1.ConditionReconciling); c.Status != metav1.ConditionTrue || c.Reason != hooklinev1.ReasonProgressing ||
				!strings.Contains(c.Message, "Secret waiting is being deleted") {
				t.Errorf("Reconciling = %+v, want True, waiting for the Secret to go", c)
			}
			if c := whCondition(got, hooklinev1.ConditionReady); c.Status != metav1.ConditionFalse {
				t.Errorf("Ready = %+v, want False", c)
			}
			if c := whCondition(got, hooklinev1.ConditionStalled); c.Reason != "absent" {
				t.Errorf("Stalled = %+v, want none", c)
			}
			if after := f.secret("waiting"); after.ResourceVersion != before.ResourceVersion {
				t.Errorf("a Secret being deleted was written")
			}
			f.wantReasons("Secret being deleted")
		})
	}
}

func TestWebhookSecretReconcileConcurrentWriter(t *testing.T) {
	ws := whFakeWebhookSecret("contended")
	f := whNewFake(t, ws)
	f.reconcile(ws)
	first := f.wantReady("first key", ws, 1)
	f.update(ws, func(ws *hooklinev1.WebhookSecret) {
		ws.Annotations = map[string]string{hooklinev1.RotateAnnotation: "1"}
	})
	f.events.take()
	statusBefore := f.webhookSecret(ws).ResourceVersion

	// Someone writes the Secret right after this reconciliation read it:
	// what was decided from the older version must not be written.
	var written string
	f.r.APIReader = interceptor.NewClient(f.api, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if err := c.Get(ctx, key, obj, opts...); err != nil {
				return err
			}
			if s, ok := obj.(*corev1.Secret); ok && written == "" {
				other := s.DeepCopy()
				other.Labels = map[string]string{"written-by": "someone-else"}
				if err := c.Update(ctx, other); err != nil {
					return err
				}
				written = other.ResourceVersion
			}
			return nil
		},
	})
	f.wantRequeue("concurrent write", f.reconcile(ws), time.Second)
	if after := f.secret("contended"); after.ResourceVersion != written {
		t.Errorf("the Secret was written over someone else's write")
	}
	if got := f.webhookSecret(ws); got.Status.CurrentKeyID != first.Status.CurrentKeyID || got.ResourceVersion != statusBefore {
		t.Errorf("status changed after a write that did not happen")
	}
	f.wantReasons("concurrent write")

	// The next reconciliation reads the newer Secret and rotates.
	f.reconcile(ws)
	if got := f.wantReady("retry", ws, 2); got.Status.CurrentKeyID == first.Status.CurrentKeyID {
		t.Errorf("the retry did not rotate")
	}
	f.wantReasons("retry", hooklinev1.ReasonKeyRotated)
}
