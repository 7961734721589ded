package controllers

import (
	"context"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// EventReporter is the name the controllers' Kubernetes Events carry.
const EventReporter = "hookline-controller"

// The admission webhook's certificate keeper (internal/admission) renews
// its Secret and injects the CA into the webhook configuration.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=update
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=get;update,resourceNames=hookline-validating-webhook

// Options configure the controllers.
type Options struct {
	// DefaultDispatcher is the dispatcher subscriptions without
	// dispatcherRef attach to.
	DefaultDispatcher types.NamespacedName
	// DispatcherImage is the dispatcher image unless a WebhookDispatcher
	// overrides it.
	DispatcherImage string
	// DispatcherClusterRole is the ClusterRole bound to every dispatcher's
	// ServiceAccount (installed with the operator).
	DispatcherClusterRole string
	// SubscriptionWorkers is how many WebhookSubscriptions are reconciled
	// at once; 0 means DefaultSubscriptionWorkers.
	SubscriptionWorkers int
	// Clock is the time source; tests inject a fake one.
	Clock clock.WithTicker
}

// DefaultSubscriptionWorkers is how many WebhookSubscriptions are reconciled
// at once unless Options say otherwise. A reconcile spends most of its time
// waiting for the API server (its status write), so one worker leaves
// thousands of new subscriptions waiting minutes (docs/benchmarks.md). The
// WebhookSecret and WebhookDispatcher controllers see few objects and keep
// controller-runtime's one worker.
const DefaultSubscriptionWorkers = 8

// CacheOptions are the manager cache options the controllers are meant to
// run with. Of all Leases, which every node and every elected component
// renews every few seconds, the manager caches only the dispatcher instance
// Leases it counts; the controllers read no other Lease.
func CacheOptions() cache.Options {
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&coordinationv1.Lease{}: {Label: labels.SelectorFromSet(labels.Set{hooklinev1.LabelLeaseRole: hooklinev1.LeaseRoleInstance})},
	}}
}

// The manager's metrics endpoint authenticates and authorises its callers.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// Setup registers the field indexes and every reconciler with mgr.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	if opts.SubscriptionWorkers < 0 {
		return fmt.Errorf("subscription workers must be at least 1, got %d", opts.SubscriptionWorkers)
	}
	if opts.SubscriptionWorkers == 0 {
		opts.SubscriptionWorkers = DefaultSubscriptionWorkers
	}
	if err := SetupIndexes(ctx, mgr, opts.DefaultDispatcher); err != nil {
		return err
	}
	recorder := mgr.GetEventRecorder(EventReporter)
	if err := (&WebhookSecretReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  recorder,
		Clock:     opts.Clock,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the WebhookSecret controller: %w", err)
	}
	if err := (&WebhookDispatcherReconciler{
		Client:            mgr.GetClient(),
		Recorder:          recorder,
		Clock:             opts.Clock,
		DefaultImage:      opts.DispatcherImage,
		ClusterRole:       opts.DispatcherClusterRole,
		DefaultDispatcher: opts.DefaultDispatcher,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the WebhookDispatcher controller: %w", err)
	}
	if err := (&WebhookSubscriptionReconciler{
		Client:            mgr.GetClient(),
		APIReader:         mgr.GetAPIReader(),
		Recorder:          recorder,
		Clock:             opts.Clock,
		DefaultDispatcher: opts.DefaultDispatcher,
		Workers:           opts.SubscriptionWorkers,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the WebhookSubscription controller: %w", err)
	}
	return nil
}
