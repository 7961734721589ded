package controllers

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/event"

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

// instanceLease is an instance Lease of the dispatcher "pool" in namespace
// "platform", renewed at renewed for seconds, changed by mutate.
func instanceLease(name string, renewed time.Time, seconds int32, mutate ...func(*coordinationv1.Lease)) coordinationv1.Lease {
	l := coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "platform", Name: name, Labels: map[string]string{
			hooklinev1.LabelDispatcher: "pool", hooklinev1.LabelLeaseRole: hooklinev1.LeaseRoleInstance,
		}},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(name),
			LeaseDurationSeconds: ptr.To(seconds),
			RenewTime:            ptr.To(metav1.NewMicroTime(renewed)),
		},
	}
	for _, m := range mutate {
		m(&l)
	}
	return l
}

func TestLiveDispatcherInstances(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		leases []coordinationv1.Lease
		want   dispatcherInstances
	}{
		{"none", nil, dispatcherInstances{}},
		{"one live", []coordinationv1.Lease{instanceLease("a", now.Add(-5*time.Second), 30)},
			dispatcherInstances{live: 1, nextExpiry: now.Add(25 * time.Second)}},
		{"the earliest expiry of several", []coordinationv1.Lease{
			instanceLease("a", now.Add(-5*time.Second), 30),
			instanceLease("b", now.Add(-20*time.Second), 30),
			instanceLease("c", now, 30),
		}, dispatcherInstances{live: 3, nextExpiry: now.Add(10 * time.Second)}},
		{"expired", []coordinationv1.Lease{instanceLease("a", now.Add(-31*time.Second), 30)}, dispatcherInstances{}},
		{"expiring at this very moment", []coordinationv1.Lease{instanceLease("a", now.Add(-30*time.Second), 30)}, dispatcherInstances{}},
		{"an expired one does not set the requeue", []coordinationv1.Lease{
			instanceLease("a", now.Add(-40*time.Second), 30),
			instanceLease("b", now.Add(-10*time.Second), 30),
		}, dispatcherInstances{live: 1, nextExpiry: now.Add(20 * time.Second)}},
		{"renewed in the future (clock skew) is live", []coordinationv1.Lease{instanceLease("a", now.Add(2*time.Second), 30)},
			dispatcherInstances{live: 1, nextExpiry: now.Add(32 * time.Second)}},
		{"another dispatcher's", []coordinationv1.Lease{instanceLease("a", now, 30, func(l *coordinationv1.Lease) {
			l.Labels[hooklinev1.LabelDispatcher] = "other"
		})}, dispatcherInstances{}},
		{"another namespace's", []coordinationv1.Lease{instanceLease("a", now, 30, func(l *coordinationv1.Lease) { l.Namespace = "elsewhere" })},
			dispatcherInstances{}},
		{"without the role label", []coordinationv1.Lease{instanceLease("a", now, 30, func(l *coordinationv1.Lease) {
			delete(l.Labels, hooklinev1.LabelLeaseRole)
		})}, dispatcherInstances{}},
		{"of another role", []coordinationv1.Lease{instanceLease("a", now, 30, func(l *coordinationv1.Lease) {
			l.Labels[hooklinev1.LabelLeaseRole] = "status-writer"
		})}, dispatcherInstances{}},
		{"no renew time", []coordinationv1.Lease{instanceLease("a", now, 30, func(l *coordinationv1.Lease) { l.Spec.RenewTime = nil })},
			dispatcherInstances{}},
		{"no duration", []coordinationv1.Lease{instanceLease("a", now, 30, func(l *coordinationv1.Lease) { l.Spec.LeaseDurationSeconds = nil })},
			dispatcherInstances{}},
		{"zero duration", []coordinationv1.Lease{instanceLease("a", now, 0)}, dispatcherInstances{}},
		{"being deleted", []coordinationv1.Lease{instanceLease("a", now, 30, func(l *coordinationv1.Lease) {
			l.DeletionTimestamp = ptr.To(metav1.NewTime(now))
		})}, dispatcherInstances{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := liveDispatcherInstances(dispatcherFixture(), tt.leases, now)
			if got.live != tt.want.live || !got.nextExpiry.Equal(tt.want.nextExpiry) {
				t.Errorf("got %d live, next expiry %s; want %d, %s", got.live, got.nextExpiry, tt.want.live, tt.want.nextExpiry)
			}
		})
	}
}

