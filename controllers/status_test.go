package controllers

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
