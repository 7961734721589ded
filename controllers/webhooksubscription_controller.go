package controllers

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/rules"
)

// Field indexes this controller adds, so a change to a Secret or ConfigMap
// finds the subscriptions that read it.
const (
	// indexSubscriptionReferencedSecrets indexes subscriptions by the names
	// of the Secrets their headers and TLS settings read (same namespace).
	indexSubscriptionReferencedSecrets = ".spec.referencedSecrets"
	// indexSubscriptionReferencedConfigMaps indexes subscriptions by the
	// names of the ConfigMaps their TLS settings read (same namespace).
	indexSubscriptionReferencedConfigMaps = ".spec.referencedConfigMaps"
)

// WebhookSubscriptionReconciler reconciles WebhookSubscriptions: it checks
// that the spec is valid, that the dispatcher admits it and is Ready, and
// that the signing WebhookSecret and every referenced Secret and ConfigMap
// key exist, and reports the result as Ready, Reconciling or Stalled. The
// dispatcher reads the same objects to deliver; it owns the Accepted,
// EndpointHealthy and Suspended conditions and the delivery block, which
// this controller never writes but folds into Ready once its own checks
// pass (subscriptionDeliveryOutcome).
type WebhookSubscriptionReconciler struct {
	client.Client
	Recorder recorder.EventRecorder
	// APIReader reads from the API server, bypassing the cache: Secret
	// and ConfigMap contents are never cached (the watches keep metadata
	// only).
	APIReader         client.Reader
	Clock             clock.WithTicker
	DefaultDispatcher types.NamespacedName
	// Workers is how many subscriptions are reconciled at once; below 1
	// means one. The only state reconciles share is stalls, which is safe
	// for concurrent use, and the workqueue never hands one subscription to
	// two workers at once.
	Workers int

	// stalls keeps a refusal from being reported by more than one Warning.
	stalls stallWarnings
}

// +kubebuilder:rbac:groups=hookline.dev,resources=webhooksubscriptions,verbs=get;list;watch
// +kubebuilder:rbac:groups=hookline.dev,resources=webhooksubscriptions/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=hookline.dev,resources=webhooksecrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=hookline.dev,resources=webhookdispatchers,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the field indexes on referenced Secrets and
// ConfigMaps, and the watches: subscriptions on generation changes and on
// changes of the dispatcher's conditions, and
// each referenced kind mapped back to the subscriptions that use it.
// Secrets and ConfigMaps are watched as metadata only, so the manager never
// caches their contents; reconciliation reads them through APIReader.
func (r *WebhookSubscriptionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	ctx := context.Background()
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &hooklinev1.WebhookSubscription{}, indexSubscriptionReferencedSecrets, func(o client.Object) []string {
		return subscriptionReferencedNames(&o.(*hooklinev1.WebhookSubscription).Spec, rules.KindSecret)
	}); err != nil {
		return fmt.Errorf("indexing subscriptions by referenced Secret: %w", err)
	}
	if err := idx.IndexField(ctx, &hooklinev1.WebhookSubscription{}, indexSubscriptionReferencedConfigMaps, func(o client.Object) []string {
		return subscriptionReferencedNames(&o.(*hooklinev1.WebhookSubscription).Spec, rules.KindConfigMap)
	}); err != nil {
		return fmt.Errorf("indexing subscriptions by referenced ConfigMap: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&hooklinev1.WebhookSubscription{}, builder.WithPredicates(
			predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, subscriptionDispatcherConditionsChanged))).
		Watches(&hooklinev1.WebhookSecret{},
			handler.EnqueueRequestsFromMapFunc(r.subscriptionsIndexedBy(indexSubscriptionSecret)),
			builder.WithPredicates(subscriptionDependencyReadyChanged)).
		Watches(&hooklinev1.WebhookDispatcher{},
			handler.EnqueueRequestsFromMapFunc(r.subscriptionsOfDispatcher),
			builder.WithPredicates(predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, subscriptionDependencyReadyChanged))).
		Watches(&corev1.Namespace{},
			handler.EnqueueRequestsFromMapFunc(r.subscriptionsInNamespace),
			builder.WithPredicates(predicate.LabelChangedPredicate{})).
		Watches(&corev1.Secret{},
			handler.EnqueueRequestsFromMapFunc(r.subscriptionsIndexedBy(indexSubscriptionReferencedSecrets)),
			builder.OnlyMetadata).
		Watches(&corev1.ConfigMap{},
			handler.EnqueueRequestsFromMapFunc(r.subscriptionsIndexedBy(indexSubscriptionReferencedConfigMaps)),
			builder.OnlyMetadata).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.Workers, 1)}).
		Complete(r)
}

