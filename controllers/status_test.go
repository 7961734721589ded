package controllers

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestSummaryConditions(t *testing.T) {
	tests := []struct {
		name string
		in   outcome
		want map[string]metav1.ConditionStatus
	}{
		{"ready", outcome{phase: phaseReady, reason: "Succeeded"}, map[string]metav1.ConditionStatus{"Ready": "True"}},
		{"progressing", outcome{phase: phaseProgressing, reason: "SecretNotFound"}, map[string]metav1.ConditionStatus{"Ready": "False", "Reconciling": "True"}},
		{"stalled", outcome{phase: phaseStalled, reason: "NamespaceNotAllowed"}, map[string]metav1.ConditionStatus{"Ready": "False", "Stalled": "True"}},
		{"held", outcome{phase: phaseHeld, reason: "EndpointUnhealthy"}, map[string]metav1.ConditionStatus{"Ready": "False"}},
		{"error", errorOutcome(errors.New("boom")), map[string]metav1.ConditionStatus{"Ready": "False", "Reconciling": "True"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]metav1.ConditionStatus{}
			for _, c := range summaryConditions(tt.in) {
				got[c.Type] = c.Status
				if c.Reason == "" {
					t.Errorf("condition %s has no reason", c.Type)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("conditions (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMergeConditions(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(time.Hour))
	current := []metav1.Condition{
		{Type: "Ready", Status: "True", Reason: "Succeeded", LastTransitionTime: t0, ObservedGeneration: 1},
		{Type: "Reconciling", Status: "True", Reason: "Progressing", LastTransitionTime: t0},
		{Type: "EndpointHealthy", Status: "True", Reason: "Delivering", LastTransitionTime: t0},
	}
	desired := []metav1.Condition{
		{Type: "Ready", Status: "True", Reason: "Succeeded", Message: "ok"},
		{Type: "Stalled", Status: "True", Reason: "InvalidSpec"},
		{Type: "EndpointHealthy", Status: "False", Reason: "ignored"},
	}
	got := mergeConditions(current, desired, summaryTypes, 2, t1)
	want := []metav1.Condition{
		// Unchanged status keeps its transition time, takes the new message and generation.
		{Type: "Ready", Status: "True", Reason: "Succeeded", Message: "ok", LastTransitionTime: t0, ObservedGeneration: 2},
		// New condition gets now.
		{Type: "Stalled", Status: "True", Reason: "InvalidSpec", LastTransitionTime: t1, ObservedGeneration: 2},
		// Reconciling is no longer desired and is dropped; EndpointHealthy is not ours.
	}
	if diff := cmp.Diff(want, got, cmpopts.SortSlices(func(a, b metav1.Condition) bool { return a.Type < b.Type })); diff != "" {
		t.Errorf("conditions (-want +got):\n%s", diff)
	}
}

func TestStallWarningsDue(t *testing.T) {
	key := types.NamespacedName{Namespace: "ns", Name: "a"}
	stalled := outcome{phase: phaseStalled, reason: "NamespaceNotAllowed", message: "refused"}
	other := outcome{phase: phaseStalled, reason: "URLNotAllowed", message: "plain http"}
	written := []metav1.Condition{{Type: "Stalled", Status: "True", Reason: "NamespaceNotAllowed", Message: "refused"}}
	var w stallWarnings
	steps := []struct {
		name    string
		current []metav1.Condition
		out     outcome
		want    bool
	}{
		{"first stall warns", nil, stalled, true},
		{"same stall with a stale status does not warn again", nil, stalled, false},
		{"same stall once written does not warn", written, stalled, false},
		{"a new reason warns", written, other, true},
		{"recovery warns nothing", nil, outcome{phase: phaseReady}, false},
		{"stalling again after recovery warns", nil, stalled, true},
	}
	for _, s := range steps {
		if got := w.due(key, s.current, s.out); got != s.want {
			t.Errorf("%s: due = %v, want %v", s.name, got, s.want)
		}
	}
	w.forget(key)
	if !w.due(key, written, other) {
		t.Errorf("after forget, a stall differing from the written status must warn")
	}
	// A restarted controller (empty memory) that reads the stall already
	// written does not repeat the warning.
	var fresh stallWarnings
	if fresh.due(key, written, stalled) {
		t.Errorf("a restarted controller repeated a warning the status already shows")
	}
}
