package report

import (
	"context"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

func keyOf(s *hooklinev1.WebhookSubscription) Key {
	return Key{Namespace: s.Namespace, Name: s.Name, UID: string(s.UID)}
}

func condition(t *testing.T, s *hooklinev1.WebhookSubscription, typ string) metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(s.Status.Conditions, typ)
	if c == nil {
		t.Fatalf("%s/%s has no %s condition; conditions: %+v", s.Namespace, s.Name, typ, s.Status.Conditions)
	}
	return *c
}

// managedStatusFields returns the status fields a manager owns through the
// status subresource, as the fieldsV1 map under f:status.
func managedStatusFields(t *testing.T, s *hooklinev1.WebhookSubscription, manager string) map[string]any {
	t.Helper()
	for _, e := range s.ManagedFields {
		if e.Manager != manager || e.Subresource != "status" {
			continue
		}
		if e.Operation != metav1.ManagedFieldsOperationApply {
			t.Errorf("manager %s: operation %s, want Apply", manager, e.Operation)
		}
		var fields map[string]any
		if err := json.Unmarshal(e.FieldsV1.Raw, &fields); err != nil {
			t.Fatal(err)
		}
		status, _ := fields["f:status"].(map[string]any)
		return status
	}
	t.Fatalf("no managedFields entry of %s for the status subresource: %+v", manager, s.ManagedFields)
	return nil
}

func sortedKeys(m map[string]any) []string {
	keys := slices.Collect(maps.Keys(m))
	sort.Strings(keys)
	return keys
}

