package controllers

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// statefulSetFixture is a StatefulSet at generation 4 whose controller saw
// observed, with every replica count set to n except those in mutate.
func statefulSetFixture(observed int64, n int32, mutate ...func(*appsv1.StatefulSetStatus)) *appsv1.StatefulSet {
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Generation: 4},
		Status: appsv1.StatefulSetStatus{
			ObservedGeneration: observed, Replicas: n, ReadyReplicas: n, AvailableReplicas: n, UpdatedReplicas: n, CurrentReplicas: n,
		},
	}
	for _, m := range mutate {
		m(&sts.Status)
	}
	return sts
}

func TestWebhookDispatcherAvailability(t *testing.T) {
	replicas := func(n int32) func(*hooklinev1.WebhookDispatcher) {
		return func(d *hooklinev1.WebhookDispatcher) {
			d.Spec.Replicas = ptr.To(n)
			d.Spec.Queue.External = &hooklinev1.ExternalQueue{URL: "nats://nats:4222"}
		}
	}
	tests := []struct {
		name string
		d    *hooklinev1.WebhookDispatcher
		sts  *appsv1.StatefulSet
		want outcome
	}{
		{"no StatefulSet yet", dispatcherFixture(), nil,
			outcome{phaseProgressing, hooklinev1.ReasonReplicasUnavailable, "0 of 1 dispatcher instances available"}},
		{"available", dispatcherFixture(), statefulSetFixture(4, 1),
			outcome{phaseReady, hooklinev1.ReasonSucceeded, "1 of 1 dispatcher instances available"}},
		{"replicas unset means one", dispatcherFixture(func(d *hooklinev1.WebhookDispatcher) { d.Spec.Replicas = nil }), statefulSetFixture(4, 1),
			outcome{phaseReady, hooklinev1.ReasonSucceeded, "1 of 1 dispatcher instances available"}},
		{"none available", dispatcherFixture(), statefulSetFixture(4, 0),
			outcome{phaseProgressing, hooklinev1.ReasonReplicasUnavailable, "0 of 1 dispatcher instances available"}},
		{"new spec not yet observed", dispatcherFixture(), statefulSetFixture(3, 1),
			outcome{phaseProgressing, hooklinev1.ReasonReplicasUnavailable, "1 of 1 dispatcher instances available, rollout in progress"}},
		{"rolling out", dispatcherFixture(replicas(3)), statefulSetFixture(4, 3, func(s *appsv1.StatefulSetStatus) { s.UpdatedReplicas = 1 }),
			outcome{phaseProgressing, hooklinev1.ReasonReplicasUnavailable, "3 of 3 dispatcher instances available, rollout in progress"}},
		{"scaling up", dispatcherFixture(replicas(3)), statefulSetFixture(4, 2),
			outcome{phaseProgressing, hooklinev1.ReasonReplicasUnavailable, "2 of 3 dispatcher instances available"}},
		{"ready but not yet available", dispatcherFixture(replicas(2)), statefulSetFixture(4, 2, func(s *appsv1.StatefulSetStatus) { s.AvailableReplicas = 1 }),
			outcome{phaseProgressing, hooklinev1.ReasonReplicasUnavailable, "1 of 2 dispatcher instances available"}},
		{"scaling down counts no more than desired", dispatcherFixture(replicas(2)), statefulSetFixture(4, 3),
			outcome{phaseReady, hooklinev1.ReasonSucceeded, "2 of 2 dispatcher instances available"}},
		{"scaled to zero", dispatcherFixture(replicas(0)), statefulSetFixture(4, 0),
			outcome{phaseReady, hooklinev1.ReasonSucceeded, "Scaled to zero"}},
		{"scaled to zero without a StatefulSet", dispatcherFixture(replicas(0)), nil,
			outcome{phaseReady, hooklinev1.ReasonSucceeded, "Scaled to zero"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := dispatcherAvailability(tt.d, tt.sts)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(outcome{})); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWebhookDispatcherStatus(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))
	now := metav1.NewTime(t0.Add(time.Minute))
	ready := outcome{phaseReady, hooklinev1.ReasonSucceeded, "1 of 1 dispatcher instances available"}
	tests := []struct {
		name    string
		current []metav1.Condition
		sts     *appsv1.StatefulSet
		out     outcome
		want    hooklinev1.WebhookDispatcherStatus
	}{
		{
			name: "ready",
			sts:  statefulSetFixture(4, 1),
			out:  ready,
			want: hooklinev1.WebhookDispatcherStatus{
				ObservedGeneration: 2,
				Address:            "http://pool-dispatcher.platform.svc:8080",
				Replicas:           1, ReadyReplicas: 1,
				ServiceAccountName: "pool-dispatcher",
				Selector:           "app.kubernetes.io/instance=pool,app.kubernetes.io/name=hookline-dispatcher",
				Conditions: []metav1.Condition{
					{Type: "Ready", Status: "True", Reason: "Succeeded", Message: "1 of 1 dispatcher instances available", ObservedGeneration: 2, LastTransitionTime: now},
				},
			},
		},
		{
			name:    "still ready keeps the transition time, Reconciling goes",
			current: []metav1.Condition{{Type: "Ready", Status: "True", Reason: "Succeeded", LastTransitionTime: t0}, {Type: "Reconciling", Status: "True", Reason: "ReplicasUnavailable", LastTransitionTime: t0}},
			sts:     statefulSetFixture(4, 1),
			out:     ready,
			want: hooklinev1.WebhookDispatcherStatus{
				ObservedGeneration: 2,
				Address:            "http://pool-dispatcher.platform.svc:8080",
				Replicas:           1, ReadyReplicas: 1,
				ServiceAccountName: "pool-dispatcher",
				Selector:           "app.kubernetes.io/instance=pool,app.kubernetes.io/name=hookline-dispatcher",
				Conditions: []metav1.Condition{
					{Type: "Ready", Status: "True", Reason: "Succeeded", Message: "1 of 1 dispatcher instances available", ObservedGeneration: 2, LastTransitionTime: t0},
				},
			},
		},
		{
			name: "starting: replicas exist, none ready",
			sts:  statefulSetFixture(4, 1, func(s *appsv1.StatefulSetStatus) { s.ReadyReplicas, s.AvailableReplicas = 0, 0 }),
			out:  outcome{phaseProgressing, hooklinev1.ReasonReplicasUnavailable, "0 of 1 dispatcher instances available"},
			want: hooklinev1.WebhookDispatcherStatus{
				ObservedGeneration: 2,
				Address:            "http://pool-dispatcher.platform.svc:8080",
				Replicas:           1,
				ServiceAccountName: "pool-dispatcher",
				Selector:           "app.kubernetes.io/instance=pool,app.kubernetes.io/name=hookline-dispatcher",
				Conditions: []metav1.Condition{
					{Type: "Ready", Status: "False", Reason: "ReplicasUnavailable", Message: "0 of 1 dispatcher instances available", ObservedGeneration: 2, LastTransitionTime: now},
					{Type: "Reconciling", Status: "True", Reason: "ReplicasUnavailable", Message: "0 of 1 dispatcher instances available", ObservedGeneration: 2, LastTransitionTime: now},
				},
			},
		},
		{
			name: "invalid spec, nothing rendered yet",
			out:  outcome{phaseStalled, hooklinev1.ReasonInvalidSpec, "bad"},
			want: hooklinev1.WebhookDispatcherStatus{
				ObservedGeneration: 2,
				Conditions: []metav1.Condition{
					{Type: "Ready", Status: "False", Reason: "InvalidSpec", Message: "bad", ObservedGeneration: 2, LastTransitionTime: now},
					{Type: "Stalled", Status: "True", Reason: "InvalidSpec", Message: "bad", ObservedGeneration: 2, LastTransitionTime: now},
				},
			},
		},
		{
			name: "apply failed while the old pods run",
			sts:  statefulSetFixture(4, 1),
			out:  outcome{phaseProgressing, hooklinev1.ReasonApplyFailed, "applying Service platform/pool-dispatcher: forbidden"},
			want: hooklinev1.WebhookDispatcherStatus{
				ObservedGeneration: 2,
				Address:            "http://pool-dispatcher.platform.svc:8080",
				Replicas:           1, ReadyReplicas: 1,
				ServiceAccountName: "pool-dispatcher",
				Selector:           "app.kubernetes.io/instance=pool,app.kubernetes.io/name=hookline-dispatcher",
				Conditions: []metav1.Condition{
					{Type: "Ready", Status: "False", Reason: "ApplyFailed", Message: "applying Service platform/pool-dispatcher: forbidden", ObservedGeneration: 2, LastTransitionTime: now},
					{Type: "Reconciling", Status: "True", Reason: "ApplyFailed", Message: "applying Service platform/pool-dispatcher: forbidden", ObservedGeneration: 2, LastTransitionTime: now},
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dispatcherFixture(func(d *hooklinev1.WebhookDispatcher) { d.Status.Conditions = tt.current })
			got := dispatcherStatus(d, tt.sts, tt.out, now)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWebhookDispatcherRefusedMessage(t *testing.T) {
	// What the API server answers to a StatefulSet whose volume claims
	// changed: the whole old and new values, quoted.
	dump := "Invalid value: []core.PersistentVolumeClaim{core.PersistentVolumeClaim{TypeMeta:v1.TypeMeta{Kind:\"\", APIVersion:\"\"}" +
		strings.Repeat(", ObjectMeta:v1.ObjectMeta{Name:\"data\"}", 40) + "}: field is immutable"
	tests := []struct {
		name   string
		kind   string
		causes []metav1.StatusCause
		want   string
	}{
		{"the queue's volume", "StatefulSet", []metav1.StatusCause{
			{Type: metav1.CauseTypeFieldValueInvalid, Field: "spec.volumeClaimTemplates", Message: dump},
		}, "StatefulSet shop/pool-dispatcher cannot take the change to spec.volumeClaimTemplates: the embedded queue's volume cannot change " +
			"once created (StatefulSet volume claims are immutable); restore spec.queue, or create a new dispatcher to move"},
		{"the queue's volume among others", "StatefulSet", []metav1.StatusCause{
			{Type: metav1.CauseTypeFieldValueInvalid, Field: "spec.selector", Message: dump},
			{Type: metav1.CauseTypeFieldValueInvalid, Field: "spec.volumeClaimTemplates", Message: dump},
		}, "StatefulSet shop/pool-dispatcher cannot take the change to spec.volumeClaimTemplates: the embedded queue's volume cannot change " +
			"once created (StatefulSet volume claims are immutable); restore spec.queue, or create a new dispatcher to move"},
		{"other fields, named once each", "Service", []metav1.StatusCause{
			{Type: metav1.CauseTypeFieldValueInvalid, Field: "spec.clusterIP", Message: dump},
			{Type: metav1.CauseTypeFieldValueRequired, Field: "spec.ports[0].port", Message: "Required value"},
			{Type: metav1.CauseTypeFieldValueInvalid, Field: "spec.clusterIP", Message: dump},
		}, "Service shop/pool-dispatcher refuses the rendered spec.clusterIP (invalid), spec.ports[0].port (required)"},
		{"many fields", "Service", []metav1.StatusCause{
			{Type: metav1.CauseTypeForbidden, Field: "a"}, {Type: metav1.CauseTypeFieldValueNotSupported, Field: "b"},
			{Type: metav1.CauseTypeTooLong, Field: "c"}, {Type: metav1.CauseTypeFieldValueDuplicate, Field: "d"}, {Type: metav1.CauseTypeTooMany, Field: "e"},
		}, "Service shop/pool-dispatcher refuses the rendered a (forbidden), b (unsupported value), c (too long), 2 more"},
		{"no causes", "PodDisruptionBudget", nil, "PodDisruptionBudget shop/pool-dispatcher refuses the rendered object as invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := dispatcherRefusedMessage(tt.kind, "shop/pool-dispatcher", tt.causes)
			if got != tt.want {
				t.Errorf("message\n got %q\nwant %q", got, tt.want)
			}
			if strings.Contains(got, "core.PersistentVolumeClaim") {
				t.Errorf("the message quotes the refused value: %q", got)
			}
		})
	}
}

func TestWebhookDispatcherConflictOutcome(t *testing.T) {
	tests := []struct {
		name     string
		previous bool
		want     outcome
	}{
		{"someone else's", false, outcome{phaseStalled, "ObjectConflict",
			"Service shop/pool-dispatcher exists and is not this dispatcher's: delete it, or give the dispatcher another name"}},
		{"a deleted dispatcher's", true, outcome{phaseProgressing, hooklinev1.ReasonProgressing,
			"Waiting for the garbage collector to delete Service shop/pool-dispatcher, left by a deleted dispatcher of the same name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := dispatcherConflictOutcome("Service", "shop/pool-dispatcher", tt.previous)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(outcome{})); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
		})
	}
}
