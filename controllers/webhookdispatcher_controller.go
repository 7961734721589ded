package controllers

import (
	"context"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// WebhookDispatcherReconciler reconciles WebhookDispatchers.
type WebhookDispatcherReconciler struct {
	client.Client
	Recorder recorder.EventRecorder
	Clock    clock.WithTicker
	DefaultImage string
	ClusterRole string
	DefaultDispatcher types.NamespacedName
}

// SetupWithManager registers the reconciler.
func (r *WebhookDispatcherReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&hooklinev1.WebhookDispatcher{}).Complete(r)
}

// Reconcile is not written yet.
func (r *WebhookDispatcherReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return ctrl.Result{}, nil
}
