package dispatcher

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/report"
)

var statusTestTime = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// openQueue opens an embedded queue in a temporary directory.
func openQueue(tb testing.TB) *queue.Queue {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	q, err := queue.Open(ctx, queue.Config{DispatcherNamespace: "hookline-system", DispatcherName: "default",
		DataDir: tb.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatalf("opening the queue: %v", err)
	}
	tb.Cleanup(func() { _ = q.Close() })
	return q
}

// servingSubscriptions is the status writer's source over served
// subscriptions, with the informer's store filled directly.
func servingSubscriptions(tb testing.TB, q *queue.Queue, subs ...*hooklinev1.WebhookSubscription) *statusSource {
	tb.Helper()
	log := slog.New(slog.DiscardHandler)
	st := &store{self: "hookline-system/default"}
	st.subInf = cache.NewSharedIndexInformer(&cache.ListWatch{}, &unstructured.Unstructured{}, 0, cache.Indexers{})
	s := &subscriptions{subscriptionDeps: subscriptionDeps{instance: "default-0", log: log, clock: clocktesting.NewFakeClock(statusTestTime),
		store: st, queue: q, view: newProgressView(log), metrics: newMetrics()}, served: map[string]*served{}}
	src := &statusSource{subs: s, store: st, view: s.view, queue: q, metrics: s.metrics, log: log}
	for _, sub := range subs {
		inform(tb, src, sub)
		key := sub.Namespace + "/" + sub.Name
		obj, err := st.subscription(key)
		if err != nil {
			tb.Fatal(err)
		}
		sv := &served{key: report.Key{Namespace: sub.Namespace, Name: sub.Name, UID: string(sub.UID)}, token: queue.SubscriptionToken(string(sub.UID))}
		s.view.claimed(sv.token, laneRecord{UID: string(sub.UID), Namespace: sub.Namespace, Name: sub.Name, Owner: "default-0",
			Generation: sub.Generation, Totals: report.TotalsFromStatus(sub.Status.Delivery)}, 1)
		sv.state.Store(&deliveryState{obj: obj, generation: obj.Generation, accepted: true, reason: hooklinev1.ReasonAccepted, msg: "Served"})
		s.served[key] = sv
	}
	return src
}

// inform puts sub into the informer's store as a watch event would:
// converted once, as it arrives.
func inform(tb testing.TB, src *statusSource, sub *hooklinev1.WebhookSubscription) {
	tb.Helper()
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(sub)
	if err != nil {
		tb.Fatal(err)
	}
	obj, err := convertOnce[hooklinev1.WebhookSubscription](&unstructured.Unstructured{Object: u})
	if err != nil {
		tb.Fatal(err)
	}
	if err := src.store.subInf.GetStore().Update(obj); err != nil {
		tb.Fatal(err)
	}
}

// testSubscription is a subscription as the API server returns it once the
// controller and the dispatcher have written its status.
func testSubscription(ns, name string) *hooklinev1.WebhookSubscription {
	at := metav1.NewTime(statusTestTime)
	cond := func(typ, reason string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: reason, Message: reason + " for a while now", ObservedGeneration: 1, LastTransitionTime: at}
	}
	return &hooklinev1.WebhookSubscription{
		TypeMeta: metav1.TypeMeta{APIVersion: hooklinev1.GroupVersion.String(), Kind: "WebhookSubscription"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name), Generation: 1, ResourceVersion: "1000",
			Labels: map[string]string{"app.kubernetes.io/part-of": "billing"},
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply, APIVersion: "hookline.dev/v1alpha1", Time: &at,
					FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:url":{},"f:eventTypes":{},"f:signing":{"f:secretRef":{"f:name":{}}}}}`)}},
				{Manager: FieldManager, Operation: metav1.ManagedFieldsOperationApply, APIVersion: "hookline.dev/v1alpha1", Time: &at, Subresource: "status",
					FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:status":{"f:conditions":{"k:{\"type\":\"Accepted\"}":{".":{}}},"f:delivery":{"f:delivered":{}}}}`)}},
			}},
		Spec: hooklinev1.WebhookSubscriptionSpec{
			URL:        "https://billing.example.com/hooks/" + name,
			EventTypes: []string{"order.created", "order.*.paid", "invoice.>"},
			Signing:    hooklinev1.SigningSpec{SecretRef: hooklinev1.WebhookSecretReference{Name: "orders-signing"}},
			Headers:    []hooklinev1.Header{{Name: "X-Team", Value: ptr.To("billing")}},
		},
		Status: hooklinev1.WebhookSubscriptionStatus{
			ObservedGeneration: 1,
			Dispatcher:         "hookline-system/default",
			Conditions: []metav1.Condition{cond("Ready", "Succeeded"), cond("Accepted", "Accepted"),
				cond("EndpointHealthy", "DeliverySucceeded"), {Type: "Suspended", Status: metav1.ConditionFalse, Reason: "NotSuspended", Message: "Deliveries are not held", ObservedGeneration: 1, LastTransitionTime: at}},
			Delivery: &hooklinev1.DeliveryStatus{LastAttemptTime: &at, LastSuccessTime: &at, Delivered: 1042, Failed: 3},
		},
	}
}

// BenchmarkReportState is the status writer's lookup of one subscription,
// which a tick makes for every subscription served.
func BenchmarkReportState(b *testing.B) {
	q := openQueue(b)
	sub := testSubscription("team", "orders")
	s := servingSubscriptions(b, q, sub)
	s.BeforeTick(context.Background())
	b.ReportAllocs()
	for b.Loop() {
		if st, ok := s.Lookup("team", "orders"); !ok || st.Object.UID != sub.UID {
			b.Fatalf("reportState = %+v, %v", st, ok)
		}
	}
}

// TestReportStateFollowsTheInformer: the status writer gets the
// subscription the informer holds now, converted once as it arrived.
func TestReportStateFollowsTheInformer(t *testing.T) {
	sub := testSubscription("team", "orders")
	s := servingSubscriptions(t, openQueue(t), sub)

	first, ok := s.Lookup("team", "orders")
	if !ok || first.Object.Status.Delivery.Delivered != 1042 || !first.Accepted || first.AcceptedMessage != "Served" {
		t.Fatalf("reportState = %+v, %v; want the served subscription with 1042 delivered", first, ok)
	}
	if again, _ := s.Lookup("team", "orders"); again.Object != first.Object {
		t.Error("an unchanged subscription was decoded again")
	}

	// A status write lands in the informer before the subscription is
	// synced again: the writer sees it at once.
	changed := sub.DeepCopy()
	changed.ResourceVersion = "1001"
	changed.Status.Delivery.Delivered = 1043
	inform(t, s, changed)
	got, ok := s.Lookup("team", "orders")
	if !ok || got.Object.ResourceVersion != "1001" || got.Object.Status.Delivery.Delivered != 1043 {
		t.Fatalf("after an update: reportState = %+v, %v; want resourceVersion 1001 with 1043 delivered", got.Object, ok)
	}
	if again, _ := s.Lookup("team", "orders"); again.Object != got.Object {
		t.Error("the updated subscription was decoded on every lookup")
	}

	// Deleted and created again under the same name, and the informer
	// gives the new one the same resourceVersion by chance: a new uid.
	recreated := changed.DeepCopy()
	recreated.UID = "uid-recreated"
	inform(t, s, recreated)
	if got, ok := s.Lookup("team", "orders"); !ok || got.Object.UID != "uid-recreated" {
		t.Errorf("after re-creation: reportState object uid %q, want uid-recreated", got.Object.UID)
	}

	if err := s.store.subInf.GetStore().Delete(&unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"namespace": "team", "name": "orders"}}}); err != nil {
		t.Fatal(err)
	}
	if got, ok := s.Lookup("team", "orders"); ok {
		t.Errorf("after deletion: reportState = %+v, want none", got)
	}
}

// TestReportStateFromCheckpoints: the totals and backlog reported are those
// of the subscription's latest checkpoint; the dead letters kept are those
// read at the start of the tick, for every lookup in it, and the next tick
// reads them anew.
func TestReportStateFromCheckpoints(t *testing.T) {
	q := openQueue(t)
	sub := testSubscription("team", "orders")
	s := servingSubscriptions(t, q, sub)
	token := s.subs.served["team/orders"].token
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	report1 := func() report.State {
		t.Helper()
		st, ok := s.Lookup("team", "orders")
		if !ok {
			t.Fatal("the subscription is not reported")
		}
		var m dto.Metric
		if err := s.metrics.backlog.WithLabelValues("team", "orders").Write(&m); err != nil {
			t.Fatal(err)
		}
		if g := m.GetGauge().GetValue(); g != float64(st.Backlog) {
			t.Errorf("backlog gauge %v, want %d as reported", g, st.Backlog)
		}
		return st
	}
	if st := report1(); st.Backlog != 0 || st.Totals == nil || st.Totals.Delivered != 1042 {
		t.Errorf("before any checkpoint: backlog %d, totals %+v; want 0 and the status' 1042 delivered", st.Backlog, st.Totals)
	}

	s.view.apply(encodeRecordAt(t, token, laneRecord{UID: string(sub.UID), Namespace: "team", Name: "orders", Owner: "default-0",
		Generation: 1, Pending: 3, Moved: 4, Totals: report.Totals{Delivered: 1050}}, 2))
	if st := report1(); st.Backlog != 7 || st.Totals.Delivered != 1050 {
		t.Errorf("after a checkpoint: backlog %d, delivered %d; want 7 and 1050", st.Backlog, st.Totals.Delivered)
	}

	// A checkpoint of a newer generation than the informer's, or of none
	// yet: the subscription is not reported until a lane serves it.
	s.view.apply(encodeRecordAt(t, token, laneRecord{UID: string(sub.UID), Namespace: "team", Name: "orders", Owner: "default-0", Generation: 2}, 3))
	if st, ok := s.Lookup("team", "orders"); ok {
		t.Errorf("with a checkpoint of another generation: reported %+v", st)
	}
	s.view.apply(encodeRecordAt(t, token, laneRecord{UID: string(sub.UID), Namespace: "team", Name: "orders", Owner: "default-0", Generation: 1}, 4))

	deadLetter := func(seq uint64) {
		t.Helper()
		ev := queue.Stored{Seq: seq, Event: queue.Event{ID: fmt.Sprintf("evt-%d", seq), Namespace: "team", Type: "order.created", Time: statusTestTime, Data: []byte(`{}`)}}
		if err := q.DeadLetter(ctx, "team", "orders", string(sub.UID), false, ev, queue.Failure{Class: "HTTPError", StatusCode: 500, Attempts: 3}); err != nil {
			t.Fatal(err)
		}
	}
	deadLetter(1)
	deadLetter(2)
	s.BeforeTick(ctx)
	if st := report1(); st.DeadLettered != 2 {
		t.Errorf("dead letters kept = %d, want 2", st.DeadLettered)
	}
	deadLetter(3)
	if st := report1(); st.DeadLettered != 2 {
		t.Errorf("dead letters later in the same tick = %d, want still 2", st.DeadLettered)
	}
	s.BeforeTick(ctx)
	if st := report1(); st.DeadLettered != 3 {
		t.Errorf("dead letters at the next tick = %d, want 3", st.DeadLettered)
	}

	// The lane counts a dead letter in its checkpoint after storing it: a
	// checkpoint that arrives during a tick is reported at the next one,
	// with the counts read after it, so the totals never say more were
	// dead-lettered than are kept.
	deadLetter(4)
	s.view.apply(encodeRecordAt(t, token, laneRecord{UID: string(sub.UID), Namespace: "team", Name: "orders", Owner: "default-0",
		Generation: 1, Totals: report.Totals{DeadLettered: 4}}, 5))
	if st := report1(); st.Totals.DeadLettered != 0 || st.DeadLettered != 3 {
		t.Errorf("a checkpoint during the tick: totals say %d dead-lettered, %d kept; want the tick's 0 and 3", st.Totals.DeadLettered, st.DeadLettered)
	}
	s.BeforeTick(ctx)
	if st := report1(); st.Totals.DeadLettered != 4 || st.DeadLettered != 4 {
		t.Errorf("at the next tick: totals say %d dead-lettered, %d kept; want 4 and 4", st.Totals.DeadLettered, st.DeadLettered)
	}
}

// encodeRecordAt is rec as the progress stream hands it over, stored at seq.
func encodeRecordAt(t *testing.T, token string, rec laneRecord, seq uint64) queue.Checkpoint {
	t.Helper()
	cp := encodeRecord(token, rec)
	cp.Seq = seq
	return cp
}
