package controllers

import (
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// dispatcherInstances is what the dispatcher's instance Leases say at one
// moment.
type dispatcherInstances struct {
	// live is how many instances hold a Lease that has not expired.
	live int32
	// nextExpiry is when the first of the live Leases expires unless
	// renewed; zero when none is live.
	nextExpiry time.Time
}

// liveDispatcherInstances counts, among leases, the live instance Leases of
// d at now: in d's namespace, labelled as d's instance Leases, and renewed
// less than their duration ago. A Lease without a renew time or a duration
// announces nothing.
func liveDispatcherInstances(d *hooklinev1.WebhookDispatcher, leases []coordinationv1.Lease, now time.Time) dispatcherInstances {
	var in dispatcherInstances
	for i := range leases {
		l := &leases[i]
		if l.Namespace != d.Namespace || l.Labels[hooklinev1.LabelDispatcher] != d.Name ||
			l.Labels[hooklinev1.LabelLeaseRole] != hooklinev1.LeaseRoleInstance || !l.DeletionTimestamp.IsZero() {
			continue
		}
		expiry, ok := instanceLeaseExpiry(l)
		if !ok || !expiry.After(now) {
			continue
		}
		in.live++
		if in.nextExpiry.IsZero() || expiry.Before(in.nextExpiry) {
			in.nextExpiry = expiry
		}
	}
	return in
}

// instanceLeaseExpiry is when l expires unless renewed; false when l lacks
// a renew time or a positive duration.
func instanceLeaseExpiry(l *coordinationv1.Lease) (time.Time, bool) {
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil || *l.Spec.LeaseDurationSeconds <= 0 {
		return time.Time{}, false
	}
	return l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second), true
}

// dispatcherAvailability says whether enough dispatcher instances run: it
// counts the instances that announce themselves with a live Lease, not the
// StatefulSet's pods, since a pod can be Ready while its dispatcher does not
// serve, and a dispatcher can run outside any pod (during development).
// sts (nil when there is none) only adds to the message that a rollout is
// under way.
func dispatcherAvailability(d *hooklinev1.WebhookDispatcher, sts *appsv1.StatefulSet, in dispatcherInstances) outcome {
	desired := dispatcherReplicas(d)
	if desired == 0 {
		return outcome{phase: phaseReady, reason: hooklinev1.ReasonSucceeded, message: "Scaled to zero"}
	}
	msg := fmt.Sprintf("%d of %d dispatcher instances running", min(in.live, desired), desired)
	if dispatcherRollingOut(sts) {
		msg += ", rollout in progress"
	}
	if in.live >= desired {
		return outcome{phase: phaseReady, reason: hooklinev1.ReasonSucceeded, message: msg}
	}
	return outcome{phase: phaseProgressing, reason: hooklinev1.ReasonReplicasUnavailable, message: msg}
}

// dispatcherRollingOut says whether the StatefulSet controller is replacing
// pods: it has not yet acted on the latest spec, or pods of an older
// revision remain. A StatefulSet no controller ever observed (an API server
// without one) is not rolling out.
func dispatcherRollingOut(sts *appsv1.StatefulSet) bool {
	if sts == nil || sts.Status.ObservedGeneration == 0 {
		return false
	}
	return sts.Status.ObservedGeneration < sts.Generation || sts.Status.UpdatedReplicas < sts.Status.Replicas
}

// dispatcherStatus computes the whole status the controller writes: out
// becomes the Ready/Reconciling/Stalled conditions (keeping transition times
// from the current status), readyReplicas is the number of running
// instances (no more than desired), and the address, pod count and
// identity are reported once the StatefulSet exists.
func dispatcherStatus(d *hooklinev1.WebhookDispatcher, sts *appsv1.StatefulSet, in dispatcherInstances, out outcome, now metav1.Time) hooklinev1.WebhookDispatcherStatus {
	st := hooklinev1.WebhookDispatcherStatus{
		ObservedGeneration: d.Generation,
		Conditions:         mergeConditions(d.Status.Conditions, summaryConditions(out), summaryTypes, d.Generation, now),
		ReadyReplicas:      min(in.live, dispatcherReplicas(d)),
	}
	if sts != nil {
		st.Address = dispatcherAddress(d)
		st.ServiceAccountName = dispatcherObjectName(d)
		st.Replicas = sts.Status.Replicas
		st.Selector = dispatcherSelectorString(d)
	}
	return st
}

// dispatcherMaxRefusedFields is how many refused fields a message names.
const dispatcherMaxRefusedFields = 3

// dispatcherRefusedMessage says briefly which rendered object (kind, and
// namespace/name) the API server refused as invalid and in which fields,
// from the causes of its answer. The server's own message quotes whole
// values: a StatefulSet's volume claims run to kilobytes of Go syntax.
func dispatcherRefusedMessage(kind, name string, causes []metav1.StatusCause) string {
	var fields []string
	for _, c := range causes {
		if c.Field == "" {
			continue
		}
		f := c.Field + " (" + dispatcherCauseWord(c.Type) + ")"
		if !slices.Contains(fields, f) {
			fields = append(fields, f)
		}
		if kind == "StatefulSet" && strings.HasPrefix(c.Field, "spec.volumeClaimTemplates") {
			return fmt.Sprintf("StatefulSet %s cannot take the change to %s: the embedded queue's volume cannot change once created "+
				"(StatefulSet volume claims are immutable); restore spec.queue, or create a new dispatcher to move", name, c.Field)
		}
	}
	switch {
	case len(fields) == 0:
		return fmt.Sprintf("%s %s refuses the rendered object as invalid", kind, name)
	case len(fields) > dispatcherMaxRefusedFields:
		more := len(fields) - dispatcherMaxRefusedFields
		fields = append(fields[:dispatcherMaxRefusedFields], fmt.Sprintf("%d more", more))
	}
	return fmt.Sprintf("%s %s refuses the rendered %s", kind, name, strings.Join(fields, ", "))
}

// dispatcherCauseWord is a cause type in a word or two.
func dispatcherCauseWord(t metav1.CauseType) string {
	switch t {
	case metav1.CauseTypeFieldValueRequired:
		return "required"
	case metav1.CauseTypeForbidden:
		return "forbidden"
	case metav1.CauseTypeFieldValueNotSupported:
		return "unsupported value"
	case metav1.CauseTypeFieldValueDuplicate:
		return "duplicate"
	case metav1.CauseTypeTooLong:
		return "too long"
	case metav1.CauseTypeTooMany:
		return "too many"
	default:
		return "invalid"
	}
}

// dispatcherConflictOutcome is the outcome when an object of a rendered name
// (kind, and namespace/name) is not the dispatcher's. One an earlier
// dispatcher of the same name controls goes with it (the garbage collector
// deletes it, and its deletion brings the dispatcher back); any other is
// left alone until someone removes it.
func dispatcherConflictOutcome(kind, name string, previous bool) outcome {
	if previous {
		return outcome{phase: phaseProgressing, reason: hooklinev1.ReasonProgressing,
			message: fmt.Sprintf("Waiting for the garbage collector to delete %s %s, left by a deleted dispatcher of the same name", kind, name)}
	}
	return outcome{phase: phaseStalled, reason: hooklinev1.ReasonObjectConflict,
		message: fmt.Sprintf("%s %s exists and is not this dispatcher's: delete it, or give the dispatcher another name", kind, name)}
}