// subscriptionDispatcherConditionsChanged passes status updates that
// change the status, reason or observed generation of a condition the
// dispatcher owns, which the Ready summary follows. Their messages alone
// (counts, the last failure) change with every status write and are left
// out, and so is everything this controller writes itself.
var subscriptionDispatcherConditionsChanged = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		oldSub, ok1 := e.ObjectOld.(*hooklinev1.WebhookSubscription)
		newSub, ok2 := e.ObjectNew.(*hooklinev1.WebhookSubscription)
		if !ok1 || !ok2 {
			return false
		}
		for _, typ := range subscriptionDispatcherConditionTypes {
			o := meta.FindStatusCondition(oldSub.Status.Conditions, typ)
			n := meta.FindStatusCondition(newSub.Status.Conditions, typ)
			if (o == nil) != (n == nil) {
				return true
			}
			if o != nil && (o.Status != n.Status || o.Reason != n.Reason || o.ObservedGeneration != n.ObservedGeneration) {
				return true
			}
		}
		return false
	},
}

// subscriptionDispatcherConditionTypes are the condition types the
// dispatcher writes on subscriptions.
var subscriptionDispatcherConditionTypes = []string{
	hooklinev1.ConditionAccepted, hooklinev1.ConditionEndpointHealthy, hooklinev1.ConditionSuspended,
}

// subscriptionDependencyReadyChanged passes creations, deletions, and
// updates that change the Ready condition's status: all a subscription
// learns from the status of a WebhookSecret or a dispatcher.
var subscriptionDependencyReadyChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		return subscriptionDependencyReadyStatus(e.ObjectOld) != subscriptionDependencyReadyStatus(e.ObjectNew)
	},
}

func subscriptionDependencyReadyStatus(o client.Object) metav1.ConditionStatus {
	var conds []metav1.Condition
	switch obj := o.(type) {
	case *hooklinev1.WebhookSecret:
		conds = obj.Status.Conditions
	case *hooklinev1.WebhookDispatcher:
		conds = obj.Status.Conditions
	}
	if c := meta.FindStatusCondition(conds, hooklinev1.ConditionReady); c != nil {
		return c.Status
	}
	return metav1.ConditionUnknown
}

// subscriptionsIndexedBy maps an object to the subscriptions in its
// namespace whose index field holds its name.
func (r *WebhookSubscriptionReconciler) subscriptionsIndexedBy(field string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		return r.listRequests(ctx, client.InNamespace(o.GetNamespace()), client.MatchingFields{field: o.GetName()})
	}
}

func (r *WebhookSubscriptionReconciler) subscriptionsOfDispatcher(ctx context.Context, o client.Object) []reconcile.Request {
	key := types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}
	return r.listRequests(ctx, client.MatchingFields{indexSubscriptionDispatcher: key.String()})
}

func (r *WebhookSubscriptionReconciler) subscriptionsInNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	return r.listRequests(ctx, client.InNamespace(o.GetName()))
}

func (r *WebhookSubscriptionReconciler) listRequests(ctx context.Context, opts ...client.ListOption) []reconcile.Request {
	return requestsForList(ctx, r.Client, &hooklinev1.WebhookSubscriptionList{}, opts...)
}

