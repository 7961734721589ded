package controllers

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/report"
)

// whsubTimeout bounds every wait in these tests.
const whsubTimeout = 20 * time.Second

// whsubDispatcher creates a WebhookDispatcher named name in ns.
func whsubDispatcher(t *testing.T, ns, name string, mutate func(*hooklinev1.WebhookDispatcher)) *hooklinev1.WebhookDispatcher {
	t.Helper()
	d := &hooklinev1.WebhookDispatcher{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if mutate != nil {
		mutate(d)
	}
	if err := k8sClient.Create(suiteCtx, d); err != nil {
		t.Fatalf("creating dispatcher %s/%s: %v", ns, name, err)
	}
	return d
}

// whsubAvailableDispatcher creates a dispatcher and makes its pods
// available, so it becomes Ready.
func whsubAvailableDispatcher(t *testing.T, ns, name string, mutate func(*hooklinev1.WebhookDispatcher)) *hooklinev1.WebhookDispatcher {
	t.Helper()
	d := whsubDispatcher(t, ns, name, mutate)
	markDispatcherAvailable(t, ns, name)
	return d
}

// whsubWebhookSecret creates a WebhookSecret named name in ns.
func whsubWebhookSecret(t *testing.T, ns, name string) {
	t.Helper()
	if err := k8sClient.Create(suiteCtx, &hooklinev1.WebhookSecret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
		t.Fatalf("creating WebhookSecret %s/%s: %v", ns, name, err)
	}
}

// whsubSubscription creates a subscription named name in ns, signed by the
// WebhookSecret "s" and attached to the dispatcher "d" of ns unless mutate
// says otherwise.
func whsubSubscription(t *testing.T, ns, name string, mutate func(*hooklinev1.WebhookSubscription)) *hooklinev1.WebhookSubscription {
	t.Helper()
	sub := &hooklinev1.WebhookSubscription{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: hooklinev1.WebhookSubscriptionSpec{
			URL:           "https://example.com/hooks",
			EventTypes:    []string{"order.*"},
			DispatcherRef: &hooklinev1.DispatcherReference{Name: "d"},
			Signing:       hooklinev1.SigningSpec{SecretRef: hooklinev1.WebhookSecretReference{Name: "s"}},
		},
	}
	if mutate != nil {
		mutate(sub)
	}
	if err := k8sClient.Create(suiteCtx, sub); err != nil {
		t.Fatalf("creating subscription %s/%s: %v", ns, name, err)
	}
	return sub
}

// whsubUpdate applies mutate to the latest version of obj, retrying on
// conflicts with the controllers' writes.
func whsubUpdate[T client.Object](t *testing.T, obj T, mutate func(T)) {
	t.Helper()
	eventually(t, whsubTimeout, func() (bool, string) {
		if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return false, fmt.Sprintf("getting %s: %v", obj.GetName(), err)
		}
		mutate(obj)
		if err := k8sClient.Update(suiteCtx, obj); err != nil {
			return false, fmt.Sprintf("updating %s: %v", obj.GetName(), err)
		}
		return true, ""
	})
}

// whsubWaitFor waits until the subscription's conditions describe its
// current generation and Ready has want and reason; it returns the
// subscription as then stored.
func whsubWaitFor(t *testing.T, sub *hooklinev1.WebhookSubscription, want metav1.ConditionStatus, reason string) *hooklinev1.WebhookSubscription {
	t.Helper()
	got := &hooklinev1.WebhookSubscription{}
	eventually(t, whsubTimeout, func() (bool, string) {
		if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(sub), got); err != nil {
			return false, fmt.Sprintf("getting subscription: %v", err)
		}
		ready := meta.FindStatusCondition(got.Status.Conditions, hooklinev1.ConditionReady)
		if ready == nil {
			return false, "no Ready condition yet"
		}
		if got.Status.ObservedGeneration != got.Generation || ready.ObservedGeneration != got.Generation {
			return false, fmt.Sprintf("status describes generation %d, object is at %d", got.Status.ObservedGeneration, got.Generation)
		}
		return ready.Status == want && ready.Reason == reason,
			fmt.Sprintf("Ready is %s/%s (%q), want %s/%s", ready.Status, ready.Reason, ready.Message, want, reason)
	})
	return got
}

