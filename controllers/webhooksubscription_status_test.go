package controllers

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/event"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/rules"
)

func validSubscriptionSpec() hooklinev1.WebhookSubscriptionSpec {
	return hooklinev1.WebhookSubscriptionSpec{
		URL:        "https://example.com/hooks?token=abc",
		EventTypes: []string{"order.*", "invoice.>"},
		Signing:    hooklinev1.SigningSpec{SecretRef: hooklinev1.WebhookSecretReference{Name: "s"}},
	}
}

func TestSubscriptionReferencedNames(t *testing.T) {
	spec := validSubscriptionSpec()
	spec.Headers = []hooklinev1.Header{
		{Name: "X-Static", Value: ptr.To("v")},
		{Name: "Authorization", ValueFrom: &hooklinev1.HeaderValueSource{SecretKeyRef: hooklinev1.SecretKeyReference{Name: "auth", Key: "token"}}},
		{Name: "X-Api-Key", ValueFrom: &hooklinev1.HeaderValueSource{SecretKeyRef: hooklinev1.SecretKeyReference{Name: "auth", Key: "api-key"}}},
	}
	spec.TLS = &hooklinev1.TLSSpec{
		CA:                         &hooklinev1.CASource{ConfigMapKeyRef: &hooklinev1.SecretKeyReference{Name: "bundle", Key: "ca.crt"}},
		ClientCertificateSecretRef: &hooklinev1.LocalObjectReference{Name: "client-cert"},
	}
	if diff := cmp.Diff([]string{"auth", "client-cert"}, subscriptionReferencedNames(&spec, rules.KindSecret)); diff != "" {
		t.Errorf("Secret names (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"bundle"}, subscriptionReferencedNames(&spec, rules.KindConfigMap)); diff != "" {
		t.Errorf("ConfigMap names (-want +got):\n%s", diff)
	}
	if got := subscriptionReferencedNames(ptr.To(validSubscriptionSpec()), rules.KindSecret); len(got) != 0 {
		t.Errorf("a spec without references indexes %v", got)
	}
}

func TestSubscriptionDispatcherOutcome(t *testing.T) {
	home := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", Labels: map[string]string{"hooks": "on"}}}
	ready := []metav1.Condition{{Type: hooklinev1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Succeeded"}}
	notReady := []metav1.Condition{{Type: hooklinev1.ConditionReady, Status: metav1.ConditionFalse, Reason: "ReplicasUnavailable", Message: "0 of 1 replicas available"}}
	dispatcher := func(ns string, from hooklinev1.NamespacesFrom, plainHTTP bool, conds []metav1.Condition) *hooklinev1.WebhookDispatcher {
		d := &hooklinev1.WebhookDispatcher{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "d"}}
		d.Spec.AllowedNamespaces.From = from
		if from == hooklinev1.NamespacesFromSelector {
			d.Spec.AllowedNamespaces.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"hooks": "on"}}
		}
		d.Spec.Egress.AllowPlainHTTP = plainHTTP
		d.Status.Conditions = conds
		return d
	}
	httpsURL, httpURL := "https://example.com/hooks", "http://example.com/hooks"
	tests := []struct {
		name       string
		url        string
		d          *hooklinev1.WebhookDispatcher
		wantDone   bool
		wantPhase  phase
		wantReason string
		wantMsg    string
	}{
		{"same namespace, ready", httpsURL, dispatcher("team-a", hooklinev1.NamespacesFromSame, false, ready), false, 0, "", ""},
		{"all namespaces", httpsURL, dispatcher("infra", hooklinev1.NamespacesFromAll, false, ready), false, 0, "", ""},
		{"selector matches", httpsURL, dispatcher("infra", hooklinev1.NamespacesFromSelector, false, ready), false, 0, "", ""},
		{"plain http allowed", httpURL, dispatcher("team-a", hooklinev1.NamespacesFromSame, true, ready), false, 0, "", ""},
		{"other namespace with Same", httpsURL, dispatcher("infra", hooklinev1.NamespacesFromSame, false, ready), true, phaseStalled,
			hooklinev1.ReasonNamespaceNotAllowed, "dispatcher infra/d does not admit subscriptions from namespace team-a"},
		{"selector without selector", httpsURL, func() *hooklinev1.WebhookDispatcher {
			d := dispatcher("infra", hooklinev1.NamespacesFromSelector, false, ready)
			d.Spec.AllowedNamespaces.Selector = nil
			return d
		}(), true, phaseStalled, hooklinev1.ReasonNamespaceNotAllowed, "dispatcher infra/d cannot admit subscriptions: allowedNamespaces.from is Selector but no selector is set"},
		{"plain http refused", httpURL, dispatcher("team-a", hooklinev1.NamespacesFromSame, false, ready), true, phaseStalled,
			hooklinev1.ReasonURLNotAllowed, "spec.url uses plain http, which dispatcher team-a/d does not allow: use https, or set spec.egress.allowPlainHTTP on the dispatcher"},
		{"namespace refusal comes before the URL", httpURL, dispatcher("infra", hooklinev1.NamespacesFromSame, false, ready), true, phaseStalled,
			hooklinev1.ReasonNamespaceNotAllowed, "dispatcher infra/d does not admit subscriptions from namespace team-a"},
		{"not ready", httpsURL, dispatcher("team-a", hooklinev1.NamespacesFromSame, false, notReady), true, phaseProgressing,
			hooklinev1.ReasonDispatcherNotReady, "dispatcher team-a/d is not Ready: 0 of 1 replicas available"},
		{"no status yet", httpsURL, dispatcher("team-a", hooklinev1.NamespacesFromSame, false, nil), true, phaseProgressing,
			hooklinev1.ReasonDispatcherNotReady, "dispatcher team-a/d is not Ready"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := validSubscriptionSpec()
			spec.URL = tt.url
			o, done := subscriptionDispatcherOutcome(&spec, tt.d, home)
			if done != tt.wantDone {
				t.Fatalf("done = %v (%+v), want %v", done, o, tt.wantDone)
			}
			if !done {
				return
			}
			if o.phase != tt.wantPhase || o.reason != tt.wantReason || o.message != tt.wantMsg {
				t.Errorf("outcome = %+v, want phase %d reason %s message %q", o, tt.wantPhase, tt.wantReason, tt.wantMsg)
			}
		})
	}
}