func ownedConditionKeys(t *testing.T, status map[string]any) []string {
	t.Helper()
	conds, _ := status["f:conditions"].(map[string]any)
	var keys []string
	for k := range conds {
		if k != "." {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

var dispatcherConditionKeys = []string{`k:{"type":"Accepted"}`, `k:{"type":"EndpointHealthy"}`, `k:{"type":"Suspended"}`}

func TestWriterWritesDeliveryHealth(t *testing.T) {
	ns := newNamespace(t)
	createSubscription(t, ns, "billing")
	clk := clocktesting.NewFakeClock(suiteStart)
	h := newHarness(t, clk)
	h.setState(ns, "billing", State{Accepted: true, AcceptedMessage: "Served by hookline-system/default", Backlog: 7})

	var totals Totals
	totals = Add(totals, Outcome{Time: suiteStart.Add(time.Second), Success: true, StatusCode: 200})
	totals = Add(totals, Outcome{Time: suiteStart.Add(2 * time.Second), Success: true, StatusCode: 204})
	for i := range 3 {
		totals = Add(totals, Outcome{Time: suiteStart.Add(time.Duration(3+i) * time.Second), StatusCode: 503, Class: "HTTPStatus", Message: "upstream unavailable"})
	}
	h.setTotals(ns, "billing", totals)
	h.start()
	h.tick()

	got := getSubscription(t, ns, "billing")
	wantDelivery := `{"lastAttemptTime":"2026-06-01T12:00:05Z","lastSuccessTime":"2026-06-01T12:00:02Z",` +
		`"lastFailure":{"time":"2026-06-01T12:00:05Z","statusCode":503,"class":"HTTPStatus","message":"upstream unavailable"},` +
		`"failingSince":"2026-06-01T12:00:03Z","consecutiveFailures":3,"delivered":2,"failed":3,"backlog":7}`
	if data, _ := json.Marshal(got.Status.Delivery); string(data) != wantDelivery {
		t.Errorf("status.delivery =\n%s\nwant\n%s", data, wantDelivery)
	}
	tick1 := metav1.NewTime(suiteStart.Add(testInterval))
	for _, want := range []metav1.Condition{
		{Type: "Accepted", Status: "True", Reason: "Accepted", Message: "Served by hookline-system/default"},
		{Type: "EndpointHealthy", Status: "False", Reason: "DeliveryFailing", Message: "3 consecutive failures, last: HTTP 503 at 2026-06-01T12:00:05Z: upstream unavailable"},
		{Type: "Suspended", Status: "False", Reason: "NotSuspended", Message: "Deliveries are not held"},
	} {
		c := condition(t, got, want.Type)
		if c.Status != want.Status || c.Reason != want.Reason || c.Message != want.Message || c.ObservedGeneration != got.Generation || !c.LastTransitionTime.Equal(&tick1) {
			t.Errorf("condition %s = %+v, want %+v at generation %d since %s", want.Type, c, want, got.Generation, tick1)
		}
	}
	owned := managedStatusFields(t, got, "hookline-dispatcher")
	if keys := sortedKeys(owned); !reflect.DeepEqual(keys, []string{"f:conditions", "f:delivery"}) {
		t.Errorf("hookline-dispatcher owns status fields %v, want only conditions and delivery", keys)
	}
	if keys := ownedConditionKeys(t, owned); !reflect.DeepEqual(keys, dispatcherConditionKeys) {
		t.Errorf("hookline-dispatcher owns conditions %v, want %v", keys, dispatcherConditionKeys)
	}
	if h.writer.Writes() != 1 || statusPatches.get(ns, "billing") != 1 {
		t.Errorf("writes = %d, patches = %d, want 1 and 1", h.writer.Writes(), statusPatches.get(ns, "billing"))
	}

	// Nothing new: nothing written.
	h.tick()
	h.tick()
	if h.writer.Writes() != 1 || statusPatches.get(ns, "billing") != 1 {
		t.Errorf("after idle ticks: writes = %d, patches = %d, want still 1 and 1", h.writer.Writes(), statusPatches.get(ns, "billing"))
	}

	// A success ends the run of failures; Accepted keeps its transition time.
	h.setTotals(ns, "billing", Add(totals, Outcome{Time: suiteStart.Add(35 * time.Second), Success: true, StatusCode: 200}))
	h.tick()
	got = getSubscription(t, ns, "billing")
	if d := got.Status.Delivery; d.Delivered != 3 || d.Failed != 3 || d.ConsecutiveFailures != 0 || d.LastFailure == nil || d.LastFailure.StatusCode != 503 {
		t.Errorf("status.delivery after a success = %+v, want 3 delivered, 3 failed, none in a row, the 503 kept", d)
	}
	tick4 := metav1.NewTime(suiteStart.Add(4 * testInterval))
	if c := condition(t, got, "EndpointHealthy"); c.Status != "True" || c.Reason != "DeliverySucceeded" || !c.LastTransitionTime.Equal(&tick4) {
		t.Errorf("EndpointHealthy = %+v, want True since %s", c, tick4)
	}
	if c := condition(t, got, "Accepted"); !c.LastTransitionTime.Equal(&tick1) {
		t.Errorf("Accepted lastTransitionTime = %s, want %s: its status did not change", c.LastTransitionTime, tick1)
	}
}

// applyAsController writes status the way the controller does: its own
// field manager, its own conditions, observedGeneration and dispatcher.
func applyAsController(t *testing.T, ns, name string, conditions []metav1.Condition) {
	t.Helper()
	var conds []any
	for _, c := range conditions {
		conds = append(conds, map[string]any{
			"type": c.Type, "status": string(c.Status), "reason": c.Reason, "message": c.Message,
			"lastTransitionTime": suiteStart.Format(time.RFC3339), "observedGeneration": int64(1),
		})
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "hookline.dev/v1alpha1", "kind": "WebhookSubscription",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"status": map[string]any{
			"observedGeneration": int64(1),
			"dispatcher":         "hookline-system/default",
			"conditions":         conds,
		},
	}}
	if _, err := dyn.Resource(subscriptionsResource).Namespace(ns).ApplyStatus(context.Background(), name, u,
		metav1.ApplyOptions{FieldManager: "hookline-controller", Force: true}); err != nil {
		t.Fatalf("applying the controller's status: %v", err)
	}
}

func conditionTypes(s *hooklinev1.WebhookSubscription) []string {
	var types []string
	for _, c := range s.Status.Conditions {
		types = append(types, c.Type)
	}
	sort.Strings(types)
	return types
}

func TestWriterSharesStatusWithController(t *testing.T) {
	ns := newNamespace(t)
	createSubscription(t, ns, "billing")
	applyAsController(t, ns, "billing", []metav1.Condition{{Type: "Ready", Status: "True", Reason: "Succeeded", Message: "Delivering"}})

	clk := clocktesting.NewFakeClock(suiteStart)
	h := newHarness(t, clk)
	h.setState(ns, "billing", State{Accepted: true})
	totals := Add(Totals{}, Outcome{Time: suiteStart, Success: true})
	h.setTotals(ns, "billing", totals)
	h.start()
	h.tick()

	got := getSubscription(t, ns, "billing")
	if types := conditionTypes(got); !reflect.DeepEqual(types, []string{"Accepted", "EndpointHealthy", "Ready", "Suspended"}) {
		t.Errorf("conditions after the dispatcher's write: %v, want the controller's Ready and the dispatcher's three", types)
	}
	if got.Status.ObservedGeneration != 1 || got.Status.Dispatcher != "hookline-system/default" {
		t.Errorf("controller's fields = %d, %q; the dispatcher must leave them", got.Status.ObservedGeneration, got.Status.Dispatcher)
	}

	// The controller moves on to other conditions; the dispatcher's stay.
	applyAsController(t, ns, "billing", []metav1.Condition{
		{Type: "Ready", Status: "False", Reason: "Progressing", Message: "Waiting"},
		{Type: "Reconciling", Status: "True", Reason: "Progressing", Message: "Waiting"},
	})
	got = getSubscription(t, ns, "billing")
	if types := conditionTypes(got); !reflect.DeepEqual(types, []string{"Accepted", "EndpointHealthy", "Ready", "Reconciling", "Suspended"}) {
		t.Errorf("conditions after the controller's write: %v", types)
	}

	// The dispatcher writes again; the controller's stay, as they were.
	h.setTotals(ns, "billing", Add(totals, Outcome{Time: suiteStart.Add(11 * time.Second), Success: true}))
	h.tick()
	got = getSubscription(t, ns, "billing")
	if types := conditionTypes(got); !reflect.DeepEqual(types, []string{"Accepted", "EndpointHealthy", "Ready", "Reconciling", "Suspended"}) {
		t.Errorf("conditions after the dispatcher's second write: %v", types)
	}
	if c := condition(t, got, "Ready"); c.Status != "False" || c.Reason != "Progressing" {
		t.Errorf("Ready = %+v, want the controller's False/Progressing", c)
	}
	if got.Status.Delivery == nil || got.Status.Delivery.Delivered != 2 {
		t.Errorf("status.delivery = %+v, want 2 delivered", got.Status.Delivery)
	}

	dispatcher := managedStatusFields(t, got, "hookline-dispatcher")
	if keys := ownedConditionKeys(t, dispatcher); !reflect.DeepEqual(keys, dispatcherConditionKeys) {
		t.Errorf("hookline-dispatcher owns conditions %v, want %v", keys, dispatcherConditionKeys)
	}
	if keys := sortedKeys(dispatcher); !reflect.DeepEqual(keys, []string{"f:conditions", "f:delivery"}) {
		t.Errorf("hookline-dispatcher owns status fields %v, want only conditions and delivery", keys)
	}
	controller := managedStatusFields(t, got, "hookline-controller")
	if keys := ownedConditionKeys(t, controller); !reflect.DeepEqual(keys, []string{`k:{"type":"Ready"}`, `k:{"type":"Reconciling"}`}) {
		t.Errorf("hookline-controller owns conditions %v, want Ready and Reconciling", keys)
	}
	if _, ok := controller["f:delivery"]; ok {
		t.Errorf("hookline-controller owns status.delivery")
	}
}

func TestWriterBurstWritesOncePerInterval(t *testing.T) {
	ns := newNamespace(t)
	clk := clocktesting.NewFakeClock(suiteStart)
	h := newHarness(t, clk)
	names := []string{"a", "b", "c"}
	var keys []Key
	for _, n := range names {
		keys = append(keys, keyOf(createSubscription(t, ns, n)))
		h.setState(ns, n, State{Accepted: true})
	}
	h.start()

	const outcomes, ticks = 1000, 5
	want := map[string]int64{}
	totals := map[string]Totals{}
	now := suiteStart
	for i := range outcomes {
		k := keys[i%len(keys)]
		success := i%4 != 0
		if success {
			want[k.Name]++
		}
		totals[k.Name] = Add(totals[k.Name], Outcome{Time: now.Add(time.Duration(i) * time.Millisecond), Success: success, StatusCode: 200, Class: "HTTPStatus"})
		// The counts change with every outcome; a tick comes every 200.
		h.setTotals(ns, k.Name, totals[k.Name])
		if i%(outcomes/ticks) == outcomes/ticks-1 {
			before := map[string]int{}
			for _, n := range names {
				before[n] = statusPatches.get(ns, n)
			}
			h.tick()
			for _, n := range names {
				if d := statusPatches.get(ns, n) - before[n]; d > 1 {
					t.Errorf("subscription %s: %d status patches in one interval, want at most 1", n, d)
				}
			}
		}
	}
	if w := h.writer.Writes(); w > int64(ticks*len(names)) || w < int64(len(names)) {
		t.Errorf("writes = %d, want between %d and %d (once per subscription per interval)", w, len(names), ticks*len(names))
	}
	for _, n := range names {
		if p := statusPatches.get(ns, n); p > ticks {
			t.Errorf("subscription %s: %d status patches over %d intervals", n, p, ticks)
		}
		got := getSubscription(t, ns, n).Status.Delivery
		var total int64
		if got != nil {
			total = got.Delivered + got.Failed
		}
		if got == nil || got.Delivered != want[n] || total != int64(len(recordedFor(n, outcomes, names))) {
			t.Errorf("subscription %s: status.delivery = %+v, want %d delivered of %d", n, got, want[n], len(recordedFor(n, outcomes, names)))
		}
	}
}

// recordedFor lists the outcome indexes the burst recorded for name.
func recordedFor(name string, outcomes int, names []string) []int {
	var out []int
	for i := range outcomes {
		if names[i%len(names)] == name {
			out = append(out, i)
		}
	}
	return out
}

// The totals Lookup reports are the dispatcher's, already counted once:
// the writer reports them as they are, and a new leader does not add them
// to what the status holds.
func TestWriterReportsTotalsAsGiven(t *testing.T) {
	ns := newNamespace(t)
	createSubscription(t, ns, "billing")
	clk := clocktesting.NewFakeClock(suiteStart)
	delivered := func() int64 {
		d := getSubscription(t, ns, "billing").Status.Delivery
		if d == nil {
			return 0
		}
		return d.Delivered
	}
	h := newHarness(t, clk)
	h.setState(ns, "billing", State{Accepted: true})
	h.setTotals(ns, "billing", Totals{Delivered: 5, LastAttempt: suiteStart, LastSuccess: suiteStart})
	h.start()
	h.tick()
	if got := delivered(); got != 5 {
		t.Fatalf("delivered = %d, want 5", got)
	}
	h.setTotals(ns, "billing", Totals{Delivered: 8, LastAttempt: suiteStart, LastSuccess: suiteStart})
	h.tick()
	if got := delivered(); got != 8 {
		t.Errorf("delivered = %d, want the 8 Lookup reports", got)
	}
	h.stop()

	// A new leader: the dispatcher's totals (say, after a crash made it
	// deliver some events again, counted once) replace the status's.
	next := newHarness(t, clk)
	next.setState(ns, "billing", State{Accepted: true})
	next.setTotals(ns, "billing", Totals{Delivered: 12, LastAttempt: suiteStart, LastSuccess: suiteStart})
	next.start()
	next.tick()
	if got := delivered(); got != 12 {
		t.Errorf("delivered = %d after the new leader's write, want 12", got)
	}
}

func TestWriterIdleSubscription(t *testing.T) {
	ns := newNamespace(t)
	createSubscription(t, ns, "refused")
	clk := clocktesting.NewFakeClock(suiteStart)
	h := newHarness(t, clk)
	h.setState(ns, "refused", State{
		AcceptedReason:  hooklinev1.ReasonNamespaceNotAllowed,
		AcceptedMessage: "Dispatcher hookline-system/default does not admit namespace " + ns,
		SuspendedReason: hooklinev1.ReasonSuspendedBySpec, SuspendedMessage: "spec.suspend is true",
		Backlog: 4,
	})
	h.start()
	h.tick()

	got := getSubscription(t, ns, "refused")
	for _, want := range []metav1.Condition{
		{Type: "Accepted", Status: "False", Reason: "NamespaceNotAllowed", Message: "Dispatcher hookline-system/default does not admit namespace " + ns},
		{Type: "EndpointHealthy", Status: "Unknown", Reason: "NoDeliveries", Message: "No delivery has been attempted yet"},
		{Type: "Suspended", Status: "True", Reason: "SuspendedBySpec", Message: "spec.suspend is true"},
	} {
		if c := condition(t, got, want.Type); c.Status != want.Status || c.Reason != want.Reason || c.Message != want.Message {
			t.Errorf("condition %s = %+v, want %+v", want.Type, c, want)
		}
	}
	if data, _ := json.Marshal(got.Status.Delivery); string(data) != `{"backlog":4}` {
		t.Errorf("status.delivery = %s, want only the backlog", data)
	}
	h.tick()
	if w := h.writer.Writes(); w != 1 {
		t.Errorf("writes = %d after an idle tick, want 1", w)
	}
	h.stop()

	// A new leader finds the status as it would write it: no write.
	next := newHarness(t, clk)
	next.states = h.states
	next.start()
	next.tick()
	if w := next.writer.Writes(); w != 0 || statusPatches.get(ns, "refused") != 1 {
		t.Errorf("new leader: writes = %d, patches = %d, want 0 and still 1", w, statusPatches.get(ns, "refused"))
	}
	// The backlog moves: written.
	next.setState(ns, "refused", State{
		AcceptedReason:  hooklinev1.ReasonNamespaceNotAllowed,
		AcceptedMessage: "Dispatcher hookline-system/default does not admit namespace " + ns,
		SuspendedReason: hooklinev1.ReasonSuspendedBySpec, SuspendedMessage: "spec.suspend is true",
		Backlog: 0,
	})
	next.tick()
	if d := getSubscription(t, ns, "refused").Status.Delivery; d != nil && d.Backlog != 0 {
		t.Errorf("backlog = %d, want 0", d.Backlog)
	}
	if w := next.writer.Writes(); w != 1 {
		t.Errorf("writes = %d after the backlog changed, want 1", w)
	}
}

func TestWriterContinuesFromStatus(t *testing.T) {
	ns := newNamespace(t)
	createSubscription(t, ns, "billing")
	// What an earlier leader wrote.
	earlier := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "hookline.dev/v1alpha1", "kind": "WebhookSubscription",
		"metadata": map[string]any{"name": "billing", "namespace": ns},
		"status": map[string]any{"delivery": map[string]any{
			"delivered": int64(100), "failed": int64(4), "deadLettered": int64(1), "consecutiveFailures": int64(2),
			"lastAttemptTime": "2026-05-31T10:00:00Z", "lastSuccessTime": "2026-05-31T09:00:00Z",
			"lastFailure": map[string]any{"time": "2026-05-31T10:00:00Z", "statusCode": int64(500), "class": "HTTPStatus"},
		}},
	}}
	if _, err := dyn.Resource(subscriptionsResource).Namespace(ns).ApplyStatus(context.Background(), "billing", earlier,
		metav1.ApplyOptions{FieldManager: "hookline-dispatcher", Force: true}); err != nil {
		t.Fatal(err)
	}
	clk := clocktesting.NewFakeClock(suiteStart)
	h := newHarness(t, clk)
	// No totals from the dispatcher yet: the status's counts are kept.
	h.setState(ns, "billing", State{Accepted: true})
	h.start()
	h.tick()
	got := getSubscription(t, ns, "billing")
	kept := `{"lastAttemptTime":"2026-05-31T10:00:00Z","lastSuccessTime":"2026-05-31T09:00:00Z",` +
		`"lastFailure":{"time":"2026-05-31T10:00:00Z","statusCode":500,"class":"HTTPStatus"},` +
		`"consecutiveFailures":2,"delivered":100,"failed":4,"deadLettered":1}`
	if data, _ := json.Marshal(got.Status.Delivery); string(data) != kept {
		t.Errorf("status.delivery without totals =\n%s\nwant\n%s", data, kept)
	}
	if c := condition(t, got, "Accepted"); c.Status != "True" {
		t.Errorf("Accepted = %+v, want True", c)
	}

	// The dispatcher's totals start from the same status and count on.
	h.setTotals(ns, "billing", Add(TotalsFromStatus(got.Status.Delivery),
		Outcome{Time: suiteStart, StatusCode: 502, Class: "HTTPStatus", DeadLettered: true}))
	h.tick()
	got = getSubscription(t, ns, "billing")
	want := `{"lastAttemptTime":"2026-06-01T12:00:00Z","lastSuccessTime":"2026-05-31T09:00:00Z",` +
		`"lastFailure":{"time":"2026-06-01T12:00:00Z","statusCode":502,"class":"HTTPStatus"},` +
		`"failingSince":"2026-06-01T12:00:00Z","consecutiveFailures":3,"delivered":100,"failed":5,"deadLettered":2}`
	if data, _ := json.Marshal(got.Status.Delivery); string(data) != want {
		t.Errorf("status.delivery =\n%s\nwant\n%s", data, want)
	}
	if c := condition(t, got, "EndpointHealthy"); c.Status != "False" || c.Message != "3 consecutive failures, last: HTTP 502 at 2026-06-01T12:00:00Z" {
		t.Errorf("EndpointHealthy = %+v, want False after the third failure in a row", c)
	}
}