// whsubWaitForReady waits for Ready=True, playing the StatefulSet
// controller for the dispatcher meanwhile (a dispatcher spec change may
// re-render its StatefulSet, which the test API server never rolls out),
// and the dispatcher, which accepts the subscription once the controller
// says it awaits that. Ready must not come before that acceptance.
func whsubWaitForReady(t *testing.T, sub *hooklinev1.WebhookSubscription, dispatcher types.NamespacedName) *hooklinev1.WebhookSubscription {
	t.Helper()
	got := &hooklinev1.WebhookSubscription{}
	var accepted int64
	eventually(t, whsubTimeout, func() (bool, string) {
		markDispatcherAvailable(t, dispatcher.Namespace, dispatcher.Name)
		if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(sub), got); err != nil {
			return false, fmt.Sprintf("getting subscription: %v", err)
		}
		ready := meta.FindStatusCondition(got.Status.Conditions, hooklinev1.ConditionReady)
		if ready == nil {
			return false, "no Ready condition yet"
		}
		if ready.ObservedGeneration != got.Generation {
			return false, fmt.Sprintf("Ready describes generation %d, object is at %d", ready.ObservedGeneration, got.Generation)
		}
		if ready.Status == metav1.ConditionFalse && ready.Reason == hooklinev1.ReasonAwaitingDispatcher && accepted != got.Generation {
			accepted = whsubAccept(t, got)
		}
		if ready.Status == metav1.ConditionTrue && accepted != got.Generation {
			t.Fatalf("Ready=True (%s: %q) before the dispatcher accepted generation %d", ready.Reason, ready.Message, got.Generation)
		}
		return ready.Status == metav1.ConditionTrue,
			fmt.Sprintf("Ready is %s/%s (%q)", ready.Status, ready.Reason, ready.Message)
	})
	return got
}

// whsubCondition returns the condition of type typ, or fails the test.
func whsubCondition(t *testing.T, sub *hooklinev1.WebhookSubscription, typ string) *metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(sub.Status.Conditions, typ)
	if c == nil {
		t.Fatalf("subscription has no %s condition; conditions: %+v", typ, sub.Status.Conditions)
	}
	return c
}

// whsubWarnings lists the Warning events with reason about the subscription.
func whsubWarnings(t *testing.T, sub *hooklinev1.WebhookSubscription, reason string) []eventsv1.Event {
	t.Helper()
	var out []eventsv1.Event
	for _, e := range eventsWithReason(t, sub.Namespace, reason) {
		if e.Type == corev1.EventTypeWarning && e.Regarding.Kind == "WebhookSubscription" && e.Regarding.Name == sub.Name {
			out = append(out, e)
		}
	}
	return out
}

func TestWebhookSubscriptionBecomesReady(t *testing.T) {
	ns := newNamespace(t)
	whsubAvailableDispatcher(t, ns, "d", nil)
	whsubWebhookSecret(t, ns, "s")
	sub := whsubSubscription(t, ns, "orders", func(s *hooklinev1.WebhookSubscription) {
		s.Spec.URL = "https://example.com:8443/hooks/p4th?token=query-t0ken"
	})

	// Valid, but not Ready until the dispatcher serves it: an event
	// published before then might not reach it.
	got := whsubWaitForAwaiting(t, sub)
	if want := ns + "/d"; got.Status.Dispatcher != want {
		t.Errorf("status.dispatcher = %q, want %q", got.Status.Dispatcher, want)
	}
	if msg, want := whsubCondition(t, got, hooklinev1.ConditionReady).Message, "Waiting for dispatcher "+ns+"/d to accept generation 1"; msg != want {
		t.Errorf("Ready message = %q, want %q", msg, want)
	}

	// The dispatcher accepts it and reports delivery health, with a field
	// manager of its own; the controller's status writes leave that in
	// place.
	health := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": hooklinev1.GroupVersion.String(),
		"kind":       "WebhookSubscription",
		"metadata":   map[string]any{"name": sub.Name, "namespace": ns},
		"status": map[string]any{
			"conditions": []any{map[string]any{
				"type": hooklinev1.ConditionAccepted, "status": "True", "reason": hooklinev1.ReasonAccepted, "message": "served by d-dispatcher-0",
				"observedGeneration": got.Generation, "lastTransitionTime": "2026-06-01T12:00:00Z",
			}},
			"delivery": map[string]any{"delivered": int64(42)},
		},
	}}
	if err := k8sClient.Status().Apply(suiteCtx, client.ApplyConfigurationFromUnstructured(health), client.FieldOwner(report.DefaultFieldManager)); err != nil {
		t.Fatalf("applying the dispatcher's status: %v", err)
	}
	got = whsubWaitFor(t, sub, metav1.ConditionTrue, hooklinev1.ReasonSucceeded)
	waitForKstatus(t, sub, status.CurrentStatus)
	ready := whsubCondition(t, got, hooklinev1.ConditionReady)
	if want := "Valid; events for example.com:8443 go through " + ns + "/d"; ready.Message != want {
		t.Errorf("Ready message = %q, want %q", ready.Message, want)
	}
	for _, typ := range []string{hooklinev1.ConditionReconciling, hooklinev1.ConditionStalled} {
		if c := meta.FindStatusCondition(got.Status.Conditions, typ); c != nil {
			t.Errorf("a Ready subscription carries %s: %+v", typ, c)
		}
	}

	// Suspending it is a new generation, which the dispatcher has yet to
	// accept: the suspension is Ready only once it has.
	whsubUpdate(t, sub, func(s *hooklinev1.WebhookSubscription) { s.Spec.Suspend = true })
	got = whsubWaitForAwaiting(t, sub)
	if msg, want := whsubCondition(t, got, hooklinev1.ConditionReady).Message, "Waiting for dispatcher "+ns+"/d to accept generation 2"; msg != want {
		t.Errorf("Ready message = %q, want %q", msg, want)
	}
	if c := whsubCondition(t, got, hooklinev1.ConditionAccepted); c.Message != "served by d-dispatcher-0" || c.ObservedGeneration != 1 {
		t.Errorf("Accepted condition changed to %+v", c)
	}
	if got.Status.Delivery == nil || got.Status.Delivery.Delivered != 42 {
		t.Errorf("delivery block = %+v, want the dispatcher's", got.Status.Delivery)
	}
	whsubAccept(t, sub)
	got = whsubWaitFor(t, sub, metav1.ConditionTrue, hooklinev1.ReasonSuspended)
	waitForKstatus(t, sub, status.CurrentStatus)
	if msg, want := whsubCondition(t, got, hooklinev1.ConditionReady).Message, "Suspended by spec.suspend; events are held until it is cleared"; msg != want {
		t.Errorf("Ready message of a suspended subscription = %q, want %q", msg, want)
	}

	for _, c := range got.Status.Conditions {
		if strings.Contains(c.Message, "query-t0ken") || strings.Contains(c.Message, "p4th") {
			t.Errorf("condition %s repeats the URL's path or query: %q", c.Type, c.Message)
		}
	}
}