func TestSubscriptionSigningOutcome(t *testing.T) {
	secret := func(conds ...metav1.Condition) *hooklinev1.WebhookSecret {
		return &hooklinev1.WebhookSecret{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Status: hooklinev1.WebhookSecretStatus{Conditions: conds}}
	}
	if o, done := subscriptionSigningOutcome(secret(metav1.Condition{Type: "Ready", Status: "True"})); done {
		t.Errorf("a Ready WebhookSecret gave %+v", o)
	}
	for _, tt := range []struct {
		s    *hooklinev1.WebhookSecret
		want string
	}{
		{secret(), "WebhookSecret s is not Ready"},
		{secret(metav1.Condition{Type: "Ready", Status: "False", Message: "Secret s exists and is not owned by WebhookSecret s"}), "WebhookSecret s is not Ready: Secret s exists and is not owned by WebhookSecret s"},
	} {
		o, done := subscriptionSigningOutcome(tt.s)
		if !done || o.phase != phaseProgressing || o.reason != hooklinev1.ReasonSecretNotReady || o.message != tt.want {
			t.Errorf("outcome = %+v (done %v), want Progressing SecretNotReady %q", o, done, tt.want)
		}
	}
}

func TestSubscriptionReadyOutcome(t *testing.T) {
	d := types.NamespacedName{Namespace: "hookline-system", Name: "default"}
	spec := validSubscriptionSpec()
	spec.URL = "https://hooks.example.com:8443/path/secret-path?token=t0ken"
	o := subscriptionReadyOutcome(&spec, d)
	if o.phase != phaseReady || o.reason != hooklinev1.ReasonSucceeded || o.message != "Valid; events for hooks.example.com:8443 go through hookline-system/default" {
		t.Errorf("outcome = %+v", o)
	}
	spec.Suspend = true
	o = subscriptionReadyOutcome(&spec, d)
	if want := "Suspended by spec.suspend; otherwise valid, events for hooks.example.com:8443 go through hookline-system/default once resumed"; o.phase != phaseReady || o.message != want {
		t.Errorf("suspended outcome = %+v, want Ready with %q", o, want)
	}
	for _, m := range []string{subscriptionReadyOutcome(&spec, d).message, o.message} {
		if strings.Contains(m, "t0ken") || strings.Contains(m, "secret-path") {
			t.Errorf("message %q repeats the URL's path or query", m)
		}
	}
}

