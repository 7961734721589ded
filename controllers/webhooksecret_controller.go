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

// WebhookSecretReconciler reconciles WebhookSecrets.
type WebhookSecretReconciler struct {
	client.Client
	Recorder recorder.EventRecorder
	Clock    clock.WithTicker
	DefaultImage string
	ClusterRole string
	DefaultDispatcher types.NamespacedName
}

// SetupWithManager registers the reconciler.
func (r *WebhookSecretReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&hooklinev1.WebhookSecret{}).Complete(r)
}

// Reconcile is not written yet.
func (r *WebhookSecretReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return ctrl.Result{}, nil
}