func TestWebhookSubscriptionWaitsForWebhookSecret(t *testing.T) {
	ns := newNamespace(t)
	whsubAvailableDispatcher(t, ns, "d", nil)
	sub := whsubSubscription(t, ns, "early", func(s *hooklinev1.WebhookSubscription) {
		s.Spec.Signing.SecretRef.Name = "late"
	})

	got := whsubWaitFor(t, sub, metav1.ConditionFalse, hooklinev1.ReasonSecretNotFound)
	waitForKstatus(t, sub, status.InProgressStatus)
	if c := whsubCondition(t, got, hooklinev1.ConditionReconciling); c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "WebhookSecret late") {
		t.Errorf("Reconciling = %+v, want True naming WebhookSecret late", c)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, hooklinev1.ConditionStalled); c != nil {
		t.Errorf("a missing WebhookSecret is waited for, not Stalled: %+v", c)
	}

	// Creating it is enough: nothing touches the subscription, which then
	// waits for the dispatcher alone.
	whsubWebhookSecret(t, ns, "late")
	whsubAcceptAndWaitForReady(t, sub, hooklinev1.ReasonSucceeded)
}

func TestWebhookSubscriptionDispatcherNamespacePolicy(t *testing.T) {
	ns := newNamespace(t)
	infra := newNamespace(t)
	dispatcher := whsubAvailableDispatcher(t, infra, "d", nil)
	whsubWebhookSecret(t, ns, "s")
	sub := whsubSubscription(t, ns, "cross", func(s *hooklinev1.WebhookSubscription) {
		s.Spec.DispatcherRef = &hooklinev1.DispatcherReference{Name: "d", Namespace: infra}
	})

	got := whsubWaitFor(t, sub, metav1.ConditionFalse, hooklinev1.ReasonNamespaceNotAllowed)
	waitForKstatus(t, sub, status.FailedStatus)
	stalled := whsubCondition(t, got, hooklinev1.ConditionStalled)
	if want := fmt.Sprintf("dispatcher %s/d does not admit subscriptions from namespace %s", infra, ns); stalled.Status != metav1.ConditionTrue || stalled.Message != want {
		t.Errorf("Stalled = %+v, want True with %q", stalled, want)
	}
	if got.Status.Dispatcher != infra+"/d" {
		t.Errorf("status.dispatcher = %q, want %s/d", got.Status.Dispatcher, infra)
	}
	var warnings []eventsv1.Event
	eventually(t, whsubTimeout, func() (bool, string) {
		warnings = whsubWarnings(t, sub, hooklinev1.ReasonNamespaceNotAllowed)
		return len(warnings) == 1, fmt.Sprintf("%d NamespaceNotAllowed warnings, want 1", len(warnings))
	})
	if !strings.Contains(warnings[0].Note, "does not admit subscriptions from namespace "+ns) {
		t.Errorf("event note = %q", warnings[0].Note)
	}

	// Reconciling again into the same refusal records no new event.
	whsubUpdate(t, sub, func(s *hooklinev1.WebhookSubscription) { s.Spec.EventTypes = []string{"order.*", "invoice.*"} })
	whsubWaitFor(t, sub, metav1.ConditionFalse, hooklinev1.ReasonNamespaceNotAllowed)
	warnings = whsubWarnings(t, sub, hooklinev1.ReasonNamespaceNotAllowed)
	if len(warnings) != 1 {
		t.Errorf("after an unchanged refusal: %d NamespaceNotAllowed warnings, want 1", len(warnings))
	} else if warnings[0].Series != nil {
		t.Errorf("after an unchanged refusal the warning was recorded again: series %+v", warnings[0].Series)
	}

	// The dispatcher admits labelled namespaces; the namespace gets the
	// label; the subscription, untouched, attaches.
	label := "hookline.dev/test-webhooks"
	whsubUpdate(t, dispatcher, func(d *hooklinev1.WebhookDispatcher) {
		d.Spec.AllowedNamespaces = hooklinev1.AllowedNamespaces{
			From:     hooklinev1.NamespacesFromSelector,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{label: "on"}},
		}
	})
	markDispatcherAvailable(t, infra, "d")
	waitForKstatus(t, sub, status.FailedStatus)
	whsubUpdate(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, func(n *corev1.Namespace) {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[label] = "on"
	})
	got = whsubWaitForReady(t, sub, types.NamespacedName{Namespace: infra, Name: "d"})
	if c := whsubCondition(t, got, hooklinev1.ConditionReady); c.Message != "Valid; events for example.com go through "+infra+"/d" {
		t.Errorf("Ready message = %q", c.Message)
	}
	waitForKstatus(t, sub, status.CurrentStatus)
}

