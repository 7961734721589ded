package controllers

import (
	"fmt"

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
	}
	return st
}