func TestSubscriptionStatus(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(time.Minute))
	sub := &hooklinev1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Generation: 3},
		Spec: hooklinev1.WebhookSubscriptionSpec{EventTypes: []string{"order.>", "invoice.*.paid"}}}
	sub.Status = hooklinev1.WebhookSubscriptionStatus{
		ObservedGeneration: 2,
		Dispatcher:         "team-a/d",
		Conditions: []metav1.Condition{
			{Type: "Ready", Status: "False", Reason: "SecretNotFound", LastTransitionTime: t0, ObservedGeneration: 2},
			{Type: "Reconciling", Status: "True", Reason: "SecretNotFound", LastTransitionTime: t0, ObservedGeneration: 2},
			{Type: "EndpointHealthy", Status: "True", Reason: "Delivering", LastTransitionTime: t0},
		},
		Delivery: &hooklinev1.DeliveryStatus{Delivered: 7},
	}
	out := outcome{phase: phaseReady, reason: hooklinev1.ReasonSucceeded, message: "Valid; events for example.com go through team-a/d"}
	got := subscriptionStatus(sub, out, "team-a/d", t1)
	want := hooklinev1.WebhookSubscriptionStatus{
		ObservedGeneration: 3,
		Dispatcher:         "team-a/d",
		// As written, for kubectl get's column.
		EventTypes: "order.>, invoice.*.paid",
		// Only this controller's conditions, and no delivery block: the
		// dispatcher owns those and the apply leaves them alone.
		Conditions: []metav1.Condition{
			{Type: "Ready", Status: "True", Reason: "Succeeded", Message: out.message, LastTransitionTime: t1, ObservedGeneration: 3},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
}

func TestSubscriptionDeliveryOutcome(t *testing.T) {
	const gen = 4
	dispatcher := types.NamespacedName{Namespace: "team-a", Name: "d"}
	ready := outcome{phase: phaseReady, reason: hooklinev1.ReasonSucceeded, message: "Valid; events for example.com go through team-a/d"}
	awaiting := outcome{phaseProgressing, hooklinev1.ReasonAwaitingDispatcher, "Waiting for dispatcher team-a/d to accept generation 4"}
	cond := func(typ string, status metav1.ConditionStatus, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen}
	}
	stale := func(c metav1.Condition) metav1.Condition { c.ObservedGeneration = gen - 1; return c }
	var (
		accepted    = cond(hooklinev1.ConditionAccepted, metav1.ConditionTrue, hooklinev1.ReasonAccepted, "The dispatcher delivers the events this subscription selects")
		healthy     = cond(hooklinev1.ConditionEndpointHealthy, metav1.ConditionTrue, hooklinev1.ReasonDeliverySucceeded, "The last delivery attempt succeeded")
		noAttempts  = cond(hooklinev1.ConditionEndpointHealthy, metav1.ConditionUnknown, hooklinev1.ReasonNoDeliveries, "No delivery has been attempted yet")
		failing     = cond(hooklinev1.ConditionEndpointHealthy, metav1.ConditionFalse, hooklinev1.ReasonDeliveryFailing, "5 consecutive failures, last: HTTP 503")
		goneHealth  = cond(hooklinev1.ConditionEndpointHealthy, metav1.ConditionFalse, hooklinev1.ReasonEndpointGone, "The endpoint answered 410 Gone at 2026-06-01T12:00:00Z")
		notHeld     = cond(hooklinev1.ConditionSuspended, metav1.ConditionFalse, hooklinev1.ReasonNotSuspended, "Deliveries are not held")
		gone        = cond(hooklinev1.ConditionSuspended, metav1.ConditionTrue, hooklinev1.ReasonEndpointGone, "The endpoint answered 410 Gone")
		bySpec      = cond(hooklinev1.ConditionSuspended, metav1.ConditionTrue, hooklinev1.ReasonSuspendedBySpec, "spec.suspend is true")
		circuitOpen = cond(hooklinev1.ConditionSuspended, metav1.ConditionTrue, hooklinev1.ReasonSustainedFailure, "")
	)
	notAccepted := func(reason string) metav1.Condition {
		return cond(hooklinev1.ConditionAccepted, metav1.ConditionFalse, reason, "not served: "+reason)
	}
	tests := []struct {
		name  string
		conds []metav1.Condition
		want  outcome
	}{
		{"no dispatcher conditions yet", nil, awaiting},
		{"health and suspension reported, acceptance not yet", []metav1.Condition{healthy, notHeld}, awaiting},
		{"suspended by spec, not accepted yet", []metav1.Condition{bySpec}, awaiting},
		{"accepted for an older generation", []metav1.Condition{stale(accepted), healthy, notHeld}, awaiting},
		{"suspended by spec, accepted for an older generation", []metav1.Condition{stale(accepted), stale(healthy), bySpec}, awaiting},
		{"accepted, nothing delivered yet", []metav1.Condition{accepted, noAttempts, notHeld}, ready},
		{"healthy", []metav1.Condition{accepted, healthy, notHeld},
			outcome{phaseReady, hooklinev1.ReasonSucceeded, ready.message + "; the endpoint is healthy"}},
		{"unhealthy", []metav1.Condition{accepted, failing, notHeld},
			outcome{phaseHeld, hooklinev1.ReasonEndpointUnhealthy, "5 consecutive failures, last: HTTP 503"}},
		{"unhealthy without a message", []metav1.Condition{accepted, cond(hooklinev1.ConditionEndpointHealthy, metav1.ConditionFalse, hooklinev1.ReasonDeliveryFailing, "")},
			outcome{phaseHeld, hooklinev1.ReasonEndpointUnhealthy, "Deliveries to the endpoint fail"}},
		{"gone", []metav1.Condition{accepted, goneHealth, gone},
			outcome{phaseStalled, hooklinev1.ReasonEndpointGone, "The endpoint answered 410 Gone"}},
		{"gone without a message", []metav1.Condition{cond(hooklinev1.ConditionSuspended, metav1.ConditionTrue, hooklinev1.ReasonEndpointGone, "")},
			outcome{phaseStalled, hooklinev1.ReasonEndpointGone, "The endpoint answered 410 Gone; deliveries are suspended until the spec changes"}},
		{"gone outranks not accepted", []metav1.Condition{notAccepted(hooklinev1.ReasonSecretNotReady), gone},
			outcome{phaseStalled, hooklinev1.ReasonEndpointGone, "The endpoint answered 410 Gone"}},
		{"a 410 reported by health alone is unhealthy", []metav1.Condition{accepted, goneHealth, notHeld},
			outcome{phaseHeld, hooklinev1.ReasonEndpointUnhealthy, "The endpoint answered 410 Gone at 2026-06-01T12:00:00Z"}},
		{"suspended by spec", []metav1.Condition{accepted, healthy, bySpec},
			outcome{phaseReady, hooklinev1.ReasonSuspended, "spec.suspend is true"}},
		{"suspended outranks unhealthy", []metav1.Condition{accepted, failing, bySpec},
			outcome{phaseReady, hooklinev1.ReasonSuspended, "spec.suspend is true"}},
		{"circuit open", []metav1.Condition{accepted, failing, circuitOpen},
			outcome{phaseHeld, hooklinev1.ReasonSuspended, "Deliveries are held; events stay queued"}},
		{"not accepted: invalid spec", []metav1.Condition{notAccepted(hooklinev1.ReasonInvalidSpec), noAttempts, notHeld},
			outcome{phaseStalled, hooklinev1.ReasonInvalidSpec, "not served: InvalidSpec"}},
		{"not accepted: URL", []metav1.Condition{notAccepted(hooklinev1.ReasonURLNotAllowed)},
			outcome{phaseStalled, hooklinev1.ReasonURLNotAllowed, "not served: URLNotAllowed"}},
		{"not accepted: namespace", []metav1.Condition{notAccepted(hooklinev1.ReasonNamespaceNotAllowed)},
			outcome{phaseStalled, hooklinev1.ReasonNamespaceNotAllowed, "not served: NamespaceNotAllowed"}},
		{"not accepted: filter", []metav1.Condition{notAccepted(hooklinev1.ReasonFilterInvalid)},
			outcome{phaseStalled, hooklinev1.ReasonFilterInvalid, "not served: FilterInvalid"}},
		{"not accepted: secret not ready", []metav1.Condition{notAccepted(hooklinev1.ReasonSecretNotReady)},
			outcome{phaseProgressing, hooklinev1.ReasonSecretNotReady, "not served: SecretNotReady"}},
		{"not accepted: reference", []metav1.Condition{notAccepted(hooklinev1.ReasonReferenceNotFound)},
			outcome{phaseProgressing, hooklinev1.ReasonReferenceNotFound, "not served: ReferenceNotFound"}},
		{"not accepted: dispatcher", []metav1.Condition{notAccepted(hooklinev1.ReasonDispatcherNotFound)},
			outcome{phaseProgressing, hooklinev1.ReasonDispatcherNotFound, "not served: DispatcherNotFound"}},
		{"not accepted outranks suspended by spec", []metav1.Condition{notAccepted(hooklinev1.ReasonInvalidSpec), bySpec},
			outcome{phaseStalled, hooklinev1.ReasonInvalidSpec, "not served: InvalidSpec"}},
		{"not accepted, no message", []metav1.Condition{cond(hooklinev1.ConditionAccepted, metav1.ConditionFalse, hooklinev1.ReasonNotServed, "")},
			outcome{phaseProgressing, hooklinev1.ReasonNotServed, "The dispatcher does not serve this subscription"}},
		{"accepted unknown is not accepted yet", []metav1.Condition{cond(hooklinev1.ConditionAccepted, metav1.ConditionUnknown, "Starting", ""), healthy}, awaiting},
		{"stale conditions are ignored", []metav1.Condition{stale(notAccepted(hooklinev1.ReasonInvalidSpec)), stale(failing), stale(gone)}, awaiting},
		{"stale health does not say healthy", []metav1.Condition{accepted, stale(healthy), notHeld}, ready},
		{"the controller's own conditions are not the dispatcher's", []metav1.Condition{
			accepted,
			cond(hooklinev1.ConditionReady, metav1.ConditionFalse, hooklinev1.ReasonEndpointUnhealthy, "old"),
			cond(hooklinev1.ConditionStalled, metav1.ConditionTrue, hooklinev1.ReasonEndpointGone, "old"),
		}, ready},
		{"the controller's own Ready does not stand for acceptance", []metav1.Condition{
			cond(hooklinev1.ConditionReady, metav1.ConditionTrue, hooklinev1.ReasonSucceeded, "old"),
		}, awaiting},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := &hooklinev1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Generation: gen}}
			sub.Status.Conditions = tt.conds
			got := subscriptionDeliveryOutcome(sub, dispatcher, ready)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(outcome{})); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
		})
	}
	// A subscription the controller itself finds not ready is not the
	// dispatcher's to judge; only called with a ready outcome, but a
	// healthy endpoint must not decorate anything else.
	sub := &hooklinev1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Generation: gen}}
	sub.Status.Conditions = []metav1.Condition{accepted, healthy}
	progressing := outcome{phase: phaseProgressing, reason: hooklinev1.ReasonSecretNotReady, message: "waiting"}
	if got := subscriptionDeliveryOutcome(sub, dispatcher, progressing); got != progressing {
		t.Errorf("outcome = %+v, want %+v unchanged", got, progressing)
	}
}