func TestWebhookSubscriptionPlainHTTPPolicy(t *testing.T) {
	ns := newNamespace(t)
	dispatcher := whsubAvailableDispatcher(t, ns, "d", nil)
	whsubWebhookSecret(t, ns, "s")
	sub := whsubSubscription(t, ns, "plain", func(s *hooklinev1.WebhookSubscription) {
		s.Spec.URL = "http://receiver.team-a.svc:8080/hooks"
	})

	got := whsubWaitFor(t, sub, metav1.ConditionFalse, hooklinev1.ReasonURLNotAllowed)
	waitForKstatus(t, sub, status.FailedStatus)
	if msg := whsubCondition(t, got, hooklinev1.ConditionStalled).Message; !strings.Contains(msg, "spec.url uses plain http") || !strings.Contains(msg, "spec.egress.allowPlainHTTP") {
		t.Errorf("Stalled message = %q, want it to name spec.url and the dispatcher's setting", msg)
	}
	eventually(t, whsubTimeout, func() (bool, string) {
		n := len(whsubWarnings(t, sub, hooklinev1.ReasonURLNotAllowed))
		return n == 1, fmt.Sprintf("%d URLNotAllowed warnings, want 1", n)
	})

	whsubUpdate(t, dispatcher, func(d *hooklinev1.WebhookDispatcher) { d.Spec.Egress.AllowPlainHTTP = true })
	got = whsubWaitForReady(t, sub, types.NamespacedName{Namespace: ns, Name: "d"})
	if c := whsubCondition(t, got, hooklinev1.ConditionReady); c.Message != "Valid; events for receiver.team-a.svc:8080 go through "+ns+"/d" {
		t.Errorf("Ready message = %q", c.Message)
	}
	waitForKstatus(t, sub, status.CurrentStatus)
}

func TestWebhookSubscriptionWaitsForDispatcher(t *testing.T) {
	ns := newNamespace(t)
	whsubWebhookSecret(t, ns, "s")
	sub := whsubSubscription(t, ns, "waiting", func(s *hooklinev1.WebhookSubscription) {
		s.Spec.DispatcherRef = &hooklinev1.DispatcherReference{Name: "later"}
	})

	got := whsubWaitFor(t, sub, metav1.ConditionFalse, hooklinev1.ReasonDispatcherNotFound)
	waitForKstatus(t, sub, status.InProgressStatus)
	if msg := whsubCondition(t, got, hooklinev1.ConditionReconciling).Message; msg != "dispatcher "+ns+"/later not found" {
		t.Errorf("Reconciling message = %q", msg)
	}

	// The dispatcher appears; until its pods are available it is not Ready.
	whsubDispatcher(t, ns, "later", nil)
	whsubWaitFor(t, sub, metav1.ConditionFalse, hooklinev1.ReasonDispatcherNotReady)
	waitForKstatus(t, sub, status.InProgressStatus)
	markDispatcherAvailable(t, ns, "later")
	got = whsubAcceptAndWaitForReady(t, sub, hooklinev1.ReasonSucceeded)
	if msg, want := whsubCondition(t, got, hooklinev1.ConditionReady).Message, "Valid; events for example.com go through "+ns+"/later"; msg != want {
		t.Errorf("Ready message = %q, want %q", msg, want)
	}
}