// Reconcile checks one subscription and writes its status once.
func (r *WebhookSubscriptionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	log := ctrl.LoggerFrom(ctx)
	sub := &hooklinev1.WebhookSubscription{}
	if err := r.Get(ctx, req.NamespacedName, sub); err != nil {
		if apierrors.IsNotFound(err) {
			r.stalls.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !sub.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	dispatcher := dispatcherFor(sub, r.DefaultDispatcher)

	var out outcome
	defer func() {
		if retErr != nil {
			out = errorOutcome(retErr)
		}
		desired := subscriptionStatus(sub, out, dispatcher.String(), metav1.NewTime(r.Clock.Now()))
		if r.stalls.due(req.NamespacedName, sub.Status.Conditions, out) {
			r.Recorder.Eventf(sub, nil, corev1.EventTypeWarning, out.reason, "Reconcile", "%s", out.message)
		}
		// Applied even when the cached status looks the same: the cache may
		// not show this controller's last write yet, and an apply that
		// changes nothing writes nothing.
		if err := applyStatus(ctx, r.Client, sub, &desired); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	steps := []func(context.Context, *hooklinev1.WebhookSubscription, types.NamespacedName) (outcome, bool, error){
		r.checkSpec,
		r.checkDispatcher,
		r.checkWebhookSecret,
		r.checkReferencedObjects,
	}
	for _, step := range steps {
		o, done, err := step(ctx, sub, dispatcher)
		if err != nil {
			return ctrl.Result{}, err
		}
		if done {
			out = o
			log.V(1).Info("Subscription is not ready", "reason", o.reason, "message", o.message)
			return ctrl.Result{}, nil
		}
	}
	out = subscriptionDeliveryOutcome(sub, dispatcher, subscriptionReadyOutcome(&sub.Spec, dispatcher))
	return ctrl.Result{}, nil
}

// The steps return done=true with the outcome that ends the reconciliation,
// or done=false to go on.

func (r *WebhookSubscriptionReconciler) checkSpec(_ context.Context, sub *hooklinev1.WebhookSubscription, _ types.NamespacedName) (outcome, bool, error) {
	if r := rules.CheckSpec(&sub.Spec); r != nil {
		return refusalOutcome(r), true, nil
	}
	return outcome{}, false, nil
}

func (r *WebhookSubscriptionReconciler) checkDispatcher(ctx context.Context, sub *hooklinev1.WebhookSubscription, key types.NamespacedName) (outcome, bool, error) {
	d := &hooklinev1.WebhookDispatcher{}
	if err := r.Get(ctx, key, d); err != nil {
		if apierrors.IsNotFound(err) {
			return outcome{phase: phaseProgressing, reason: hooklinev1.ReasonDispatcherNotFound,
				message: fmt.Sprintf("dispatcher %s not found", key)}, true, nil
		}
		return outcome{}, false, fmt.Errorf("getting dispatcher %s: %w", key, err)
	}
	ns := &corev1.Namespace{}
	if err := r.Get(ctx, types.NamespacedName{Name: sub.Namespace}, ns); err != nil {
		return outcome{}, false, fmt.Errorf("getting namespace %s: %w", sub.Namespace, err)
	}
	o, done := subscriptionDispatcherOutcome(&sub.Spec, d, ns)
	if done {
		ctrl.LoggerFrom(ctx).V(1).Info("Dispatcher refuses or is not ready", "dispatcher", klog.KObj(d), "reason", o.reason)
	}
	return o, done, nil
}

func (r *WebhookSubscriptionReconciler) checkWebhookSecret(ctx context.Context, sub *hooklinev1.WebhookSubscription, _ types.NamespacedName) (outcome, bool, error) {
	name := sub.Spec.Signing.SecretRef.Name
	s := &hooklinev1.WebhookSecret{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: sub.Namespace, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return outcome{phase: phaseProgressing, reason: hooklinev1.ReasonSecretNotFound,
				message: fmt.Sprintf("WebhookSecret %s, referenced by spec.signing.secretRef, not found", name)}, true, nil
		}
		return outcome{}, false, fmt.Errorf("getting WebhookSecret %s: %w", name, err)
	}
	o, done := subscriptionSigningOutcome(s)
	return o, done, nil
}

// checkReferencedObjects reads each Secret and ConfigMap the headers and
// TLS settings name straight from the API server (their contents are not
// cached), once per object, and checks that the keys are there.
func (r *WebhookSubscriptionReconciler) checkReferencedObjects(ctx context.Context, sub *hooklinev1.WebhookSubscription, _ types.NamespacedName) (outcome, bool, error) {
	keysOf := map[subscriptionObjectID]sets.Set[string]{}
	for _, ref := range rules.References(&sub.Spec) {
		id := subscriptionObjectID{ref.Kind, ref.Name}
		keys, seen := keysOf[id]
		if !seen {
			var found bool
			var err error
			keys, found, err = r.referencedKeys(ctx, sub.Namespace, id)
			if err != nil {
				return outcome{}, false, err
			}
			if !found {
				return refusalOutcome(rules.MissingReference(ref, false, "")), true, nil
			}
			keysOf[id] = keys
		}
		if k := rules.MissingKey(ref, keys.Has); k != "" {
			return refusalOutcome(rules.MissingReference(ref, true, k)), true, nil
		}
	}
	return outcome{}, false, nil
}

// subscriptionObjectID is a referenced Secret or ConfigMap in the
// subscription's namespace.
type subscriptionObjectID struct{ kind, name string }

// referencedKeys gets the object through the API reader and returns the
// names of its keys (values go no further); found is false when it does
// not exist.
func (r *WebhookSubscriptionReconciler) referencedKeys(ctx context.Context, namespace string, id subscriptionObjectID) (keys sets.Set[string], found bool, err error) {
	key := types.NamespacedName{Namespace: namespace, Name: id.name}
	switch id.kind {
	case rules.KindConfigMap:
		cm := &corev1.ConfigMap{}
		if err = r.APIReader.Get(ctx, key, cm); err == nil {
			keys = sets.KeySet(cm.Data).Union(sets.KeySet(cm.BinaryData))
		}
	default:
		secret := &corev1.Secret{}
		if err = r.APIReader.Get(ctx, key, secret); err == nil {
			keys = sets.KeySet(secret.Data)
		}
	}
	if apierrors.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("getting %s %s: %w", id.kind, id.name, err)
	}
	return keys, true, nil
}
