package controllers

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// applyStatus server-side applies status (a pointer to the kind's status
// struct) as the status of obj, with the controllers' field manager. Fields
// that the status leaves out and that this manager set before are removed;
// fields other managers own (the dispatcher's conditions and delivery block)
// are left alone.
func applyStatus(ctx context.Context, c client.Client, obj client.Object, status any) error {
	gvk, err := apiutil.GVKForObject(obj, c.Scheme())
	if err != nil {
		return fmt.Errorf("finding the kind of %T: %w", obj, err)
	}
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(status)
	if err != nil {
		return fmt.Errorf("converting the status of %s: %w", gvk.Kind, err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{"status": content}}
	u.SetGroupVersionKind(gvk)
	u.SetNamespace(obj.GetNamespace())
	u.SetName(obj.GetName())
	if err := c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying the status of %s %s/%s: %w", gvk.Kind, obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}

// mergeConditions returns the conditions this controller owns (types), taken
// from desired, with lastTransitionTime kept from current where the status
// did not change. Conditions of other types are dropped: other field
// managers own them and server-side apply leaves them in place.
func mergeConditions(current, desired []metav1.Condition, types []string, generation int64, now metav1.Time) []metav1.Condition {
	var out []metav1.Condition
	for _, c := range current {
		if slices.Contains(types, c.Type) {
			out = append(out, c)
		}
	}
	var keep []string
	for _, d := range desired {
		if !slices.Contains(types, d.Type) {
			continue
		}
		d.ObservedGeneration = generation
		d.LastTransitionTime = now
		meta.SetStatusCondition(&out, d)
		keep = append(keep, d.Type)
	}
	return slices.DeleteFunc(out, func(c metav1.Condition) bool { return !slices.Contains(keep, c.Type) })
}

// phase is where a reconciliation ended, as kstatus sees it.
type phase int

const (
	// phaseReady: the spec is achieved.
	phaseReady phase = iota
	// phaseProgressing: work is under way, or something that may still
	// appear is awaited; Reconciling=True.
	phaseProgressing
	// phaseStalled: the spec cannot work until someone edits it;
	// Stalled=True and no retry.
	phaseStalled
	// phaseHeld: the spec is achieved but the object does not do its job
	// for a reason outside the spec (an endpoint that fails, deliveries
	// held): Ready=False alone, neither Reconciling nor Stalled. kstatus
	// has no word for it and falls back on Ready: InProgress.
	phaseHeld
)

// outcome is what a reconciliation's steps concluded.
type outcome struct {
	phase   phase
	reason  string
	message string
}

// summaryTypes are the condition types summaryConditions writes.
var summaryTypes = []string{hooklinev1.ConditionReady, hooklinev1.ConditionReconciling, hooklinev1.ConditionStalled}

// summaryConditions turns an outcome into the Ready, Reconciling and Stalled
// conditions kstatus reads: Current when Ready, InProgress while
// Reconciling (and, by its fallback on Ready, when held), Failed when
// Stalled. Conditions that do not apply are left
// out, so applying the result removes them.
func summaryConditions(o outcome) []metav1.Condition {
	switch o.phase {
	case phaseReady:
		return []metav1.Condition{{Type: hooklinev1.ConditionReady, Status: metav1.ConditionTrue, Reason: o.reason, Message: o.message}}
	case phaseHeld:
		return []metav1.Condition{{Type: hooklinev1.ConditionReady, Status: metav1.ConditionFalse, Reason: o.reason, Message: o.message}}
	case phaseStalled:
		return []metav1.Condition{
			{Type: hooklinev1.ConditionReady, Status: metav1.ConditionFalse, Reason: o.reason, Message: o.message},
			{Type: hooklinev1.ConditionStalled, Status: metav1.ConditionTrue, Reason: o.reason, Message: o.message},
		}
	default:
		return []metav1.Condition{
			{Type: hooklinev1.ConditionReady, Status: metav1.ConditionFalse, Reason: o.reason, Message: o.message},
			{Type: hooklinev1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: o.reason, Message: o.message},
		}
	}
}

// errorOutcome is the outcome of a step that failed transiently: the error
// is returned for a retry with backoff, and status says it is being retried.
func errorOutcome(err error) outcome {
	return outcome{phase: phaseProgressing, reason: hooklinev1.ReasonReconcileError, message: err.Error()}
}

// stallWarnings decides when a Stalled outcome deserves a Warning Event:
// once per object for each distinct reason and message, not on every
// reconciliation that finds the same problem. The status says the same once
// written, but a reconcile may read a cached status older than its own last
// write; the memory here closes that gap. The zero value is ready to use.
type stallWarnings struct {
	last sync.Map // types.NamespacedName -> string
}

// due records out for key and reports whether a Warning should be emitted
// now. current is the object's status conditions as read.
func (w *stallWarnings) due(key types.NamespacedName, current []metav1.Condition, out outcome) bool {
	if out.phase != phaseStalled {
		w.last.Delete(key)
		return false
	}
	note := out.reason + "\n" + out.message
	if prev, ok := w.last.Swap(key, note); ok && prev == note {
		return false
	}
	c := meta.FindStatusCondition(current, hooklinev1.ConditionStalled)
	return c == nil || c.Status != metav1.ConditionTrue || c.Reason != out.reason || c.Message != out.message
}

// forget drops what is remembered of a deleted object.
func (w *stallWarnings) forget(key types.NamespacedName) { w.last.Delete(key) }