func TestWebhookSubscriptionWaitsForReferencedSecrets(t *testing.T) {
	ns := newNamespace(t)
	whsubAvailableDispatcher(t, ns, "d", nil)
	whsubWebhookSecret(t, ns, "s")
	const headerValue = "Bearer hdr-v4lue-Zq9"
	const otherValue = "unrelated-v4lue-Kx2"
	sub := whsubSubscription(t, ns, "authenticated", func(s *hooklinev1.WebhookSubscription) {
		s.Spec.Headers = []hooklinev1.Header{{
			Name:      "Authorization",
			ValueFrom: &hooklinev1.HeaderValueSource{SecretKeyRef: hooklinev1.SecretKeyReference{Name: "auth", Key: "token"}},
		}}
		s.Spec.TLS = &hooklinev1.TLSSpec{CA: &hooklinev1.CASource{ConfigMapKeyRef: &hooklinev1.SecretKeyReference{Name: "bundle", Key: "ca.crt"}}}
	})

	got := whsubWaitFor(t, sub, metav1.ConditionFalse, hooklinev1.ReasonReferenceNotFound)
	waitForKstatus(t, sub, status.InProgressStatus)
	if msg := whsubCondition(t, got, hooklinev1.ConditionReady).Message; msg != "Secret auth, referenced by spec.headers[0].valueFrom.secretKeyRef, not found" {
		t.Errorf("Ready message = %q", msg)
	}

	// The Secret appears without the key, then gains it. The message
	// names the missing key, not the keys the Secret has.
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "auth"}, Data: map[string][]byte{"unrelated-key": []byte(otherValue)}}
	if err := k8sClient.Create(suiteCtx, secret); err != nil {
		t.Fatalf("creating the Secret: %v", err)
	}
	eventually(t, whsubTimeout, func() (bool, string) {
		got = whsubWaitFor(t, sub, metav1.ConditionFalse, hooklinev1.ReasonReferenceNotFound)
		msg := whsubCondition(t, got, hooklinev1.ConditionReady).Message
		return msg == `Secret auth, referenced by spec.headers[0].valueFrom.secretKeyRef, has no key "token"`, fmt.Sprintf("Ready message = %q", msg)
	})
	for _, c := range got.Status.Conditions {
		if strings.Contains(c.Message, "unrelated-key") {
			t.Errorf("condition %s names a key the Secret holds: %q", c.Type, c.Message)
		}
	}
	whsubUpdate(t, secret, func(s *corev1.Secret) { s.Data["token"] = []byte(headerValue) })

	// Then the CA bundle is awaited, and found.
	eventually(t, whsubTimeout, func() (bool, string) {
		got = whsubWaitFor(t, sub, metav1.ConditionFalse, hooklinev1.ReasonReferenceNotFound)
		msg := whsubCondition(t, got, hooklinev1.ConditionReady).Message
		return msg == "ConfigMap bundle, referenced by spec.tls.ca.configMapKeyRef, not found", fmt.Sprintf("Ready message = %q", msg)
	})
	if err := k8sClient.Create(suiteCtx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bundle"}, Data: map[string]string{"ca.crt": "-----BEGIN CERTIFICATE-----\n"}}); err != nil {
		t.Fatalf("creating the ConfigMap: %v", err)
	}
	got = whsubAcceptAndWaitForReady(t, sub, hooklinev1.ReasonSucceeded)

	// No condition or event ever carries a value read from the Secret.
	for _, c := range got.Status.Conditions {
		if strings.Contains(c.Message, "v4lue") {
			t.Errorf("condition %s carries a Secret value: %q", c.Type, c.Message)
		}
	}
	var events eventsv1.EventList
	if err := k8sClient.List(suiteCtx, &events, client.InNamespace(ns)); err != nil {
		t.Fatalf("listing events: %v", err)
	}
	for _, e := range events.Items {
		if strings.Contains(e.Note, "v4lue") {
			t.Errorf("event %s/%s carries a Secret value: %q", e.Reason, e.Name, e.Note)
		}
	}
}

func TestWebhookSubscriptionDefaultDispatcher(t *testing.T) {
	ns := newNamespace(t)
	whsubWebhookSecret(t, ns, "s")
	sub := whsubSubscription(t, ns, "defaulted", func(s *hooklinev1.WebhookSubscription) { s.Spec.DispatcherRef = nil })

	want := testOperatorNamespace + "/" + DefaultDispatcherName
	got := &hooklinev1.WebhookSubscription{}
	eventually(t, whsubTimeout, func() (bool, string) {
		if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(sub), got); err != nil {
			return false, err.Error()
		}
		ready := meta.FindStatusCondition(got.Status.Conditions, hooklinev1.ConditionReady)
		if ready == nil || got.Status.Dispatcher == "" {
			return false, "no status yet"
		}
		// Whether the default dispatcher exists in the shared suite is not
		// this test's business; whatever the outcome, it names it.
		return got.Status.Dispatcher == want && strings.Contains(ready.Message, want),
			fmt.Sprintf("status.dispatcher = %q, Ready message = %q, want both to name %s", got.Status.Dispatcher, ready.Message, want)
	})
}

// whsubDispatcherCondition is a condition as the dispatcher writes it, for
// generation gen.
func whsubDispatcherCondition(typ string, status metav1.ConditionStatus, reason, message string, gen int64) map[string]any {
	return map[string]any{
		"type": typ, "status": string(status), "reason": reason, "message": message,
		"observedGeneration": gen, "lastTransitionTime": "2026-06-01T12:00:00Z",
	}
}

