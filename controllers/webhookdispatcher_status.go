package controllers

import (
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// dispatcherAvailability says whether the dispatcher's instances are
// available, from its StatefulSet as the API server last returned it (nil
// when there is none). The StatefulSet must have observed its latest spec,
// so a rollout in progress is not mistaken for the old pods being ready.
func dispatcherAvailability(d *hooklinev1.WebhookDispatcher, sts *appsv1.StatefulSet) outcome {
	desired := dispatcherReplicas(d)
	if desired == 0 {
		return outcome{phase: phaseReady, reason: hooklinev1.ReasonSucceeded, message: "Scaled to zero"}
	}
	var available int32
	if sts != nil {
		available = sts.Status.AvailableReplicas
		if sts.Status.ObservedGeneration >= sts.Generation &&
			available >= desired && sts.Status.UpdatedReplicas >= desired {
			return outcome{phase: phaseReady, reason: hooklinev1.ReasonSucceeded,
				message: fmt.Sprintf("%d of %d dispatcher instances available", desired, desired)}
		}
	}
	msg := fmt.Sprintf("%d of %d dispatcher instances available", min(available, desired), desired)
	if available >= desired {
		msg += ", rollout in progress"
	}
	return outcome{phase: phaseProgressing, reason: hooklinev1.ReasonReplicasUnavailable, message: msg}
}

// dispatcherStatus computes the whole status the controller writes: out
// becomes the Ready/Reconciling/Stalled conditions (keeping transition times
// from the current status), and the address, replica counts and identity
// are reported once the StatefulSet exists.
func dispatcherStatus(d *hooklinev1.WebhookDispatcher, sts *appsv1.StatefulSet, out outcome, now metav1.Time) hooklinev1.WebhookDispatcherStatus {
	st := hooklinev1.WebhookDispatcherStatus{
		ObservedGeneration: d.Generation,
		Conditions:         mergeConditions(d.Status.Conditions, summaryConditions(out), summaryTypes, d.Generation, now),
	}
	if sts != nil {
		st.Address = dispatcherAddress(d)
		st.ServiceAccountName = dispatcherObjectName(d)
		st.Replicas = sts.Status.Replicas
		st.ReadyReplicas = sts.Status.ReadyReplicas
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