func TestSubscriptionDispatcherConditionsChanged(t *testing.T) {
	c := func(typ string, status metav1.ConditionStatus, reason, msg string, gen int64) metav1.Condition {
		return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen}
	}
	base := []metav1.Condition{
		c(hooklinev1.ConditionReady, metav1.ConditionTrue, hooklinev1.ReasonSucceeded, "Valid", 2),
		c(hooklinev1.ConditionAccepted, metav1.ConditionTrue, hooklinev1.ReasonAccepted, "served", 2),
		c(hooklinev1.ConditionEndpointHealthy, metav1.ConditionTrue, hooklinev1.ReasonDeliverySucceeded, "ok", 2),
		c(hooklinev1.ConditionSuspended, metav1.ConditionFalse, hooklinev1.ReasonNotSuspended, "not held", 2),
	}
	with := func(i int, m func(*metav1.Condition)) []metav1.Condition {
		out := slices.Clone(base)
		m(&out[i])
		return out
	}
	tests := []struct {
		name     string
		old, new []metav1.Condition
		want     bool
	}{
		{"nothing changed", base, base, false},
		{"a message changed", base, with(2, func(c *metav1.Condition) { c.Message = "3 consecutive failures since the last success" }), false},
		{"the controller's Ready changed", base, with(0, func(c *metav1.Condition) { c.Status = metav1.ConditionFalse }), false},
		{"health status changed", base, with(2, func(c *metav1.Condition) { c.Status = metav1.ConditionFalse }), true},
		{"suspended reason changed", base, with(3, func(c *metav1.Condition) { c.Reason = hooklinev1.ReasonSustainedFailure }), true},
		{"accepted caught up with a generation", base, with(1, func(c *metav1.Condition) { c.ObservedGeneration = 3 }), true},
		{"first written", base[:1], base, true},
		{"removed", base, base[:1], true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &hooklinev1.WebhookSubscription{ObjectMeta: metav1.ObjectMeta{Generation: 3}}
			n := o.DeepCopy()
			o.Status.Conditions, n.Status.Conditions = tt.old, tt.new
			if got := subscriptionDispatcherConditionsChanged.Update(event.UpdateEvent{ObjectOld: o, ObjectNew: n}); got != tt.want {
				t.Errorf("passes = %t, want %t", got, tt.want)
			}
		})
	}
	if subscriptionDispatcherConditionsChanged.Create(event.CreateEvent{Object: &hooklinev1.WebhookSubscription{}}) {
		t.Error("passes creations, which the generation predicate already does")
	}
}