// whsubApplyDispatcherConditions plays the dispatcher: it server-side
// applies conds (all three of its condition types, as it always does) as
// the subscription's status, with the dispatcher's field manager.
func whsubApplyDispatcherConditions(t *testing.T, sub *hooklinev1.WebhookSubscription, conds ...map[string]any) {
	t.Helper()
	list := make([]any, len(conds))
	for i, c := range conds {
		list[i] = c
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": hooklinev1.GroupVersion.String(),
		"kind":       "WebhookSubscription",
		"metadata":   map[string]any{"name": sub.Name, "namespace": sub.Namespace},
		"status":     map[string]any{"conditions": list},
	}}
	if err := k8sClient.Status().Apply(suiteCtx, client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner(report.DefaultFieldManager), client.ForceOwnership); err != nil {
		t.Fatalf("applying the dispatcher's conditions: %v", err)
	}
}

// whsubAccept plays the dispatcher accepting the subscription as now
// stored: it applies the conditions the dispatcher's status writer computes
// for a served subscription with no delivery yet (Accepted, EndpointHealthy
// Unknown, and Suspended by spec.suspend or not held) for the current
// generation, which it returns.
func whsubAccept(t *testing.T, sub *hooklinev1.WebhookSubscription) int64 {
	t.Helper()
	got := &hooklinev1.WebhookSubscription{}
	if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(sub), got); err != nil {
		t.Fatalf("getting subscription: %v", err)
	}
	state := report.State{Object: got, Accepted: true, AcceptedMessage: "Served by " + got.Status.Dispatcher + " instance d-dispatcher-0"}
	if got.Spec.Suspend {
		state.SuspendedReason, state.SuspendedMessage = hooklinev1.ReasonSuspendedBySpec, "Suspended by spec.suspend; events are held until it is cleared"
	}
	conds := report.Conditions(state, report.Totals{}, report.DefaultUnhealthyAfter, got.Generation, testClock.Now(), got.Status.Conditions)
	maps := make([]map[string]any, len(conds))
	for i := range conds {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&conds[i])
		if err != nil {
			t.Fatalf("converting condition %s: %v", conds[i].Type, err)
		}
		maps[i] = m
	}
	whsubApplyDispatcherConditions(t, got, maps...)
	return got.Generation
}

// whsubWaitForAwaiting waits until the subscription, its own checks
// passed, waits for the dispatcher to accept its current generation, and
// checks what users see meanwhile: Ready=False and Reconciling=True with
// reason AwaitingDispatcher naming the dispatcher and the generation, no
// Stalled, kstatus InProgress. It returns the subscription as then stored.
func whsubWaitForAwaiting(t *testing.T, sub *hooklinev1.WebhookSubscription) *hooklinev1.WebhookSubscription {
	t.Helper()
	got := whsubWaitFor(t, sub, metav1.ConditionFalse, hooklinev1.ReasonAwaitingDispatcher)
	want := fmt.Sprintf("Waiting for dispatcher %s to accept generation %d", got.Status.Dispatcher, got.Generation)
	if got.Status.Dispatcher == "" {
		t.Errorf("status.dispatcher is empty")
	}
	for _, typ := range []string{hooklinev1.ConditionReady, hooklinev1.ConditionReconciling} {
		c := whsubCondition(t, got, typ)
		wantStatus := metav1.ConditionFalse
		if typ == hooklinev1.ConditionReconciling {
			wantStatus = metav1.ConditionTrue
		}
		if c.Status != wantStatus || c.Reason != hooklinev1.ReasonAwaitingDispatcher || c.Message != want {
			t.Errorf("%s = %s/%s (%q), want %s/%s (%q)", typ, c.Status, c.Reason, c.Message, wantStatus, hooklinev1.ReasonAwaitingDispatcher, want)
		}
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, hooklinev1.ConditionStalled); c != nil {
		t.Errorf("a subscription awaiting its dispatcher is Stalled: %+v", c)
	}
	if st, msg := kstatusOf(t, got.DeepCopy()); st != status.InProgressStatus {
		t.Errorf("kstatus of a subscription awaiting its dispatcher = %s (%s), want %s", st, msg, status.InProgressStatus)
	}
	return got
}

// whsubAcceptAndWaitForReady waits for the subscription to await its
// dispatcher, plays the dispatcher accepting it, and waits for
// Ready=True with reason; it returns the subscription as then stored.
func whsubAcceptAndWaitForReady(t *testing.T, sub *hooklinev1.WebhookSubscription, reason string) *hooklinev1.WebhookSubscription {
	t.Helper()
	whsubWaitForAwaiting(t, sub)
	whsubAccept(t, sub)
	got := whsubWaitFor(t, sub, metav1.ConditionTrue, reason)
	waitForKstatus(t, sub, status.CurrentStatus)
	return got
}

// whsubConditionOwners returns the field managers that own the status
// condition of type typ.
func whsubConditionOwners(sub *hooklinev1.WebhookSubscription, typ string) []string {
	var owners []string
	key := fmt.Sprintf(`"k:{\"type\":\"%s\"}"`, typ)
	for _, mf := range sub.ManagedFields {
		if mf.Subresource == "status" && mf.FieldsV1 != nil && strings.Contains(string(mf.FieldsV1.Raw), key) {
			owners = append(owners, mf.Manager)
		}
	}
	return owners
}

