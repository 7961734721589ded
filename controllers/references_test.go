package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

func TestAdmitsNamespace(t *testing.T) {
	team := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a", Labels: map[string]string{"webhooks": "on"}}}
	other := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-b"}}
	home := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "hookline-system"}}
	dispatcher := func(a hooklinev1.AllowedNamespaces) *hooklinev1.WebhookDispatcher {
		return &hooklinev1.WebhookDispatcher{
			ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "hookline-system"},
			Spec:       hooklinev1.WebhookDispatcherSpec{AllowedNamespaces: a},
		}
	}
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{"webhooks": "on"}}
	badSelector := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "x", Operator: "Bogus"}}}
	tests := []struct {
		name    string
		allowed hooklinev1.AllowedNamespaces
		ns      *corev1.Namespace
		want    bool
		wantErr bool
	}{
		{"same admits own namespace", hooklinev1.AllowedNamespaces{From: hooklinev1.NamespacesFromSame}, home, true, false},
		{"same refuses another", hooklinev1.AllowedNamespaces{From: hooklinev1.NamespacesFromSame}, team, false, false},
		{"unset behaves as same", hooklinev1.AllowedNamespaces{}, team, false, false},
		{"all admits any", hooklinev1.AllowedNamespaces{From: hooklinev1.NamespacesFromAll}, other, true, false},
		{"selector admits matching labels", hooklinev1.AllowedNamespaces{From: hooklinev1.NamespacesFromSelector, Selector: selector}, team, true, false},
		{"selector refuses others", hooklinev1.AllowedNamespaces{From: hooklinev1.NamespacesFromSelector, Selector: selector}, other, false, false},
		{"selector missing is an error", hooklinev1.AllowedNamespaces{From: hooklinev1.NamespacesFromSelector}, team, false, true},
		{"invalid selector is an error", hooklinev1.AllowedNamespaces{From: hooklinev1.NamespacesFromSelector, Selector: badSelector}, team, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := admitsNamespace(dispatcher(tt.allowed), tt.ns)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("admitsNamespace = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDispatcherFor(t *testing.T) {
	def := types.NamespacedName{Namespace: "hookline-system", Name: "default"}
	sub := func(ref *hooklinev1.DispatcherReference) *hooklinev1.WebhookSubscription {
		return &hooklinev1.WebhookSubscription{
			ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "team-a"},
			Spec:       hooklinev1.WebhookSubscriptionSpec{DispatcherRef: ref},
		}
	}
	tests := []struct {
		name string
		ref  *hooklinev1.DispatcherReference
		want types.NamespacedName
	}{
		{"no ref uses the default", nil, def},
		{"name only is in the subscription's namespace", &hooklinev1.DispatcherReference{Name: "mine"}, types.NamespacedName{Namespace: "team-a", Name: "mine"}},
		{"full ref", &hooklinev1.DispatcherReference{Name: "shared", Namespace: "infra"}, types.NamespacedName{Namespace: "infra", Name: "shared"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dispatcherFor(sub(tt.ref), def); got != tt.want {
				t.Errorf("dispatcherFor = %v, want %v", got, tt.want)
			}
		})
	}
}