func TestWriterForgetsGoneSubscriptions(t *testing.T) {
	ns := newNamespace(t)
	old := createSubscription(t, ns, "recreated")
	stale := createSubscription(t, ns, "deleted")
	clk := clocktesting.NewFakeClock(suiteStart)
	h := newHarness(t, clk)
	// The writer knows both, and what the dispatcher counted for the
	// first; the dispatcher reports no totals for its namesake.
	h.setState(ns, "recreated", State{Accepted: true, Totals: &Totals{Delivered: 1, LastAttempt: suiteStart, LastSuccess: suiteStart}})
	h.setState(ns, "deleted", State{Accepted: true})
	h.start()
	h.tick()
	if d := getSubscription(t, ns, "recreated").Status.Delivery; d == nil || d.Delivered != 1 {
		t.Fatalf("status.delivery = %+v, want 1 delivered", d)
	}

	ctx := context.Background()
	if err := dyn.Resource(subscriptionsResource).Namespace(ns).Delete(ctx, "recreated", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	fresh := createSubscription(t, ns, "recreated")
	if fresh.UID == old.UID {
		t.Fatal("the recreated subscription kept its uid")
	}
	if err := dyn.Resource(subscriptionsResource).Namespace(ns).Delete(ctx, "deleted", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.setState(ns, "recreated", State{Accepted: true})
	// A cache that has not seen the deletion yet, with a change to write.
	h.setState(ns, "deleted", State{Accepted: true, Backlog: 3})
	h.setStale(stale)
	h.tick()

	got := getSubscription(t, ns, "recreated")
	if d := got.Status.Delivery; d != nil && (d.Delivered != 0 || d.LastAttemptTime != nil) {
		t.Errorf("recreated subscription: status.delivery = %+v, want no counts of its namesake", d)
	}
	if c := condition(t, got, "EndpointHealthy"); c.Reason != "NoDeliveries" {
		t.Errorf("recreated subscription: EndpointHealthy = %+v, want NoDeliveries", c)
	}
	_, err := dyn.Resource(subscriptionsResource).Namespace(ns).Get(ctx, "deleted", metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("getting the deleted subscription after the tick: %v, want NotFound: the status write must not create it", err)
	}
}

func TestWriterRetriesFailedWrites(t *testing.T) {
	ns := newNamespace(t)
	createSubscription(t, ns, "billing")
	clk := clocktesting.NewFakeClock(suiteStart)
	h := newHarness(t, clk)
	h.setState(ns, "billing", State{Accepted: true})
	totals := Add(Totals{}, Outcome{Time: suiteStart, Success: true})
	h.setTotals(ns, "billing", totals)
	statusPatches.failNext(ns, "billing", 2)
	h.start()

	for range 2 {
		h.tick()
		if d := getSubscription(t, ns, "billing").Status.Delivery; d != nil {
			t.Fatalf("status.delivery = %+v after a failed write, want none", d)
		}
	}
	h.setTotals(ns, "billing", Add(totals, Outcome{Time: suiteStart.Add(time.Second), Success: true}))
	h.tick()
	if d := getSubscription(t, ns, "billing").Status.Delivery; d == nil || d.Delivered != 2 {
		t.Errorf("status.delivery = %+v, want the 2 deliveries", d)
	}
	if w := h.writer.Writes(); w != 1 {
		t.Errorf("writes = %d, want 1 successful write", w)
	}
	if p := statusPatches.get(ns, "billing"); p != 1 {
		t.Errorf("%d successful status patches, want 1", p)
	}
}

func TestWriterReportsFilterErrors(t *testing.T) {
	ns := newNamespace(t)
	createSubscription(t, ns, "billing")
	clk := clocktesting.NewFakeClock(suiteStart)
	h := newHarness(t, clk)
	h.setState(ns, "billing", State{Accepted: true, AcceptedMessage: "Served"})
	totals := AddFilterError(Totals{}, "no such key: total")
	h.setTotals(ns, "billing", AddFilterError(totals, "no such key: total"))
	h.start()
	h.tick()
	want := "Served; 2 events skipped because the filter failed at runtime, last: no such key: total"
	if c := condition(t, getSubscription(t, ns, "billing"), "Accepted"); c.Status != "True" || c.Message != want {
		t.Errorf("Accepted = %+v, want True with message %q", c, want)
	}

	// A new spec (a new filter, perhaps): the dispatcher starts the count
	// again, and Accepted describes the new generation.
	patch := []byte(`{"spec":{"filter":"event.data.total > 1"}}`)
	if _, err := dyn.Resource(subscriptionsResource).Namespace(ns).Patch(context.Background(), "billing",
		"application/merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	h.setTotals(ns, "billing", Totals{})
	h.tick()
	got := getSubscription(t, ns, "billing")
	if c := condition(t, got, "Accepted"); c.Message != "Served" || c.ObservedGeneration != got.Generation {
		t.Errorf("Accepted = %+v, want message %q at generation %d", c, "Served", got.Generation)
	}
}

// TestWriterSuspendsAfterSustainedFailure runs a subscription whose endpoint
// fails every attempt on a fake clock: EndpointHealthy turns False after
// three failures, Suspended only once the failures have lasted
// suspendAfter, exactly once, and a spec change resumes it with the clock
// of sustained failure restarted.
func TestWriterSuspendsAfterSustainedFailure(t *testing.T) {
	ns := newNamespace(t)
	createSubscription(t, ns, "flaky")
	clk := clocktesting.NewFakeClock(suiteStart)
	h := newHarness(t, clk)
	var notified []string
	var notifiedMu sync.Mutex
	h.onSuspended = func(obj *hooklinev1.WebhookSubscription, msg string) {
		notifiedMu.Lock()
		defer notifiedMu.Unlock()
		notified = append(notified, obj.Name+": "+msg)
	}
	const suspendAfter = time.Minute
	h.setState(ns, "flaky", State{Accepted: true, SuspendAfter: suspendAfter})
	var totals Totals
	fail := func() {
		totals = Add(totals, Outcome{Time: clk.Now(), StatusCode: 500, Class: "HTTPStatus", Message: "boom"})
		h.setTotals(ns, "flaky", totals)
	}
	h.start()
	firstFailure := clk.Now()
	fail()
	h.tick()
	got := getSubscription(t, ns, "flaky")
	if d := got.Status.Delivery; d == nil || d.FailingSince == nil || !d.FailingSince.Time.Equal(firstFailure) {
		t.Fatalf("status.delivery = %+v, want failingSince %s", d, firstFailure)
	}
	// Failures for just under a minute: unhealthy early, not suspended.
	for clk.Since(firstFailure) < suspendAfter-testInterval {
		fail()
		h.tick()
	}
	got = getSubscription(t, ns, "flaky")
	if c := condition(t, got, "EndpointHealthy"); c.Status != "False" || c.Reason != "DeliveryFailing" {
		t.Errorf("EndpointHealthy after %s of failures = %+v, want False DeliveryFailing", clk.Since(firstFailure), c)
	}
	if c := condition(t, got, "Suspended"); c.Status != "False" {
		t.Fatalf("Suspended after %s of failures (under %s) = %+v, want False", clk.Since(firstFailure), suspendAfter, c)
	}
	fail()
	h.tick()
	got = getSubscription(t, ns, "flaky")
	want := "Every delivery attempt failed since 2026-06-01T12:00:00Z (longer than spec.delivery.suspendAfter, 1m0s); " +
		"events are held until the spec changes or spec.suspend is set and cleared"
	if c := condition(t, got, "Suspended"); c.Status != "True" || c.Reason != "SustainedFailure" || c.Message != want {
		t.Fatalf("Suspended after %s of failures = %+v, want True SustainedFailure %q", clk.Since(firstFailure), c, want)
	}
	// The replicas hold it, which stops the clock of sustained failure;
	// further ticks keep it suspended and notify no more.
	totals.FailingSince = time.Time{}
	h.setTotals(ns, "flaky", totals)
	h.tick()
	h.tick()
	got = getSubscription(t, ns, "flaky")
	if c := condition(t, got, "Suspended"); c.Status != "True" || c.Reason != "SustainedFailure" {
		t.Errorf("Suspended on later ticks = %+v, want still True", c)
	}
	notifiedMu.Lock()
	if len(notified) != 1 || !strings.HasPrefix(notified[0], "flaky: Every delivery attempt failed") {
		t.Errorf("notified %q, want one notice for flaky", notified)
	}
	notifiedMu.Unlock()

	// A spec change resumes it, with the clock restarted.
	patch := []byte(`{"spec":{"url":"https://billing.example.com/hooks/v2"}}`)
	if _, err := dyn.Resource(subscriptionsResource).Namespace(ns).Patch(context.Background(), "flaky", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	h.tick()
	got = getSubscription(t, ns, "flaky")
	if c := condition(t, got, "Suspended"); c.Status != "False" || c.ObservedGeneration != got.Generation {
		t.Errorf("Suspended after a spec change = %+v, want False at generation %d", c, got.Generation)
	}
	if d := got.Status.Delivery; d.FailingSince != nil {
		t.Errorf("failingSince after resuming = %s, want unset until the next failure", d.FailingSince)
	}
	resumed := clk.Now()
	fail()
	h.tick()
	got = getSubscription(t, ns, "flaky")
	if d := got.Status.Delivery; d.FailingSince == nil || !d.FailingSince.Time.Equal(resumed) {
		t.Errorf("failingSince after a failure past the resume = %v, want %s", d.FailingSince, resumed)
	}
	if c := condition(t, got, "Suspended"); c.Status != "False" {
		t.Errorf("Suspended right after resuming = %+v, want False: the clock restarted", c)
	}
}

// TestWriterPrompt: a prompted subscription whose Accepted condition does
// not describe the generation yet is written at once, without a tick; one
// whose Accepted condition already does is not written again.
func TestWriterPrompt(t *testing.T) {
	ns := newNamespace(t)
	sub := createSubscription(t, ns, "new")
	createSubscription(t, ns, "other")
	clk := clocktesting.NewFakeClock(suiteStart)
	h := newHarness(t, clk)
	h.setState(ns, "new", State{Accepted: true, AcceptedMessage: "Served"})
	h.start()
	// The clock never moves in this test: every write comes from a prompt.
	eventually(t, clk.HasWaiters, "the writer to wait for its first tick")

	accepted := func(name string) metav1.Condition {
		return condition(t, getSubscription(t, ns, name), "Accepted")
	}
	h.writer.Prompt(ns, "new", sub.Generation)
	eventually(t, func() bool { return h.writer.Writes() == 1 }, "the prompted status to be written")
	if c := accepted("new"); c.Status != "True" || c.Message != "Served" || c.ObservedGeneration != sub.Generation {
		t.Errorf("Accepted after a prompt = %+v, want True, %q at generation %d", c, "Served", sub.Generation)
	}

	// Already described: a prompt writes nothing, though a tick would (the
	// backlog moved). The prompt for another subscription, queued after
	// it, tells when it was handled.
	h.setState(ns, "new", State{Accepted: true, AcceptedMessage: "Served", Backlog: 5})
	h.setState(ns, "other", State{Accepted: true})
	h.writer.Prompt(ns, "new", sub.Generation)
	h.writer.Prompt(ns, "other", 1)
	// Writes counts an apply once it returned, the patch counter once it
	// was sent.
	eventually(t, func() bool { return h.writer.Writes() == 2 }, "the second prompted status to be written")
	if p := statusPatches.get(ns, "new"); p != 1 {
		t.Errorf("%d status patches of a subscription whose Accepted condition describes the prompted generation, want still 1", p)
	}
	if p := statusPatches.get(ns, "other"); p != 1 {
		t.Errorf("%d status patches of the other subscription, want 1", p)
	}

	// A new spec: written at once again.
	patch := []byte(`{"spec":{"url":"https://billing.example.com/hooks/v2"}}`)
	u, err := dyn.Resource(subscriptionsResource).Namespace(ns).Patch(context.Background(), "new", types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	generation := u.GetGeneration()
	if generation == sub.Generation {
		t.Fatalf("generation %d did not change with the spec", generation)
	}
	h.writer.Prompt(ns, "new", generation)
	eventually(t, func() bool { return h.writer.Writes() == 3 }, "the status of the new generation to be written")
	if p := statusPatches.get(ns, "new"); p != 2 {
		t.Errorf("%d status patches, want 2", p)
	}
	got := getSubscription(t, ns, "new")
	if c := condition(t, got, "Accepted"); c.ObservedGeneration != generation {
		t.Errorf("Accepted after a prompt for generation %d = %+v", generation, c)
	}
	if d := got.Status.Delivery; d == nil || d.Backlog != 5 {
		t.Errorf("status.delivery = %+v, want the backlog of the lookup, 5", d)
	}
	if !clk.Now().Equal(suiteStart) {
		t.Fatalf("the clock moved to %s: the writes may have come from a tick", clk.Now())
	}
}