// TestSubscriptionCheckSpec covers what the controller reports for a spec
// the API server admitted although the rules refuse it: an API server
// without the admission webhook or without the CRD's newer rules.
func TestSubscriptionCheckSpec(t *testing.T) {
	r := &WebhookSubscriptionReconciler{}
	for _, tt := range []struct {
		name       string
		filter     string
		url        string
		wantReason string
		wantMsg    string
	}{
		{"unknown key", `event.tpye == "order.created"`, "", hooklinev1.ReasonFilterInvalid,
			`spec.filter: Invalid value: line 1, column 6: event has no key "tpye" (keys: id, type, time, data)`},
		{"port out of range", "", "https://example.com:99999/hooks", hooklinev1.ReasonInvalidSpec,
			"spec.url: Invalid value: port must be a number from 1 to 65535"},
		{"valid", `event.type == "order.created"`, "", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sub := &hooklinev1.WebhookSubscription{Spec: validSubscriptionSpec()}
			sub.Spec.Filter = tt.filter
			if tt.url != "" {
				sub.Spec.URL = tt.url
			}
			o, done, err := r.checkSpec(context.Background(), sub, types.NamespacedName{})
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantReason == "" {
				if done {
					t.Fatalf("checkSpec = %+v, want to go on", o)
				}
				return
			}
			if !done || o.phase != phaseStalled || o.reason != tt.wantReason || o.message != tt.wantMsg {
				t.Errorf("checkSpec = %+v (done %v), want Stalled %s %q", o, done, tt.wantReason, tt.wantMsg)
			}
		})
	}
}