func TestWebhookDispatcherAvailability(t *testing.T) {
	replicas := func(n int32) func(*hooklinev1.WebhookDispatcher) {
		return func(d *hooklinev1.WebhookDispatcher) {
			d.Spec.Replicas = ptr.To(n)
			d.Spec.Queue.External = &hooklinev1.ExternalQueue{URL: "nats://nats:4222"}
		}
	}
	live := func(n int32) dispatcherInstances {
		return dispatcherInstances{live: n, nextExpiry: time.Date(2026, 6, 1, 12, 0, 30, 0, time.UTC)}
	}
	tests := []struct {
		name string
		d    *hooklinev1.WebhookDispatcher
		sts  *appsv1.StatefulSet
		in   dispatcherInstances
		want outcome
	}{
		{"nothing runs", dispatcherFixture(), nil, dispatcherInstances{},
			outcome{phaseProgressing, hooklinev1.ReasonReplicasUnavailable, "0 of 1 dispatcher instances running"}},
		{"running", dispatcherFixture(), statefulSetFixture(4, 1), live(1),
			outcome{phaseReady, hooklinev1.ReasonSucceeded, "1 of 1 dispatcher instances running"}},
		{"replicas unset means one", dispatcherFixture(func(d *hooklinev1.WebhookDispatcher) { d.Spec.Replicas = nil }), statefulSetFixture(4, 1), live(1),
			outcome{phaseReady, hooklinev1.ReasonSucceeded, "1 of 1 dispatcher instances running"}},
		{"pods ready but no instance serves", dispatcherFixture(), statefulSetFixture(4, 1), dispatcherInstances{},
			outcome{phaseProgressing, hooklinev1.ReasonReplicasUnavailable, "0 of 1 dispatcher instances running"}},
		{"running outside any pod", dispatcherFixture(), statefulSetFixture(0, 0), live(1),
			outcome{phaseReady, hooklinev1.ReasonSucceeded, "1 of 1 dispatcher instances running"}},
		{"running without a StatefulSet", dispatcherFixture(), nil, live(1),
			outcome{phaseReady, hooklinev1.ReasonSucceeded, "1 of 1 dispatcher instances running"}},
		{"new spec not yet observed", dispatcherFixture(), statefulSetFixture(3, 1), live(1),
			outcome{phaseReady, hooklinev1.ReasonSucceeded, "1 of 1 dispatcher instances running, rollout in progress"}},
		{"rolling out", dispatcherFixture(replicas(3)), statefulSetFixture(4, 3, func(s *appsv1.StatefulSetStatus) { s.UpdatedReplicas = 1 }), live(3),
			outcome{phaseReady, hooklinev1.ReasonSucceeded, "3 of 3 dispatcher instances running, rollout in progress"}},
		{"rolling out, one instance down", dispatcherFixture(replicas(3)), statefulSetFixture(4, 3, func(s *appsv1.StatefulSetStatus) { s.UpdatedReplicas = 1 }), live(2),
			outcome{phaseProgressing, hooklinev1.ReasonReplicasUnavailable, "2 of 3 dispatcher instances running, rollout in progress"}},
		{"scaling up", dispatcherFixture(replicas(3)), statefulSetFixture(4, 3), live(2),
			outcome{phaseProgressing, hooklinev1.ReasonReplicasUnavailable, "2 of 3 dispatcher instances running"}},
		{"scaling down counts no more than desired", dispatcherFixture(replicas(2)), statefulSetFixture(4, 3), live(3),
			outcome{phaseReady, hooklinev1.ReasonSucceeded, "2 of 2 dispatcher instances running"}},
		{"scaled to zero", dispatcherFixture(replicas(0)), statefulSetFixture(4, 0), dispatcherInstances{},
			outcome{phaseReady, hooklinev1.ReasonSucceeded, "Scaled to zero"}},
		{"scaled to zero, an instance still stopping", dispatcherFixture(replicas(0)), statefulSetFixture(4, 1), live(1),
			outcome{phaseReady, hooklinev1.ReasonSucceeded, "Scaled to zero"}},
		{"scaled to zero without a StatefulSet", dispatcherFixture(replicas(0)), nil, dispatcherInstances{},
			outcome{phaseReady, hooklinev1.ReasonSucceeded, "Scaled to zero"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := dispatcherAvailability(tt.d, tt.sts, tt.in)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(outcome{})); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWebhookDispatcherStatus(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))
	now := metav1.NewTime(t0.Add(time.Minute))
	ready := outcome{phaseReady, hooklinev1.ReasonSucceeded, "1 of 1 dispatcher instances running"}
	one := dispatcherInstances{live: 1, nextExpiry: now.Add(30 * time.Second)}
	tests := []struct {
		name    string
		current []metav1.Condition
		sts     *appsv1.StatefulSet
		in      dispatcherInstances
		out     outcome
		want    hooklinev1.WebhookDispatcherStatus
	}{
		{
			name: "ready",
			sts:  statefulSetFixture(4, 1),
			in:   one,
			out:  ready,
			want: hooklinev1.WebhookDispatcherStatus{
				ObservedGeneration: 2,
				Address:            "http://pool-dispatcher.platform.svc:8080",
				Replicas:           1, ReadyReplicas: 1,
				ServiceAccountName: "pool-dispatcher",
				Selector:           "app.kubernetes.io/instance=pool,app.kubernetes.io/name=hookline-dispatcher",
				Conditions: []metav1.Condition{
					{Type: "Ready", Status: "True", Reason: "Succeeded", Message: "1 of 1 dispatcher instances running", ObservedGeneration: 2, LastTransitionTime: now},
				},
			},
		},
		{
			name:    "still ready keeps the transition time, Reconciling goes",
			current: []metav1.Condition{{Type: "Ready", Status: "True", Reason: "Succeeded", LastTransitionTime: t0}, {Type: "Reconciling", Status: "True", Reason: "ReplicasUnavailable", LastTransitionTime: t0}},
			sts:     statefulSetFixture(4, 1),
			in:      one,
			out:     ready,
			want: hooklinev1.WebhookDispatcherStatus{
				ObservedGeneration: 2,
				Address:            "http://pool-dispatcher.platform.svc:8080",
				Replicas:           1, ReadyReplicas: 1,
				ServiceAccountName: "pool-dispatcher",
				Selector:           "app.kubernetes.io/instance=pool,app.kubernetes.io/name=hookline-dispatcher",
				Conditions: []metav1.Condition{
					{Type: "Ready", Status: "True", Reason: "Succeeded", Message: "1 of 1 dispatcher instances running", ObservedGeneration: 2, LastTransitionTime: t0},
				},
			},
		},
		{
			name: "pods ready, no instance running",
			sts:  statefulSetFixture(4, 1),
			out:  outcome{phaseProgressing, hooklinev1.ReasonReplicasUnavailable, "0 of 1 dispatcher instances running"},
			want: hooklinev1.WebhookDispatcherStatus{
				ObservedGeneration: 2,
				Address:            "http://pool-dispatcher.platform.svc:8080",
				Replicas:           1,
				ServiceAccountName: "pool-dispatcher",
				Selector:           "app.kubernetes.io/instance=pool,app.kubernetes.io/name=hookline-dispatcher",
				Conditions: []metav1.Condition{
					{Type: "Ready", Status: "False", Reason: "ReplicasUnavailable", Message: "0 of 1 dispatcher instances running", ObservedGeneration: 2, LastTransitionTime: now},
					{Type: "Reconciling", Status: "True", Reason: "ReplicasUnavailable", Message: "0 of 1 dispatcher instances running", ObservedGeneration: 2, LastTransitionTime: now},
				},
			},
		},
		{
			name: "more instances than desired count as desired",
			sts:  statefulSetFixture(4, 2),
			in:   dispatcherInstances{live: 2, nextExpiry: now.Add(30 * time.Second)},
			out:  ready,
			want: hooklinev1.WebhookDispatcherStatus{
				ObservedGeneration: 2,
				Address:            "http://pool-dispatcher.platform.svc:8080",
				Replicas:           2, ReadyReplicas: 1,
				ServiceAccountName: "pool-dispatcher",
				Selector:           "app.kubernetes.io/instance=pool,app.kubernetes.io/name=hookline-dispatcher",
				Conditions: []metav1.Condition{
					{Type: "Ready", Status: "True", Reason: "Succeeded", Message: "1 of 1 dispatcher instances running", ObservedGeneration: 2, LastTransitionTime: now},
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
			name: "apply failed while the old instances run",
			sts:  statefulSetFixture(4, 1),
			in:   one,
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
			got := dispatcherStatus(d, tt.sts, tt.in, tt.out, now)
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

func TestInstanceLeaseNews(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	r := &WebhookDispatcherReconciler{Clock: clocktesting.NewFakeClock(now)}
	news := r.instanceLeaseNews()
	live := instanceLease("a", now.Add(-5*time.Second), 30)
	renewed := instanceLease("a", now, 30)
	expired := instanceLease("a", now.Add(-time.Minute), 30)
	unlabelled := instanceLease("a", now, 30, func(l *coordinationv1.Lease) { l.Labels = nil })
	moved := instanceLease("a", now, 30, func(l *coordinationv1.Lease) { l.Labels[hooklinev1.LabelDispatcher] = "other" })
	tests := []struct {
		name     string
		old, new coordinationv1.Lease
		want     bool
	}{
		{"a live Lease renewed", live, renewed, false},
		{"an expired Lease renewed: the instance is back", expired, renewed, true},
		{"a Lease labelled an instance's", unlabelled, renewed, true},
		{"a Lease no longer an instance's", renewed, unlabelled, true},
		{"a Lease moved to another dispatcher", live, moved, true},
		{"someone else's Lease", unlabelled, unlabelled, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := news.Update(event.UpdateEvent{ObjectOld: &tt.old, ObjectNew: &tt.new}); got != tt.want {
				t.Errorf("passes = %t, want %t", got, tt.want)
			}
		})
	}
	for _, tt := range []struct {
		name  string
		lease coordinationv1.Lease
		want  bool
	}{{"an instance Lease", live, true}, {"someone else's Lease", unlabelled, false}} {
		if got := news.Create(event.CreateEvent{Object: &tt.lease}); got != tt.want {
			t.Errorf("creation of %s passes = %t, want %t", tt.name, got, tt.want)
		}
		if got := news.Delete(event.DeleteEvent{Object: &tt.lease}); got != tt.want {
			t.Errorf("deletion of %s passes = %t, want %t", tt.name, got, tt.want)
		}
	}
	if got := dispatcherOfInstanceLease(t.Context(), &moved); len(got) != 1 || got[0].String() != "platform/other" {
		t.Errorf("the moved Lease maps to %v, want platform/other", got)
	}
	if got := dispatcherOfInstanceLease(t.Context(), &unlabelled); len(got) != 0 {
		t.Errorf("an unlabelled Lease maps to %v, want nothing", got)
	}
}