func TestWebhookSubscriptionFollowsDispatcherConditions(t *testing.T) {
	ns := newNamespace(t)
	whsubAvailableDispatcher(t, ns, "d", nil)
	whsubWebhookSecret(t, ns, "s")
	sub := whsubSubscription(t, ns, "orders", nil)
	got := whsubWaitForAwaiting(t, sub)
	gen := got.Generation

	accepted := whsubDispatcherCondition(hooklinev1.ConditionAccepted, metav1.ConditionTrue, hooklinev1.ReasonAccepted, "The dispatcher delivers the events this subscription selects", gen)
	notHeld := whsubDispatcherCondition(hooklinev1.ConditionSuspended, metav1.ConditionFalse, hooklinev1.ReasonNotSuspended, "Deliveries are not held", gen)
	failing := whsubDispatcherCondition(hooklinev1.ConditionEndpointHealthy, metav1.ConditionFalse, hooklinev1.ReasonDeliveryFailing, "5 consecutive failures, last: HTTP 503", gen)

	// The endpoint fails: not Ready, but nothing to reconcile nor to edit.
	// kstatus, finding neither Reconciling nor Stalled, falls back on
	// Ready=False: InProgress, not Failed.
	whsubApplyDispatcherConditions(t, sub, accepted, failing, notHeld)
	got = whsubWaitFor(t, sub, metav1.ConditionFalse, hooklinev1.ReasonEndpointUnhealthy)
	waitForKstatus(t, sub, status.InProgressStatus)
	if msg := whsubCondition(t, got, hooklinev1.ConditionReady).Message; msg != "5 consecutive failures, last: HTTP 503" {
		t.Errorf("Ready message = %q, want the EndpointHealthy message", msg)
	}
	for _, typ := range []string{hooklinev1.ConditionReconciling, hooklinev1.ConditionStalled} {
		if c := meta.FindStatusCondition(got.Status.Conditions, typ); c != nil {
			t.Errorf("an unhealthy endpoint sets %s: %+v", typ, c)
		}
	}
	// The controller's reconcile left the dispatcher's conditions as the
	// dispatcher wrote them, and owns none of them.
	for typ, want := range map[string][2]string{
		hooklinev1.ConditionAccepted:        {"True", hooklinev1.ReasonAccepted},
		hooklinev1.ConditionEndpointHealthy: {"False", hooklinev1.ReasonDeliveryFailing},
		hooklinev1.ConditionSuspended:       {"False", hooklinev1.ReasonNotSuspended},
	} {
		c := whsubCondition(t, got, typ)
		if string(c.Status) != want[0] || c.Reason != want[1] || c.ObservedGeneration != gen {
			t.Errorf("%s = %+v, want %s/%s at generation %d as the dispatcher applied it", typ, c, want[0], want[1], gen)
		}
		if owners := whsubConditionOwners(got, typ); !slices.Equal(owners, []string{"hookline-dispatcher"}) {
			t.Errorf("%s is owned by %v, want hookline-dispatcher alone", typ, owners)
		}
	}
	if owners := whsubConditionOwners(got, hooklinev1.ConditionReady); !slices.Equal(owners, []string{FieldManager}) {
		t.Errorf("Ready is owned by %v, want %s alone", owners, FieldManager)
	}

	// Deliveries succeed again.
	whsubApplyDispatcherConditions(t, sub, accepted, notHeld,
		whsubDispatcherCondition(hooklinev1.ConditionEndpointHealthy, metav1.ConditionTrue, hooklinev1.ReasonDeliverySucceeded, "The last delivery attempt succeeded", gen))
	got = whsubWaitFor(t, sub, metav1.ConditionTrue, hooklinev1.ReasonSucceeded)
	if msg, want := whsubCondition(t, got, hooklinev1.ConditionReady).Message, "Valid; events for example.com go through "+ns+"/d; the endpoint is healthy"; msg != want {
		t.Errorf("Ready message = %q, want %q", msg, want)
	}
	waitForKstatus(t, sub, status.CurrentStatus)

	// Held by spec.suspend, as the dispatcher reports it once it has
	// caught up with the new generation.
	whsubUpdate(t, sub, func(s *hooklinev1.WebhookSubscription) { s.Spec.Suspend = true })
	got = whsubWaitForAwaiting(t, sub)
	gen = got.Generation
	whsubApplyDispatcherConditions(t, sub,
		whsubDispatcherCondition(hooklinev1.ConditionAccepted, metav1.ConditionTrue, hooklinev1.ReasonAccepted, "served", gen),
		whsubDispatcherCondition(hooklinev1.ConditionEndpointHealthy, metav1.ConditionTrue, hooklinev1.ReasonDeliverySucceeded, "ok", gen),
		whsubDispatcherCondition(hooklinev1.ConditionSuspended, metav1.ConditionTrue, hooklinev1.ReasonSuspendedBySpec, "spec.suspend is true", gen))
	// A suspension the user chose is Ready (reason Suspended): kstatus
	// Current, so GitOps health checks are not held up by it.
	got = whsubWaitFor(t, sub, metav1.ConditionTrue, hooklinev1.ReasonSuspended)
	waitForKstatus(t, sub, status.CurrentStatus)
	if msg := whsubCondition(t, got, hooklinev1.ConditionReady).Message; msg != "spec.suspend is true" {
		t.Errorf("Ready message = %q, want the Suspended message", msg)
	}
	for _, typ := range []string{hooklinev1.ConditionReconciling, hooklinev1.ConditionStalled} {
		if c := meta.FindStatusCondition(got.Status.Conditions, typ); c != nil {
			t.Errorf("a suspended subscription sets %s: %+v", typ, c)
		}
	}
}

