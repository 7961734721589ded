package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
)

// Field indexes on WebhookSubscriptions, so a change to a referenced object
// finds the subscriptions that use it without listing them all.
const (
	// indexSubscriptionSecret indexes subscriptions by the name of the
	// WebhookSecret they sign with (same namespace).
	indexSubscriptionSecret = ".spec.signing.secretRef.name"
	// indexSubscriptionDispatcher indexes subscriptions by their resolved
	// dispatcher, "namespace/name".
	indexSubscriptionDispatcher = ".spec.dispatcherRef"
)

// DefaultDispatcherName is the dispatcher a subscription without
// dispatcherRef attaches to, in the operator's namespace.
const DefaultDispatcherName = "default"

// dispatcherFor resolves a subscription's dispatcher: dispatcherRef with its
// namespace defaulting to the subscription's, or the default dispatcher.
func dispatcherFor(sub *hooklinev1.WebhookSubscription, defaultDispatcher types.NamespacedName) types.NamespacedName {
	ref := sub.Spec.DispatcherRef
	if ref == nil {
		return defaultDispatcher
	}
	ns := ref.Namespace
	if ns == "" {
		ns = sub.Namespace
	}
	return types.NamespacedName{Namespace: ns, Name: ref.Name}
}

// SetupIndexes registers the field indexes the reconcilers share. Call it
// once, before setting up the reconcilers.
func SetupIndexes(ctx context.Context, mgr ctrl.Manager, defaultDispatcher types.NamespacedName) error {
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &hooklinev1.WebhookSubscription{}, indexSubscriptionSecret, func(o client.Object) []string {
		return []string{o.(*hooklinev1.WebhookSubscription).Spec.Signing.SecretRef.Name}
	}); err != nil {
		return fmt.Errorf("indexing subscriptions by secret: %w", err)
	}
	if err := idx.IndexField(ctx, &hooklinev1.WebhookSubscription{}, indexSubscriptionDispatcher, func(o client.Object) []string {
		return []string{dispatcherFor(o.(*hooklinev1.WebhookSubscription), defaultDispatcher).String()}
	}); err != nil {
		return fmt.Errorf("indexing subscriptions by dispatcher: %w", err)
	}
	return nil
}

// admitsNamespace says whether the dispatcher admits subscriptions from ns.
func admitsNamespace(d *hooklinev1.WebhookDispatcher, ns *corev1.Namespace) (bool, error) {
	return d.AdmitsNamespace(ns.Name, ns.Labels)
}

// requestsForList lists objects with opts into list (from the manager's
// cache) and returns a reconcile request for each: the body of the map
// functions that wake objects when something they reference changes.
func requestsForList(ctx context.Context, c client.Reader, list client.ObjectList, opts ...client.ListOption) []reconcile.Request {
	if err := c.List(ctx, list, opts...); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing objects to requeue", "kind", fmt.Sprintf("%T", list))
		return nil
	}
	var reqs []reconcile.Request
	_ = meta.EachListItem(list, func(o runtime.Object) error {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o.(client.Object))})
		return nil
	})
	return reqs
}

// signingSecretName is the Secret a WebhookSecret writes its keys to.
func signingSecretName(ws *hooklinev1.WebhookSecret) string { return ws.SigningSecretName() }