func TestWebhookSubscriptionStallsOnDispatcherConditions(t *testing.T) {
	ns := newNamespace(t)
	whsubAvailableDispatcher(t, ns, "d", nil)
	whsubWebhookSecret(t, ns, "s")
	sub := whsubSubscription(t, ns, "orders", nil)
	gen := whsubWaitForAwaiting(t, sub).Generation

	// The endpoint answered 410 Gone: only a change to the spec helps.
	whsubApplyDispatcherConditions(t, sub,
		whsubDispatcherCondition(hooklinev1.ConditionAccepted, metav1.ConditionTrue, hooklinev1.ReasonAccepted, "served", gen),
		whsubDispatcherCondition(hooklinev1.ConditionEndpointHealthy, metav1.ConditionFalse, hooklinev1.ReasonEndpointGone, "The endpoint answered 410 Gone at 2026-06-01T12:00:00Z", gen),
		whsubDispatcherCondition(hooklinev1.ConditionSuspended, metav1.ConditionTrue, hooklinev1.ReasonEndpointGone, "The endpoint answered 410 Gone; change the spec to resume", gen))
	got := whsubWaitFor(t, sub, metav1.ConditionFalse, hooklinev1.ReasonEndpointGone)
	waitForKstatus(t, sub, status.FailedStatus)
	if c := whsubCondition(t, got, hooklinev1.ConditionStalled); c.Status != metav1.ConditionTrue || c.Reason != hooklinev1.ReasonEndpointGone ||
		c.Message != "The endpoint answered 410 Gone; change the spec to resume" {
		t.Errorf("Stalled = %+v, want True/EndpointGone with the Suspended message", c)
	}
	eventually(t, whsubTimeout, func() (bool, string) {
		n := len(whsubWarnings(t, sub, hooklinev1.ReasonEndpointGone))
		return n == 1, fmt.Sprintf("%d EndpointGone warnings, want 1", n)
	})

	// Someone points it elsewhere: the dispatcher's conditions describe the
	// previous generation until it catches up, and are ignored; meanwhile
	// the subscription awaits the dispatcher.
	whsubUpdate(t, sub, func(s *hooklinev1.WebhookSubscription) { s.Spec.URL = "https://example.com/hooks/v2" })
	got = whsubWaitForAwaiting(t, sub)
	if c := whsubCondition(t, got, hooklinev1.ConditionSuspended); c.Status != metav1.ConditionTrue || c.ObservedGeneration != gen {
		t.Errorf("Suspended = %+v, want the dispatcher's stale condition left alone", c)
	}
	gen = got.Generation

	// The dispatcher refuses the new spec.
	notServed := func(reason, msg string) {
		t.Helper()
		whsubApplyDispatcherConditions(t, sub,
			whsubDispatcherCondition(hooklinev1.ConditionAccepted, metav1.ConditionFalse, reason, msg, gen),
			whsubDispatcherCondition(hooklinev1.ConditionEndpointHealthy, metav1.ConditionUnknown, hooklinev1.ReasonNoDeliveries, "No delivery has been attempted yet", gen),
			whsubDispatcherCondition(hooklinev1.ConditionSuspended, metav1.ConditionFalse, hooklinev1.ReasonNotSuspended, "Deliveries are not held", gen))
	}
	notServed(hooklinev1.ReasonInvalidSpec, "spec.eventTypes[0]: not served by this dispatcher version")
	got = whsubWaitFor(t, sub, metav1.ConditionFalse, hooklinev1.ReasonInvalidSpec)
	waitForKstatus(t, sub, status.FailedStatus)
	if c := whsubCondition(t, got, hooklinev1.ConditionStalled); c.Message != "spec.eventTypes[0]: not served by this dispatcher version" {
		t.Errorf("Stalled = %+v, want the Accepted message", c)
	}

	// Waiting for something that may still appear is in progress.
	notServed(hooklinev1.ReasonSecretNotReady, "WebhookSecret s has no signing key yet")
	got = whsubWaitFor(t, sub, metav1.ConditionFalse, hooklinev1.ReasonSecretNotReady)
	waitForKstatus(t, sub, status.InProgressStatus)
	if c := meta.FindStatusCondition(got.Status.Conditions, hooklinev1.ConditionStalled); c != nil {
		t.Errorf("a secret not ready yet stalls: %+v", c)
	}
}
